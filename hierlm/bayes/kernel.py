"""The pieces of the compiled log posterior and gradient of the marginal formulation.

The marginal model has few parameters and a likelihood that is a sum over
levels of small dense computations, so its log-density and exact gradient are
written out here by hand in ``numba``, compiled once and cached on disk for
every data set and prior choice (data and priors are arguments); on
sleepstudy a gradient costs a few microseconds. The log posterior itself is
the callback of :mod:`hierlm.bayes.kernel_cfunc`, one per block width, made
of :func:`relative_factor`, one of the per-level loops (:func:`group_sums_1`,
:func:`group_sums_2`, :func:`group_sums`) and :func:`log_posterior`.
Compiling the equivalent PyTensor graph with the numba backend costs 20-40 s
on an empty cache (every fused kernel is a separate numba compilation) and
2 s of graph rewriting on every fit; see ``bench/results/bayes.md``. The PyMC
model of :mod:`hierlm.bayes.marginal` is the specification: the tests check
that both give the same log-density and gradient.

Unconstrained vector ``x``: ``[beta (p) | log sigma | log sd (Q) | raw (R)]``
where the SDs are in the order of the stacked block columns and ``raw`` holds
``q_b (q_b - 1) / 2`` reals per correlated block, mapped to the Cholesky
factor of its correlation matrix by Stan's transform (canonical partial
correlations ``tanh(raw)``; :func:`hierlm.bayes.parameters.lkj_corr_cholesky`).

Likelihood gradient, with ``M_j = I + L'S_j L / sigma^2``, ``P_j = M_j^-1``,
``r_j = Z_j'(y_j - X_j beta)``, ``w_j = L' r_j``, ``s_j = P_j w_j``:

* d/dL     = sum_j [ -S_j L P_j / sigma^2 + (r_j s_j' - S_j L s_j s_j' / sigma^2) / sigma^4 ]
* d/dbeta  = (X'y - X'X beta) / sigma^2 - sum_j Z_j'X_j' L s_j / sigma^4
* d/dsigma = -n/sigma + sum_j (Q - tr P_j)/sigma + r'r/sigma^3 - sum_j (w_j's_j + s_j's_j)/sigma^5
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from hierlm.bayes.conditional_kernel import level_system

__all__ = [
    "COMPILED_ONLY",
    "FAMILY_CODES",
    "group_sums",
    "group_sums_1",
    "group_sums_2",
    "log_posterior",
    "log_prior_and_slope",
    "relative_factor",
]

# prior family -> code used by the compiled functions; parameters are stored as (a, b, c)
FAMILY_CODES = {
    "flat": 0,
    "normal": 1,  # a = mu, b = sigma
    "student_t": 2,  # a = nu, b = mu, c = sigma
    "half_normal": 3,  # b = sigma
    "half_student_t": 4,  # a = nu, b = sigma
    "half_cauchy": 5,  # b = sigma
    "exponential": 6,  # a = lam
}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
#: numba options of helpers called from compiled code only: cached, and no CPython wrapper to compile
COMPILED_ONLY: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy",
                                 "no_cpython_wrapper": True}


@numba.njit(cache=True, error_model="numpy")
def log_prior_and_slope(code: int, a: float, b: float, c: float, x: float) -> tuple[float, float]:
    """Log-density of a prior at ``x`` (natural scale) and its derivative in ``x``."""
    if code == 0:
        return 0.0, 0.0
    if code == 1:
        z = (x - a) / b
        return -0.5 * z * z - math.log(b) - _HALF_LOG_2PI, -z / b
    if code == 2:
        z = (x - b) / c
        const = math.lgamma(0.5 * (a + 1.0)) - math.lgamma(0.5 * a) - 0.5 * math.log(a * math.pi)
        value = const - math.log(c) - 0.5 * (a + 1.0) * math.log1p(z * z / a)
        return value, -(a + 1.0) * z / (c * (a + z * z))
    if code == 3:
        z = x / b
        return math.log(2.0) - 0.5 * z * z - math.log(b) - _HALF_LOG_2PI, -z / b
    if code == 4:
        z = x / b
        const = math.lgamma(0.5 * (a + 1.0)) - math.lgamma(0.5 * a) - 0.5 * math.log(a * math.pi)
        value = math.log(2.0) + const - math.log(b) - 0.5 * (a + 1.0) * math.log1p(z * z / a)
        return value, -(a + 1.0) * z / (b * (a + z * z))
    if code == 5:
        z = x / b
        return math.log(2.0) - math.log(math.pi * b) - math.log1p(z * z), -2.0 * z / (b * (1.0 + z * z))
    return math.log(a) - a * x, -a


@numba.njit(cache=True, error_model="numpy")
def _corr_cholesky(raw: np.ndarray, start: int, q: int, out: np.ndarray) -> None:  # pragma: no cover
    """Fill ``out`` (q, q) with the correlation Cholesky factor from ``raw[start:]``."""
    position = start
    for i in range(q):
        for j in range(q):
            out[i, j] = 0.0
        sum_squares = 0.0
        for j in range(i):
            entry = math.tanh(raw[position]) * math.sqrt(1.0 - sum_squares)
            out[i, j] = entry
            sum_squares += entry * entry
            position += 1
        out[i, i] = math.sqrt(1.0 - sum_squares) if i > 0 else 1.0


@numba.njit(cache=True, error_model="numpy")
def _corr_reverse(
    raw: np.ndarray, start: int, q: int, eta: float, adjoint: np.ndarray, grad: np.ndarray, offset: int
) -> float:  # pragma: no cover
    """LKJ log-density plus log-Jacobian of the transform; adds their and ``adjoint``'s gradient.

    ``adjoint`` (q, q) holds d(log posterior)/d(corr Cholesky entry) from the
    likelihood; the raw-coordinate gradient is added to ``grad[offset + k]``.
    """
    total = 0.0
    position = start
    row_start = start
    z = np.empty(q)
    before = np.empty(q)  # sum of squares before entry j of the row
    entries = np.empty(q)
    for i in range(1, q):
        sum_squares = 0.0
        for j in range(i):
            z[j] = math.tanh(raw[position + j])
            before[j] = sum_squares
            entries[j] = z[j] * math.sqrt(1.0 - sum_squares)
            sum_squares += entries[j] * entries[j]
            total += math.log1p(-z[j] * z[j]) + 0.5 * math.log1p(-before[j])
        diagonal = math.sqrt(1.0 - sum_squares)
        exponent = q - (i + 1) + 2.0 * eta - 2.0
        total += exponent * math.log(diagonal)
        # reverse pass over the row
        adj_diag = adjoint[i, i] + exponent / diagonal
        adj_ss = -0.5 * adj_diag / diagonal
        for j in range(i - 1, -1, -1):
            root = math.sqrt(1.0 - before[j])
            adj_entry = adjoint[i, j] + 2.0 * entries[j] * adj_ss
            adj_z = adj_entry * root - 2.0 * z[j] / (1.0 - z[j] * z[j])
            adj_ss += -0.5 * adj_entry * z[j] / root - 0.5 / (1.0 - before[j])
            grad[offset + (position - row_start) + j] += adj_z * (1.0 - z[j] * z[j])
        position += i
    return total


@numba.njit(**COMPILED_ONLY)
def group_sums(ztz: np.ndarray, ztx: np.ndarray, zty: np.ndarray, beta: np.ndarray, chol: np.ndarray,
               var: float, g_chol: np.ndarray, g_beta: np.ndarray
               ) -> tuple[float, float, float, float]:  # pragma: no cover - compiled
    """The per-level sums of any ``q``: log det, quadratic form, trace and ``s's``; adds to the gradients."""
    n_groups, q_total = zty.shape
    p = beta.shape[0]
    s_l = np.empty((q_total, q_total))
    m = np.empty((q_total, q_total))
    inv = np.empty((q_total, q_total))
    resid = np.empty(q_total)
    w = np.empty(q_total)
    s = np.empty(q_total)
    l_s = np.empty(q_total)
    tmp = np.empty(q_total)
    v = np.empty(q_total)
    sum_logdet = 0.0
    sum_quad = 0.0
    sum_trace = 0.0
    sum_ss = 0.0
    for jj in range(n_groups):
        # resid = Z'(y - X beta), s_l = Z'Z L, w = L' resid, m = chol(L'Z'Z L / var + I)
        level_system(ztz, ztx, zty, jj, beta, chol, var, s_l, m, resid, w, v)
        for b in range(q_total):
            sum_logdet += 2.0 * math.log(m[b, b])
        # inverse P = M^-1 column by column: solve R R' p = e
        for col in range(q_total):
            for a in range(q_total):
                acc = 1.0 if a == col else 0.0
                for k in range(a):
                    acc -= m[a, k] * tmp[k]
                tmp[a] = acc / m[a, a]
            for a in range(q_total - 1, -1, -1):
                acc = tmp[a]
                for k in range(a + 1, q_total):
                    acc -= m[k, a] * inv[k, col]
                inv[a, col] = acc / m[a, a]
        quad = 0.0
        for a in range(q_total):
            acc = 0.0
            for k in range(q_total):
                acc += inv[a, k] * w[k]
            s[a] = acc
        for a in range(q_total):
            quad += w[a] * s[a]
            sum_trace += inv[a, a]
            sum_ss += s[a] * s[a]
            acc = 0.0
            for k in range(q_total):
                acc += chol[a, k] * s[k]
            l_s[a] = acc
        sum_quad += quad
        # d/dL: -S L P / var + (r s' - S L s s' / var) / var^2
        for a in range(q_total):
            sls = 0.0
            for k in range(q_total):
                sls += s_l[a, k] * s[k]
            for b in range(q_total):
                slp = 0.0
                for k in range(q_total):
                    slp += s_l[a, k] * inv[k, b]
                g_chol[a, b] += -slp / var + (resid[a] * s[b] - sls * s[b] / var) / (var * var)
        for k in range(p):
            acc = 0.0
            for a in range(q_total):
                acc += ztx[jj, a, k] * l_s[a]
            g_beta[k] -= acc / (var * var)

    return sum_logdet, sum_quad, sum_trace, sum_ss


