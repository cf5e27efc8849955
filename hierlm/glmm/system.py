"""The penalised weighted system of a GLMM: ``M = A'WA + P`` and its block Cholesky factor.

The random effects are spherical, ``b = Lambda u`` with ``u ~ N(0, I)``; the
linear predictor is ``eta = offset + X beta + A u`` with ``A = Z Lambda``.
PIRLS (:mod:`hierlm.glmm.pirls`) needs, at working weights ``w``, the
factor of ``M = A'WA + I``, solves with it and ``log|M|``.

Layout (as in the ML/REML kernel, :mod:`hierlm.design.crossprod`): the blocks
on the grouping factor with most levels form the *first* part, whose ``M``
block is block-diagonal with one ``q1 x q1`` block per level and is factored
level by level; every other random-effect column (crossed or nested
factors) and, in the joint PIRLS of the first optimisation stage, the fixed
effects form a dense *rest* of width ``m``. With ``Y = L11^-1 M12`` the Schur
complement ``S = M22 - Y'Y`` is ``m x m``, so a factorisation costs
``O(n1 q1^3 + n1 q1 m^2 + m^3)`` whatever the number of rows. The theta
layout is lme4's (:func:`hierlm.design.crossprod.theta_layout`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.design.blocks import Design
from hierlm.design.crossprod import ThetaLayout, theta_layout
from hierlm.errors import FitError

__all__ = ["Structure", "RestColumns", "Factor"]


@dataclass(frozen=True, eq=False)
class Structure:
    """What the system knows of a design: the random-effect layout, fixed once per fit.

    Attributes
    ----------
    layout : ThetaLayout
        lme4's theta layout.
    first : tuple of int
        Design blocks on the first grouping factor (the one with most levels).
    rest : tuple of int
        All other blocks.
    codes1 : numpy.ndarray
        Level of each row in the first factor.
    n1, q1 : int
        Levels and columns per level of the first part.
    rest_widths : tuple of int
        ``n_levels * q`` of each rest block.
    """

    design: Design
    layout: ThetaLayout
    first: tuple[int, ...]
    rest: tuple[int, ...]
    codes1: np.ndarray
    n1: int
    q1: int
    rest_widths: tuple[int, ...]
    indicator: sp.csr_matrix  # (n1, n): row i belongs to level codes1[i]

    @classmethod
    def of(cls, design: Design) -> Structure:
        """The structure of a design (its first factor is the one with most levels)."""
        if not design.blocks:
            raise FitError("The model has no random-effect term; fit a GLM instead.")
        for block in design.blocks:
            if not block.structure.is_lme4:
                raise FitError(
                    f"The covariance structure of ({block.term}) is not available for GLMMs; "
                    "use lme4's (x | g) or (x || g) bars.")
        sizes = {b.group: b.n_levels for b in design.blocks}
        group = max(sizes, key=lambda g: sizes[g])
        first = tuple(k for k, b in enumerate(design.blocks) if b.group == group)
        rest = tuple(k for k in range(len(design.blocks)) if k not in first)
        codes1 = np.asarray(design.blocks[first[0]].codes, dtype=np.int64)
        n1 = design.blocks[first[0]].n_levels
        n = design.n
        indicator = sp.csr_matrix((np.ones(n), (codes1, np.arange(n))), shape=(n1, n))
        return cls(design=design, layout=theta_layout(design.blocks), first=first, rest=rest,
                   codes1=codes1, n1=n1, q1=sum(design.blocks[k].q for k in first),
                   rest_widths=tuple(design.blocks[k].n_levels * design.blocks[k].q for k in rest),
                   indicator=indicator)

    @property
    def m_rest(self) -> int:
        """Random-effect columns of the rest."""
        return int(sum(self.rest_widths))

    @property
    def n_u(self) -> int:
        """Number of spherical random effects."""
        return self.n1 * self.q1 + self.m_rest

    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """Each block's lower-triangular relative covariance factor ``T_k``."""
        return self.layout.templates(np.asarray(theta, dtype=float),
                                     [b.q for b in self.design.blocks])

    def first_rows(self, templates: list[np.ndarray]) -> np.ndarray:
        """``(n, q1)``: row ``i`` of ``A`` restricted to its level of the first factor."""
        blocks = self.design.blocks
        return np.hstack([np.asarray(blocks[k].z, dtype=float) @ templates[k] for k in self.first])

    def rest_matrix(self, templates: list[np.ndarray]) -> sp.csc_matrix | None:
        """Sparse ``A`` of the rest blocks (level-major columns), or None without a rest."""
        if not self.rest:
            return None
        parts = []
        for k in self.rest:
            block = self.design.blocks[k]
            zt = np.asarray(block.z, dtype=float) @ templates[k]
            n, q = zt.shape
            rows = np.repeat(np.arange(n), q)
            cols = (block.codes[:, None] * q + np.arange(q)[None, :]).ravel()
            parts.append(sp.csc_matrix((zt.ravel(), (rows, cols)), shape=(n, block.n_levels * q)))
        return sp.hstack(parts, format="csc")

    def split_u(self, u1: np.ndarray, u2: np.ndarray) -> list[np.ndarray]:
        """Spherical effects per design block, each ``(n_levels, q)``."""
        out: list[np.ndarray] = [np.empty(0)] * len(self.design.blocks)
        start = 0
        for k in self.first:
            q = self.design.blocks[k].q
            out[k] = u1[:, start:start + q]
            start += q
        offset = 0
        for k, width in zip(self.rest, self.rest_widths, strict=True):
            out[k] = u2[offset:offset + width].reshape(self.design.blocks[k].n_levels, -1)
            offset += width
        return out


