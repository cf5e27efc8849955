"""How result objects show themselves: a short text ``repr`` and a readable ``_repr_html_``.

Every result object of hierlm (fits, summaries, ICC/shrinkage/elpd results,
likelihood-ratio tables, diagnostics) builds its notebook view with
:func:`html_report`: a few header lines and a few small tables, numbers
rounded to 4 significant digits. :class:`FitSummary` is the common base of
the printed fit summaries of both engines (``fit.summary()``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FitSummary", "html_report", "rounded", "MAX_HTML_ROWS"]

MAX_HTML_ROWS = 20
"""Rows of a table shown in a notebook before it is cut (the object keeps them all)."""


def rounded(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A copy of ``table`` with its float columns rounded to ``digits`` significant digits, as text."""
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = [("NA" if not np.isfinite(v) else f"{v:.{digits}g}")
                           for v in out[column].to_numpy(dtype=float)]
    return out


def html_report(lines: Sequence[str], tables: Mapping[str, pd.DataFrame] | None = None,
                notes: Sequence[str] = ()) -> str:
    """HTML of a title line, further header lines, titled tables and closing notes.

    Parameters
    ----------
    lines : sequence of str
        The first is the title (bold); the others are shown as plain lines.
    tables : mapping of str to pandas.DataFrame, optional
        Caption -> table; long tables show their first ``MAX_HTML_ROWS`` rows
        and say how many there are.
    notes : sequence of str
        Lines after the tables (warnings, hints).

    Returns
    -------
    str
    """
    parts = ["<div class='hierlm-result'>"]
    if lines:
        parts.append(f"<p><b>{html.escape(lines[0])}</b>")
        parts += [f"<br>{html.escape(line)}" for line in lines[1:]]
        parts.append("</p>")
    for caption, table in (tables or {}).items():
        shown = rounded(table.head(MAX_HTML_ROWS))
        more = (f" (first {MAX_HTML_ROWS} of {len(table)} rows)" if len(table) > MAX_HTML_ROWS else "")
        parts.append(f"<p><i>{html.escape(caption)}</i>{html.escape(more)}</p>")
        parts.append(shown.to_html(na_rep=""))
    parts += [f"<p>{html.escape(note)}</p>" for note in notes]
    parts.append("</div>")
    return "".join(parts)


class FitSummary:
    """Common base of ``fit.summary()`` for ML/REML and Bayesian fits.

    Attributes
    ----------
    fit : fit result
        The fit summarised.
    prob : float or None
        Interval probability of the tables (``hierlm.DEFAULT_PROB`` when None).
    fixed : pandas.DataFrame
        ``fit.fixef(prob=prob)``.
    random : pandas.DataFrame
        ``fit.varcorr(prob=prob)``.
    """

    def __init__(self, fit: Any, prob: float | None = None) -> None:
        self.fit = fit
        self.prob = prob
        self.fixed: pd.DataFrame = fit.fixef(prob=prob)
        self.random: pd.DataFrame = fit.varcorr(prob=prob)

    def _header(self) -> list[str]:
        """Lines describing the model and the fit; each engine's report overrides this."""
        return [repr(self.fit)]

    def to_frames(self) -> dict[str, pd.DataFrame]:
        """The summary's tables as DataFrames: ``fixed`` and ``random``."""
        return {"fixed": self.fixed, "random": self.random}

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        """The header and the two tables, for notebooks."""
        return html_report(self._header(), {"Fixed effects": self.fixed,
                                            "Variance components": self.random})