@numba.njit(**COMPILED_ONLY)
def group_sums_2(ztz: np.ndarray, ztx: np.ndarray, zty: np.ndarray, beta: np.ndarray, chol: np.ndarray,
                 var: float, g_chol: np.ndarray, g_beta: np.ndarray
                 ) -> tuple[float, float, float, float]:  # pragma: no cover - compiled
    """:func:`group_sums` for ``q = 2`` in closed form (scalars, the 2 x 2 inverse by its determinant)."""
    n_groups = zty.shape[0]
    p = beta.shape[0]
    l00, l10, l11 = chol[0, 0], chol[1, 0], chol[1, 1]  # chol is lower triangular
    inv_var = 1.0 / var
    inv_var2 = inv_var * inv_var
    g00 = g10 = g01 = g11 = 0.0
    sum_logdet = sum_quad = sum_trace = sum_ss = 0.0
    for jj in range(n_groups):
        s00, s01, s11 = ztz[jj, 0, 0], ztz[jj, 0, 1], ztz[jj, 1, 1]
        r0, r1 = zty[jj, 0], zty[jj, 1]
        for k in range(p):
            r0 -= ztx[jj, 0, k] * beta[k]
            r1 -= ztx[jj, 1, k] * beta[k]
        # S L
        a00 = s00 * l00 + s01 * l10
        a01 = s01 * l11
        a10 = s01 * l00 + s11 * l10
        a11 = s11 * l11
        w0 = l00 * r0 + l10 * r1
        w1 = l11 * r1
        m00 = (l00 * a00 + l10 * a10) * inv_var + 1.0
        m10 = (l11 * a10) * inv_var
        m11 = (l11 * a11) * inv_var + 1.0
        det = m00 * m11 - m10 * m10
        sum_logdet += math.log(det)
        inv_det = 1.0 / det
        p00, p01, p11 = m11 * inv_det, -m10 * inv_det, m00 * inv_det
        t0 = p00 * w0 + p01 * w1
        t1 = p01 * w0 + p11 * w1
        sum_quad += w0 * t0 + w1 * t1
        sum_trace += p00 + p11
        sum_ss += t0 * t0 + t1 * t1
        ls0 = l00 * t0
        ls1 = l10 * t0 + l11 * t1
        sls0 = a00 * t0 + a01 * t1
        sls1 = a10 * t0 + a11 * t1
        c0 = (r0 - sls0 * inv_var) * inv_var2
        c1 = (r1 - sls1 * inv_var) * inv_var2
        g00 += -(a00 * p00 + a01 * p01) * inv_var + c0 * t0
        g01 += -(a00 * p01 + a01 * p11) * inv_var + c0 * t1
        g10 += -(a10 * p00 + a11 * p01) * inv_var + c1 * t0
        g11 += -(a10 * p01 + a11 * p11) * inv_var + c1 * t1
        for k in range(p):
            g_beta[k] -= (ztx[jj, 0, k] * ls0 + ztx[jj, 1, k] * ls1) * inv_var2
    g_chol[0, 0] += g00
    g_chol[0, 1] += g01
    g_chol[1, 0] += g10
    g_chol[1, 1] += g11
    return sum_logdet, sum_quad, sum_trace, sum_ss


