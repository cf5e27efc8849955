"""Kenward-Roger's quantities from per-group cross-products, never an n x n matrix.

When every random-effect block is an ``lme4``-type (``us``/``diag``) block on one
and the same grouping factor and the residuals are independent, the marginal
covariance is block-diagonal over the levels ``g`` of that factor,
``V_g = Z_g G Z_g' + s^2 I``, and it is linear in its covariance parameters
(the entries of ``G``, then ``s^2``; :mod:`hierlm.lmm.kenward_roger`). With
``T_g = G (s^2 I + A_g G)^-1`` and ``A_g = Z_g'Z_g`` the inverse is
``V_g^-1 = s^-2 (I - Z_g T_g Z_g')`` (push-through identity), so with
``N_g = I - Z_g T_g Z_g'`` and ``W_g = [Z_g X_g]`` every product Kenward-Roger
needs is a block of ``W_g' V_g^-k W_g = s^-2k W_g' N_g^k W_g``, whose
recursion ``S_k = S_(k-1) - S_(k-1)[:, Z] T_g S_0[Z, :]`` starts from the
group's Gram matrix ``S_0 = W_g'W_g``. With ``H = Z'V^-1 Z``, ``F = Z'V^-1 X``
and ``E_r`` the derivative of ``G`` in its r-th entry:

* ``P_r = -sum_g F' E_r F``; residual: ``-X'V^-2 X``;
* ``Q_rs = sum_g (E_r F)' H (E_s F)``, ``Q_r,res = sum_g (E_r F)' Z'V^-2 X``,
  ``Q_res,res = X'V^-3 X``;
* ``tr(V^-1 G_r V^-1 G_s) = sum_g tr(H E_r H E_s)``, with the residual
  ``sum_g tr(E_r Z'V^-2 Z)`` and ``tr(V^-2) = s^-4 (n - sum_g [2 tr(T A) - tr(T A T A)])``.

Only the group Gram matrices and the number of observations ``n`` enter, so
the same code serves a design of rows and a row-less design of data held by
an engine (whose square-root rows have the cells' cross-products).
The cost is O(groups x (q + p)^3).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import block_diag

__all__ = ["GroupedTerms", "grouped_eligible", "grouped_terms"]


class GroupedTerms:
    """``P_r``, ``Q_rs`` and the traces ``tr(V^-1 G_r V^-1 G_s)`` of Kenward-Roger's correction.

    Attributes
    ----------
    P : list of numpy.ndarray
        ``P_r`` (p x p) per covariance parameter, the residual variance last.
    Q : dict
        ``Q_rs`` (p x p) keyed by ``(r, s)``.
    traces : numpy.ndarray
        ``tr(V^-1 G_r V^-1 G_s)`` (k x k).
    """

    def __init__(self, P: list[np.ndarray], Q: dict[tuple[int, int], np.ndarray],
                 traces: np.ndarray) -> None:
        self.P = P
        self.Q = Q
        self.traces = traces


def grouped_eligible(design: Any) -> bool:
    """True when the marginal covariance is block-diagonal over one factor and linear in ``gamma``."""
    if design.residual is not None or not design.blocks:
        return False
    if not all(block.structure.is_lme4 for block in design.blocks):
        return False
    first = np.asarray(design.blocks[0].codes)
    return all(block.group == design.blocks[0].group and np.array_equal(np.asarray(block.codes), first)
               for block in design.blocks[1:])


def _entry_matrices(design: Any) -> list[np.ndarray]:
    """``E_r = dG / d gamma_r`` in the stacked random-effect space, block by block, column by column."""
    sizes = [block.q for block in design.blocks]
    total = sum(sizes)
    out = []
    offset = 0
    for block in design.blocks:
        for b in range(block.q):
            for a in range(b, block.q):
                if block.correlated or a == b:
                    matrix = np.zeros((total, total))
                    matrix[offset + a, offset + b] = matrix[offset + b, offset + a] = 1.0
                    out.append(matrix)
        offset += block.q
    return out


def _group_grams(design: Any) -> np.ndarray:
    """``W_g' W_g`` per level, ``W = [Z X]`` (levels, q + p, q + p), one weighted count per entry."""
    codes = np.asarray(design.blocks[0].codes)
    z = np.column_stack([np.asarray(block.z, dtype=float) for block in design.blocks])
    w = np.column_stack([z, np.asarray(design.X, dtype=float)])
    levels = design.blocks[0].n_levels
    k = w.shape[1]
    grams = np.empty((levels, k, k))
    for a in range(k):
        for b in range(a + 1):
            grams[:, a, b] = grams[:, b, a] = np.bincount(codes, weights=w[:, a] * w[:, b],
                                                          minlength=levels)
    return grams


def grouped_terms(design: Any, covariances: list[np.ndarray], sigma2: float) -> GroupedTerms:
    """Kenward-Roger's ``P``, ``Q`` and traces from the per-group cross-products.

    Parameters
    ----------
    design : Design
        A design for which :func:`grouped_eligible` holds (rows or row-less).
    covariances : list of numpy.ndarray
        Each block's covariance matrix at the estimate.
    sigma2 : float
        The residual variance.

    Returns
    -------
    GroupedTerms
    """
    G = block_diag(*[np.asarray(c, dtype=float) for c in covariances])
    q = G.shape[0]
    S0 = _group_grams(design)
    A = S0[:, :q, :q]
    M = sigma2 * np.eye(q) + A @ G  # T = G M^-1 = (M^-T G)^T
    T = np.swapaxes(np.linalg.solve(np.swapaxes(M, 1, 2), np.broadcast_to(G, M.shape)), 1, 2)
    S = [S0]
    for _ in range(3):
        S.append(S[-1] - S[-1][:, :, :q] @ T @ S0[:, :q, :])
    H = S[1][:, :q, :q] / sigma2
    F = S[1][:, :q, q:] / sigma2
    ZV2X = S[2][:, :q, q:] / sigma2**2
    ZV2Z = S[2][:, :q, :q] / sigma2**2
    XV2X = S[2][:, q:, q:].sum(axis=0) / sigma2**2
    XV3X = S[3][:, q:, q:].sum(axis=0) / sigma2**3
    E = _entry_matrices(design)
    EF = [e @ F for e in E]
    HEF = [H @ ef for ef in EF]
    HE = [H @ e for e in E]
    P = [-np.einsum("gai,gaj->ij", F, ef) for ef in EF] + [-XV2X]
    P = [(p + p.T) / 2.0 for p in P]
    k = len(E) + 1
    res = k - 1
    Q: dict[tuple[int, int], np.ndarray] = {}
    traces = np.empty((k, k))
    for r in range(len(E)):
        for s in range(len(E)):
            Q[r, s] = np.einsum("gai,gaj->ij", EF[r], HEF[s])
            traces[r, s] = float(np.einsum("gab,gba->", HE[r], HE[s]))
        Q[r, res] = np.einsum("gai,gaj->ij", EF[r], ZV2X)
        Q[res, r] = Q[r, res].T
        traces[r, res] = traces[res, r] = float(np.einsum("ab,gba->", E[r], ZV2Z))
    Q[res, res] = XV3X
    TA = T @ A
    correction = 2.0 * np.einsum("gaa->", TA) - np.einsum("gab,gba->", TA, TA)
    traces[res, res] = (design.n - float(correction)) / sigma2**2
    return GroupedTerms(P=P, Q=Q, traces=traces)
