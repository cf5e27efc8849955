"""Read back what a figure drew (quivers, scatters, segments); cheap posterior-shaped draws."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.quiver import Quiver
from scipy.stats import wishart

from hierlm.results.draws import FitDraws


def quivers(ax) -> list[Quiver]:
    return [c for c in ax.collections if isinstance(c, Quiver)]


def scatters(ax) -> list[np.ndarray]:
    """Offsets of every scatter (PathCollection) of an axes, in drawing order."""
    return [np.asarray(c.get_offsets(), dtype=float) for c in ax.collections
            if isinstance(c, PathCollection)]


def segments(ax) -> list[np.ndarray]:
    """Segments of every LineCollection (hlines) of an axes, each (k, 2, 2)."""
    return [np.asarray(c.get_segments(), dtype=float) for c in ax.collections
            if isinstance(c, LineCollection) and not isinstance(c, Quiver)]


def visible_axes(figure) -> list:
    return [ax for ax in figure.axes if ax.get_visible() and ax.has_data()]


def pseudo_posterior(fit, chains: int = 2, per_chain: int = 100, seed: int = 1) -> FitDraws:
    """Posterior-shaped draws around a REML fit (chain-major, ``n_chains`` attribute set).

    Fixed effects come from their Wald distribution, group effects from their
    conditional distribution given the estimates, covariance matrices from a
    Wishart centred on the estimate. Not a posterior, but draws of the right
    shapes and spreads for testing what the figures show.
    """
    rng = np.random.default_rng(seed)
    point = fit.draws()
    total = chains * per_chain
    beta = rng.multivariate_normal(point.beta[0], np.asarray(fit.vcov(), dtype=float), size=total)
    sigma = point.sigma[0] * np.exp(0.05 * rng.standard_normal(total))
    covariances, effects = [], []
    for block, cov, eff, cond in zip(point.design.blocks, point.covariances, point.effects,
                                     fit.cond_var().values(), strict=True):
        dof = 40
        covariances.append(np.asarray(wishart.rvs(dof, cov[0] / dof, size=total, random_state=rng))
                           .reshape(total, block.q, block.q))
        roots = np.linalg.cholesky(cond + 1e-12 * np.eye(block.q))
        noise = np.einsum("lqr,slr->slq", roots, rng.standard_normal((total, block.n_levels, block.q)))
        effects.append(eff[0][None] + noise)
    draws = FitDraws(beta=beta, sigma=sigma, covariances=tuple(covariances), effects=tuple(effects),
                     design=point.design, point=False)
    object.__setattr__(draws, "n_chains", chains)
    return draws