@numba.njit(**COMPILED_ONLY)
def group_sums_1(ztz: np.ndarray, ztx: np.ndarray, zty: np.ndarray, beta: np.ndarray, sd: float,
                 var: float, g_chol: np.ndarray, g_beta: np.ndarray
                 ) -> tuple[float, float, float, float]:  # pragma: no cover - compiled
    """:func:`group_sums` for ``q = 1`` (a random intercept or one slope): scalars."""
    n_groups = zty.shape[0]
    p = beta.shape[0]
    inv_var = 1.0 / var
    inv_var2 = inv_var * inv_var
    g = 0.0
    sum_logdet = sum_quad = sum_trace = sum_ss = 0.0
    for jj in range(n_groups):
        s00 = ztz[jj, 0, 0]
        r = zty[jj, 0]
        for k in range(p):
            r -= ztx[jj, 0, k] * beta[k]
        a = s00 * sd
        m = sd * a * inv_var + 1.0
        sum_logdet += math.log(m)
        inv = 1.0 / m
        t = inv * sd * r
        sum_quad += sd * r * t
        sum_trace += inv
        sum_ss += t * t
        g += -a * inv * inv_var + (r - a * t * inv_var) * t * inv_var2
        for k in range(p):
            g_beta[k] -= ztx[jj, 0, k] * sd * t * inv_var2
    g_chol[0, 0] += g
    return sum_logdet, sum_quad, sum_trace, sum_ss


