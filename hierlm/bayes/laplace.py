"""The Laplace approximation at a posterior mode: standard errors of MAP fits.

The covariance of ``x = (theta, log sigma, beta)`` (``beta`` left out for
REML, where it is integrated out) is the inverse Hessian of the negative log
posterior at the mode, in these unconstrained coordinates (log sigma; theta
entries strictly inside their bounds). The likelihood's rows and columns of
the variance parameters are central differences of its exact gradient
(roundoff ``eps |g| / h``, where second differences of the value carry
``eps |f| / h^2``: 1e-3 of an SE at n = 2000); its fixed-effect block is exact,
``X'V^-1 X / sigma^2``, the likelihood being quadratic in ``beta``. The
closed-form log-prior adds Richardson-extrapolated second differences of its
values. SDs and correlations get their standard errors from it by the delta
method (:class:`hierlm.results.uncertainty.PointUncertainty`). Entries of theta on
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


def _gradient_jacobian(gradient: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                       steps: np.ndarray) -> np.ndarray:
    """Central differences of an exact gradient along the first ``steps.size`` coordinates.

    Column ``i`` is ``(g(x + h_i e_i) - g(x - h_i e_i)) / (2 h_i)``: the Hessian's
    column ``i``, every row, with truncation error ``~h^2 g'''`` and roundoff
    ``~eps |g| / h`` (a function-value second difference has ``eps |f| / h^2``).
    """
    columns = []
    for i, step in enumerate(steps):
        shift = np.zeros(x.size)
        shift[i] = step
        columns.append((gradient(x + shift) - gradient(x - shift)) / (2.0 * step))
    return np.column_stack(columns)


def _second_differences(func: Callable[[np.ndarray], float], x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central second differences of ``func`` at ``x`` (error ``O(h^2)``)."""
    d = x.size
    f0 = func(x)
    hess = np.zeros((d, d))
    unit = np.eye(d) * steps
    for i in range(d):
        hess[i, i] = (func(x + unit[i]) - 2 * f0 + func(x - unit[i])) / steps[i] ** 2
        for j in range(i):
            cross = (func(x + unit[i] + unit[j]) - func(x + unit[i] - unit[j])
                     - func(x - unit[i] + unit[j]) + func(x - unit[i] - unit[j]))
            hess[i, j] = hess[j, i] = cross / (4 * steps[i] * steps[j])
    return hess


def _extrapolated_hessian(func: Callable[[np.ndarray], float], x: np.ndarray,
                          steps: np.ndarray) -> np.ndarray:
    """Second differences at ``h`` and ``h/2``, Richardson-extrapolated: error ``O(h^4)``.

    For the closed-form log-prior: cheap, of size ~1 (so its roundoff
    ``eps |f| / h^2`` is small at steps of 1e-3), and without an exact gradient.
    """
    return (4.0 * _second_differences(func, x, steps / 2) - _second_differences(func, x, steps)) / 3.0


def _steps(x: np.ndarray, lower: np.ndarray, relative: float) -> np.ndarray:
    """Steps ``relative * max(|x|, 0.1)``, at most half the distance to a finite lower bound."""
    room = np.where(np.isfinite(lower), (x - lower) / 2, np.inf)
    return np.minimum(relative * np.maximum(np.abs(x), 0.1), room)


def laplace_uncertainty(
    density: Any,
    theta: np.ndarray,
    sigma: float,
    beta: np.ndarray | None,
    log_prior: Callable[[np.ndarray, float, np.ndarray | None], float],
    log_fixef_prior: Callable[[int, float], float],
) -> dict[str, Any]:
    """Covariances of a MAP fit from the Laplace approximation at its mode.

    The likelihood's part of the Hessian is central differences of its exact
    gradient (:meth:`hierlm.bayes.map.MarginalDensity.minus_two_loglik_gradient`,
    steps ``1e-5 max(|x|, 0.1)``), exact in the fixed-effect block
    (``X'V^-1 X / sigma^2``); the log-prior's (closed form, no exact gradient)
    is Richardson-extrapolated second differences of its values (steps
    ``1e-3 max(|x|, 0.1)`` and half that). The SEs agree with a brute-force
    reference to ~3e-8 relative, that reference's own error
    (tests/bayes/test_laplace.py).

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
    free = [k for k in range(n_theta) if not (np.isfinite(lower[k]) and theta[k] <= lower[k])]
    d = len(free) + 1  # free theta entries and log sigma
    x0 = np.concatenate([theta[free], [np.log(sigma)], [] if beta is None else beta])
    bounds = np.concatenate([lower[free], [-np.inf]])
    keep = np.array(free + list(range(n_theta, n_theta + 1 + (0 if reml else p))), int)

    def split(v: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None]:
        th = theta.copy()
        th[free] = v[:d - 1]
        return th, float(np.exp(v[d - 1])), None if reml else v[d:]

    def gradient(v: np.ndarray) -> np.ndarray:  # of -log likelihood, over (free theta, log sigma, beta)
        th, scale, b = split(v)
        return 0.5 * density.minus_two_loglik_gradient(th, scale, b, reml)[1][keep]

    hess = np.zeros((x0.size, x0.size))
    jac = _gradient_jacobian(gradient, x0, _steps(x0[:d], bounds, 1e-5))
    hess[:, :d] = jac
    hess[:d, d:] = jac[d:].T
    hess[:d, :d] = (jac[:d] + jac[:d].T) / 2
    hess[:d, :d] -= _extrapolated_hessian(lambda v: log_prior(*split(np.concatenate([v, x0[d:]]))),
                                          x0[:d], _steps(x0[:d], bounds, 1e-3))
    sigma2 = sigma**2
    xx = density.pieces(theta).xx
    if beta is not None:
        hess[d:, d:] = xx / sigma2  # the likelihood is quadratic in beta
        unbounded = np.array([-np.inf])
        for j in range(p):  # the fixed-effect priors are independent of each other and of x[:d]
            point = beta[j:j + 1]

            def fixef_prior(v: np.ndarray, j: int = j) -> float:
                return log_fixef_prior(j, float(v[0]))

            hess[d + j, d + j] -= _extrapolated_hessian(fixef_prior, point,
                                                        _steps(point, unbounded, 1e-3))[0, 0]
    positive = np.linalg.eigvalsh(hess).min() > 0
    cov = np.linalg.inv(hess) if positive else np.full_like(hess, np.nan)
    size = n_theta + 1 + (0 if reml else p)
    laplace_cov = np.full((size, size), np.nan)
    laplace_cov[np.ix_(keep, keep)] = cov
    vcov_beta = sigma2 * np.linalg.inv(xx) if reml else laplace_cov[n_theta + 1:, n_theta + 1:]
    return {"laplace_cov": laplace_cov, "vcov_beta": np.asarray(vcov_beta),
            "cond_var": conditional_variances(density, theta, sigma)}
