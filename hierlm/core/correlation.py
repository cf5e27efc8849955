"""Correlation matrices from free variables: the LKJ/C-vine map of Lewandowski et al. (2009).

A ``q x q`` correlation matrix is parametrised by ``q (q - 1) / 2`` free
values ``raw``, the arctanh of canonical partial correlations, stored row by
row (:func:`lkj_pair_positions`). The Bayesian engine samples ``raw``; the
profile likelihood of ML/REML fits (:mod:`hierlm.lmm.profile`) moves along
the same coordinates, so both use this one map.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["cholesky_from_raw", "lkj_pair_positions"]


def lkj_pair_positions(q: int) -> list[tuple[int, int]]:
    """Return the (row, column) of each free value of the LKJ map, in storage order."""
    return [(i, j) for i in range(q) for j in range(i)]


def cholesky_from_raw(raw: np.ndarray, q: int) -> np.ndarray:
    """Map free LKJ variables (..., q (q - 1) / 2) to correlation Cholesky factors (..., q, q).

    Row ``i`` is filled left to right with ``L[i, j] = cpc * sqrt(1 - sum_{k<j} L[i, k]^2)``
    and the diagonal that gives the row unit length, ``cpc = tanh(raw)``.
    """
    raw = np.asarray(raw, dtype=float)
    if raw.ndim == 1:
        return _one_cholesky_from_raw(raw.tolist(), q)
    cpc = np.tanh(raw)
    chol = np.zeros((*raw.shape[:-1], q, q))
    chol[..., 0, 0] = 1.0
    for k, (i, j) in enumerate(lkj_pair_positions(q)):
        used = np.sum(chol[..., i, :j] ** 2, axis=-1)
        chol[..., i, j] = cpc[..., k] * np.sqrt(np.clip(1.0 - used, 0.0, None))
        if j == i - 1:
            rest = 1.0 - np.sum(chol[..., i, :i] ** 2, axis=-1)
            chol[..., i, i] = np.sqrt(np.clip(rest, 0.0, None))
    return chol


def _one_cholesky_from_raw(raw: list[float], q: int) -> np.ndarray:
    """The same map for one vector, in plain floats (profiles call it at every step)."""
    chol = [[0.0] * q for _ in range(q)]
    chol[0][0] = 1.0
    for k, (i, j) in enumerate(lkj_pair_positions(q)):
        row = chol[i]
        used = sum(v * v for v in row[:j])
        row[j] = math.tanh(raw[k]) * math.sqrt(max(1.0 - used, 0.0))
        if j == i - 1:
            row[i] = math.sqrt(max(1.0 - sum(v * v for v in row[:i]), 0.0))
    return np.array(chol)