class RestColumns:
    """The rest columns ``R = [Z_rest Lambda_rest, X]``; index arrays when every rest block is scalar.

    Scalar blocks (one term, e.g. crossed or nested random intercepts) are held
    as ``(codes, z t)`` pairs, and ``R v``, ``R' s``, ``R'WR`` and the first
    factor's ``A1'WR`` are formed with ``bincount``: no sparse-matrix overhead in
    the PIRLS loop. Other rest blocks fall back to a sparse matrix.

    Parameters
    ----------
    structure : Structure
    templates : list of numpy.ndarray
        The blocks' ``T_k``.
    X : numpy.ndarray or None
        Fixed-effect columns appended (the joint PIRLS of stage 1).
    """

    def __init__(self, structure: Structure, templates: list[np.ndarray],
                 X: np.ndarray | None = None) -> None:
        blocks = structure.design.blocks
        self.scalar = all(blocks[k].q == 1 for k in structure.rest)
        self.parts = [(np.asarray(blocks[k].codes, dtype=np.int64),
                       np.asarray(blocks[k].z, dtype=float)[:, 0] * templates[k][0, 0],
                       blocks[k].n_levels) for k in structure.rest] if self.scalar else []
        self.sparse = None if self.scalar else structure.rest_matrix(templates)
        self.X = X
        self.m_z = structure.m_rest
        self.p = 0 if X is None else X.shape[1]
        self.shape = (structure.design.n, self.m_z + self.p)
        if not self.scalar and X is not None:
            assert self.sparse is not None
            self.sparse = sp.hstack([self.sparse, sp.csc_matrix(X)], format="csc")

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``R v``."""
        if not self.scalar:
            assert self.sparse is not None
            return np.asarray(self.sparse @ v)
        out = np.zeros(self.shape[0]) if self.X is None else self.X @ v[self.m_z:]
        start = 0
        for codes, zt, levels in self.parts:
            out = out + zt * v[start:start + levels][codes]
            start += levels
        return out

    def rmatvec(self, s: np.ndarray) -> np.ndarray:
        """``R' s``."""
        if not self.scalar:
            assert self.sparse is not None
            return np.asarray(self.sparse.T @ s)
        pieces = [np.bincount(codes, weights=zt * s, minlength=levels)
                  for codes, zt, levels in self.parts]
        if self.X is not None:
            pieces.append(self.X.T @ s)
        return np.concatenate(pieces) if pieces else np.zeros(0)

    def gram(self, w: np.ndarray) -> np.ndarray:
        """``R'WR`` (dense)."""
        if not self.scalar:
            assert self.sparse is not None
            return (self.sparse.T @ (sp.diags(w) @ self.sparse)).toarray()
        m = self.shape[1]
        out = np.zeros((m, m))
        offsets = np.cumsum([0] + [levels for _, _, levels in self.parts])
        for a, (ca, za, na) in enumerate(self.parts):
            oa = offsets[a]
            out[oa:oa + na, oa:oa + na][np.diag_indices(na)] = np.bincount(ca, weights=w * za * za,
                                                                            minlength=na)
            for b in range(a):
                cb, zb, nb = self.parts[b]
                ob = offsets[b]
                block = np.bincount(ca * nb + cb, weights=w * za * zb, minlength=na * nb)
                out[oa:oa + na, ob:ob + nb] = block.reshape(na, nb)
                out[ob:ob + nb, oa:oa + na] = block.reshape(na, nb).T
            if self.X is not None:
                wx = (w * za)[:, None] * self.X
                cross = np.stack([np.bincount(ca, weights=wx[:, j], minlength=na)
                                  for j in range(self.p)], axis=1)
                out[oa:oa + na, self.m_z:] = cross
                out[self.m_z:, oa:oa + na] = cross.T
        if self.X is not None:
            out[self.m_z:, self.m_z:] = self.X.T @ (w[:, None] * self.X)
        return out

    def first_cross(self, codes1: np.ndarray, n1: int, c: np.ndarray) -> np.ndarray:
        """``(n1, m)``: per level of the first factor, ``sum_i c_i r_i`` over its rows."""
        pieces = []
        for codes, zt, levels in self.parts:
            pieces.append(np.bincount(codes1 * levels + codes, weights=c * zt,
                                      minlength=n1 * levels).reshape(n1, levels))
        if self.X is not None:
            cx = c[:, None] * self.X
            pieces.append(np.stack([np.bincount(codes1, weights=cx[:, j], minlength=n1)
                                    for j in range(self.p)], axis=1))
        return np.hstack(pieces)


