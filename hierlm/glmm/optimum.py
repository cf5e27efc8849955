"""The record of a GLMM optimisation: estimates, modes, Hessian and how the optimiser ended."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.glmm.pirls import Mode

__all__ = ["GlmmOptimum"]


@dataclass(frozen=True, eq=False)
class GlmmOptimum:
    """Where the optimiser stopped, and how.

    Attributes
    ----------
    theta, beta : numpy.ndarray
        Covariance parameters (lme4's theta) and fixed effects.
    dispersion : float or None
        The family's dispersion (NB2 theta), None without one.
    deviance : float
        ``-2 log L`` (Laplace or AGQ) at the optimum.
    mode : Mode
        The conditional modes at the optimum.
    hessian : numpy.ndarray or None
        Numerical Hessian of the deviance over ``(theta, beta[, log dispersion])``.
    vcov_beta : numpy.ndarray
        Covariance of the fixed effects.
    vcov_source : str
        ``"Hessian"`` or ``"RX"`` (the fallback).
    converged : bool
    message : str
    evaluations : int
        PIRLS runs over both stages and the Hessian.
    nagq : int
    """

    theta: np.ndarray
    beta: np.ndarray
    dispersion: float | None
    deviance: float
    mode: Mode
    hessian: np.ndarray | None
    vcov_beta: np.ndarray
    vcov_source: str
    converged: bool
    message: str
    evaluations: int
    nagq: int
