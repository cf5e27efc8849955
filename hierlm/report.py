"""A self-contained report of one fit: an HTML page, the fit itself and its model card.

:func:`write_report` writes into one folder:

* ``report.html``: model and data description, the fit's own summary, the
  summary tables (fixed effects, variance components, ICC, R², shrinkage;
  for bare posterior draws a parameter summary with convergence diagnostics)
  and the main figures of :mod:`hierlm.plots`, embedded as base64 PNG images,
  so the page needs no other file and no network;
* the fit: the folder ``fit/`` written by :func:`hierlm.io.save_fit`
  (reload it with ``hl.load_fit(out_dir / "fit")``), which holds a Bayesian
  fit's ``idata`` (an ArviZ ``DataTree``) as netCDF (``fit/idata.nc``, via
  h5netcdf); for an ML/REML fit also its tables as CSV (``fixef.csv``,
  ``varcorr.csv``, ``ranef.csv``, ``parameters.csv``) and its estimates and
  optimiser record as JSON (``fit.json``). Bare posterior draws without a
  Model are written as ``fit.nc`` (their main parameters);
* a copy of the model card (or, for a card assembled on the command line, a
  TOML rendering of it).

Figures that do not apply to a fit (a correlation posterior for a model
without correlations, posterior plots for a point fit) are listed on the page
with the reason instead of being drawn.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import HierlmError, InputTypeError
from hierlm.results.common import as_draws, chains_of
from hierlm.results.draws import FitDraws

__all__ = ["ReportFiles", "write_report"]

_FIT_FACTS = ("method", "nobs", "sigma", "loglik", "aic", "bic", "deviance", "criterion",
              "reml_criterion", "df_residual", "ngroups", "is_singular", "theta", "theta_names")
_MAX_CATERPILLAR_LEVELS = 300
_MAX_FACET_LEVELS = 60


@dataclass(frozen=True)
class ReportFiles:
    """Paths written by :func:`write_report`.

    Attributes
    ----------
    html : Path
        The report page.
    card : Path
        The copy of the model card.
    fit : tuple of Path
        The saved fit: the ``fit/`` folder (and ``fit/idata.nc`` for
        Bayesian fits); CSV tables and ``fit.json`` for point fits;
        ``fit.nc`` for bare posterior draws.
    """

    html: Path
    card: Path
    fit: tuple[Path, ...]

    def all(self) -> list[Path]:
        """Every written path, the page first."""
        return [self.html, self.card, *self.fit]


# ----------------------------------------------------------------------------- helpers
def _plain(value: Any) -> Any:
    """Convert numpy values, arrays and dataclasses into JSON-ready Python values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {key: _plain(item) for key, item in asdict(value).items()}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _call_table(fit: Any, name: str) -> pd.DataFrame | None:
    """``fit.<name>()`` when the fit has that method and it returns a DataFrame."""
    method = getattr(fit, name, None)
    if not callable(method):
        return None
    table = method()
    return table if isinstance(table, pd.DataFrame) else None


def _fit_facts(fit: Any) -> dict[str, Any]:
    """Scalar facts of a point fit (method, likelihood, information criteria, theta...)."""
    facts: dict[str, Any] = {}
    for name in _FIT_FACTS:
        value = getattr(fit, name, None)
        if value is not None and not callable(value):
            facts[name] = _plain(value)
    record = getattr(fit, "fit_record", None)
    if record is not None:
        facts["fit_record"] = _plain(record)
    return facts


def _table_html(table: pd.DataFrame, index: bool = True) -> str:
    """A DataFrame as an HTML table with compact numbers."""
    def number(value: float) -> str:
        return f"{value:.4g}"

    shown = table.copy()
    for column in shown.columns:
        if shown[column].dtype == object:
            shown[column] = shown[column].map(lambda value: "" if value is None else value)
    return shown.to_html(float_format=number, na_rep="", border=0, classes="table", index=index,
                         escape=True)


