"""Compiled per-group density with a residual structure: the numba twin of ResidualLikelihood.

The same log-likelihood and gradient as the NumPy code of
:class:`hierlm.bayes.residual_likelihood.ResidualLikelihood` (see that
module's docstring for the formulas), group by group in numba, with the data
as arguments (so the compiled code is cached on disk once for every model).
Two kernels: :func:`general_batch` for groups with their own ``W_i``
(random effects, ``variance=`` ratios, different times) and
:func:`shared_batch` for groups that share one ``W`` (summed
cross-products). Tested equal to :class:`hierlm.lmm.likelihood.GaussianLikelihood`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["general_batch", "shared_batch"]


@njit(cache=True)
def general_batch(beta: np.ndarray, var: float, s: np.ndarray, levels: np.ndarray,
                  t_all: np.ndarray, x: np.ndarray, y: np.ndarray, slots: np.ndarray,
                  codes: np.ndarray, z: np.ndarray, gradient: bool, d_beta: np.ndarray,
                  d_s: np.ndarray, d_levels: np.ndarray, d_tall: np.ndarray) -> tuple[float, float]:
    """``(sum log|W_i|, sum r_i'W_i^-1 r_i)`` of a batch; gradients added in place.

    ``codes`` (k, m) are the rows' ``variance=`` levels (all 0 without);
    ``z`` (k, m, Q) the stacked random-effect columns and ``t_all`` (Q, Q) the
    block-diagonal relative factor. ``d_s``, ``d_levels``, ``d_tall`` receive
    the derivatives of the log-likelihood (not of the two sums), ``d_beta``
    that of ``-quad / (2 var)``.
    """
    k, m = y.shape
    p = x.shape[2]
    q = t_all.shape[0]
    logdet, quad = 0.0, 0.0
    w = np.empty((m, m))
    s_i = np.empty((m, m))
    zt = np.empty((m, q))
    ratio = np.empty(m)
    r = np.empty(m)
    for i in range(k):
        for a in range(m):
            ratio[a] = levels[codes[i, a]]
        for a in range(m):
            for b in range(m):
                s_i[a, b] = s[slots[i, a], slots[i, b]]
                w[a, b] = s_i[a, b] * ratio[a] * ratio[b]
        if q:
            zt[:, :] = z[i] @ t_all
            w += zt @ zt.T
        chol = np.linalg.cholesky(w)
        for a in range(m):
            logdet += 2.0 * np.log(chol[a, a])
        w_inv = np.linalg.inv(w)
        for a in range(m):
            acc = y[i, a]
            for c in range(p):
                acc -= x[i, a, c] * beta[c]
            r[a] = acc
        alpha = w_inv @ r
        for a in range(m):
            quad += r[a] * alpha[a]
            for c in range(p):
                d_beta[c] += x[i, a, c] * alpha[a] / var
        if not gradient:
            continue
        g = -0.5 * (w_inv - np.outer(alpha, alpha) / var)
        for a in range(m):
            row = 0.0
            for b in range(m):
                d_s[slots[i, a], slots[i, b]] += g[a, b] * ratio[a] * ratio[b]
                row += g[a, b] * s_i[a, b] * ratio[b]
            d_levels[codes[i, a]] += 2.0 * row
        if q:
            d_tall += 2.0 * (z[i].T @ g @ z[i]) @ t_all
    return logdet, quad


@njit(cache=True)
def shared_batch(beta: np.ndarray, var: float, s: np.ndarray, slots: np.ndarray, copies: int,
                 cxx: np.ndarray, cxy: np.ndarray, cyy: np.ndarray, gradient: bool,
                 d_beta: np.ndarray, d_s: np.ndarray) -> tuple[float, float]:
    """The sums of :func:`general_batch` for ``copies`` groups sharing one ``W = S[slots, slots]``.

    ``cxx[a, b, p, q] = sum_k X_k[a, p] X_k[b, q]``, ``cxy[a, b, p] = sum_k
    X_k[a, p] y_k[b]``, ``cyy[a, b] = sum_k y_k[a] y_k[b]``.
    """
    m = slots.shape[0]
    p = beta.shape[0]
    w = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            w[a, b] = s[slots[a], slots[b]]
    chol = np.linalg.cholesky(w)
    logdet = 0.0
    for a in range(m):
        logdet += 2.0 * np.log(chol[a, a])
    w_inv = np.linalg.inv(w)
    products = np.empty((m, m))  # sum_k r_k r_k'
    for a in range(m):
        for b in range(m):
            acc = cyy[a, b]
            for c in range(p):
                acc -= cxy[a, b, c] * beta[c] + cxy[b, a, c] * beta[c]
                for e in range(p):
                    acc += cxx[a, b, c, e] * beta[c] * beta[e]
            products[a, b] = acc
    quad = 0.0
    for a in range(m):
        for b in range(m):
            quad += w_inv[a, b] * products[a, b]
            for c in range(p):
                xa = cxy[a, b, c]
                for e in range(p):
                    xa -= cxx[a, b, c, e] * beta[e]
                d_beta[c] += w_inv[a, b] * xa / var
    if gradient:
        g = -0.5 * (copies * w_inv - (w_inv @ products @ w_inv) / var)
        for a in range(m):
            for b in range(m):
                d_s[slots[a], slots[b]] += g[a, b]
    return copies * logdet, quad