@numba.njit(**COMPILED_ONLY)
def relative_factor(x: np.ndarray, p: int, q_total: int, block_start: np.ndarray, block_q: np.ndarray,
                     block_corr: np.ndarray, block_raw: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``(chol, corr, sd)`` at ``x``: the stacked blocks' factor ``L = diag(sd) C`` and its parts."""
    sd = np.empty(q_total)
    for i in range(q_total):
        sd[i] = math.exp(x[p + 1 + i])
    raw_offset = p + 1 + q_total
    chol = np.zeros((q_total, q_total))
    corr = np.zeros((q_total, q_total))
    sub = np.empty((q_total, q_total))
    for blk in range(block_start.shape[0]):
        c0, q = block_start[blk], block_q[blk]
        if block_corr[blk]:
            _corr_cholesky(x, raw_offset + block_raw[blk], q, sub)
            for i in range(q):
                for j in range(i + 1):
                    corr[c0 + i, c0 + j] = sub[i, j]
        else:
            for i in range(q):
                corr[c0 + i, c0 + i] = 1.0
    for i in range(q_total):
        for j in range(q_total):
            chol[i, j] = sd[i] * corr[i, j]
    return chol, corr, sd


@numba.njit(**COMPILED_ONLY)
def log_posterior(
    x: np.ndarray, grad: np.ndarray, sums: tuple[float, float, float, float], g_chol: np.ndarray,
    g_beta: np.ndarray, corr: np.ndarray, sd: np.ndarray, n_groups: int, yty: float, xty: np.ndarray,
    xtx: np.ndarray, n_obs: float, prior_code: np.ndarray, prior_par: np.ndarray,
    block_start: np.ndarray, block_q: np.ndarray, block_corr: np.ndarray, block_raw: np.ndarray,
    block_eta: np.ndarray,
) -> float:  # pragma: no cover - compiled
    """The log posterior from the per-level sums; writes its gradient into ``grad``.

    ``g_chol`` and ``g_beta`` hold the levels' contributions to the likelihood's
    gradient in ``L`` and ``beta``; this adds the whole-data terms, the priors,
    the transforms' Jacobians and the chain rule to the unconstrained vector.
    """
    sum_logdet, sum_quad, sum_trace, sum_ss = sums
    q_total = sd.shape[0]
    p = xty.shape[0]
    beta = x[:p]
    log_sigma = x[p]
    sigma = math.exp(log_sigma)
    var = sigma * sigma
    raw_offset = p + 1 + q_total
    rtr = yty
    for k in range(p):
        rtr -= 2.0 * beta[k] * xty[k]
        for k2 in range(p):
            rtr += beta[k] * xtx[k, k2] * beta[k2]
    logp = -0.5 * (
        n_obs * (2.0 * _HALF_LOG_2PI + 2.0 * log_sigma) + sum_logdet + (rtr - sum_quad / var) / var
    )
    for k in range(p):
        acc = xty[k]
        for k2 in range(p):
            acc -= xtx[k, k2] * beta[k2]
        g_beta[k] += acc / var
    g_sigma = (
        -n_obs / sigma
        + (n_groups * q_total - sum_trace) / sigma
        + rtr / (var * sigma)
        - (sum_quad + sum_ss) / (var * var * sigma)
    )

    for k in range(grad.shape[0]):
        grad[k] = 0.0
    # fixed effects: identity transform
    for k in range(p):
        value, slope = log_prior_and_slope(
            int(prior_code[k]), prior_par[k, 0], prior_par[k, 1], prior_par[k, 2], beta[k]
        )
        logp += value
        grad[k] = g_beta[k] + slope
    # sigma: log transform, Jacobian d sigma / d log sigma = sigma
    value, slope = log_prior_and_slope(
        int(prior_code[p]), prior_par[p, 0], prior_par[p, 1], prior_par[p, 2], sigma
    )
    logp += value + log_sigma
    grad[p] = (g_sigma + slope) * sigma + 1.0
    # SDs: L[i, j] = sd[i] * corr[i, j]
    for i in range(q_total):
        g_sd = 0.0
        for j in range(q_total):
            g_sd += g_chol[i, j] * corr[i, j]
        row = p + 1 + i
        value, slope = log_prior_and_slope(
            int(prior_code[row]), prior_par[row, 0], prior_par[row, 1], prior_par[row, 2], sd[i]
        )
        logp += value + x[row]
        grad[row] = (g_sd + slope) * sd[i] + 1.0
    # correlations: chain rule through Stan's transform, LKJ density and Jacobian
    adjoint = np.zeros((q_total, q_total))
    for blk in range(block_start.shape[0]):
        if not block_corr[blk]:
            continue
        c0, q = block_start[blk], block_q[blk]
        for i in range(q):
            for j in range(i + 1):
                adjoint[i, j] = g_chol[c0 + i, c0 + j] * sd[c0 + i]
        logp += _corr_reverse(
            x, raw_offset + block_raw[blk], q, block_eta[blk], adjoint, grad, raw_offset + block_raw[blk]
        )
    for k in range(grad.shape[0]):
        if not math.isfinite(grad[k]):
            return -math.inf
    return float(logp) if math.isfinite(logp) else -math.inf
