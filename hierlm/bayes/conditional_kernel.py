"""Compiled per-(draw, level) loop behind :mod:`hierlm.bayes.conditional` for large problems.

For every posterior draw ``s`` and level ``j`` it factors ``M_j = I + L'Z_j'Z_j L /
sigma^2 = R R'`` and, as asked, draws the level's group effects from their
conditional and/or evaluates the level's marginal log-likelihood (formulas in
:mod:`hierlm.bayes.conditional`). NumPy's vectorised version materialises
several (draws x levels x Q x Q) temporaries, which for 4000 draws of 10,000
levels costs tens of seconds; this loop keeps everything in registers-sized
buffers, runs draws in parallel threads, and is compiled once and cached on
disk by numba.

:func:`level_system` (the level's system and its Cholesky factor) and
:func:`conditional_solve` (the back substitution to the conditional mean, or
to a draw) are the one definition of the per-level step; the summaries of
:mod:`hierlm.bayes.effect_summary` use them too.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["conditional_loop", "conditional_solve", "level_system"]


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def level_system(ztz: np.ndarray, ztx: np.ndarray, zty: np.ndarray, j: int, beta: np.ndarray,
                 lam: np.ndarray, var: float, s_l: np.ndarray, r: np.ndarray, resid: np.ndarray,
                 w: np.ndarray, v: np.ndarray) -> None:  # pragma: no cover - compiled
    """Level ``j``'s system at one draw: ``R`` (Cholesky of ``M``) in ``r``, ``v = R^-1 L'Z'(y - X beta)``.

    Also fills ``resid = Z_j'(y_j - X_j beta)``, ``w = L' resid`` and
    ``s_l = Z_j'Z_j L`` (buffers of size q and q x q; only the lower triangle
    of ``r`` is written). ``lam`` is lower triangular. Inlined into its callers
    (a called helper doubles the loop's cost); ``q = 2`` in closed form.
    """
    q = zty.shape[1]
    n_fixed = beta.shape[0]
    if q == 2:  # closed form (the common random intercept and slope)
        r0, r1 = zty[j, 0], zty[j, 1]
        for k in range(n_fixed):
            r0 -= ztx[j, 0, k] * beta[k]
            r1 -= ztx[j, 1, k] * beta[k]
        l00, l10, l11 = lam[0, 0], lam[1, 0], lam[1, 1]
        s00, s01, s11 = ztz[j, 0, 0], ztz[j, 0, 1], ztz[j, 1, 1]
        a00, a01 = s00 * l00 + s01 * l10, s01 * l11
        a10, a11 = s01 * l00 + s11 * l10, s11 * l11
        w0, w1 = l00 * r0 + l10 * r1, l11 * r1
        inv_var = 1.0 / var
        c00 = math.sqrt((l00 * a00 + l10 * a10) * inv_var + 1.0)
        c10 = l11 * a10 * inv_var / c00
        c11 = math.sqrt(l11 * a11 * inv_var + 1.0 - c10 * c10)
        v0 = w0 / c00
        resid[0], resid[1], w[0], w[1] = r0, r1, w0, w1
        s_l[0, 0], s_l[0, 1], s_l[1, 0], s_l[1, 1] = a00, a01, a10, a11
        r[0, 0], r[1, 0], r[1, 1] = c00, c10, c11
        v[0], v[1] = v0, (w1 - c10 * v0) / c11
        return
    for a in range(q):
        total = zty[j, a]
        for k in range(n_fixed):
            total -= ztx[j, a, k] * beta[k]
        resid[a] = total
        for b in range(q):
            acc = 0.0
            for k in range(q):
                acc += ztz[j, a, k] * lam[k, b]
            s_l[a, b] = acc
    for a in range(q):
        acc_w = 0.0
        for k in range(q):
            acc_w += lam[k, a] * resid[k]
        w[a] = acc_w
        for b in range(a + 1):
            acc = 0.0
            for k in range(q):
                acc += lam[k, a] * s_l[k, b]
            r[a, b] = acc / var + (1.0 if a == b else 0.0)
    for b in range(q):  # in-place lower Cholesky (lower triangle only)
        diagonal = r[b, b]
        for k in range(b):
            diagonal -= r[b, k] * r[b, k]
        r[b, b] = math.sqrt(diagonal)
        for a in range(b + 1, q):
            off = r[a, b]
            for k in range(b):
                off -= r[a, k] * r[b, k]
            r[a, b] = off / r[b, b]
    for a in range(q):
        acc = w[a]
        for k in range(a):
            acc -= r[a, k] * v[k]
        v[a] = acc / r[a, a]


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def conditional_solve(r: np.ndarray, v: np.ndarray, var: float, noise: np.ndarray, lam: np.ndarray,
                      u: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out = L R^-T (v / var + noise)``: the conditional mean (zero noise) or a draw of ``b_j``.

    ``u`` (size q) receives ``R^-T (v / var + noise)``, the effect on the scale of ``L^-1 b``.
    """
    q = v.shape[0]
    for a in range(q - 1, -1, -1):
        acc = v[a] / var + noise[a]
        for k in range(a + 1, q):
            acc -= r[k, a] * u[k]
        u[a] = acc / r[a, a]
    for a in range(q):
        acc = 0.0
        for k in range(q):
            acc += lam[a, k] * u[k]
        out[a] = acc


@numba.njit(cache=True, parallel=True, error_model="numpy")
def conditional_loop(
    ztz: np.ndarray,
    ztx: np.ndarray,
    zty: np.ndarray,
    yty_level: np.ndarray,
    xty_level: np.ndarray,
    xtx_level: np.ndarray,
    n_level: np.ndarray,
    fixef: np.ndarray,
    sigma: np.ndarray,
    chol: np.ndarray,
    noise: np.ndarray,
    effects_out: np.ndarray,
    loglik_out: np.ndarray,
    want_effects: bool,
    want_loglik: bool,
) -> None:  # pragma: no cover - compiled; tested through hierlm.bayes.conditional
    """Fill ``effects_out`` (S, J, Q) and/or ``loglik_out`` (S, J) for a chunk of draws."""
    n_draws, n_fixed = fixef.shape
    n_groups, q = zty.shape
    log_two_pi = math.log(2.0 * math.pi)
    for s in numba.prange(n_draws):
        lam = chol[s]
        beta = fixef[s]
        var = sigma[s] * sigma[s]
        s_l = np.empty((q, q))
        m = np.empty((q, q))
        resid = np.empty(q)
        w = np.empty(q)
        v = np.empty(q)
        u = np.empty(q)
        for j in range(n_groups):
            level_system(ztz, ztx, zty, j, beta, lam, var, s_l, m, resid, w, v)
            if want_loglik:
                logdet = 0.0
                quad = 0.0
                for a in range(q):
                    logdet += 2.0 * math.log(m[a, a])
                    quad += v[a] * v[a]
                rtr = yty_level[j]
                for k in range(n_fixed):
                    rtr -= 2.0 * beta[k] * xty_level[j, k]
                    for k2 in range(n_fixed):
                        rtr += beta[k] * xtx_level[j, k, k2] * beta[k2]
                loglik_out[s, j] = -0.5 * (
                    n_level[j] * (log_two_pi + math.log(var)) + logdet + (rtr - quad / var) / var
                )
            if want_effects:
                conditional_solve(m, v, var, noise[s, j], lam, u, effects_out[s, j])