def _figure_html(figure: Any, dpi: int) -> str:
    """A matplotlib figure as an embedded base64 PNG image."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{encoded}">'


def _time_variable(fit: Any, draws: FitDraws) -> str | None:
    """A numeric data column that is a random slope (the time of longitudinal data), if any."""
    data = getattr(getattr(fit, "model", None), "data", None)
    if not isinstance(data, pd.DataFrame) or len(data) != draws.design.n:
        return None
    for block in draws.design.blocks:
        for column in block.columns:
            if column in data.columns and pd.api.types.is_numeric_dtype(data[column]):
                return column
    return None


# ----------------------------------------------------------------------------- content
def _tables(fit: Any, draws: FitDraws) -> list[tuple[str, str]]:
    """(title, HTML) of every summary table."""
    from hierlm.results import icc, r2, shrinkage
    from hierlm.results.estimates import parameter_draws
    from hierlm.results.summary import summarize

    out: list[tuple[str, str]] = []
    fixef = _call_table(fit, "fixef")
    if fixef is not None:
        out.append(("Fixed effects", _table_html(fixef)))
    varcorr = _call_table(fit, "varcorr")
    if varcorr is not None:
        out.append(("Variance components", _table_html(varcorr, index=False)))
    if not draws.point and (fixef is None or varcorr is None):
        labels, values = parameter_draws(draws)
        summary = summarize(values, chains=chains_of(draws))
        out.append(("Posterior summary and convergence diagnostics",
                    _table_html(pd.concat([labels, summary], axis=1), index=False)))
    if draws.design.blocks:
        result = icc(draws)
        out.append(("Intraclass correlation", _table_html(result.correlations)))
        out.append(("Variance shares", _table_html(result.components)))
    out.append(("R² (Nakagawa & Schielzeth" + (", Bayesian" if not draws.point else "") + ")",
                _table_html(r2(draws))))
    for group in dict.fromkeys(block.group for block in draws.design.blocks):
        pooling = shrinkage(draws, group)
        sentences = "".join(f"<li>{html.escape(line)}</li>" for line in pooling.lines())
        out.append((f"Shrinkage by {group}", f"<ul>{sentences}</ul>" + _table_html(pooling.summary)))
    return out


def _figure_plan(fit: Any, draws: FitDraws, time: str | None) -> list[tuple[str, Callable[[], Any]]]:
    """(caption, drawing function) of every figure the report tries to draw."""
    from hierlm import plots

    plan: list[tuple[str, Callable[[], Any]]] = []
    groups = list(dict.fromkeys(block.group for block in draws.design.blocks))
    levels = {block.group: block.n_levels for block in draws.design.blocks}
    for group in groups:
        plan.append((f"Shrinkage by {group}: no pooling -> partial pooling",
                     partial(plots.plot_shrinkage, draws, group)))
        if levels[group] <= _MAX_CATERPILLAR_LEVELS:
            plan.append((f"Group effects by {group}", partial(plots.plot_caterpillar, fit, group)))
    if time is not None and groups:
        layout = "facets" if max(levels.values()) <= _MAX_FACET_LEVELS else "overlay"
        plan.append((f"Trajectories over {time}",
                     lambda: plots.plot_trajectories(fit, time, layout=layout)))
    if not draws.point:
        plan.append(("Variance components (posterior)", lambda: plots.plot_variance_components(draws)))
        if groups:
            plan.append(("Intraclass correlation (posterior)", lambda: plots.plot_icc(draws)))
        if any(block.correlated for block in draws.design.blocks):
            plan.append(("Correlations of group effects (posterior)",
                         lambda: plots.plot_correlations(draws)))
        plan.append(("Posterior predictive check", lambda: plots.plot_ppc(draws)))
    plan.append(("Residuals vs fitted values", lambda: plots.plot_residuals(draws)))
    if groups:
        plan.append(("Normal QQ plot of group effects", lambda: plots.plot_effects_qq(draws)))
    if not draws.point:
        plan.append(("Trace plots", lambda: plots.plot_trace(fit)))
        plan.append(("Rank plots", lambda: plots.plot_rank(fit)))
    return plan


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta td { padding: 0.1em 1em 0.1em 0; } .meta td:first-child { color: #666; }
table.table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
table.table th, table.table td { padding: 0.25em 0.7em; text-align: right; border-bottom: 1px solid #e4e4e4; }
table.table th { background: #f3f3f3; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
nav { margin: 0.8em 0; } nav a { color: #1f5fa8; }
figcaption { font-weight: 600; margin-bottom: 0.4em; } .skipped { color: #666; }
.tables { display: flex; flex-wrap: wrap; column-gap: 2.5em; align-items: flex-start; }
.tables section { max-width: 100%; overflow-x: auto; } .tables ul { max-width: 60em; }
"""


