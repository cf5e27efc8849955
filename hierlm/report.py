"""A self-contained report of one fit: an HTML page, the fit itself and its model card.

:func:`write_report` writes into one folder:

* ``report.html``: model and data description, the fit's own summary, the
  summary tables (fixed effects, variance components, priors, ICC, R²,
  shrinkage; for bare posterior draws a parameter summary with convergence
  diagnostics), a LOO section for posterior draws (PSIS-LOO per observation
  and, with one grouping factor, leave-one-group-out), the side-by-side
  table of a twin fit when one is given (``compare=``), and the main figures
  of :mod:`hierlm.plots` in a grid, embedded as base64 PNG images, so the
  page needs no other file and no network. Tables have readable headers
  (``89% low`` rather than ``eti89_lb``) and are rounded per column: four
  significant digits for the column's smallest value (at most three
  decimals), whole numbers for ESS, three decimals for R-hat and p-values;
* the fit: the folder ``fit/`` written by :func:`hierlm.io.save_fit`
  (reload it with ``hl.load_fit(out_dir / "fit")``), which holds a Bayesian
  fit's ``idata`` (an ArviZ ``DataTree``) as netCDF (``fit/idata.nc``, via
  h5netcdf); for an ML/REML fit also its tables as CSV (``fixef.csv``,
  ``varcorr.csv``, ``ranef.csv``, ``parameters.csv``) and its estimates and
  optimiser record as JSON (``fit.json``). Bare posterior draws without a
  Model are written as ``fit.nc`` (their main parameters). Saved folders get
  the permissions of the report folder;
* the model card: a copy of the card file when it describes the fit as run
  and loads the same data from the report folder, else its TOML rendering
  (:func:`hierlm.cards.card_toml`) with the options actually used, so
  ``hierlm fit <out_dir>/<card>.toml`` repeats the fit.

Figures that do not apply to a fit (a correlation posterior for a model
without correlations, posterior plots for a point fit) are listed on the page
with the reason instead of being drawn.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import HierlmError, InputTypeError
from hierlm.report_tables import comparison_table, table_html, text_table_html, varcorr_display
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
        The model card of the run (a copy of its file, or its TOML rendering
        with the options actually used).
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


def _figure_html(figure: Any, dpi: int) -> tuple[str, bool]:
    """A matplotlib figure as an embedded base64 PNG image, and whether it is wide."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    png = buffer.getvalue()
    width = int.from_bytes(png[16:20], "big")
    try:
        import matplotlib.pyplot as plt

        plt.close(figure)
    except ImportError:  # pragma: no cover - matplotlib made the figure
        pass
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{encoded}">', width > 9 * dpi


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
        out.append(("Fixed effects", table_html(fixef)))
    varcorr = _call_table(fit, "varcorr")
    if varcorr is not None:
        out.append(("Variance components", table_html(varcorr_display(varcorr), index=False)))
    if not draws.point and (fixef is None or varcorr is None):
        labels, values = parameter_draws(draws)
        summary = summarize(values, chains=chains_of(draws))
        out.append(("Posterior summary and convergence diagnostics",
                    table_html(pd.concat([labels, summary], axis=1), index=False)))
    to_frame = getattr(getattr(fit, "priors", None), "to_frame", None)
    if callable(to_frame):
        out.append(("Priors", table_html(to_frame(), index=False)))
    if draws.design.blocks:
        result = icc(draws)
        out.append(("Intraclass correlation", table_html(result.correlations)))
        out.append(("Variance shares", table_html(result.components)))
    out.append(("R² (Nakagawa & Schielzeth" + (", Bayesian" if not draws.point else "") + ")",
                table_html(r2(draws))))
    for group in dict.fromkeys(block.group for block in draws.design.blocks):
        pooling = shrinkage(draws, group)
        sentences = "".join(f"<li>{html.escape(line)}</li>" for line in pooling.lines())
        out.append((f"Shrinkage by {group}", f"<ul>{sentences}</ul>" + table_html(pooling.summary)))
    return out


