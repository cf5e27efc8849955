"""Adaptive Gauss-Hermite quadrature of a GLMM's marginal likelihood, level by level.

When every random effect sits on one grouping factor, the marginal
likelihood factors over its levels: level ``j`` contributes the ``q``-fold
integral ``int prod_i p(y_i | u_j) N(u_j; 0, I) du_j``. Centred at the
conditional mode ``u_hat_j`` and scaled by the Cholesky factor ``L_j`` of the
conditional precision ``H_j = A_j'W_jA_j + I`` (from PIRLS), the substitution
``u = u_hat_j + L_j^-T v`` gives

    log I_j = -log|L_j| + log sum_k w_k exp(g_j(u_hat_j + L_j^-T v_k) + |v_k|^2 / 2),

with ``g_j(u) = sum_{i in j} log p(y_i | u) - |u|^2 / 2`` and the tensor
product of ``k`` probabilists' Gauss-Hermite nodes ``v_k`` (weights
normalised to the standard normal), ``k^q`` nodes per level. One node is
the Laplace approximation. lme4 allows this for one scalar effect; here any
``q <= 3`` on one factor is accepted (``k^q`` grows too fast beyond). Crossed
or nested factors do not factor per level and are refused.

The deviance returned is ``-2 sum_j log I_j`` with the family's normalising
constants (lme4's AGQ ``logLik`` leaves them out; its values plus the
saturated log-likelihood are the same quantity).
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import logsumexp

from hierlm.errors import FitError
from hierlm.glmm.pirls import GlmmProblem, Mode

__all__ = ["MAX_AGQ_TERMS", "check_agq", "agq_deviance", "gauss_hermite"]

#: Most random-effect terms per level for which ``nagq > 1`` is accepted.
MAX_AGQ_TERMS = 3


def check_agq(problem: GlmmProblem, nagq: int) -> None:
    """Refuse ``nagq`` where quadrature does not factor per level or grows too fast.

    Raises
    ------
    FitError
        For ``nagq < 1``, several grouping factors, or more than
        :data:`MAX_AGQ_TERMS` terms per level.
    """
    if not isinstance(nagq, (int, np.integer)) or isinstance(nagq, bool) or nagq < 1:
        raise FitError(f"nagq must be a whole number >= 1 (1 is the Laplace approximation), "
                       f"not {nagq!r}.")
    if nagq == 1:
        return
    s = problem.structure
    if s.rest:
        groups = sorted({b.group for b in problem.design.blocks})
        raise FitError(
            f"nagq={nagq} needs every random effect on one grouping factor; this model has "
            f"{', '.join(groups)}. With crossed or nested factors the integral does not factor "
            "level by level (its dimension is the number of all effects); use nagq=1 (Laplace).")
    if s.q1 > MAX_AGQ_TERMS:
        raise FitError(
            f"nagq={nagq} with {s.q1} random-effect terms per level needs {nagq}^{s.q1} nodes per "
            f"level; quadrature is offered up to {MAX_AGQ_TERMS} terms. Use nagq=1 (Laplace).")


def gauss_hermite(nagq: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product nodes ``(nagq^q, q)`` and log-weights for the standard normal density."""
    nodes, weights = hermegauss(nagq)
    log_w = np.log(weights / np.sqrt(2.0 * np.pi))
    grid = np.array(list(itertools.product(range(nagq), repeat=q)), dtype=np.int64)
    return nodes[grid], log_w[grid].sum(axis=1)


def agq_deviance(problem: GlmmProblem, mode: Mode, nagq: int,
                 dispersion: float | None = None) -> float:
    """``-2`` times the adaptive Gauss-Hermite log-likelihood at the mode's ``(theta, beta)``."""
    s = problem.structure
    v, log_w = gauss_hermite(nagq, s.q1)
    factor = mode.factor
    shift = np.einsum("lba,kb->lka", factor.l11_inv, v)  # L_j^-T v_k, (n1, K, q1)
    u = mode.u1[:, None, :] + shift
    codes = s.codes1
    eta = mode.base[:, None] + np.einsum("ij,ikj->ik", mode.a1, u[codes])
    family = problem.family
    ll = family.log_likelihood(problem.y[:, None], family.link.inverse(eta),
                               problem.prior_weights[:, None], dispersion)
    per_level = np.asarray(s.indicator @ ll)  # (n1, K)
    g = per_level - 0.5 * np.sum(u * u, axis=2)
    log_det = np.sum(np.log(np.einsum("lii->li", factor.l11)), axis=1)
    terms = g + 0.5 * np.sum(v * v, axis=1)[None, :] + log_w[None, :]
    log_integral = logsumexp(terms, axis=1) - log_det
    value = -2.0 * float(np.sum(log_integral))
    if not np.isfinite(value):
        raise FitError("The quadrature deviance is not finite; try fewer nodes or nagq=1.")
    return value
