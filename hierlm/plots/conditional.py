"""Conditional-effects plot: the predicted mean over one variable, others held fixed.

As brms's ``conditional_effects`` and marginaleffects's ``plot_predictions``:
the rows are a :func:`~hierlm.results.marginal_effects.datagrid` with
``variable`` over its range (a covariate, 50 points) or its levels (a factor),
optionally one line per level of ``by``, every other column at its mean or
most frequent level. Estimates and intervals come from
:func:`~hierlm.results.marginal_effects.predictions`: ML/REML t intervals with
Satterthwaite's df, posterior intervals for Bayesian fits. By default the
group effects are left out (the population line); ``include_random=True``
draws the line of the grid's (most frequent) level of each grouping factor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hierlm.plots.common import figure_of
from hierlm.results.marginal_effects import datagrid, predictions
from hierlm.results.refgrid import fixed_variables
from hierlm.results.summary import interval_spec

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_conditional_effects"]


def plot_conditional_effects(fit: Any, variable: str, by: str | None = None,
                             include_random: bool = False, prob: float | None = None,
                             points: bool = False, n_points: int = 50,
                             ax: Axes | None = None) -> Figure:
    """Plot the predicted mean against ``variable`` with its interval band (or error bars).

    Parameters
    ----------
    fit : fit result
        A fit made through :class:`hierlm.Model`.
    variable : str
        A covariate (line and band) or factor (points and error bars) of the fixed part.
    by : str, optional
        A factor of the fixed part: one line per level.
    include_random : bool
        Include the group effects of the grid's grouping levels.
    prob : float, optional
        Interval probability.
    points : bool
        Also scatter the observed responses.
    n_points : int
        Grid points along a covariate.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    GridError
        When ``variable`` or ``by`` is not a variable of the fixed part.
    """
    from hierlm.errors import GridError

    variables = fixed_variables(fit)
    if variable not in variables.factors and variable not in variables.covariates:
        raise GridError(f"{variable!r} is not a variable of the model's fixed part; it has "
                        f"{list(variables.factors) + list(variables.covariates)}.")
    if by is not None and by not in variables.factors:
        raise GridError(f"by={by!r} is not a factor of the model; its factors are {list(variables.factors)}.")
    data = variables.data
    is_factor = variable in variables.factors
    if is_factor:
        values: Any = variables.factors[variable]
    else:
        column = data[variable].to_numpy(dtype=float)
        values = np.linspace(column.min(), column.max(), int(n_points))
    spec: dict[str, Any] = {variable: values}
    if by is not None:
        spec[by] = variables.factors[by]
    grid = datagrid(fit, **spec)
    table = predictions(fit, grid, include_random=include_random, prob=prob)
    figure, axes = figure_of(ax)
    groups = [(None, table)] if by is None else [(level, table[table[by] == level])
                                                 for level in variables.factors[by]]
    positions = {level: i for i, level in enumerate(values)} if is_factor else None
    for k, (level, part) in enumerate(groups):
        label = None if level is None else f"{by} = {level}"
        if is_factor:
            assert positions is not None
            offset = 0.0 if by is None else (k - (len(groups) - 1) / 2) * 0.15
            x = np.array([positions[v] for v in part[variable]]) + offset
            y = part["estimate"].to_numpy()
            err = np.vstack([y - part["lower"].to_numpy(), part["upper"].to_numpy() - y])
            axes.errorbar(x, y, yerr=err, fmt="o", capsize=3, label=label)
        else:
            x = part[variable].to_numpy(dtype=float)
            line = axes.plot(x, part["estimate"], label=label)[0]
            axes.fill_between(x, part["lower"], part["upper"], alpha=0.25, color=line.get_color(),
                              linewidth=0)
    if points:
        response = fit.design.y
        xs = (np.array([positions[v] for v in data[variable]]) if is_factor and positions is not None
              else data[variable].to_numpy(dtype=float))
        axes.scatter(xs, response, s=8, alpha=0.3, color="0.3", zorder=0)
    if is_factor:
        axes.set_xticks(range(len(values)), [str(v) for v in values])
        axes.set_xlim(-0.5, len(values) - 0.5)
    level = interval_spec(prob, "eti").prob
    axes.set_xlabel(variable)
    axes.set_ylabel(f"{fit.design.response} (predicted mean, {round(100 * level)}% interval)")
    if by is not None:
        axes.legend()
    return figure
