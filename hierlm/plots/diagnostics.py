"""Diagnostic figures: residuals, posterior predictive checks, MCMC trace and rank plots.

* :func:`plot_residuals` (matplotlib, any fit): residuals ``y - fitted``
  against fitted values, with the group effects in the fit (conditional
  residuals) or without them (marginal residuals).
* :func:`plot_ppc` (ArviZ ``plot_ppc_dist``, posterior fits): the density of
  the observed response against densities of replicated data sets drawn
  from the posterior predictive distribution ``y_rep ~ N(X beta + Z b,
  sigma^2)``, one per posterior draw.
* :func:`plot_trace` and :func:`plot_rank` (ArviZ ``plot_trace_dist`` and
  ``plot_rank``, posterior fits): per-chain traces and rank histograms of the
  main parameters (fixed effects, SDs, correlations, sigma), which show
  whether the chains mix and agree.

Group-effect QQ plots are in :mod:`hierlm.plots.effects`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hierlm.errors import InputTypeError
from hierlm.plots.common import (
    detach_figure,
    figure_of,
    finish_arviz_figure,
    main_parameter_tree,
    mean_fitted,
    require_posterior,
    thin_draws,
)
from hierlm.results.common import as_draws, chains_of
from hierlm.results.prediction import predictive_draws

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_residuals", "predictive_tree", "plot_ppc", "plot_trace", "plot_rank"]


def plot_residuals(fit: object, include_random: bool = True, scaled: bool = False,
                   ax: Axes | None = None) -> Figure:
    """Residuals against fitted values.

    Parameters
    ----------
    fit : fit result or FitDraws
        Any hierlm fit; Bayesian fits use the posterior mean of the fitted values.
    include_random : bool
        Fitted values with the group effects (conditional residuals) or
        without them (marginal residuals, ``y - X beta``).
    scaled : bool
        Divide the residuals by sigma (its posterior mean for Bayesian fits).
    ax : matplotlib.axes.Axes, optional
        Draw into this axes instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    draws = as_draws(fit)
    fitted = mean_fitted(draws, include_random)
    residuals = np.asarray(draws.design.y, dtype=float) - fitted
    if scaled:
        residuals = residuals / float(draws.sigma.mean())
    figure, ax = figure_of(ax)
    ax.scatter(fitted, residuals, s=12, color="C0", alpha=0.75)
    ax.axhline(0.0, color="0.4", linestyle="--", linewidth=1.0)
    kind = "conditional" if include_random else "marginal"
    ax.set_xlabel("fitted value" + (" (with group effects)" if include_random else " (X beta)"))
    ax.set_ylabel(("scaled " if scaled else "") + f"{kind} residual")
    ax.set_title(f"Residuals vs fitted: {draws.design.response}")
    return figure


def predictive_tree(fit: object, n_draws: int | None = 100, seed: int | np.random.Generator | None = 0,
                    chains: int | None = None) -> xr.DataTree:
    """Posterior predictive replicates of the response and the observed data as a DataTree.

    Parameters
    ----------
    fit : fit result or FitDraws
        A Bayesian fit (posterior draws).
    n_draws : int, optional
        Keep this many posterior draws, evenly thinned; all when None.
    seed : int or numpy.random.Generator, optional
        Seed of the residual noise.
    chains : int, optional
        Chains of the draws (read from the draws when None); thinned draws
        are stored as one chain.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior_predictive`` and ``observed_data``, each with one
        variable named after the response, dim ``obs``.

    Raises
    ------
    InputTypeError
        If the fit holds a point estimate or ``n_draws`` is not positive.
    """
    from arviz_base import from_dict

    draws = as_draws(fit)
    require_posterior(draws, "A posterior predictive check")
    if n_draws is not None and n_draws < 1:
        raise InputTypeError(f"n_draws must be a positive number of draws, got {n_draws}.")
    if n_draws is not None and n_draws < draws.n_draws:
        thinned = thin_draws(draws, n_draws)
        replicates = np.asarray(predictive_draws(thinned, kind="response", seed=seed))[None]
    else:
        replicates = np.asarray(predictive_draws(draws, kind="response", seed=seed))
        n_chains = chains_of(draws) if chains is None else chains
        replicates = replicates.reshape(n_chains, -1, replicates.shape[1])
    name = draws.design.response
    return from_dict(
        {"posterior_predictive": {name: replicates},
         "observed_data": {name: np.asarray(draws.design.y, dtype=float)}},
        dims={name: ["obs"]}, sample_dims=["chain", "draw"])


