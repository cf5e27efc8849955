"""Posterior distributions of the variance parameters: ICC, SDs, correlations.

These figures are drawn by ArviZ-plots' ``plot_dist`` (density, point
estimate and credible interval per quantity) from a ``DataTree`` built out of
the fit's draws, so they need posterior draws: a point fit (ML/REML/MAP)
raises :class:`~hierlm.errors.InputTypeError` and its estimates are read from
``fit.icc()`` and ``fit.varcorr()`` instead.

The ICC draws are those of :func:`hierlm.results.icc` with its default
``shared`` sets: one intraclass correlation per grouping factor, counting the
variance of the factor's blocks and of every block whose factor the given
factor is nested in (two casks share their batch). With random slopes the
variance is averaged over the observed rows (adjusted ICC), or evaluated at
``at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hierlm.errors import DataError
from hierlm.plots.common import detach_figure, finish_arviz_figure, posterior_tree, require_posterior
from hierlm.results.common import as_draws, chains_of
from hierlm.results.intraclass import icc_draws

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = ["plot_icc", "plot_variance_components", "plot_correlations"]


def _dist_figure(tree: xr.DataTree, var_names: list[str], prob: float | None, **kwargs: Any) -> Figure:
    """Draw ``plot_dist`` of the chosen variables with the matplotlib backend."""
    from arviz_plots import plot_dist

    collection = plot_dist(tree, var_names=var_names, backend="matplotlib", ci_prob=prob, **kwargs)
    return detach_figure(collection)


def plot_icc(fit: object, at: Mapping[str, float] | None = None, prob: float | None = None) -> Figure:
    """Posterior of the intraclass correlation of every grouping factor.

    Parameters
    ----------
    fit : fit result or FitDraws
        A Bayesian fit (posterior draws).
    at : dict, optional
        Random-slope values at which to evaluate the ICC, e.g. ``{"Days": 0}``.
    prob : float, optional
        Credible-interval probability (ArviZ's default when None).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per grouping factor, titled ``icc`` and the factor.

    Raises
    ------
    InputTypeError
        If the fit holds a point estimate.
    """
    from arviz_base import from_dict

    draws = as_draws(fit)
    require_posterior(draws, "The ICC posterior plot")
    sets, values, _ = icc_draws(draws, at=at)
    factors = [name for name, _ in sets]
    chains = chains_of(draws)
    tree = from_dict({"posterior": {"icc": values.reshape(chains, -1, len(factors))}},
                     dims={"icc": ["factor"]}, coords={"factor": factors})
    figure = _dist_figure(tree, ["icc"], prob)
    kind = f"at {dict(at)}" if at is not None else (
        "(adjusted for random slopes)" if any(c != "Intercept" for b in draws.design.blocks
                                              for c in b.columns) else "")
    return finish_arviz_figure(figure, f"Intraclass correlation {kind}".strip())


def plot_variance_components(fit: object, scale: str = "sd", prob: float | None = None) -> Figure:
    """Posterior of every variance component: each block's SDs and the residual SD.

    Parameters
    ----------
    fit : fit result or FitDraws
        A Bayesian fit (posterior draws).
    scale : {"sd", "variance"}
        Plot standard deviations (``sd_<block>``, ``sigma``) or variances
        (``var_<block>``, ``sigma2``).
    prob : float, optional
        Credible-interval probability (ArviZ's default when None).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputTypeError
        If the fit holds a point estimate or ``scale`` is unknown.
    """
    draws = as_draws(fit)
    require_posterior(draws, "The variance-components plot")
    tree = posterior_tree(draws, scale=scale)
    prefix = "sd_" if scale == "sd" else "var_"
    names = [str(n) for n in tree["posterior"].data_vars if str(n).startswith(prefix)]
    names.append("sigma" if scale == "sd" else "sigma2")
    figure = _dist_figure(tree, names, prob)
    kind = "standard deviations" if scale == "sd" else "variances"
    return finish_arviz_figure(figure, f"Variance components ({kind})")


def plot_correlations(fit: object, prob: float | None = None) -> Figure:
    """Posterior of the correlations between the terms of each correlated block.

    A dashed line marks zero on every panel.

    Parameters
    ----------
    fit : fit result or FitDraws
        A Bayesian fit (posterior draws).
    prob : float, optional
        Credible-interval probability (ArviZ's default when None).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    DataError
        If the model has no correlated random-effect block.
    InputTypeError
        If the fit holds a point estimate.
    """
    draws = as_draws(fit)
    require_posterior(draws, "The correlation posterior plot")
    tree = posterior_tree(draws)
    names = [str(n) for n in tree["posterior"].data_vars if str(n).startswith("cor_")]
    if not names:
        raise DataError("The model has no correlated random effects (no block with several "
                        "correlated terms), so there are no correlations to plot.")
    figure = _dist_figure(tree, names, prob)
    for ax in figure.axes:
        if ax.get_visible() and ax.has_data():
            ax.axvline(0.0, color="0.5", linestyle="--", linewidth=1.0)
    return finish_arviz_figure(figure, "Correlations of group effects")
