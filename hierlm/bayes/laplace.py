"""The Laplace approximation at a posterior mode: standard errors of MAP fits.

The covariance of ``x = (theta, log sigma, beta)`` (``beta`` left out for
REML, where it is integrated out) is the inverse Hessian of the negative log
posterior at the mode, in these unconstrained coordinates (log sigma; theta
entries strictly inside their bounds). Central differences give the variance
block; the fixed-effect blocks are exact where the likelihood is quadratic in
``beta`` (``d/dbeta = X'V^-1 X (beta - beta_hat) / sigma^2``), plus the
curvature of the fixed-effect priors. SDs and correlations get their standard
errors from it by the delta method
(:class:`hierlm.results.uncertainty.PointUncertainty`). Entries of theta on
their bound (a zero SD) have NaN rows and columns.

The group effects' conditional covariances (lme4's ``condVar``,
``sigma^2 T A_ll^-1 T'`` per level) come from the same factorisation of
``A = Lambda'Z'Z Lambda + I`` as the mode itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["laplace_uncertainty", "conditional_variances"]



def conditional_variances(density: Any, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
    """Per block, ``sigma^2 T A_ll^-1 T'`` for every level l: lme4's ``condVar`` at ``theta``.

    Parameters
    ----------
    density : hierlm.bayes.map.MarginalDensity
        The model's marginal density (the ML/REML factorisation gives ``condVar``).
    theta : numpy.ndarray
        The covariance parameters.
    sigma : float
        The residual SD.

    Returns
    -------
    list of numpy.ndarray
        One (levels, q, q) array per design block.
    """
    return list(density.conditional_variances(theta, sigma))


def _hessian(func: Callable[[np.ndarray], float], x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central-difference Hessian of ``func`` at ``x``."""
    d = x.size
    f0 = func(x)
    hess = np.zeros((d, d))
    for i in range(d):
        e_i = np.eye(d)[i] * steps[i]
        hess[i, i] = (func(x + e_i) - 2 * f0 + func(x - e_i)) / steps[i] ** 2
        for j in range(i):
            e_j = np.eye(d)[j] * steps[j]
            cross = func(x + e_i + e_j) - func(x + e_i - e_j) - func(x - e_i + e_j) + func(x - e_i - e_j)
            hess[i, j] = hess[j, i] = cross / (4 * steps[i] * steps[j])
    return hess


def laplace_uncertainty(
    density: Any,
    theta: np.ndarray,
    sigma: float,
    beta: np.ndarray | None,
    log_prior: Callable[[np.ndarray, float, np.ndarray | None], float],
    log_fixef_prior: Callable[[int, float], float],
) -> dict[str, Any]:
    """Covariances of a MAP fit from the Laplace approximation at its mode.

    Parameters
    ----------
    density : hierlm.bayes.map.MarginalDensity
        The model's marginal density.
    theta, sigma : numpy.ndarray, float
        The mode's covariance parameters (lme4's layout) and residual SD.
    beta : numpy.ndarray or None
        The mode's fixed effects; None for REML (integrated out).
    log_prior : callable
        ``(theta, sigma, beta or None) -> log prior density`` of the fit.
    log_fixef_prior : callable
        ``(j, value) -> log prior density of fixed effect j`` (its curvature enters).

    Returns
    -------
    dict
        ``laplace_cov``: covariance of ``x`` (``n_theta + 1 (+ p)`` square);
        ``vcov_beta``: covariance of the fixed effects (REML:
        ``sigma^2 (X'V^-1 X)^-1`` at the mode, their conditional posterior,
        lme4's ``vcov``); ``cond_var``: per block, the conditional covariance
        of each level's effects.
    """
    theta = np.asarray(theta, dtype=float)
    reml = beta is None
    lower, n_theta, p = density.layout.lower, theta.size, density.p
    cache: dict[bytes, Any] = {}

    def pieces(th: np.ndarray) -> Any:
        key = th.tobytes()
        if key not in cache:
            cache[key] = density.pieces(th)
        return cache[key]

    free = [k for k in range(n_theta) if not (np.isfinite(lower[k]) and theta[k] <= lower[k])]
    log_sigma = float(np.log(sigma))
    steps = np.array([min(1e-4 * max(abs(theta[k]), 1e-2),
                          (theta[k] - lower[k]) / 2 if np.isfinite(lower[k]) else np.inf) for k in free]
                     + [1e-4 * max(abs(log_sigma), 1.0)])

    def negative_log_posterior(v: np.ndarray) -> float:
        th = theta.copy()
        th[free] = v[:-1]
        scale = float(np.exp(v[-1]))
        value = 0.5 * density.minus_two_loglik(pieces(th), scale, beta, reml)
        return float(value - log_prior(th, scale, beta))

    d = len(free) + 1
    hess = np.zeros((d + (0 if reml else p),) * 2)
    hess[:d, :d] = _hessian(negative_log_posterior, np.append(theta[free], log_sigma), steps)
    sigma2 = sigma**2
    xx = pieces(theta).xx
    if beta is not None:
        curvature = np.zeros(p)
        for j in range(p):
            h = 1e-4 * max(abs(beta[j]), 1.0)
            curvature[j] = -(log_fixef_prior(j, beta[j] + h) - 2 * log_fixef_prior(j, beta[j])
                             + log_fixef_prior(j, beta[j] - h)) / h**2
        hess[d:, d:] = xx / sigma2 + np.diag(curvature)

        def score(th: np.ndarray) -> np.ndarray:
            local = pieces(th)
            return np.asarray(local.xx @ (beta - local.beta_hat) / sigma2)

        for i, k in enumerate(free):
            up, down = theta.copy(), theta.copy()
            up[k] += steps[i]
            down[k] -= steps[i]
            hess[d:, i] = hess[i, d:] = (score(up) - score(down)) / (2 * steps[i])
        hess[d:, d - 1] = hess[d - 1, d:] = -2.0 * score(theta)
    positive = np.linalg.eigvalsh(hess).min() > 0
    cov = np.linalg.inv(hess) if positive else np.full_like(hess, np.nan)
    index = np.array(free + [n_theta] + ([] if reml else list(range(n_theta + 1, n_theta + 1 + p))), int)
    size = n_theta + 1 + (0 if reml else p)
    laplace_cov = np.full((size, size), np.nan)
    laplace_cov[np.ix_(index, index)] = cov
    vcov_beta = sigma2 * np.linalg.inv(xx) if reml else laplace_cov[n_theta + 1:, n_theta + 1:]
    return {"laplace_cov": laplace_cov, "vcov_beta": np.asarray(vcov_beta),
            "cond_var": conditional_variances(density, theta, sigma)}