def _loo_html(draws: FitDraws) -> str:
    """The LOO section: PSIS-LOO per observation and, for one grouping factor, per group."""
    from hierlm.results.ic import loo

    if draws.point:
        return ('<p class="note">PSIS-LOO needs posterior draws; this fit is a point estimate '
                "(fit with method='nuts' for LOO).</p>")
    groups = list(dict.fromkeys(block.group for block in draws.design.blocks))
    levels: list[tuple[str, str | None]] = [("observation", None)]
    if len(groups) == 1:
        levels.append(("group", groups[0]))
    rows, notes = [], []
    good_k = min(1 - 1 / math.log10(draws.n_draws), 0.7) if draws.n_draws > 1 else 0.7  # as ArviZ
    for level, group in levels:
        what = "one observation" if group is None else f"one level of {group}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the result's warning is shown below
                result = loo(draws, level=level, group=group)
        except HierlmError as error:
            notes.append(f"Leaving out {what}: {error}")
            continue
        k = result.pointwise["pareto_k"].to_numpy(dtype=float)
        rows.append({"left_out": what, "units": result.n_points, "elpd_loo": result.elpd,
                     "se": result.se, "p_loo": result.p, "looic": result.ic,
                     "max_k": float(np.nanmax(k)), "bad_k": int((~(k <= good_k)).sum())})
        if result.warning:
            notes.append(f"Leaving out {what}: {result.warning}")
    parts = ["<p>Expected log predictive density by Pareto-smoothed importance sampling "
             "(higher is better); p LOO is the effective number of parameters, LOOIC = -2 elpd. "
             f"Points with Pareto k above {good_k:.2f} (for {draws.n_draws} draws) have unreliable "
             "estimates.</p>"]
    if rows:
        parts.append(table_html(pd.DataFrame(rows), index=False))
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
    return "".join(parts)


def _comparison_html(fit: Any, draws: FitDraws, compare: Any) -> tuple[str, str]:
    """(heading, HTML) of the side-by-side table of the fit and its twin."""
    from hierlm.results.common import as_draws as _as_draws

    twin_point = _as_draws(compare).point
    if twin_point == draws.point:
        raise InputTypeError("compare= needs a twin of the other kind: a point fit (REML, ML, MAP) "
                             "next to posterior draws, or posterior draws next to a point fit.")
    bayes, point = (compare, fit) if draws.point else (fit, compare)
    method = str(getattr(point, "method", "point")).upper()
    table = comparison_table(bayes, point)
    intro = (f"<p>The posterior (NUTS) next to the {html.escape(method)} fit of the same model: "
             "posterior mean, SD and equal-tailed interval beside the estimate, its standard "
             "error and Wald interval.</p>")
    return (f"NUTS next to {method}",
            intro + text_table_html(table))


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
       max-width: 1320px; color: #222; padding: 0 1em; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
h3 { margin: 0.8em 0 0.3em; font-size: 1.05em; }
.meta td { padding: 0.1em 1em 0.1em 0; } .meta td:first-child { color: #666; }
table.table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.9em;
              font-variant-numeric: tabular-nums; }
table.table th, table.table td { padding: 0.25em 0.7em; text-align: right; border-bottom: 1px solid #e4e4e4;
                                 white-space: nowrap; }
