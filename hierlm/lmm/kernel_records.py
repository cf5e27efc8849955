"""What an ML/REML kernel returns: the criterion's components at theta, and the solution there.

Every kernel (:class:`~hierlm.lmm.objective.LmmObjective`, its conditioned
twin, the grouped and shared-residual criteria) answers ``components`` with a
:class:`Components` and ``solution`` with a :class:`Solution`, so the fit,
the likelihood and the results read one record type whatever kernel made it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Components", "Solution"]


@dataclass(frozen=True, eq=False)
class Components:
    """The pieces of the criterion at one theta.

    Attributes
    ----------
    theta : numpy.ndarray
        Where they were evaluated.
    reml : bool
        Whether ``logdet`` includes ``log|R_X|^2``.
    ldL2, ldRX2 : float
        ``log|L|^2`` and ``log|R_X|^2``.
    r2 : float
        Penalised residual sum of squares.
    d_logdet, d_r2 : numpy.ndarray or None
        Gradients of ``ldL2 (+ ldRX2 for REML)`` and of ``r2`` w.r.t. theta.
    """

    theta: np.ndarray
    reml: bool
    ldL2: float
    ldRX2: float
    r2: float
    d_logdet: np.ndarray | None
    d_r2: np.ndarray | None

    @property
    def logdet(self) -> float:
        """The log-determinant term of the criterion (with ``R_X`` for REML)."""
        return self.ldL2 + (self.ldRX2 if self.reml else 0.0)


@dataclass(frozen=True, eq=False)
class Solution:
    """Everything derived from the penalised least-squares solution at one theta.

    Attributes
    ----------
    theta : numpy.ndarray
        The covariance parameters.
    reml : bool
        Criterion used for ``sigma`` and ``value``.
    value : float
        Profiled deviance (ML) or REML criterion.
    ldL2, ldRX2, r2 : float
        ``log|L|^2``, ``log|R_X|^2``, penalised residual sum of squares.
    sigma : float
        Residual standard deviation: ``sqrt(r2 / n)`` or ``sqrt(r2 / (n - p))``.
    beta : numpy.ndarray
        Fixed effects.
    R_X : numpy.ndarray
        Upper-triangular ``p x p`` factor with ``R_X'R_X`` = the Schur complement of X.
    unscaled_vcov : numpy.ndarray
        ``(R_X'R_X)^{-1}``; ``vcov(beta) = sigma^2 * unscaled_vcov``.
    u, b : list of numpy.ndarray
        Spherical and conditional random effects per design block, each of
        shape ``(n_levels, q)``.
    cond_var : list of numpy.ndarray or None
        Conditional covariance of ``b`` given ``y`` (``sigma^2 Lambda (L L')^{-1}
        Lambda'``, lme4's ``condVar``) per design block, shape ``(n_levels, q, q)``.
    """

    theta: np.ndarray
    reml: bool
    value: float
    ldL2: float
    ldRX2: float
    r2: float
    sigma: float
    beta: np.ndarray
    R_X: np.ndarray
    unscaled_vcov: np.ndarray
    u: list[np.ndarray]
    b: list[np.ndarray]
    cond_var: list[np.ndarray] | None
