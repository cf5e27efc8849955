"""Printed and HTML reports of Bayesian fits, laid out like brms's ``summary()``.

The report reads only the fit's own tables (``fixef()``, ``varcorr()``) and
its diagnostics, so every number it prints is one a user can also get as a
DataFrame.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from hierlm.results.display import FitSummary

__all__ = ["BayesSummary"]

_POSTERIOR_COLUMNS = {"estimate": "Estimate", "std_error": "Est.Error"}
_DIAGNOSTIC_COLUMNS = {"r_hat": "Rhat", "ess_bulk": "Bulk_ESS", "ess_tail": "Tail_ESS"}


def _interval_columns(table: pd.DataFrame) -> list[str]:
    """The lower and upper interval columns of a posterior table (e.g. ``eti95_lb``)."""
    lower = [c for c in table.columns if str(c).endswith("_lb")]
    upper = [c for c in table.columns if str(c).endswith("_ub")]
    return lower[:1] + upper[:1]


def _interval_label(column: str, bound: str) -> str:
    """``eti95_lb`` -> ``l-95% CI``."""
    digits = "".join(ch for ch in column if ch.isdigit())
    return f"{bound}-{digits}% CI" if digits else column


def _display(table: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Rename a posterior table's columns to the report's headers."""
    interval = _interval_columns(table)
    columns = {**_POSTERIOR_COLUMNS}
    if len(interval) == 2:
        columns[interval[0]] = _interval_label(interval[0], "l")
        columns[interval[1]] = _interval_label(interval[1], "u")
    columns.update(_DIAGNOSTIC_COLUMNS)
    present = [c for c in columns if c in table.columns]
    shown = table[present].rename(columns=columns)
    shown.index = pd.Index(index)
    return shown


def _format(shown: pd.DataFrame) -> pd.DataFrame:
    """Round estimates to 2 decimals, R-hat to 3 and ESS to whole numbers, as text."""
    formatted = pd.DataFrame(index=shown.index)
    for column in shown.columns:
        values = shown[column].to_numpy(dtype=float)
        if column == "Rhat":
            formatted[column] = ["NA" if not np.isfinite(v) else f"{v:.3f}" for v in values]
        elif column.endswith("_ESS"):
            formatted[column] = ["NA" if not np.isfinite(v) else f"{v:.0f}" for v in values]
        else:
            formatted[column] = ["NA" if not np.isfinite(v) else f"{v:.2f}" for v in values]
    return formatted


