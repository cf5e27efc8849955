"""No pooling and shrinkage factors of non-Gaussian fits (GLMMs), on the link scale.

The pieces of :mod:`hierlm.results.pooling` that assume a Gaussian response,
for the other families:

* **no pooling**: a separate maximum-likelihood GLM per level, of the model's
  family and link, fitted by iteratively reweighted least squares on the
  level's rows: the response on the block's columns ``z_i``, with the model's
  offset plus the fixed part of every *other* fixed-effect column,
  ``offset_i + sum_{c' not in block} x_ic' beta_c'``, as a fixed offset (the
  prior weights and, for NB2, the fitted dispersion kept). For ``(1 | g)`` of
  a binomial model it is the logit of the level's (offset-adjusted) success
  rate. Its standard error is ``sqrt(diag((Z_j' W_j Z_j)^-1))``, the inverse
  Fisher information at the level's estimate. Levels whose estimate is not
  finite (all successes or none, a zero count total: the maximum likelihood
  lies at infinity, ``|eta|`` beyond :data:`ETA_LIMIT`) or whose columns are
  not identified get NaN.
* **complete pooling** with ``complete="ols"``: the pooled GLM of y on the
  fixed-effect columns, ignoring the groups (the default ``"fixed"`` is the
  model's fixed effect, as for Gaussian fits).
* **shrinkage factor**: the diagonal of ``(G A_j + I)^-1 G A_j`` with ``A_j =
  Z_j' W_j Z_j`` the Fisher information of the level's rows about its
  effects, ``W`` the working weights at the fit's linear predictor (group
  effects included; the posterior mean of each row's linear predictor for
  Bayesian fits), ``G`` per draw. It is the Gaussian factor with ``W``
  for ``1 / sigma^2``: the share of the level's own (link-scale) deviation the
  conditional mode keeps when the likelihood is close to normal. Effects of
  other grouping factors enter only through ``W``.
"""

from __future__ import annotations

import numpy as np

from hierlm.results.draws import FitDraws
from hierlm.results.grouped import FactorSplit

__all__ = ["ETA_LIMIT", "glm_irls", "glm_no_pooling", "glm_pooled", "glm_factor_draws"]

#: Largest |linear predictor| of a finite per-level estimate (a probability within 2e-9 of 0 or 1).
ETA_LIMIT = 20.0
_ITERATIONS = 100
_TOLERANCE = 1e-10


def glm_irls(family: object, y: np.ndarray, z: np.ndarray, offset: np.ndarray,
             weights: np.ndarray, dispersion: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood GLM coefficients and their covariance (inverse Fisher information).

    Returns NaN arrays when the estimate is at infinity or the columns are not identified.
    """
    q = z.shape[1]
    nan = (np.full(q, np.nan), np.full((q, q), np.nan))
    if z.shape[0] < q or np.linalg.matrix_rank(z) < q:
        return nan
    link = family.link  # type: ignore[attr-defined]
    mu = family.initial_mu(y, weights)  # type: ignore[attr-defined]
    coef = np.linalg.lstsq(z, link.link(mu) - offset, rcond=None)[0]
    deviance = np.inf
    for _ in range(_ITERATIONS):
        eta = offset + z @ coef
        if np.max(np.abs(eta)) > ETA_LIMIT:
            return nan
        mu = link.inverse(eta)
        w = family.working_weights(eta, weights, dispersion)  # type: ignore[attr-defined]
        working = eta - offset + (y - mu) / link.mu_eta(eta)
        information = z.T @ (w[:, None] * z)
        coef = np.linalg.solve(information, z.T @ (w * working))
        new = -2.0 * float(np.sum(family.log_likelihood(  # type: ignore[attr-defined]
            y, link.inverse(offset + z @ coef), weights, dispersion)))
        if abs(new - deviance) <= _TOLERANCE * (abs(new) + 0.1):
            break
        deviance = new
    else:
        return nan
    eta = offset + z @ coef
    if np.max(np.abs(eta)) > ETA_LIMIT:
        return nan
    w = family.working_weights(eta, weights, dispersion)  # type: ignore[attr-defined]
    return coef, np.linalg.inv(z.T @ (w[:, None] * z))


def _dispersion(draws: FitDraws) -> float | None:
    return None if draws.dispersion is None else float(np.mean(draws.dispersion))


def glm_no_pooling(draws: FitDraws, split: FactorSplit, columns: list[str],
                   z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-level GLM estimates and SEs of the factor's coefficients, ``(n_levels, Q)`` each."""
    design = draws.design
    beta_bar = draws.beta.mean(axis=0)
    other = np.array([name not in columns for name in design.fixed_names])
    offset = (np.asarray(design.offset, dtype=float)
              + np.asarray(design.X, dtype=float)[:, other] @ beta_bar[other])
    y = np.asarray(design.y, dtype=float)
    weights = np.asarray(design.weights, dtype=float)
    q = len(columns)
    estimate = np.full((len(split.levels), q), np.nan)
    se = np.full((len(split.levels), q), np.nan)
    for level, rows in enumerate(split.rows):
        coef, cov = glm_irls(draws.family, y[rows], z[rows], offset[rows], weights[rows],
                             _dispersion(draws))
        estimate[level] = coef
        se[level] = np.sqrt(np.diag(cov))
    return estimate, se


def glm_pooled(draws: FitDraws) -> np.ndarray:
    """The pooled GLM of y on the fixed-effect columns, ignoring the groups."""
    design = draws.design
    coef, _ = glm_irls(draws.family, np.asarray(design.y, dtype=float),
                       np.asarray(design.X, dtype=float), np.asarray(design.offset, dtype=float),
                       np.asarray(design.weights, dtype=float), _dispersion(draws))
    return coef


def glm_factor_draws(draws: FitDraws, split: FactorSplit, z: np.ndarray,
                     covariance: np.ndarray) -> np.ndarray:
    """Diagonal of ``(G A_j + I)^-1 G A_j``, ``A_j = Z_j' W_j Z_j``, per draw: (S, J, Q)."""
    design = draws.design
    eta = np.asarray(design.offset, dtype=float) + draws.beta @ np.asarray(design.X, dtype=float).T
    for block, effects in zip(design.blocks, draws.effects, strict=True):
        codes = np.asarray(block.codes)
        eta = eta + np.einsum("iq,siq->si", np.asarray(block.z, dtype=float), effects[:, codes, :])
    w = draws.family.working_weights(eta.mean(axis=0),  # type: ignore[union-attr]
                                     np.asarray(design.weights, dtype=float), _dispersion(draws))
    q = z.shape[1]
    out = np.empty((draws.n_draws, len(split.levels), q))
    for level, rows in enumerate(split.rows):
        information = z[rows].T @ (w[rows, None] * z[rows])
        weighted = covariance @ information
        out[:, level, :] = np.diagonal(np.linalg.solve(weighted + np.eye(q), weighted),
                                       axis1=-2, axis2=-1)
    return out