table.table th { background: #f0f0f0; font-weight: 600; }
table.table .text { text-align: left; }
pre { background: #f4f4f4; padding: 0.8em; overflow-x: auto; font-size: 0.9em; }
nav { margin: 0.8em 0; } nav a { color: #1f5fa8; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr));
           gap: 1.2em 2em; align-items: start; }
.figures figure { margin: 0; min-width: 0; } .figures figure.wide { grid-column: 1 / -1; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { font-weight: 600; margin-bottom: 0.4em; } .skipped, .note { color: #666; }
.tables { display: flex; flex-wrap: wrap; column-gap: 2.5em; align-items: flex-start; }
.tables section { max-width: 100%; overflow-x: auto; } .tables ul { max-width: 60em; }
"""


def _page(title: str, meta: list[tuple[str, str]], summary_text: str | None, card_text: str,
          tables: list[tuple[str, str]], sections: list[tuple[str, str, str]],
          figures: list[tuple[str, str, bool]], skipped: list[tuple[str, str]]) -> str:
    """Assemble the HTML page; ``sections`` are (anchor, heading, HTML) after the tables."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in meta)
    links = ([("summary", "Fit summary")] if summary_text else []) + [("tables", "Tables")]
    links += [(anchor, heading) for anchor, heading, _ in sections]
    links += [("figures", "Figures"), ("card", "Model card")]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", f'<table class="meta">{rows}</table>',
        "<nav>" + " · ".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, h in links) + "</nav>",
    ]
    if summary_text:
        parts += ['<h2 id="summary">Fit summary</h2>', f"<pre>{html.escape(summary_text)}</pre>"]
    parts.append('<h2 id="tables">Tables</h2><div class="tables">')
    for heading, content in tables:
        parts.append(f"<section><h3>{html.escape(heading)}</h3>{content}</section>")
    parts.append("</div>")
    for anchor, heading, content in sections:
        parts.append(f'<h2 id="{anchor}">{html.escape(heading)}</h2><section>{content}</section>')
    parts.append('<h2 id="figures">Figures</h2><div class="figures">')
    for caption, image, wide in figures:
        css = ' class="wide"' if wide else ""
        parts.append(f"<figure{css}><figcaption>{html.escape(caption)}</figcaption>{image}</figure>")
    parts.append("</div>")
    if skipped:
        items = "".join(f"<li>{html.escape(c)}: {html.escape(r)}</li>" for c, r in skipped)
        parts.append(f'<p class="skipped">Not shown:</p><ul class="skipped">{items}</ul>')
    parts += ['<h2 id="card">Model card</h2>', f"<pre>{html.escape(card_text)}</pre>", "</body></html>"]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- outputs
def _card_file_describes(card: Any) -> bool:
    """True when the card's file describes the fit as run and loads the same data from anywhere."""
    source = getattr(card, "source", None)
    if source is None or not Path(source).is_file():
        return False
    try:
        content = tomllib.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    data = content.get("data", {})
    portable = "dataset" in data or Path(str(data.get("path", ""))).is_absolute()
    model = content.get("model", {})
    return (portable and model.get("formula") == card.formula
            and model.get("family", "gaussian") == card.family
            and {k: model[k] for k in ("residual", "variance") if k in model}
            == dict(getattr(card, "model_options", {}))
            and {"method": "reml", **content.get("fit", {})} == {"method": "reml", **card.fit_options})


def _card_text(card: Any) -> str:
    """The card file's text when it describes the fit, else the card rendered as TOML."""
    from hierlm.cards import ModelCard, card_toml

    if _card_file_describes(card):
        return Path(card.source).read_text(encoding="utf-8")
    if isinstance(card, ModelCard):
        return card_toml(card)
    return card_toml(ModelCard(name=card.name, description=getattr(card, "description", ""),
                               formula=card.formula, family=getattr(card, "family", "gaussian"),
                               data=pd.DataFrame(), fit_options=dict(card.fit_options),
                               model_options=dict(getattr(card, "model_options", {}))))


def _share_permissions(folder: Path, mode: int) -> None:
    """Give ``folder`` and the folders below it the report folder's permissions."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(mode)


def _write_fit(fit: Any, draws: FitDraws, out: Path) -> tuple[Path, ...]:
    """Save the fit: a reloadable fit folder when the fit has a Model, plus readable tables."""
    from hierlm.io import save_fit
    from hierlm.plots.common import posterior_tree
    from hierlm.results.estimates import parameter_draws

    written: list[Path] = []
    if getattr(fit, "model", None) is not None and not isinstance(fit, FitDraws):
        folder = save_fit(fit, out / "fit", overwrite=True)
        _share_permissions(folder, out.stat().st_mode & 0o777)
        written.append(folder)
        if (folder / "idata.nc").is_file():
            written.append(folder / "idata.nc")
    elif not draws.point:
        path = out / "fit.nc"
        posterior_tree(draws).to_netcdf(path, engine="h5netcdf")
        written.append(path)
    if not draws.point:
        return tuple(written)
    tables = [("fixef", True), ("varcorr", False)]
    if draws.design.blocks:  # a GLS / MMRM fit (residual structure only) has no group effects
        tables.append(("ranef", False))
    if draws.design.residual is not None:
        tables.append(("residual_covariance", True))
    for name, index in tables:
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


def _meta(fit: Any, card: Any, draws: FitDraws, compare: Any) -> list[tuple[str, str]]:
    """The (label, value) rows under the page title."""
    method = str(getattr(fit, "method", "nuts" if not draws.point else "point estimate"))
    meta = [("formula", card.formula), ("method", method.upper()), ("observations", str(draws.design.n))]
    if getattr(card, "description", ""):
        meta.insert(0, ("description", card.description))
    meta += [(f"levels of {block.group}", str(block.n_levels))
             for block in {b.group: b for b in draws.design.blocks}.values()]
    if not draws.point:
        meta.append(("posterior draws", f"{draws.n_draws} ({chains_of(draws)} chains)"))
    if getattr(fit, "seed", None) is not None and not draws.point:
        meta.append(("random seed", str(fit.seed)))
    if compare is not None:
        meta.append(("compared with", str(getattr(compare, "method", "twin fit")).upper()))
    meta.append(("written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    return meta


def write_report(fit: object, card: Any, out_dir: str | Path, *, time: str | None | bool = None,
                 dpi: int = 100, compare: object | None = None) -> ReportFiles:
    """Write an HTML report of a fit, the fit itself and its model card.

    Parameters
    ----------
    fit : fit result
        The result of ``Model(...).fit(...)`` (ML/REML/MAP or NUTS).
    card : hierlm.cards.ModelCard
        The card the fit was made from, with the options actually used (its
        file is copied when it says the same, else the card is written out
        as TOML).
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
    compare : fit result, optional
        A twin of ``fit`` by the other kind of method (REML next to NUTS, or
        NUTS next to REML): the page adds the side-by-side table of
        :func:`comparison_table`.

    Returns
    -------
    ReportFiles
        The paths written.

    Raises
    ------
    InputTypeError
        If ``fit`` is not a hierlm fit, ``card`` is not a model card,
        ``out_dir`` is an existing file, or ``compare`` is not a twin of the
        other kind.
    """
    draws = as_draws(fit)
    if not all(hasattr(card, name) for name in ("name", "formula", "fit_options")):
        raise InputTypeError(f"card must be a hierlm ModelCard (hierlm.cards.load_card), "
                             f"not {type(card).__name__}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputTypeError(f"Report folder {str(out)!r} is a file; give a folder (created if missing).")
    sections = [("loo", "Leave-one-out cross-validation (LOO)", _loo_html(draws))]
    if compare is not None:
        heading, content = _comparison_html(fit, draws, compare)
        sections.insert(0, ("compare", heading, content))
    out.mkdir(parents=True, exist_ok=True)
    chosen_time = _time_variable(fit, draws) if time is None else (None if time is False else str(time))

    figures: list[tuple[str, str, bool]] = []
    skipped: list[tuple[str, str]] = []
    for caption, draw in _figure_plan(fit, draws, chosen_time):
        try:
            figure = draw()
        except HierlmError as error:
            skipped.append((caption, str(error)))
            continue
        figures.append((caption, *_figure_html(figure, dpi)))

    summary = getattr(fit, "summary", None)
    summary_text = str(summary()) if callable(summary) else None
    card_text = _card_text(card)
    page = _page(f"hierlm report: {card.name}", _meta(fit, card, draws, compare), summary_text,
                 card_text, _tables(fit, draws), sections, figures, skipped)
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")

    source = getattr(card, "source", None)
    card_path = out / (Path(source).name if source is not None else "card.toml")
    if not (source is not None and Path(source).resolve() == card_path.resolve()
            and _card_file_describes(card)):
        card_path.write_text(card_text, encoding="utf-8")
    return ReportFiles(html=html_path, card=card_path, fit=_write_fit(fit, draws, out))
