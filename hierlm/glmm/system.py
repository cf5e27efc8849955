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

__all__ = ["Structure", "Factor"]


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

    def __init__(self, structure: Structure, a1: np.ndarray, rest: sp.spmatrix | np.ndarray | None,
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
        self.y = np.zeros((n1 * q1, 0))
        self.ls = np.zeros((0, 0))
        if self.m:
            assert rest is not None
            if sp.issparse(rest):
                wr = sp.diags(w) @ rest
                m22 = np.asarray((rest.T @ wr).todense())
                # M12 per level: sum over the level's rows of a1_i (w_i r_i)'
                m12 = _first_cross(structure, a1, wr)
            else:
                wr = rest * w[:, None]
                m22 = rest.T @ wr
                m12 = _first_cross(structure, a1, wr)
            m22[np.diag_indices(self.m)] += penalty
            y = np.einsum("lab,lbm->lam", self.l11_inv, m12.reshape(n1, q1, self.m))
            self.y = y.reshape(n1 * q1, self.m)
            schur = m22 - self.y.T @ self.y
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
        z2 = sla.solve_triangular(self.ls, r2 - self.y.T @ z1.ravel(), lower=True,
                                  check_finite=False)
        x2 = sla.solve_triangular(self.ls, z2, lower=True, trans="T", check_finite=False)
        z1 = z1 - (self.y @ x2).reshape(self.n1, self.q1)
        return np.einsum("lba,lb->la", self.l11_inv, z1), x2

    def inverse_first_blocks(self) -> np.ndarray:
        """``(n1, q1, q1)``: the first part's diagonal blocks of ``M^-1``."""
        base = np.einsum("lba,lbc->lac", self.l11_inv, self.l11_inv)
        if not self.m:
            return base
        # (M^-1)_11 = M11^-1 + L11^-T Y S^-1 Y' L11^-1
        ly = np.einsum("lba,lbm->lam", self.l11_inv, self.y.reshape(self.n1, self.q1, self.m))
        v = sla.solve_triangular(self.ls, ly.reshape(-1, self.m).T, lower=True, check_finite=False)
        v = v.T.reshape(self.n1, self.q1, self.m)
        return base + np.einsum("lam,lbm->lab", v, v)

    def inverse_rest(self) -> np.ndarray:
        """``(m, m)``: the rest's block of ``M^-1`` (``S^-1``)."""
        inv = sla.solve_triangular(self.ls, np.eye(self.m), lower=True, check_finite=False)
        return inv.T @ inv


def _first_cross(structure: Structure, a1: np.ndarray, wr: sp.spmatrix | np.ndarray) -> np.ndarray:
    """``(n1 q1, m)``: ``A1' W R`` with ``A1`` block-sparse by level."""
    n, q1 = a1.shape
    rows = (structure.codes1[:, None] * q1 + np.arange(q1)[None, :]).ravel()
    a1_sparse = sp.csr_matrix((a1.ravel(), (rows, np.repeat(np.arange(n), q1))),
                              shape=(structure.n1 * q1, n))
    product = a1_sparse @ wr
    return np.asarray(product.todense()) if sp.issparse(product) else np.asarray(product)
