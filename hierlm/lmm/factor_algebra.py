"""Products with the relative covariance factor of the remaining factors, and a Cholesky inverse.

``Lambda_R`` is block diagonal, one template per level of each factor after
the first (:class:`~hierlm.design.crossprod.CrossProducts`' ``rest``); these
functions scale rows and columns of matrices in the layout of ``R`` (and the
coupling values ``Z_1'R``) by it, for the factorisation and the gradient of
:class:`~hierlm.lmm.objective.LmmObjective`.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from hierlm.design.crossprod import CrossProducts
from hierlm.errors import FitError

__all__ = ["rest_scale_vector", "scale_both", "scale_rows", "scaled_vals", "sigma_inverse"]


def rest_scale_vector(cp: CrossProducts, templates: list[np.ndarray]) -> np.ndarray:
    """Diagonal of ``Lambda_R`` when every remaining template is diagonal."""
    scale = np.ones(cp.m)
    for f, off, t in zip(cp.rest, cp.rest_offsets, templates[1:], strict=True):
        scale[off:off + f.n_levels * f.q] = np.tile(np.diagonal(t), f.n_levels)
    return scale


def scale_rows(cp: CrossProducts, mat: np.ndarray, templates: list[np.ndarray]) -> np.ndarray:
    """Return ``Lambda_R' mat`` (rows of the random-effect part of R scaled)."""
    out = mat.copy()
    for f, off, t in zip(cp.rest, cp.rest_offsets, templates[1:], strict=True):
        size = f.n_levels * f.q
        if size == 0 or off >= mat.shape[0]:
            continue
        seg = mat[off:off + size]
        if f.q == 1:
            out[off:off + size] = t[0, 0] * seg
        else:
            block = seg.reshape(f.n_levels, f.q, -1)
            out[off:off + size] = np.einsum("ba,lbj->laj", t, block).reshape(size, -1)
    return out


def scale_both(cp: CrossProducts, mat: np.ndarray, templates: list[np.ndarray],
               rest_diagonal: bool) -> np.ndarray:
    """Return ``Lambda_R' mat Lambda_R`` (``rest_diagonal``: every remaining template is diagonal)."""
    if rest_diagonal:
        scale = rest_scale_vector(cp, templates)
        out = mat * scale[:, None]
        out *= scale[None, :]
        return out
    left = scale_rows(cp, mat, templates)
    return scale_rows(cp, left.T.copy(), templates).T


def scaled_vals(cp: CrossProducts, templates: list[np.ndarray]) -> np.ndarray:
    """Return ``Z_1'R Lambda_R`` in the coupling layout, shape ``(q1, nnz)``."""
    out = cp.vals.copy()
    q1 = cp.first.q
    for f, pos, t in zip(cp.rest, cp.rest_positions, templates[1:], strict=True):
        if f.q == 1:
            out[:, pos] *= t[0, 0]
        else:
            block = cp.vals[:, pos].reshape(q1, -1, f.q)
            out[:, pos] = (block @ t).reshape(q1, -1)
    return out


def sigma_inverse(chol: np.ndarray, size: int) -> np.ndarray:
    """Return the inverse of ``chol[:size, :size] chol[:size, :size]'``."""
    if size == 0:
        return np.zeros((0, 0))
    inv, info = lapack.dpotri(chol[:size, :size], lower=1)
    if info != 0:
        raise FitError(f"Could not invert the Cholesky factor (LAPACK info {info}).")
    # dpotri fills the lower triangle; the upper one is the (clean, zero) input.
    out = inv + inv.T
    out[np.diag_indices(size)] *= 0.5
    return out