def _page(title: str, meta: list[tuple[str, str]], summary_text: str | None, card_text: str,
          tables: list[tuple[str, str]], figures: list[tuple[str, str]],
          skipped: list[tuple[str, str]]) -> str:
    """Assemble the HTML page."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in meta)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", f'<table class="meta">{rows}</table>',
        '<nav>' + (' <a href="#summary">Fit summary</a> ·' if summary_text else "")
        + ' <a href="#tables">Tables</a> · <a href="#figures">Figures</a> · <a href="#card">Model card</a>'
        + "</nav>",
    ]
    if summary_text:
        parts += ['<h2 id="summary">Fit summary</h2>', f"<pre>{html.escape(summary_text)}</pre>"]
    parts.append('<h2 id="tables">Tables</h2><div class="tables">')
    for heading, content in tables:
        parts.append(f"<section><h3>{html.escape(heading)}</h3>{content}</section>")
    parts.append("</div>")
    parts.append('<h2 id="figures">Figures</h2>')
    for caption, image in figures:
        parts.append(f"<figure><figcaption>{html.escape(caption)}</figcaption>{image}</figure>")
    if skipped:
        items = "".join(f"<li>{html.escape(c)}: {html.escape(r)}</li>" for c, r in skipped)
        parts.append(f'<p class="skipped">Not shown:</p><ul class="skipped">{items}</ul>')
    parts += ['<h2 id="card">Model card</h2>', f"<pre>{html.escape(card_text)}</pre>", "</body></html>"]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- outputs
def _toml_value(value: Any) -> str:
    """One TOML value (strings, numbers, booleans, lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def _card_text(card: Any) -> str:
    """The card file's text, or a TOML rendering of a card assembled in memory."""
    source = getattr(card, "source", None)
    if source is not None and Path(source).is_file():
        return Path(source).read_text()
    lines = [f"name = {_toml_value(card.name)}", f"description = {_toml_value(card.description)}", "",
             "[model]", f"formula = {_toml_value(card.formula)}", f"family = {_toml_value(card.family)}",
             "", "[fit]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in card.fit_options.items()]
    return "\n".join(lines) + "\n"


def _write_fit(fit: Any, draws: FitDraws, out: Path) -> tuple[Path, ...]:
    """Save the fit: a reloadable fit folder when the fit has a Model, plus readable tables."""
    from hierlm.io import save_fit
    from hierlm.plots.common import posterior_tree
    from hierlm.results.estimates import parameter_draws

    written: list[Path] = []
    if getattr(fit, "model", None) is not None and not isinstance(fit, FitDraws):
        folder = save_fit(fit, out / "fit", overwrite=True)
        written.append(folder)
        if (folder / "idata.nc").is_file():
            written.append(folder / "idata.nc")
    elif not draws.point:
        path = out / "fit.nc"
        posterior_tree(draws).to_netcdf(path, engine="h5netcdf")
        written.append(path)
    if not draws.point:
        return tuple(written)
    for name, index in (("fixef", True), ("varcorr", False), ("ranef", False)):
        table = _call_table(fit, name)
        if table is not None:
            path = out / f"{name}.csv"
            table.to_csv(path, index=index)
            written.append(path)
    labels, values = parameter_draws(draws)
    path = out / "parameters.csv"
    labels.assign(estimate=values[0]).to_csv(path, index=False)
    written.append(path)
    path = out / "fit.json"
    path.write_text(json.dumps(_fit_facts(fit), indent=2, default=str) + "\n")
    written.append(path)
    return tuple(written)


def write_report(fit: object, card: Any, out_dir: str | Path, *, time: str | None | bool = None,
                 dpi: int = 100) -> ReportFiles:
    """Write an HTML report of a fit, the fit itself and a copy of its model card.

    Parameters
    ----------
    fit : fit result
        The result of ``Model(...).fit(...)`` (ML/REML/MAP or NUTS).
    card : hierlm.cards.ModelCard
        The card the fit was made from (its file is copied; a card without a
        file is written out as TOML).
    out_dir : str or Path
        Folder to write into (created if missing; existing files of the same
        names are replaced).
    time : str, False or None
        Column to draw trajectories over; None picks a numeric random-slope
        column of the data (``Days``, ``week``); False draws no
        trajectories. A model with several grouping factors gets none (the
        page says why).
    dpi : int
        Resolution of the embedded figures.

    Returns
    -------
    ReportFiles
        The paths written.

    Raises
    ------
    InputTypeError
        If ``fit`` is not a hierlm fit or ``card`` is not a model card.
    """
    draws = as_draws(fit)
    if not all(hasattr(card, name) for name in ("name", "formula", "fit_options")):
        raise InputTypeError(f"card must be a hierlm ModelCard (hierlm.cards.load_card), "
                             f"not {type(card).__name__}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen_time = _time_variable(fit, draws) if time is None else (None if time is False else str(time))

    figures: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for caption, draw in _figure_plan(fit, draws, chosen_time):
        try:
            figure = draw()
        except HierlmError as error:
            skipped.append((caption, str(error)))
            continue
        figures.append((caption, _figure_html(figure, dpi)))

    method = str(getattr(fit, "method", "nuts" if not draws.point else "point estimate"))
    meta = [("formula", card.formula), ("method", method.upper()),
            ("observations", str(draws.design.n))]
    meta += [(f"levels of {block.group}", str(block.n_levels))
             for block in {b.group: b for b in draws.design.blocks}.values()]
    if not draws.point:
        meta.append(("posterior draws", f"{draws.n_draws} ({chains_of(draws)} chains)"))
    if getattr(card, "description", ""):
        meta.insert(0, ("description", card.description))
    meta.append(("written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    summary = getattr(fit, "summary", None)
    summary_text = str(summary()) if callable(summary) else None
    card_text = _card_text(card)
    page = _page(f"hierlm report: {card.name}", meta, summary_text, card_text, _tables(fit, draws),
                 figures, skipped)
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")

    source = getattr(card, "source", None)
    if source is not None and Path(source).is_file():
        card_path = out / Path(source).name
        if Path(source).resolve() != card_path.resolve():
            shutil.copyfile(source, card_path)
    else:
        card_path = out / "card.toml"
        card_path.write_text(card_text)
    return ReportFiles(html=html_path, card=card_path, fit=_write_fit(fit, draws, out))
