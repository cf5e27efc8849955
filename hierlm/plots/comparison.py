"""Figures for model comparison and for comparing estimation methods.

* :func:`plot_compare` draws the table of :func:`hierlm.results.compare`
  (or ``hl.compare``) with ArviZ-plots' ``plot_compare``: each model's elpd
  difference to the best model with its paired standard error ``dse``.
* :func:`plot_compare_estimates` draws the table of
  :func:`hierlm.results.compare_estimates`: for every parameter, the
  posterior mean with its credible interval, the ML/REML estimate with its
  Wald interval (fixed effects only; variance parameters get the point), and
  optionally the GEE estimate with its robust interval. Parameters live on
  very different scales (an intercept of 250, a correlation of 0.07), so
  each parameter gets its own small panel with its own horizontal axis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import norm

from hierlm.errors import InputTypeError
from hierlm.plots.common import detach_figure, finish_arviz_figure, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_compare", "plot_compare_estimates", "parameter_label"]


def plot_compare(table: pd.DataFrame) -> Figure:
    """Plot the elpd difference of each model to the best, with its standard error.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`hierlm.results.compare`: one row per model, best
        first, with columns ``elpd_diff`` and ``dse``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputTypeError
        If ``table`` lacks the columns or holds fewer than two models.
    """
    from arviz_plots import plot_compare as arviz_plot_compare

    if not isinstance(table, pd.DataFrame) or not {"elpd_diff", "dse"} <= set(table.columns):
        raise InputTypeError("plot_compare takes the table of hl.compare(...) (columns elpd_diff, dse).")
    if len(table) < 2:
        raise InputTypeError("plot_compare needs a comparison of at least two models.")
    ordered = table.sort_values("elpd_diff", ascending=False, kind="stable")
    collection = arviz_plot_compare(ordered, backend="matplotlib")
    figure = detach_figure(collection)
    ic = str(table.attrs.get("ic", "loo")).upper()
    level = table.attrs.get("level", "observation")
    unit = f"leave one {table.attrs.get('group')} level out" if level == "group" else "per observation"
    ax = figure.axes[0]
    ax.set_xlabel(f"elpd difference to the best model ({ic}, {unit})")
    if "weight" in table.columns:
        weights = ordered["weight"].to_numpy(dtype=float)
        labels = [f"{name}\nweight {weight:.2f}" for name, weight in zip(ordered.index, weights, strict=True)]
        ax.set_yticks(list(range(len(ordered), 0, -1)), labels)
    return finish_arviz_figure(figure, panel_width=7.0, panel_height=0.7 * len(ordered) + 1.6)


def parameter_label(row: pd.Series) -> str:
    """Readable name of one parameter row of ``compare_estimates`` (``sd(Days | Subject)``)."""
    kind, group, term1, term2 = row["kind"], row["group"], row["term1"], row["term2"]
    if kind == "fixed":
        return str(term1)
    if kind == "sd":
        return f"sd({term1} | {group})"
    if kind == "cor":
        return f"cor({term1}, {term2} | {group})"
    if kind == "icc":
        return f"ICC ({group})"
    return "sigma" if kind == "sigma" else f"{kind} {term1}".strip()


def _interval_columns(table: pd.DataFrame, prefixes: tuple[str, ...]) -> tuple[str, str] | None:
    """The (lower, upper) column names whose prefix is one of ``prefixes`` (``eti89_lb``...)."""
    lower = [c for c in table.columns if c.endswith("_lb") and c.startswith(prefixes)]
    upper = [c for c in table.columns if c.endswith("_ub") and c.startswith(prefixes)]
    return (lower[0], upper[0]) if lower and upper else None


def plot_compare_estimates(table: pd.DataFrame, gee: bool | None = None) -> Figure:
    """Dot-and-interval plot of Bayesian, ML/REML (and GEE) estimates, one panel per parameter.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`hierlm.results.compare_estimates`.
    gee : bool, optional
        Show the GEE row; by default when the table has GEE columns.

    Returns
    -------
    matplotlib.figure.Figure
        Each panel has up to three rows: "Bayes" (posterior mean and
        credible interval), "ML/REML" (estimate and Wald interval where
        defined) and "GEE" (estimate and robust interval at the same
        probability).

    Raises
    ------
    InputTypeError
        If ``table`` is not a ``compare_estimates`` table.
    """
    required = {"kind", "group", "term1", "term2", "post_mean", "estimate"}
    if not isinstance(table, pd.DataFrame) or not required <= set(table.columns):
        raise InputTypeError("plot_compare_estimates takes the table of hl.compare_estimates(...).")
    posterior = _interval_columns(table, ("eti", "hdi"))
    wald = _interval_columns(table, ("ci",))
    if posterior is None or wald is None:
        raise InputTypeError("The table lacks its interval columns (eti../hdi.. and ci..).")
    show_gee = ("gee_estimate" in table.columns) if gee is None else gee
    prob = int(wald[0][2:].split("_")[0]) / 100
    quantile = norm.ppf(0.5 + prob / 2)
    methods = ["Bayes", "ML/REML"] + (["GEE"] if show_gee else [])
    n_params = len(table)
    ncols = 2 if n_params > 4 else 1
    nrows = int(np.ceil(n_params / ncols))
    figure, axes = new_figure(nrows, ncols, width=5.2 * ncols, height=0.95 * nrows + 1.0)
    flat = axes.ravel()
    colors = {"Bayes": "C0", "ML/REML": "C3", "GEE": "C2"}
    for ax, (_, row) in zip(flat, table.iterrows(), strict=False):
        values = {
            "Bayes": (row["post_mean"], row[posterior[0]], row[posterior[1]]),
            "ML/REML": (row["estimate"], row[wald[0]], row[wald[1]]),
        }
        if show_gee:
            estimate = row.get("gee_estimate", np.nan)
            se = row.get("gee_se_robust", np.nan)
            values["GEE"] = (estimate, estimate - quantile * se, estimate + quantile * se)
        for position, method in enumerate(methods):
            point, lower, upper = (float(v) for v in values[method])
            y = len(methods) - 1 - position
            if np.isfinite(lower) and np.isfinite(upper):
                ax.hlines([y], [lower], [upper], color=colors[method], linewidth=2.0)
            if np.isfinite(point):
                ax.plot([point], [y], "o", color=colors[method], markersize=5)
        ax.set_yticks(range(len(methods)), methods[::-1], fontsize="small")
        ax.set_ylim(-0.6, len(methods) - 0.4)
        ax.set_title(parameter_label(row), fontsize="medium", loc="left", pad=2)
        ax.tick_params(axis="x", labelsize="small")
    for ax in flat[n_params:]:
        ax.set_visible(False)
    figure.suptitle(f"Estimates by method ({round(100 * prob)}% intervals: "
                    f"{posterior[0].split('_')[0][:3].upper()} posterior, Wald"
                    f"{', GEE robust' if show_gee else ''})")
    return figure
