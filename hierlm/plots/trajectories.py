"""Trajectories of longitudinal data: each group's fitted line over its data.

For every level of a grouping factor (a subject, a pig) the panel shows the
observations against a time variable, the fitted line *with* the group's
effects (``X beta + Z b``, the level's own trajectory) and *without* them
(``X beta``, the population trajectory). The gap between the two lines is
the group effect; the gap between the points and the level's line is the
residual. Bayesian fits draw posterior means and, optionally, a band of the
level's mean trajectory.

The lines pass through the fitted values at the level's observed time
points (sorted by time), so they are exact for any fixed-effect structure
(straight lines for ``y ~ time + (time | g)``, curves for polynomial terms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hierlm.errors import ColumnNotFoundError, DataError, InputTypeError
from hierlm.plots.common import group_blocks, mean_fitted, new_figure, only_group, thin_draws
from hierlm.results.common import as_draws
from hierlm.results.summary import interval_spec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_trajectories", "trajectory_table"]

_BAND_VALUES = 20_000_000  # draws x rows used for the band at most (thinned beyond)


def _fit_data(fit: object, data: pd.DataFrame | None, n_rows: int) -> pd.DataFrame:
    """The rows the fit was made on, aligned with the design."""
    if data is None:
        model = getattr(fit, "model", None)
        data = getattr(model, "data", None)
        if data is None:
            raise InputTypeError(
                "These draws carry no data frame; pass data= (the frame the model was fitted on).")
    if not isinstance(data, pd.DataFrame):
        raise InputTypeError(f"data must be a pandas DataFrame, not {type(data).__name__}.")
    if len(data) != n_rows:
        raise DataError(
            f"data has {len(data)} rows but the fit used {n_rows}; pass the rows the model was "
            "fitted on (after dropping incomplete rows), e.g. model.data."
        )
    return data.reset_index(drop=True)


def trajectory_table(fit: object, time: str, group: str | None = None,
                     data: pd.DataFrame | None = None, prob: float | None = None) -> pd.DataFrame:
    """Per-row data, group-specific and population fitted values, sorted by level and time.

    Parameters
    ----------
    fit : fit result or FitDraws
        Any hierlm fit.
    time : str
        Column of ``data`` on the horizontal axis, e.g. ``"Days"``.
    group : str, optional
        Grouping factor; may be omitted when the model has only one.
    data : pandas.DataFrame, optional
        The rows the model was fitted on; ``fit.model.data`` when None.
    prob : float, optional
        Probability of the band of the group-specific line (posterior fits;
        from evenly thinned draws when draws x rows exceeds 2e7).

    Returns
    -------
    pandas.DataFrame
        Columns level, time, observed, fitted (with group effects), population
        (without), and for posterior fits lower, upper (band of ``fitted``).

    Raises
    ------
    ColumnNotFoundError
        If ``time`` is not a column of the data.
    """
    draws = as_draws(fit)
    design = draws.design
    group = only_group(design, group)
    frame = _fit_data(fit, data, design.n)
    if time not in frame.columns:
        raise ColumnNotFoundError(f"time={time!r} is not a column of the data; columns are "
                                  f"{list(frame.columns)}.")
    block = group_blocks(design, group)[0][2]
    table = pd.DataFrame({
        "level": np.asarray(block.levels, dtype=object)[np.asarray(block.codes)],
        "code": np.asarray(block.codes),
        "time": frame[time].to_numpy(),
        "observed": np.asarray(design.y, dtype=float),
        "fitted": mean_fitted(draws, include_random=True),
        "population": mean_fitted(draws, include_random=False),
    })
    if not draws.point:
        # the band needs every draw of every row; thin very long posteriors to bound memory
        limit = max(200, _BAND_VALUES // max(design.n, 1))
        lower, upper = interval_spec(prob).bounds(thin_draws(draws, limit).linear_predictor())
        table["lower"] = lower
        table["upper"] = upper
    table = table.sort_values(["code", "time"], kind="stable").reset_index(drop=True)
    table.attrs["group"] = group
    table.attrs["time"] = time
    table.attrs["response"] = design.response
    return table


def plot_trajectories(fit: object, time: str, group: str | None = None, data: pd.DataFrame | None = None,
                      levels: Sequence[object] | None = None, layout: str = "facets",
                      ncols: int | None = None, band: bool = True, prob: float | None = None) -> Figure:
    """Plot each group's data with its fitted line and the population line.

    Parameters
    ----------
    fit : fit result or FitDraws
        Any hierlm fit.
    time : str
        Column on the horizontal axis, e.g. ``"Days"`` or ``"week"``.
    group : str, optional
        Grouping factor; may be omitted when the model has only one.
    data : pandas.DataFrame, optional
        The rows the model was fitted on; ``fit.model.data`` when None.
    levels : sequence, optional
        Levels to show (default: all, in level order).
    layout : {"facets", "overlay"}
        One panel per level (``"facets"``), or all levels in one panel
        (``"overlay"``: thin lines per level, the population line on top).
    ncols : int, optional
        Panels per row for ``"facets"``.
    band : bool
        Shade the interval of each level's mean trajectory (posterior fits, facets only).
    prob : float, optional
        Probability of the band (ArviZ's default when None).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ColumnNotFoundError
        If ``time`` or a requested level is unknown.
    InputTypeError
        If ``layout`` is unknown.
    """
    if layout not in ("facets", "overlay"):
        raise InputTypeError(f"layout must be 'facets' or 'overlay', got {layout!r}.")
    table = trajectory_table(fit, time, group, data, prob)
    group = str(table.attrs["group"])
    known = list(dict.fromkeys(table["level"]))
    if levels is None:
        chosen = known
    else:
        chosen = [str(level) for level in levels]
        unknown = [level for level in chosen if level not in known]
        if unknown:
            raise ColumnNotFoundError(f"levels {unknown} are not levels of {group}.")
    if layout == "overlay":
        return _overlay(table, chosen)
    ncols = ncols or int(np.ceil(np.sqrt(len(chosen) * 1.5)))
    nrows = int(np.ceil(len(chosen) / ncols))
    figure, axes = new_figure(nrows, ncols, width=1.9 * ncols + 1.0, height=1.7 * nrows + 1.0,
                              sharex=True, sharey=True)
    flat = axes.ravel()
    for ax, level in zip(flat, chosen, strict=False):
        rows = table[table["level"] == level]
        if band and "lower" in rows:
            ax.fill_between(rows["time"], rows["lower"], rows["upper"], color="C1", alpha=0.25,
                            linewidth=0)
        ax.plot(rows["time"], rows["fitted"], color="C1", linewidth=1.6, label=f"{group} line")
        ax.plot(rows["time"], rows["population"], color="0.35", linestyle="--", linewidth=1.1,
                label="population line")
        ax.scatter(rows["time"], rows["observed"], s=9, color="C0", zorder=3, label="data")
        ax.set_title(str(level), fontsize="small", pad=2)
        ax.tick_params(labelsize="x-small")
    for ax in flat[len(chosen):]:
        ax.set_visible(False)
    handles, labels = flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper right", ncols=3, fontsize="small")
    figure.supxlabel(time)
    figure.supylabel(str(table.attrs["response"]))
    figure.suptitle(f"Trajectories by {group}: with and without group effects", x=0.02, ha="left")
    return figure


def _overlay(table: pd.DataFrame, chosen: list[str]) -> Figure:
    """All chosen levels in one panel."""
    figure, axes = new_figure(width=7.5, height=5.0)
    ax = axes[0, 0]
    shown = table[table["level"].isin(chosen)]
    ax.scatter(shown["time"], shown["observed"], s=6, color="C0", alpha=0.35, zorder=1, label="data")
    for index, level in enumerate(chosen):
        rows = table[table["level"] == level]
        ax.plot(rows["time"], rows["fitted"], color="C1", linewidth=0.8, alpha=0.7,
                label=f"{table.attrs['group']} lines" if index == 0 else "_nolegend_")
    population = shown.groupby("time", sort=True)["population"].mean()
    ax.plot(population.index.to_numpy(), population.to_numpy(), color="black", linewidth=2.5,
            label="population line")
    ax.set_xlabel(str(table.attrs["time"]))
    ax.set_ylabel(str(table.attrs["response"]))
    ax.set_title(f"{len(chosen)} trajectories by {table.attrs['group']}")
    ax.legend(loc="best", fontsize="small")
    return figure