def plot_ppc(fit: object, n_draws: int = 100, seed: int | np.random.Generator | None = 0) -> Figure:
    """Posterior predictive check: the observed response's density among replicated ones.

    Parameters
    ----------
    fit : fit result or FitDraws
        A Bayesian fit (posterior draws).
    n_draws : int
        Number of replicated data sets drawn (one per thinned posterior draw).
    seed : int or numpy.random.Generator, optional
        Seed of the residual noise.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputTypeError
        If the fit holds a point estimate.
    """
    from arviz_plots import plot_ppc_dist

    tree = predictive_tree(fit, n_draws=n_draws, seed=seed)
    name = str(next(iter(tree["observed_data"].data_vars)))
    replicates = tree["posterior_predictive"][name]
    total = int(replicates.sizes["chain"] * replicates.sizes["draw"])
    collection = plot_ppc_dist(tree, backend="matplotlib", num_samples=total)
    return finish_arviz_figure(detach_figure(collection),
                               f"Posterior predictive check: {total} replicated data sets vs observed {name}",
                               panel_width=7.0, panel_height=3.5)


def _parameter_names(tree: xr.DataTree, var_names: list[str] | None) -> list[str]:
    """Variables to show: the requested ones, or all main parameters of the tree."""
    available = [str(n) for n in tree["posterior"].data_vars]
    if var_names is None:
        return available
    unknown = [name for name in var_names if name not in available]
    if unknown:
        raise InputTypeError(f"var_names {unknown} are not parameters of the fit; choose from {available}.")
    return list(var_names)


def plot_trace(fit: object, var_names: list[str] | None = None, chains: int | None = None) -> Figure:
    """Trace and marginal density per chain of the main parameters (ArviZ ``plot_trace_dist``).

    Every scalar parameter (each fixed effect, SD, correlation) gets its own
    row, since their scales differ by orders of magnitude.

    Parameters
    ----------
    fit : fit result or FitDraws
        A Bayesian fit (posterior draws).
    var_names : list of str, optional
        Parameters to show, from ``fixef``, ``sigma``, ``sd_<block>``,
        ``cor_<block>`` (all by default).
    chains : int, optional
        Chains of bare draws without an ``idata`` (read from the draws when None).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputTypeError
        If the fit holds a point estimate or a name is unknown.
    """
    from arviz_plots import plot_trace_dist

    tree = main_parameter_tree(fit, chains)
    collection = plot_trace_dist(tree, var_names=_parameter_names(tree, var_names), backend="matplotlib",
                                 compact=False)
    return finish_arviz_figure(detach_figure(collection), "Traces and densities per chain",
                               panel_width=6.0, panel_height=1.8)


def plot_rank(fit: object, var_names: list[str] | None = None, chains: int | None = None) -> Figure:
    """Rank plots of the main parameters (ArviZ ``plot_rank``): flat when the chains agree.

    Parameters
    ----------
    fit : fit result or FitDraws
        A Bayesian fit (posterior draws).
    var_names : list of str, optional
        Parameters to show (all main parameters by default).
    chains : int, optional
        Chains of bare draws without an ``idata`` (read from the draws when None).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputTypeError
        If the fit holds a point estimate or a name is unknown.
    """
    from arviz_plots import plot_rank as arviz_plot_rank

    tree = main_parameter_tree(fit, chains)
    collection = arviz_plot_rank(tree, var_names=_parameter_names(tree, var_names), backend="matplotlib")
    return finish_arviz_figure(detach_figure(collection), "Rank plots per chain (uniform when chains agree)",
                               panel_width=3.6, panel_height=2.4)
