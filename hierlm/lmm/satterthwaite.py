"""Satterthwaite's denominator degrees of freedom for fixed effects (lmerTest's method).

lmerTest (Kuznetsova, Brockhoff & Christensen 2017) works with the variance
parameters ``varpar = (theta, sigma)`` and the *unprofiled* criterion

    dev(theta, sigma) = log|L|^2 + r2(theta) / sigma^2 + n log(2 pi sigma^2)
                        [REML: + log|R_X|^2 - p log(2 pi sigma^2)],

i.e. -2 log-likelihood (or restricted log-likelihood) as a function of the
variance parameters with beta profiled out. At the optimum:

* ``A = 2 H^+``, with ``H`` the Hessian of ``dev`` w.r.t. ``varpar`` and ``H^+``
  its pseudo-inverse over eigenvalues above 1e-8 (as lmerTest), is the
  asymptotic covariance of ``varpar``. Unlike lmerTest, the eigenvalues are
  those of the Hessian in scale-free variables (``theta`` times the scale of
  its random-effect column, ``sigma`` relative to its estimate), so that the
  tolerance, the warnings and the df do not change when ``y`` or a predictor
  is measured in other units; when no eigenvalue is dropped ``H^+ = H^-1``
  either way;
* ``J_k = d Var(beta) / d varpar_k``, with ``Var(beta) = sigma^2 (R_X'R_X)^{-1}``;
* for a contrast ``L``: ``v = L' Var(beta) L``, ``g_k = L' J_k L`` and
  ``df = 2 v^2 / (g' A g)``.

The theta-theta block of ``H`` is the central difference of the kernel's
exact gradient; the sigma rows are analytic. ``J_k`` for theta entries uses
central differences (step 1e-4 relative) of ``(R_X'R_X)^{-1}``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from hierlm.core.warn import PACKAGE_DIR
from hierlm.errors import ConvergenceWarning, FitError
from hierlm.lmm.parameters import Criterion

__all__ = ["VarparCovariance", "varpar_covariance", "satterthwaite_df", "contrast_test"]

_EIGEN_TOL = 1e-8


@dataclass(frozen=True, eq=False)
class VarparCovariance:
    """What Satterthwaite's approximation needs, computed once per fit.

    Attributes
    ----------
    hessian : numpy.ndarray
        Hessian of ``dev(theta, sigma)`` at the optimum, ``(k+1, k+1)``.
    vcov_varpar : numpy.ndarray
        ``2 H^+``: asymptotic covariance of ``(theta, sigma)``.
    jacobian : numpy.ndarray
        ``(k+1, p, p)``: derivatives of ``Var(beta)`` w.r.t. each variance parameter.
    vcov_beta : numpy.ndarray
        ``Var(beta)`` at the optimum.
    """

    hessian: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: np.ndarray
    vcov_beta: np.ndarray


def _grad_theta(kernel: Criterion, theta: np.ndarray, sigma: float, reml: bool) -> np.ndarray:
    comp = kernel.components(theta, reml, gradient=True)
    assert comp.d_logdet is not None and comp.d_r2 is not None
    return comp.d_logdet + comp.d_r2 / sigma ** 2


def _unscaled_vcov(kernel: Criterion, theta: np.ndarray, reml: bool) -> np.ndarray:
    return kernel.solution(theta, reml, cond_var=False).unscaled_vcov


def _step(x: float, unit: float = 1.0) -> float:
    """Central-difference step for ``x``, relative in the scale-free variable ``x * unit``."""
    return 1e-4 * max(abs(x) * unit, 1e-2) / unit


def varpar_covariance(kernel: Criterion, theta: np.ndarray, reml: bool,
                      warn: bool = True,
                      column_scale: np.ndarray | None = None) -> VarparCovariance:
    """Hessian of lmerTest's ``dev(theta, sigma)``, its pseudo-inverse and ``dVar(beta)``.

    Parameters
    ----------
    kernel : LmmObjective or StructuredObjective
        The model's criterion.
    theta : numpy.ndarray
        Estimated theta.
    reml : bool
        Whether the fit (and so ``dev``) is REML.
    warn : bool
        Warn, as lmerTest does, about negative or near-zero Hessian eigenvalues.
    column_scale : numpy.ndarray, optional
        Scale of each theta entry's random-effect column
        (:func:`hierlm.lmm.fit.theta_column_scale`); ones when omitted.

    Returns
    -------
    VarparCovariance
    """
    theta = np.asarray(theta, dtype=float)
    k = theta.size
    unit = np.ones(k) if column_scale is None else np.asarray(column_scale, dtype=float)
    sol = kernel.solution(theta, reml, cond_var=False)
    sigma, r2 = sol.sigma, sol.r2
    dof = kernel.cp.n - (kernel.cp.p if reml else 0)
    comp = kernel.components(theta, reml, gradient=True)
    assert comp.d_r2 is not None

    hess = np.zeros((k + 1, k + 1))
    for j in range(k):
        h = _step(theta[j], unit[j])
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        hess[:k, j] = (_grad_theta(kernel, up, sigma, reml)
                       - _grad_theta(kernel, down, sigma, reml)) / (2 * h)
    hess[:k, :k] = 0.5 * (hess[:k, :k] + hess[:k, :k].T)
    hess[:k, k] = hess[k, :k] = -2.0 * comp.d_r2 / sigma ** 3
    hess[k, k] = 6.0 * r2 / sigma ** 4 - 2.0 * dof / sigma ** 2

    # scale-free variables (theta * unit, sigma / sigma_hat): H_s = D H D
    d = np.append(1.0 / unit, sigma)
    evals, evecs = np.linalg.eigh(d[:, None] * hess * d[None, :])
    if warn:
        negative = evals[evals < -_EIGEN_TOL]
        near_zero = evals[np.abs(evals) < _EIGEN_TOL]
        if negative.size:
            warnings.warn(
                f"Model failed to converge with {negative.size} negative Hessian eigenvalue(s): "
                + " ".join(f"{v:.1e}" for v in negative), ConvergenceWarning,
                skip_file_prefixes=(PACKAGE_DIR,))
        if near_zero.size:
            warnings.warn(
                f"Model may not have converged with {near_zero.size} Hessian eigenvalue(s) close "
                "to zero: " + " ".join(f"{v:.1e}" for v in near_zero),
                ConvergenceWarning, skip_file_prefixes=(PACKAGE_DIR,))
    keep = evals > _EIGEN_TOL
    h_pinv = (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
    vcov_varpar = 2.0 * d[:, None] * h_pinv * d[None, :]

    unscaled = sol.unscaled_vcov
    p = unscaled.shape[0]
    jac = np.zeros((k + 1, p, p))
    for j in range(k):
        h = _step(theta[j], unit[j])

        def central(step: float, j: int = j) -> np.ndarray:
            up, down = theta.copy(), theta.copy()
            up[j] += step
            down[j] -= step
            return (_unscaled_vcov(kernel, up, reml) - _unscaled_vcov(kernel, down, reml)) / (
                2 * step)

        jac[j] = sigma ** 2 * central(h)
    jac[k] = 2.0 * sigma * unscaled
    return VarparCovariance(hess, vcov_varpar, jac, sigma ** 2 * unscaled)


def satterthwaite_df(cov: VarparCovariance, contrast: np.ndarray) -> float:
    """Satterthwaite degrees of freedom of ``L' beta`` for one contrast vector ``L``.

    Parameters
    ----------
    cov : VarparCovariance
        From :func:`varpar_covariance`.
    contrast : numpy.ndarray
        Contrast vector of length p.

    Returns
    -------
    float
    """
    L = np.asarray(contrast, dtype=float).ravel()
    if L.size != cov.vcov_beta.shape[0]:
        raise FitError(f"The contrast needs {cov.vcov_beta.shape[0]} entries, got {L.size}.")
    var_con = float(L @ cov.vcov_beta @ L)
    grad = np.einsum("i,kij,j->k", L, cov.jacobian, L)
    denom = float(grad @ cov.vcov_varpar @ grad)
    if denom <= 0:
        return float("inf")
    return 2.0 * var_con ** 2 / denom


def contrast_test(cov: VarparCovariance, beta: np.ndarray, contrast: np.ndarray,
                  rhs: float = 0.0) -> dict[str, float]:
    """t-test of ``L' beta = rhs`` with Satterthwaite's df (lmerTest's ``contest1D``).

    Returns
    -------
    dict
        ``estimate``, ``std_error``, ``df``, ``t_value``, ``p_value``.
    """
    from scipy import stats

    L = np.asarray(contrast, dtype=float).ravel()
    estimate = float(L @ np.asarray(beta, dtype=float))
    se = float(np.sqrt(L @ cov.vcov_beta @ L))
    df = satterthwaite_df(cov, L)
    t_value = (estimate - rhs) / se
    p_value = float(2.0 * stats.t.sf(abs(t_value), df)) if np.isfinite(df) else float(
        2.0 * stats.norm.sf(abs(t_value)))
    return {"estimate": estimate, "std_error": se, "df": df, "t_value": t_value,
            "p_value": p_value}
