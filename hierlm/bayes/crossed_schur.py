"""The dense Schur complement of the compiled crossed likelihood: its pattern, factor, traces.

After the first (largest) grouping factor of a scalar-term design is eliminated level by
level (:mod:`hierlm.bayes.crossed_kernel`), the other factors' ``m_z`` columns leave

    S = Th (R'R - sum_l w_l c_l c_l') Th + I,     w_l = theta_1^2 / A_l,

dense. This module holds what works on ``S``: LAPACK's ``dpotrf``/``dpotri``/``dpotrs``
bound for numba (by symbol name, so the kernels are cached), the first factor's
contributions grouped by entry of ``S`` (:func:`schur_pairs`, built once), the
factorisation (:func:`factorize`) and the probed traces of ``M^{-1}`` that give the
log-determinant's gradient on wide ``S`` (:func:`probed_traces`).
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from numba.extending import get_cython_function_address

__all__ = ["lapack", "solve_many", "probed_traces", "factorize", "schur_pairs"]


# LAPACK through scipy's Cython exports, bound by symbol name (so numba can cache the kernel)
for _name in ("dpotrf", "dpotri", "dpotrs"):
    llvm.add_symbol(f"hierlm_{_name}",
                    get_cython_function_address("scipy.linalg.cython_lapack", _name))
_SIGNATURE = numba.types.void(*([numba.types.voidptr] * 5))
_DPOTRF: Any = numba.types.ExternalFunction("hierlm_dpotrf", _SIGNATURE)
_DPOTRI: Any = numba.types.ExternalFunction("hierlm_dpotri", _SIGNATURE)
_DPOTRS: Any = numba.types.ExternalFunction("hierlm_dpotrs",
                                            numba.types.void(*([numba.types.voidptr] * 8)))
@numba.njit(cache=True, error_model="numpy", nogil=True)
def lapack(routine: int, s: np.ndarray) -> int:  # pragma: no cover - compiled
    """``dpotrf`` (0) or ``dpotri`` (1) on the C-ordered lower triangle of ``s``, in place."""
    # C order is Fortran's transpose: Fortran's upper triangle is our lower one
    uplo = np.array([ord("U")], dtype=np.uint8)
    size = np.array([s.shape[0]], dtype=np.int32)
    info = np.zeros(1, dtype=np.int32)
    if routine == 0:
        _DPOTRF(uplo.ctypes, size.ctypes, s.ctypes, size.ctypes, info.ctypes)
    else:
        _DPOTRI(uplo.ctypes, size.ctypes, s.ctypes, size.ctypes, info.ctypes)
    return int(info[0])


@numba.njit(cache=True, error_model="numpy", nogil=True)
def solve_many(chol: np.ndarray, rhs: np.ndarray) -> int:  # pragma: no cover - compiled
    """``rhs <- S^{-1} rhs`` in place (LAPACK's ``dpotrs``), one right-hand side per row of ``rhs``.

    ``chol`` holds ``dpotrf``'s factor as :func:`lapack` leaves it.
    """
    uplo = np.array([ord("U")], dtype=np.uint8)
    size = np.array([chol.shape[0]], dtype=np.int32)
    n_rhs = np.array([rhs.shape[0]], dtype=np.int32)
    info = np.zeros(1, dtype=np.int32)
    _DPOTRS(uplo.ctypes, size.ctypes, n_rhs.ctypes, chol.ctypes, size.ctypes, rhs.ctypes,
            size.ctypes, info.ctypes)
    return int(info[0])


@numba.njit(cache=True, error_model="numpy", nogil=True)
def probed_traces(chol: np.ndarray, probes: np.ndarray, small_cols: np.ndarray, t1sq: float,
                   a: np.ndarray, th_r: np.ndarray, rest_factor: np.ndarray, ptr: np.ndarray,
                   ent_col: np.ndarray, ent_val: np.ndarray, trace: np.ndarray
                   ) -> int:  # pragma: no cover - compiled
    """Add ``tr_k M^{-1}`` to ``trace``: exact for ``small_cols``, by fixed probes elsewhere.

    ``small_cols`` (the columns of factors with few levels) take their diagonal of
    ``S^{-1}`` exactly from ``S^{-1} e_j``; the other rest factors' traces and the
    first factor's ``tr(S^{-1} H)``, ``H = sum_l (theta_1^2 / A_l^2) v_l v_l'``
    (``v_l = Th c_l``), are Hutchinson estimates over the rows of ``probes``
    (fixed Rademacher vectors: the result is a deterministic, smooth function of theta).
    """
    n1, mz = a.size, th_r.size
    m, n_small = probes.shape[0], small_cols.size
    rhs = np.zeros((m + n_small, mz))
    rhs[:m] = probes
    for k in range(n_small):
        rhs[m + k, small_cols[k]] = 1.0
    if solve_many(chol, rhs) != 0:
        return 1
    is_small = np.zeros(mz, dtype=np.bool_)
    for k in range(n_small):
        is_small[small_cols[k]] = True
        trace[rest_factor[small_cols[k]]] += rhs[m + k, small_cols[k]]
    # column-major copies: per column j, the m probes' entries side by side
    zt = np.ascontiguousarray(probes.T)
    xt = np.ascontiguousarray(rhs[:m].T)
    for j in range(mz):
        if not is_small[j]:
            acc = 0.0
            for i in range(m):
                acc += zt[j, i] * xt[j, i]
            trace[rest_factor[j]] += acc / m
    vz = np.empty(m)
    vx = np.empty(m)
    for level in range(n1):
        vz[:] = 0.0
        vx[:] = 0.0
        for e in range(ptr[level], ptr[level + 1]):
            c = ent_col[e]
            v = ent_val[e] * th_r[c]
            for i in range(m):
                vz[i] += v * zt[c, i]
                vx[i] += v * xt[c, i]
        quad = 0.0
        for i in range(m):
            quad += vz[i] * vx[i]
        trace[0] += 1.0 / a[level] + t1sq * quad / (m * a[level] * a[level])
    return 0


@numba.njit(cache=True, error_model="numpy", nogil=True)
def factorize(theta: np.ndarray, zz1: np.ndarray, rr: np.ndarray, rest_factor: np.ndarray,
               pairs: np.ndarray, pair_val: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:  # pragma: no cover
    """``A_l``, the rest columns' theta, the Cholesky factor of ``S`` (lower) and LAPACK's info.

    ``S = Th (R'R - sum_l w_l c_l c_l') Th + I`` with ``w_l = theta_1^2 / A_l``. The sum is
    formed entry by entry of its pattern (``pairs``, see :func:`schur_pairs`), so ``S`` is
    written in memory order instead of scattered level by level (about 20x faster on
    InstEval, whose ``S`` does not fit in cache).
    """
    mz = rr.shape[0]
    n_pairs = pairs[0]
    ptr = pairs[1:n_pairs + 2]
    row = pairs[n_pairs + 2:2 * n_pairs + 2]
    col = pairs[2 * n_pairs + 2:3 * n_pairs + 2]
    level = pairs[3 * n_pairs + 2:]
    t1sq = theta[0] * theta[0]
    a = t1sq * zz1 + 1.0
    w = t1sq / a
    th_r = np.empty(mz)
    for j in range(mz):
        th_r[j] = theta[rest_factor[j]]
    s = rr.copy()
    for k in range(n_pairs):
        acc = 0.0
        for i in range(ptr[k], ptr[k + 1]):
            acc += w[level[i]] * pair_val[i]
        s[row[k], col[k]] -= acc
    for i in range(mz):
        for j in range(i + 1):
            s[i, j] *= th_r[i] * th_r[j]
        s[i, i] += 1.0
    return a, th_r, s, lapack(0, s)


@numba.njit(cache=True, error_model="numpy")
def schur_pairs(ptr: np.ndarray, ent_col: np.ndarray, ent_val: np.ndarray, mz: int
                 ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The first factor's contributions to ``S``, grouped by entry of ``S``'s lower triangle.

    Returns ``pairs = [n_pairs | ptr (n_pairs + 1) | row | col | level]`` and the values
    ``c_li c_lj`` of each contribution, entries in row-major order.
    """
    n1 = ptr.size - 1
    total = 0
    for lev in range(n1):
        m = ptr[lev + 1] - ptr[lev]
        total += m * (m + 1) // 2
    key = np.empty(total, dtype=np.int64)
    lev_of = np.empty(total, dtype=np.int64)
    val = np.empty(total)
    at = 0
    for lev in range(n1):
        for i in range(ptr[lev], ptr[lev + 1]):
            for j in range(ptr[lev], i + 1):  # columns sorted: (ent_col[i], ent_col[j]) lower
                key[at] = ent_col[i] * mz + ent_col[j]
                lev_of[at] = lev
                val[at] = ent_val[i] * ent_val[j]
                at += 1
    order = np.argsort(key, kind="mergesort")
    key, lev_of, val = key[order], lev_of[order], val[order]
    n_pairs = 0
    for k in range(total):
        if k == 0 or key[k] != key[k - 1]:
            n_pairs += 1
    pairs = np.empty(3 * n_pairs + 2 + total, dtype=np.int64)
    pairs[0] = n_pairs
    p = -1
    for k in range(total):
        if k == 0 or key[k] != key[k - 1]:
            p += 1
            pairs[1 + p] = k
            pairs[n_pairs + 2 + p] = key[k] // mz
            pairs[2 * n_pairs + 2 + p] = key[k] % mz
    pairs[1 + n_pairs] = total
    pairs[3 * n_pairs + 2:] = lev_of
    return pairs, val
