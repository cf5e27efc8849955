"""Group effects: caterpillar (forest) plots with intervals, and normal QQ plots.

Estimates and intervals come from :func:`group_effect_table`:

* Bayesian fits: posterior mean and the equal-tailed (or HDI) interval of
  each level's effect ``b_j`` (or coefficient ``beta + b_j``) from the draws.
* ML/REML fits: the conditional mode (BLUP) and ``mode +- z * cond_sd``, with
  ``cond_sd`` the conditional SD of lme4's ``ranef(condVar = TRUE)`` when the
  fit provides ``cond_var()``; without it (bare point draws) the interval is
  NaN and only the points are drawn. For coefficients (``include_fixed``)
  the interval is the effect's shifted by the fixed effect, so it ignores the
  uncertainty of beta, as lme4's ``coef`` does.

The caterpillar plot is drawn with matplotlib rather than ArviZ's
``plot_forest`` because it must also show frequentist intervals and sort the
levels by their estimate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from hierlm.errors import ColumnNotFoundError
from hierlm.plots.common import group_blocks, new_figure, only_group
from hierlm.results.common import as_draws
from hierlm.results.draws import FitDraws
from hierlm.results.summary import interval_spec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["group_effect_table", "plot_caterpillar", "plot_effects_qq", "normal_plotting_positions"]

_MAX_LABELLED = 80  # levels named on the vertical axis at most


def _conditional_sd(fit: Any, label: str, n_levels: int, q: int) -> np.ndarray:
    """Conditional SDs (n_levels, q) of a point fit's block, NaN when the fit has none."""
    method = getattr(fit, "cond_var", None)
    if not callable(method):
        return np.full((n_levels, q), np.nan)
    variances = method().get(label)
    if variances is None:
        return np.full((n_levels, q), np.nan)
    return np.sqrt(np.clip(np.diagonal(np.asarray(variances), axis1=1, axis2=2), 0.0, None))


def group_effect_table(fit: object, group: str | None = None, prob: float | None = None,
                       include_fixed: bool = False) -> pd.DataFrame:
    """Estimate and interval of every level's group effect, one row per level and term.

    Parameters
    ----------
    fit : fit result or FitDraws
        Any hierlm fit.
    group : str, optional
        Grouping factor; every block when None.
    prob : float, optional
        Interval probability (ArviZ's default when None).
    include_fixed : bool
        Report the level's coefficient ``beta_t + b_jt`` (``b_jt`` for a term
        without a fixed effect) instead of the effect ``b_jt``.

    Returns
    -------
    pandas.DataFrame
        Columns block (lme4 label), group, level, term, estimate, lower,
        upper. ``attrs`` holds ``prob`` and ``kind`` ("eti", "hdi" or
        "conditional" for point fits).
    """
    draws = as_draws(fit)
    spec = interval_spec(prob)
    fixed_names = list(draws.design.fixed_names)
    parts = []
    for k, label, block in group_blocks(draws.design, group):
        effects = draws.effects[k]
        if include_fixed:
            shift = np.column_stack([
                draws.beta[:, fixed_names.index(c)] if c in fixed_names else np.zeros(draws.n_draws)
                for c in block.columns])
            effects = effects + shift[:, None, :]
        estimate = effects.mean(axis=0)
        if draws.point:
            half = norm.ppf(0.5 + spec.prob / 2) * _conditional_sd(fit, label, block.n_levels, block.q)
            lower, upper = estimate - half, estimate + half
        else:
            lower, upper = spec.bounds(effects)
        for t, term in enumerate(block.columns):
            parts.append(pd.DataFrame({
                "block": label, "group": block.group, "level": list(block.levels), "term": term,
                "estimate": estimate[:, t], "lower": lower[:, t], "upper": upper[:, t]}))
    table = pd.concat(parts, ignore_index=True)
    table.attrs.update({"prob": spec.prob, "kind": "conditional" if draws.point else spec.kind,
                        "include_fixed": include_fixed})
    return table


