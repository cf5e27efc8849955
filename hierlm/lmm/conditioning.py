"""Condition the fixed-effect columns before the cross-products, report on the original scale.

The ML/REML kernel works on the cross-products ``X'X``, ``Z'X``, ``X'y``. A
predictor spanning 1..10,000 (or its powers, up to 1e12) next to an
intercept makes those sums large and nearly collinear while the Schur
complement the criterion needs is their small difference, and digits
cancel: the REML criterion was off by up to 1e-3. The kernel here fits an
orthonormal basis of the same column space instead, ``X = Q R`` (Householder
QR; with the intercept first, the other columns are centred, scaled and made
orthogonal to each other):

    X_s = Q = X A,   A = R^-1,

a reparametrisation: the likelihood, sigma, the random effects and their
conditional variances are unchanged, and

    beta = A beta_s,      (R_X'R_X)^-1 = A (R_Xs'R_Xs)^-1 A',
    R_X = R_Xs R,         log|R_X|^2 = log|R_Xs|^2 + 2 sum_j log|R_jj|

carry the fixed-effect results back to the original columns (the last one
keeps the REML criterion exactly lme4's). Everything downstream (fixef,
vcov, Satterthwaite, Kenward-Roger, profiles, predict) sees original-scale
numbers only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg as sla

from hierlm.design.blocks import Design
from hierlm.design.crossprod import crossproducts
from hierlm.lmm.objective import Components, LmmObjective, Solution

__all__ = ["FixedBasis", "ConditionedObjective", "conditioned_objective"]


@dataclasses.dataclass(frozen=True, eq=False)
class FixedBasis:
    """The map ``X_s = X R^-1`` between the original and the conditioned fixed-effect columns.

    Attributes
    ----------
    q : numpy.ndarray
        Orthonormal columns spanning X, shape (n, p).
    r : numpy.ndarray
        Upper-triangular ``R`` with ``X = q r``, shape (p, p).
    """

    q: np.ndarray
    r: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray) -> FixedBasis:
        """Householder QR of ``X`` (signs chosen so that ``R`` has a positive diagonal)."""
        q, r = np.linalg.qr(np.asarray(X, dtype=float))
        signs = np.where(np.diag(r) < 0, -1.0, 1.0)
        return cls(q=q * signs, r=r * signs[:, None])

    @property
    def log_scale(self) -> float:
        """``sum_j log|R_jj|`` (``-log|det A|``)."""
        return float(np.sum(np.log(np.abs(np.diag(self.r)))))

    def to_original(self, beta: np.ndarray) -> np.ndarray:
        """``beta = R^-1 beta_s`` (a triangular solve)."""
        return sla.solve_triangular(self.r, beta, lower=False)

    def vcov_to_original(self, unscaled: np.ndarray) -> np.ndarray:
        """``R^-1 U R^-T``, symmetrised."""
        left = sla.solve_triangular(self.r, unscaled, lower=False)
        out = sla.solve_triangular(self.r, left.T, lower=False)
        return 0.5 * (out + out.T)


class ConditionedObjective(LmmObjective):
    """:class:`~hierlm.lmm.objective.LmmObjective` of a design, computed on an orthonormal basis of X.

    Every method returns the numbers of the original design; only the digits
    lost to cancellation are different.

    Parameters
    ----------
    design : Design
        The design to fit.
    """

    def __init__(self, design: Design) -> None:
        self.basis = FixedBasis.of(design.X)
        super().__init__(crossproducts(dataclasses.replace(design, X=self.basis.q)))

    def components(self, theta: np.ndarray, reml: bool = True,
                   gradient: bool = True) -> Components:
        """As :meth:`LmmObjective.components`, with ``log|R_X|^2`` of the original columns."""
        comp = super().components(theta, reml, gradient)
        return dataclasses.replace(comp, ldRX2=comp.ldRX2 + 2.0 * self.basis.log_scale)

    def solution(self, theta: np.ndarray, reml: bool = True, cond_var: bool = True) -> Solution:
        """As :meth:`LmmObjective.solution`, with beta, ``R_X`` and its inverse of the original columns."""
        sol = super().solution(theta, reml, cond_var)
        ld_rx2 = sol.ldRX2 + 2.0 * self.basis.log_scale
        value = self.criterion(Components(sol.theta, reml, sol.ldL2, ld_rx2, sol.r2, None, None))
        return dataclasses.replace(
            sol, value=value, ldRX2=ld_rx2, beta=self.basis.to_original(sol.beta),
            R_X=sol.R_X @ self.basis.r, unscaled_vcov=self.basis.vcov_to_original(sol.unscaled_vcov))


def conditioned_objective(design: Design) -> LmmObjective:
    """The ML/REML kernel of ``design``, on an orthonormal basis of X (plain when X has no columns)."""
    if design.p == 0:
        return LmmObjective(crossproducts(design))
    return ConditionedObjective(design)