class Factor:
    """The block Cholesky factor of ``M = A'WA + P`` at one set of weights.

    Parameters
    ----------
    structure : Structure
        The design's layout.
    a1 : numpy.ndarray
        ``(n, q1)`` first-part rows of ``A``.
    rest : numpy.ndarray or scipy.sparse matrix or None
        ``(n, m)`` rest columns (random effects, then fixed effects in the joint mode).
    penalty : numpy.ndarray
        ``(m,)``: 1 for random-effect columns of the rest, 0 for fixed effects.
    w : numpy.ndarray
        Working weights, length n.
    """

    def __init__(self, structure: Structure, a1: np.ndarray,
                 rest: RestColumns | sp.spmatrix | np.ndarray | None,
                 penalty: np.ndarray, w: np.ndarray) -> None:
        n1, q1 = structure.n1, structure.q1
        self.n1, self.q1 = n1, q1
        aw = a1 * w[:, None]
        self.diagonal: np.ndarray | None = None  # M11 of a one-term first part, (n1,)
        if q1 == 1:
            self.diagonal = np.bincount(structure.codes1, weights=aw[:, 0] * a1[:, 0],
                                        minlength=n1) + 1.0
            root = np.sqrt(self.diagonal)
            self.l11 = root.reshape(n1, 1, 1)
            self.l11_inv = (1.0 / root).reshape(n1, 1, 1)
        else:
            outer = (aw[:, :, None] * a1[:, None, :]).reshape(a1.shape[0], q1 * q1)
            m11 = np.asarray(structure.indicator @ outer).reshape(n1, q1, q1) + np.eye(q1)
            self.l11 = np.linalg.cholesky(m11)
            self.l11_inv = np.linalg.inv(self.l11)
        self.logdet = (float(np.sum(np.log(self.diagonal))) if self.diagonal is not None
                       else 2.0 * float(np.sum(np.log(np.einsum("lii->li", self.l11)))))
        self.m = 0 if rest is None else int(rest.shape[1])
        self.y: np.ndarray | sp.csr_matrix | _RowScaled = np.zeros((n1 * q1, 0))
        self.ls = np.zeros((0, 0))
        if self.m:
            assert rest is not None
            if (isinstance(rest, RestColumns) and rest.scalar and q1 == 1
                    and structure.n1 == structure.design.n):
                # one row per level (an observation-level effect): Y = D R with D diagonal, so
                # Y'Y = R' D^2 R is one more weighted cross-product
                m22 = rest.gram(w)
                assert self.diagonal is not None
                order = np.argsort(structure.codes1)
                scale = aw[:, 0] / np.sqrt(self.diagonal[structure.codes1])
                self.y = _RowScaled(rest, scale, structure.codes1, order)
                correction = rest.gram(scale * scale)
            elif isinstance(rest, RestColumns) and rest.scalar and q1 == 1:
                m22 = rest.gram(w)
                assert self.diagonal is not None
                y = rest.first_cross(structure.codes1, n1, aw[:, 0]) / np.sqrt(self.diagonal)[:, None]
                self.y = y
                correction = y.T @ y
            elif isinstance(rest, RestColumns) or sp.issparse(rest):
                matrix = rest if not isinstance(rest, RestColumns) else (
                    rest.sparse if rest.sparse is not None else _as_sparse(rest))
                # crossed/nested factors: M12 = A1'WR and Y = L11^-1 M12 stay sparse (each level
                # of the first factor meets few levels of the others), so S costs little
                wr = (sp.diags(w) @ matrix).tocsr()
                m22 = (matrix.T @ wr).toarray()
                m12 = _first_cross_sparse(structure, a1, wr)
                y_sparse = (_block_inverse(self.l11_inv) @ m12).tocsr()
                self.y = y_sparse
                correction = (y_sparse.T @ y_sparse).toarray()
            else:
                assert isinstance(rest, np.ndarray)
                wr = rest * w[:, None]
                m22 = rest.T @ wr
                m12 = _first_cross(structure, a1, wr)
                y = np.einsum("lab,lbm->lam", self.l11_inv, m12.reshape(n1, q1, self.m))
                self.y = y.reshape(n1 * q1, self.m)
                correction = self.y.T @ self.y
            m22[np.diag_indices(self.m)] += penalty
            schur = m22 - correction
            try:
                self.ls = np.linalg.cholesky(schur)
            except np.linalg.LinAlgError:
                raise FitError("The penalised system is not positive definite (fixed effects "
                               "aliased with random effects, or a complete separation); check "
                               "the fixed-effect columns.") from None
            self.logdet += 2.0 * float(np.sum(np.log(np.diag(self.ls))))

    def solve(self, r1: np.ndarray, r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``M x = r`` for ``r = (r1 (n1, q1), r2 (m,))``."""
        if not self.m and self.diagonal is not None:
            return r1 / self.diagonal[:, None], np.zeros(0)
        z1 = np.einsum("lab,lb->la", self.l11_inv, r1)
        if not self.m:
            return np.einsum("lba,lb->la", self.l11_inv, z1), np.zeros(0)
        y = self.y
        yt_z = y.t_dot(z1.ravel()) if isinstance(y, _RowScaled) else y.T @ z1.ravel()
        z2 = sla.solve_triangular(self.ls, r2 - yt_z, lower=True, check_finite=False)
        x2 = sla.solve_triangular(self.ls, z2, lower=True, trans="T", check_finite=False)
        y_x = y.dot(x2) if isinstance(y, _RowScaled) else np.asarray(y @ x2)
        z1 = z1 - y_x.reshape(self.n1, self.q1)
        return np.einsum("lba,lb->la", self.l11_inv, z1), x2

    def inverse_first_blocks(self) -> np.ndarray:
        """``(n1, q1, q1)``: the first part's diagonal blocks of ``M^-1``."""
        base = np.einsum("lba,lbc->lac", self.l11_inv, self.l11_inv)
        if not self.m:
            return base
        # (M^-1)_11 = M11^-1 + L11^-T Y S^-1 Y' L11^-1
        y = (self.y.toarray() if isinstance(self.y, (sp.csr_matrix, _RowScaled))
             else np.asarray(self.y))
        ly = np.einsum("lba,lbm->lam", self.l11_inv, y.reshape(self.n1, self.q1, self.m))
        v = sla.solve_triangular(self.ls, ly.reshape(-1, self.m).T, lower=True, check_finite=False)
        v = v.T.reshape(self.n1, self.q1, self.m)
        return base + np.einsum("lam,lbm->lab", v, v)

    def inverse_rest(self) -> np.ndarray:
        """``(m, m)``: the rest's block of ``M^-1`` (``S^-1``)."""
        inv = sla.solve_triangular(self.ls, np.eye(self.m), lower=True, check_finite=False)
        return inv.T @ inv


class _RowScaled:
    """``Y = D R`` by level, for a first factor with one row per level (``Y[codes1[i]] = d_i r_i``)."""

    def __init__(self, rest: RestColumns, scale: np.ndarray, codes1: np.ndarray,
                 order: np.ndarray) -> None:
        self.rest, self.scale, self.codes1, self.order = rest, scale, codes1, order

    def t_dot(self, z: np.ndarray) -> np.ndarray:
        """``Y' z`` (z by level)."""
        return self.rest.rmatvec(self.scale * z[self.codes1])

    def dot(self, x: np.ndarray) -> np.ndarray:
        """``Y x`` (by level)."""
        out = np.empty(self.codes1.size)
        out[self.codes1] = self.scale * self.rest.matvec(x)
        return out

    def toarray(self) -> np.ndarray:
        """Dense ``Y`` (levels x rest columns)."""
        m = self.rest.shape[1]
        dense = np.column_stack([self.dot(np.eye(m)[:, j]) for j in range(m)]) if m else \
            np.zeros((self.codes1.size, 0))
        return dense


def _as_sparse(rest: RestColumns) -> sp.csc_matrix:
    """The sparse matrix of scalar rest columns (for the multi-term first-factor path)."""
    n = rest.shape[0]
    parts = [sp.csc_matrix((zt, (np.arange(n), codes)), shape=(n, levels))
             for codes, zt, levels in rest.parts]
    if rest.X is not None:
        parts.append(sp.csc_matrix(rest.X))
    return sp.hstack(parts, format="csc")


def _first_sparse(structure: Structure, a1: np.ndarray) -> sp.csr_matrix:
    """``A1'`` as a sparse ``(n1 q1, n)`` matrix (block-sparse by level)."""
    n, q1 = a1.shape
    rows = (structure.codes1[:, None] * q1 + np.arange(q1)[None, :]).ravel()
    return sp.csr_matrix((a1.ravel(), (rows, np.repeat(np.arange(n), q1))),
                         shape=(structure.n1 * q1, n))


def _first_cross_sparse(structure: Structure, a1: np.ndarray, wr: sp.csr_matrix) -> sp.csr_matrix:
    """``A1' W R`` as a sparse matrix."""
    return (_first_sparse(structure, a1) @ wr).tocsr()


def _block_inverse(l11_inv: np.ndarray) -> sp.csr_matrix:
    """The block-diagonal ``L11^-1`` as a sparse matrix."""
    n1, q1, _ = l11_inv.shape
    level = np.repeat(np.arange(n1), q1 * q1)
    a = np.tile(np.repeat(np.arange(q1), q1), n1)
    b = np.tile(np.tile(np.arange(q1), q1), n1)
    return sp.csr_matrix((l11_inv.ravel(), (level * q1 + a, level * q1 + b)),
                         shape=(n1 * q1, n1 * q1))


def _first_cross(structure: Structure, a1: np.ndarray, wr: sp.spmatrix | np.ndarray) -> np.ndarray:
    """``(n1 q1, m)``: ``A1' W R`` with ``A1`` block-sparse by level."""
    n, q1 = a1.shape
    rows = (structure.codes1[:, None] * q1 + np.arange(q1)[None, :]).ravel()
    a1_sparse = sp.csr_matrix((a1.ravel(), (rows, np.repeat(np.arange(n), q1))),
                              shape=(structure.n1 * q1, n))
    product = a1_sparse @ wr
    return np.asarray(product.todense()) if sp.issparse(product) else np.asarray(product)