class BayesSummary(FitSummary):
    """A Bayesian fit's report: formula, data, draws, group-level, population-level, sigma.

    ``str()`` gives the text report; notebooks show the HTML version;
    ``to_frames()`` the tables (``fixed``: ``fit.fixef(prob)``, ``random``:
    ``fit.varcorr(prob)``) it is made of.
    """

    def __init__(self, fit: Any, prob: float | None = None) -> None:
        super().__init__(fit, prob)
        self.fixed_display = _display(self.fixed, list(self.fixed.index))
        varcorr = self.random
        self.groups: list[tuple[str, pd.DataFrame]] = []
        residual = varcorr[varcorr["group"] == "Residual"]
        dispersion = varcorr[varcorr["group"] == "Dispersion"]
        # brms's "Family Specific Parameters": sigma (Gaussian), theta (negative binomial) or none
        self.sigma = (_display(residual, ["sigma"]) if len(residual)
                      else _display(dispersion, [str(t) for t in dispersion["term1"]]))
        group_rows = varcorr[~varcorr["group"].isin(["Residual", "Dispersion"])]
        for group, rows in group_rows.groupby("group", sort=False):
            labels = [
                f"sd({row.term1})"
                if row.term2 is None or pd.isna(row.term2)
                else f"cor({row.term1},{row.term2})"
                for row in rows.itertuples()
            ]
            self.groups.append((str(group), _display(rows, labels)))
        # residual=: its parameters (rho, phi, ratios ...) and what sigma means under it
        self.residual_title, self.residual_table = "", pd.DataFrame()
        residual = getattr(fit.design, "residual", None)
        if residual is not None:  # NUTS: the posterior; MAP: the mode
            table = fit.structure_parameters(prob)
            rows = table[table["structure"] == residual.describe()]
            self.residual_title = f"Residual Structure: {residual.describe()}"
            self.residual_table = _display(rows, [str(v) for v in rows["parameter"]])
            first = ("the first time's" if residual.structure.heterogeneous
                     or residual.structure.base == "un" else "every observation's")
            if residual.n_variance:
                first += f" (at {residual.variance_function.column}'s first level)"
            self.residual_note = (f"sigma is {first} marginal residual SD (brms's sigma under ar() "
                                  "is the innovation SD, sigma * sqrt(1 - rho^2))"
                                  if residual.structure.base == "ar1" else
                                  f"sigma is {first} marginal residual SD")

    def _header(self) -> list[str]:
        """Lines describing the model, data and sampling."""
        fit = self.fit
        model = getattr(fit, "model", None)
        formula = model.formula if model is not None else "(model not attached)"
        design = fit.design
        grouping = ", ".join(
            f"{b.group} ({b.n_levels})"
            for i, b in enumerate(design.blocks)
            if b.group not in {c.group for c in design.blocks[:i]}
        )
        family = getattr(fit, "family", None)
        lines = [
            f" Family: {getattr(family, 'name', 'gaussian')}",
            f"  Links: mu = {family.link.name if family is not None else 'identity'}",
            f"Formula: {formula}",
            f"   Data: {design.n} observations; groups: {grouping or 'none'}",
        ]
        settings = fit.settings
        if fit.method == "nuts":
            lines.append(
                f"  Draws: {settings.get('chains', '?')} chains, each with {settings.get('draws', '?')} "
                f"draws after {settings.get('tune', '?')} tuning steps; "
                f"{fit.sampler} sampler, {fit.formulation} formulation"
            )
        else:
            lines.append(f"  Fit: posterior mode (MAP), {fit.formulation} formulation")
        return lines

    def _footer(self) -> list[str]:
        """Diagnostic lines (divergences, R-hat, ESS) for NUTS fits."""
        report = getattr(self.fit, "diagnostics", None)
        if report is None:
            return []
        worst_rhat = max(report.rhat.values()) if report.rhat else float("nan")
        low_ess = min(report.ess_bulk.values()) if report.ess_bulk else float("nan")
        lines = [
            f"Diagnostics: {report.divergences} divergent transition(s); "
            f"max R-hat {worst_rhat:.3f}; min bulk ESS {low_ess:.0f}; "
            f"{report.treedepth_hits} max-tree-depth hit(s)."
        ]
        lines += [f"  Problem: {problem}" for problem in report.problems]
        return lines

    def __str__(self) -> str:
        lines = self._header() + (["", "Group-Level Effects:"] if self.groups else [])
        for group, table in self.groups:
            lines.append(f"~{group}")
            lines.append(_format(table).to_string())
        lines += [
            "",
            "Population-Level Effects:",
            _format(self.fixed_display).to_string(),
        ]
        if len(self.sigma):
            lines += ["", "Family Specific Parameters:", _format(self.sigma).to_string()]
        if self.residual_title:
            lines += ["", f"{self.residual_title}:"]
            if len(self.residual_table):
                lines.append(_format(self.residual_table).to_string())
            lines.append(f"  ({self.residual_note})")
        interval = _interval_columns(self.fixed)
        if interval:
            level = _interval_label(interval[0], "l")[2:]
            how = ("Wald intervals of the Laplace approximation at the mode" if self.fit.method == "map"
                   else "equal-tailed posterior intervals")
            lines += ["", f"Intervals: {how} ({level})."]
        footer = self._footer()
        if footer:
            lines += [""] + footer
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """HTML version of the report for notebooks."""
        parts = ["<div class='hierlm-summary'>"]
        parts += [f"<pre>{html.escape(line)}</pre>" for line in self._header()]
        parts.append("<h4>Group-level effects</h4>")
        for group, table in self.groups:
            parts.append(f"<p>~{html.escape(group)}</p>{_format(table).to_html()}")
        parts.append(f"<h4>Population-level effects</h4>{_format(self.fixed_display).to_html()}")
        if len(self.sigma):
            parts.append(f"<h4>Family-specific parameters</h4>{_format(self.sigma).to_html()}")
        if self.residual_title:
            parts.append(f"<h4>{html.escape(self.residual_title)}</h4>")
            if len(self.residual_table):
                parts.append(_format(self.residual_table).to_html())
            parts.append(f"<p>{html.escape(self.residual_note)}</p>")
        parts += [f"<p>{html.escape(line)}</p>" for line in self._footer()]
        parts.append("</div>")
        return "".join(parts)