def plot_caterpillar(fit: object, group: str | None = None, terms: list[str] | None = None,
                     prob: float | None = None, include_fixed: bool = False, sort: bool = True) -> Figure:
    """Caterpillar plot: each level's effect with its interval, levels sorted by estimate.

    One panel per term of the factor's blocks; the rows of all panels follow
    the order of the first panel's estimates, so a level stays on one row.

    Parameters
    ----------
    fit : fit result or FitDraws
        Any hierlm fit.
    group : str, optional
        Grouping factor; may be omitted when the model has only one.
    terms : list of str, optional
        Terms to show (default: all terms of the factor).
    prob : float, optional
        Interval probability (ArviZ's default when None).
    include_fixed : bool
        Plot coefficients ``beta + b`` instead of effects ``b``.
    sort : bool
        Sort levels by the first panel's estimate (otherwise level order).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ColumnNotFoundError
        If ``group`` or a term is unknown.
    """
    draws = as_draws(fit)
    group = only_group(draws.design, group)
    table = group_effect_table(fit, group, prob=prob, include_fixed=include_fixed)
    panels = list(dict.fromkeys(zip(table["block"], table["term"], strict=True)))
    if terms is not None:
        unknown = [t for t in terms if t not in {term for _, term in panels}]
        if unknown:
            raise ColumnNotFoundError(f"terms={unknown} do not vary by {group}; its terms are "
                                      f"{[term for _, term in panels]}.")
        panels = [panel for panel in panels if panel[1] in terms]
    first = table[(table["block"] == panels[0][0]) & (table["term"] == panels[0][1])]
    levels = first["level"].to_numpy()
    order = np.argsort(first["estimate"].to_numpy(), kind="stable") if sort else np.arange(len(levels))
    rank = {level: row for row, level in enumerate(levels[order])}
    n_levels = len(levels)
    figure, axes = new_figure(1, len(panels), width=max(4.0, 3.2 * len(panels)),
                              height=min(24.0, max(3.0, 0.2 * n_levels + 1.3)), sharey=True)
    kind = table.attrs["kind"]
    interval_name = (f"{round(100 * table.attrs['prob'])}% "
                     f"{'conditional' if kind == 'conditional' else kind.upper()} interval")
    for ax, (label, term) in zip(axes[0], panels, strict=True):
        rows = table[(table["block"] == label) & (table["term"] == term)]
        position = np.array([rank[level] for level in rows["level"]], dtype=float)
        estimate = rows["estimate"].to_numpy(dtype=float)
        lower, upper = rows["lower"].to_numpy(dtype=float), rows["upper"].to_numpy(dtype=float)
        has_interval = np.isfinite(lower) & np.isfinite(upper)
        if has_interval.any():
            ax.hlines(position[has_interval], lower[has_interval], upper[has_interval], color="C0",
                      linewidth=1.4, label=interval_name)
        ax.plot(estimate, position, "o", color="C0", markersize=4,
                label="posterior mean" if kind != "conditional" else "conditional mode")
        reference = 0.0
        if include_fixed and term in draws.design.fixed_names:
            reference = float(draws.beta[:, list(draws.design.fixed_names).index(term)].mean())
        ax.axvline(reference, color="0.5", linestyle="--", linewidth=1.0)
        ax.set_xlabel(term if include_fixed else f"{term} effect")
        ax.set_title(label if label == group else f"{label}: {term}", fontsize="medium")
    ticks = np.arange(n_levels)
    if n_levels <= _MAX_LABELLED:
        axes[0, 0].set_yticks(ticks, [str(level) for level in levels[order]])
    else:  # too many to name: the rows are ranks
        axes[0, 0].set_yticks([])
    axes[0, 0].set_ylim(-0.8, n_levels - 0.2)
    axes[0, 0].set_ylabel(group)
    axes[0, 0].legend(loc="lower right", fontsize="small")
    figure.suptitle(f"{'Coefficients' if include_fixed else 'Group effects'} by {group}")
    return figure


def normal_plotting_positions(n: int) -> np.ndarray:
    """Normal quantiles of R's ``ppoints(n)``: ``(i - a) / (n + 1 - 2a)``, a = 3/8 for n <= 10 else 1/2."""
    a = 0.375 if n <= 10 else 0.5
    return np.asarray(norm.ppf((np.arange(1, n + 1) - a) / (n + 1 - 2 * a)))


def plot_effects_qq(fit: object, group: str | None = None) -> Figure:
    """Normal QQ plot of the estimated group effects, one panel per block term.

    The model assumes the effects of a term are normal; systematic curvature
    or outlying levels show up here. Points are the sorted estimates
    (posterior means or conditional modes) against normal quantiles; the
    line passes through the first and third quartiles (R's ``qqline``).

    Parameters
    ----------
    fit : fit result or FitDraws
        Any hierlm fit.
    group : str, optional
        Grouping factor; every block when None.

    Returns
    -------
    matplotlib.figure.Figure
    """
    draws: FitDraws = as_draws(fit)
    table = group_effect_table(draws, group)
    panels = list(dict.fromkeys(zip(table["block"], table["term"], strict=True)))
    ncols = min(3, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    figure, axes = new_figure(nrows, ncols, width=3.6 * ncols, height=3.3 * nrows)
    flat = axes.ravel()
    for ax, (label, term) in zip(flat, panels, strict=False):
        values = np.sort(table.loc[(table["block"] == label) & (table["term"] == term),
                                   "estimate"].to_numpy(dtype=float))
        theoretical = normal_plotting_positions(values.size)
        ax.scatter(theoretical, values, s=14, color="C0", zorder=3)
        if values.size >= 2:
            quartiles = np.quantile(values, [0.25, 0.75])
            normal_quartiles = norm.ppf([0.25, 0.75])
            slope = (quartiles[1] - quartiles[0]) / (normal_quartiles[1] - normal_quartiles[0])
            intercept = quartiles[0] - slope * normal_quartiles[0]
            ax.axline((0.0, intercept), slope=slope, color="0.4", linestyle="--", linewidth=1.0)
        ax.set_xlabel("normal quantile")
        ax.set_ylabel(f"{term} effect")
        ax.set_title(f"{label}: {term} ({values.size} levels)", fontsize="medium")
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    figure.suptitle("Normal QQ plot of group effects")
    return figure
