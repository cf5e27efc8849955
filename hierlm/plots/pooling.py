"""Shrinkage plots: each level's own estimate pulled towards the population.

The values come from :func:`hierlm.results.shrinkage`: per level the
no-pooling estimate (a separate least-squares fit of the level's rows), the
partial-pooling estimate (the model's group-specific coefficient) and the
complete-pooling estimate (the fixed effect).

* One coefficient: one row per level, an arrow from the no-pooling to the
  partial-pooling estimate, and a vertical line at complete pooling. With
  many levels (more than 60) rows become unreadable, so the levels are
  placed by their number of rows instead (log scale, vertical arrows): the
  classic picture in which small groups are pulled furthest.
* Two coefficients (a random intercept and slope): the coefficient plane, an
  arrow per level from its no-pooling to its partial-pooling point, the
  complete-pooling point, and contours of the population distribution
  ``N(beta, G)`` that the levels are pulled into. Arrows bend along the
  correlation of the contours: that is what a correlated random slope does.

Arrows are one :class:`matplotlib.quiver.Quiver` whose ``X, Y`` are the
no-pooling and ``X + U, Y + V`` the partial-pooling estimates; levels without
a no-pooling estimate (too few rows) get no arrow, only their
partial-pooling point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from hierlm.errors import ColumnNotFoundError, InputTypeError
from hierlm.plots.common import figure_of, group_blocks
from hierlm.results.common import as_draws
from hierlm.results.draws import FitDraws
from hierlm.results.pooling import shrinkage

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_shrinkage", "shrinkage_wide"]

_MAX_ROWS = 60
_NO_POOLING: dict[str, Any] = {"marker": "o", "facecolors": "none", "edgecolors": "C0", "s": 28, "zorder": 3}
_PARTIAL: dict[str, Any] = {"marker": "o", "color": "C1", "s": 24, "zorder": 4}


def shrinkage_wide(fit: object, group: str, complete: str = "fixed") -> pd.DataFrame:
    """The shrinkage table of one factor, one row per level, one column set per coefficient.

    Parameters
    ----------
    fit : fit result or FitDraws
        Any hierlm fit.
    group : str
        Grouping factor.
    complete : {"fixed", "ols"}
        Complete-pooling estimate (see :func:`hierlm.results.shrinkage`).

    Returns
    -------
    pandas.DataFrame
        Indexed by level (in the factor's level order); columns are a
        MultiIndex (quantity, coefficient) with quantities ``n`` (rows of
        the level), ``no_pooling``, ``partial_pooling`` and ``complete_pooling``.
    """
    table = shrinkage(fit, group, complete=complete).table
    wide = table.pivot(index="level", columns="coefficient",
                       values=["n", "no_pooling", "partial_pooling", "complete_pooling"])
    levels = list(dict.fromkeys(table["level"]))
    coefficients = list(dict.fromkeys(table["coefficient"]))
    return wide.reindex(index=levels).reindex(columns=coefficients, level=1)


def _population_covariance(draws: FitDraws, group: str, chosen: Sequence[str]) -> np.ndarray:
    """Posterior-mean covariance of the chosen coefficients across levels (block diagonal G)."""
    columns: list[str] = []
    pieces = []
    for k, _, block in group_blocks(draws.design, group):
        columns.extend(block.columns)
        pieces.append((len(columns) - block.q, draws.covariances[k].mean(axis=0)))
    full = np.zeros((len(columns), len(columns)))
    for start, covariance in pieces:
        size = covariance.shape[0]
        full[start:start + size, start:start + size] = covariance
    index = [columns.index(name) for name in chosen]
    return full[np.ix_(index, index)]


def _ellipse(center: np.ndarray, covariance: np.ndarray, prob: float, points: int = 181) -> np.ndarray:
    """Boundary of the ``prob`` region of a bivariate normal, shape (points, 2)."""
    values, vectors = np.linalg.eigh(covariance)
    radius = np.sqrt(chi2.ppf(prob, df=2) * np.clip(values, 0.0, None))
    angle = np.linspace(0.0, 2.0 * np.pi, points)
    circle = np.column_stack([np.cos(angle), np.sin(angle)]) * radius
    return np.asarray(center + circle @ vectors.T)


def _choose(coefficients: str | Sequence[str] | None, available: list[str]) -> list[str]:
    """Resolve the coefficient(s) to plot."""
    if coefficients is None:
        return available[:2]
    chosen = [coefficients] if isinstance(coefficients, str) else list(coefficients)
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ColumnNotFoundError(
            f"coefficients={unknown} do not vary by this factor; choose from {available}.")
    if not 1 <= len(chosen) <= 2:
        raise InputTypeError(f"coefficients= takes one or two names, got {len(chosen)}.")
    return chosen


def plot_shrinkage(fit: object, group: str, coefficients: str | Sequence[str] | None = None,
                   complete: str = "fixed", ellipse_probs: Sequence[float] = (0.5, 0.95),
                   label_levels: bool | None = None, by_size: bool | None = None,
                   ax: Axes | None = None) -> Figure:
    """Plot no-pooling -> partial-pooling arrows for every level of a grouping factor.

    Parameters
    ----------
    fit : fit result or FitDraws
        Any hierlm fit: ML/REML estimates or a posterior (posterior means are plotted).
    group : str
        Grouping factor, e.g. ``"Subject"``.
    coefficients : str or pair of str, optional
        One coefficient (a one-dimensional plot) or two (the coefficient
        plane). Default: the factor's coefficients, the first two if it has more.
    complete : {"fixed", "ols"}
        Complete-pooling estimate (see :func:`hierlm.results.shrinkage`).
    ellipse_probs : sequence of float
        Probabilities of the population contours in the plane (none if empty).
    label_levels : bool, optional
        Write the level names next to the partial-pooling points in the plane
        (default when there are at most 30 levels).
    by_size : bool, optional
        One coefficient only: place levels by their number of rows (vertical
        arrows) instead of one row per level; default when there are more
        than 60 levels.
    ax : matplotlib.axes.Axes, optional
        Draw into this axes instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ColumnNotFoundError
        If ``group`` or a coefficient is unknown.
    """
    draws = as_draws(fit)
    wide = shrinkage_wide(draws, group, complete=complete)
    available = list(dict.fromkeys(wide.columns.get_level_values(1)))
    chosen = _choose(coefficients, available)
    if len(chosen) == 1:
        place_by_size = len(wide) > _MAX_ROWS if by_size is None else by_size
        if place_by_size:
            return _plot_by_size(wide, group, chosen[0], complete, ax)
        return _plot_line(wide, group, chosen[0], complete, ax)
    return _plot_plane(draws, wide, group, chosen, complete, ellipse_probs, label_levels, ax)


def _plot_line(wide: pd.DataFrame, group: str, coefficient: str, complete: str,
               ax: Axes | None) -> Figure:
    """One coefficient: a row per level, sorted by the no-pooling estimate."""
    own = wide[("no_pooling", coefficient)].to_numpy(dtype=float)
    partial = wide[("partial_pooling", coefficient)].to_numpy(dtype=float)
    pooled = float(wide[("complete_pooling", coefficient)].iloc[0])
    key = np.where(np.isfinite(own), own, partial)
    order = np.argsort(key, kind="stable")
    levels = wide.index.to_numpy()[order]
    own, partial = own[order], partial[order]
    rows = np.arange(len(levels), dtype=float)
    figure, ax = figure_of(ax, width=6.4, height=min(24.0, max(3.0, 0.22 * len(levels) + 1.2)))
    finite = np.isfinite(own)
    ax.axvline(pooled, color="0.35", linestyle="--", linewidth=1.2,
               label=f"complete pooling ({'fixed effect' if complete == 'fixed' else 'pooled OLS'})")
    ax.quiver(own[finite], rows[finite], partial[finite] - own[finite], np.zeros(finite.sum()),
              angles="xy", scale_units="xy", scale=1.0, color="0.3", width=0.004,
              headwidth=4, headlength=5, zorder=2, label="shrinkage")
    ax.scatter(own[finite], rows[finite], label="no pooling (level's own fit)", **_NO_POOLING)
    ax.scatter(partial, rows, label="partial pooling (model)", **_PARTIAL)
    ax.set_yticks(rows, [str(level) for level in levels])
    ax.set_ylim(-0.8, len(levels) - 0.2)
    ax.set_xlabel(coefficient)
    ax.set_ylabel(group)
    ax.set_title(f"Shrinkage of {coefficient} by {group}")
    ax.legend(loc="best", fontsize="small")
    return figure


def _plot_by_size(wide: pd.DataFrame, group: str, coefficient: str, complete: str,
                  ax: Axes | None) -> Figure:
    """One coefficient, many levels: x = rows per level (log scale), vertical arrows."""
    size = wide[("n", coefficient)].to_numpy(dtype=float)
    own = wide[("no_pooling", coefficient)].to_numpy(dtype=float)
    partial = wide[("partial_pooling", coefficient)].to_numpy(dtype=float)
    pooled = float(wide[("complete_pooling", coefficient)].iloc[0])
    figure, ax = figure_of(ax, width=7.5, height=5.0)
    finite = np.isfinite(own)
    ax.axhline(pooled, color="0.35", linestyle="--", linewidth=1.2,
               label=f"complete pooling ({'fixed effect' if complete == 'fixed' else 'pooled OLS'})")
    ax.quiver(size[finite], own[finite], np.zeros(finite.sum()), partial[finite] - own[finite],
              angles="xy", scale_units="xy", scale=1.0, color="0.45", width=0.0015, headwidth=3,
              headlength=4, zorder=2, label="shrinkage")
    ax.scatter(size[finite], own[finite], label="no pooling (level's own fit)",
               **{**_NO_POOLING, "s": 10})
    ax.scatter(size, partial, label="partial pooling (model)", **{**_PARTIAL, "s": 8})
    if size.max() > 2 * size.min():
        ax.set_xscale("log")
    ax.set_xlabel(f"rows per level of {group}")
    ax.set_ylabel(coefficient)
    ax.set_title(f"Shrinkage of {coefficient} by {group} ({len(wide)} levels)")
    ax.legend(loc="best", fontsize="small")
    return figure


def _plot_plane(draws: FitDraws, wide: pd.DataFrame, group: str, chosen: list[str], complete: str,
                ellipse_probs: Sequence[float], label_levels: bool | None, ax: Axes | None) -> Figure:
    """Two coefficients: arrows in the coefficient plane with population contours."""
    first, second = chosen
    own = wide["no_pooling"][chosen].to_numpy(dtype=float)
    partial = wide["partial_pooling"][chosen].to_numpy(dtype=float)
    pooled = wide["complete_pooling"][chosen].iloc[0].to_numpy(dtype=float)
    figure, ax = figure_of(ax, width=7.0, height=6.0)
    covariance = _population_covariance(draws, group, chosen)
    fixed = [list(draws.design.fixed_names).index(c) if c in draws.design.fixed_names else -1
             for c in chosen]
    center = np.array([draws.beta[:, i].mean() if i >= 0 else 0.0 for i in fixed])
    styles = [":", "--", "-."]
    for index, prob in enumerate(sorted(ellipse_probs)):
        outline = _ellipse(center, covariance, float(prob))
        ax.plot(outline[:, 0], outline[:, 1], color="0.55", linewidth=1.0,
                linestyle=styles[index % len(styles)],
                label=f"population {round(100 * float(prob))}% region N(beta, G)")
    finite = np.isfinite(own).all(axis=1)
    ax.quiver(own[finite, 0], own[finite, 1], partial[finite, 0] - own[finite, 0],
              partial[finite, 1] - own[finite, 1], angles="xy", scale_units="xy", scale=1.0,
              color="0.3", width=0.003, headwidth=4, headlength=5, zorder=2, label="shrinkage")
    ax.scatter(own[finite, 0], own[finite, 1], label="no pooling (level's own fit)", **_NO_POOLING)
    ax.scatter(partial[:, 0], partial[:, 1], label="partial pooling (model)", **_PARTIAL)
    ax.scatter([pooled[0]], [pooled[1]], marker="X", s=90, color="black", zorder=5,
               label=f"complete pooling ({'fixed effects' if complete == 'fixed' else 'pooled OLS'})")
    if label_levels is None:
        label_levels = len(wide) <= 30
    if label_levels:
        for level, (x, y) in zip(wide.index, partial, strict=True):
            ax.annotate(str(level), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7,
                        color="0.25")
    ax.set_xlabel(first)
    ax.set_ylabel(second)
    ax.set_title(f"Shrinkage of ({first}, {second}) by {group}")
    ax.legend(loc="best", fontsize="small")
    return figure
