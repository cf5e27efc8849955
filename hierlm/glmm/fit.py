"""Maximum-likelihood fits of GLMMs: lme4's two optimisation stages on the Laplace or AGQ deviance.

Stage 1 minimises the Laplace deviance over the covariance parameters
``theta`` with the fixed effects solved inside PIRLS together with the
random effects (lme4's ``nAGQ = 0`` criterion); it gives the start of stage 2,
which minimises the exact Laplace deviance (``nagq = 1``) or the adaptive
Gauss-Hermite deviance (``nagq > 1``, :mod:`hierlm.glmm.quadrature`) jointly
over ``theta`` and ``beta`` with PIRLS for the random effects only, as
``glmer`` does. The negative binomial's ``theta`` (dispersion) is optimised
jointly on the log scale in both stages. Bounds on ``theta`` are lme4's
(diagonal entries >= 0).

Both stages use L-BFGS-B on the analytic gradient of the Laplace deviance
(:mod:`hierlm.glmm.gradient`: one PIRLS run per point, not one per
coordinate); the AGQ deviance of stage 2 uses central differences (PIRLS is
converged so that the deviance is smooth to about 1e-13 relative).
The covariance of the fixed effects is lme4's default: twice the inverse of
the numerical Hessian of the deviance over ``(theta, beta)`` (its ``beta``
block; central differences of the analytic gradient for Laplace fits, of the
deviance, as lme4's ``deriv12``, for AGQ); where that Hessian is not positive
definite, the inverse of the fixed-effect Schur complement of the penalised system (lme4's ``RX``
fallback), with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from hierlm.core.warn import PACKAGE_DIR
from hierlm.design.blocks import Design
from hierlm.errors import ConvergenceWarning, FitError
from hierlm.families import Family
from hierlm.glmm.checks import warn_after_fit, warn_before_fit
from hierlm.glmm.deviance import Deviance, _curvature_scale, _hessian, _hessian_of_gradient, _minimize
from hierlm.glmm.gradient import laplace_gradient
from hierlm.glmm.optimum import GlmmOptimum
from hierlm.glmm.pirls import GlmmProblem, Mode
from hierlm.glmm.quadrature import check_agq
from hierlm.glmm.result import GlmmResult
from hierlm.lmm.optimum import blas_threads

__all__ = ["fit_glmm", "Deviance"]  # Deviance re-exported from hierlm.glmm.deviance

_PROBE = 0.25  # theta from which to search again when a search ends on a stationary bound


def _rx_vcov(problem: GlmmProblem, mode: Mode, dispersion: float | None) -> np.ndarray:
    """Inverse of the fixed-effect Schur complement of the penalised system (lme4's RX)."""
    from hierlm.glmm.system import Factor, RestColumns

    s = problem.structure
    family = problem.family
    templates = s.templates(mode.theta)
    rest = problem.X if not s.rest else RestColumns(s, templates, problem.X)
    penalty = np.concatenate([np.ones(s.m_rest), np.zeros(problem.X.shape[1])])
    w = family.working_weights(mode.eta, problem.prior_weights, dispersion)
    factor = Factor(s, mode.a1, rest, penalty, w)
    return factor.inverse_rest()[s.m_rest:, s.m_rest:]


def fit_glmm(design: Design, family: Family, model: Any = None, nagq: int = 1,
             start: dict[str, Any] | None = None, max_evaluations: int = 500,
             hessian: bool = True, threads: int | None = 1) -> Any:
    """Fit a GLMM by maximum likelihood (Laplace or adaptive Gauss-Hermite quadrature).

    Parameters
    ----------
    design : Design
        The model's design (offset and prior weights included).
    family : Family
        A non-Gaussian family (:mod:`hierlm.families`).
    model : Model, optional
        The Model, kept on the result for predictions and save/load.
    nagq : int
        Quadrature nodes per dimension: 1 is the Laplace approximation
        (lme4's default); more needs one grouping factor with at most 3 terms.
    start : dict, optional
        ``{"theta": ..., "beta": ..., "dispersion": ...}`` starting values of stage 2
        (stage 1 is skipped when ``theta`` and ``beta`` are both given).
    max_evaluations : int
        Iteration cap of each optimisation stage.
    hessian : bool
        Compute the Hessian (for lme4's ``vcov`` and the variance parameters' SEs);
        False uses the RX covariance of the fixed effects.
    threads : int or None
        BLAS threads during the fit (1 by default: the dense blocks are small,
        and spinning BLAS threads slow a busy machine down; None: no limit).

    Returns
    -------
    GlmmResult
    """
    with blas_threads(threads):
        return _fit(design, family, model, nagq, start, max_evaluations, hessian)


def _fit(design: Design, family: Family, model: Any, nagq: int, start: dict[str, Any] | None,
         max_evaluations: int, hessian: bool) -> Any:
    """:func:`fit_glmm` inside the BLAS thread limit."""
    if family.name == "gaussian":
        raise FitError("fit_glmm fits non-Gaussian families; Gaussian models use hierlm.lmm.")
    problem = GlmmProblem(design, family)
    check_agq(problem, nagq)
    warn_before_fit(problem, nagq)
    start = dict(start or {})
    lower_theta = problem.structure.layout.lower
    n_theta = problem.n_theta
    log_disp0 = np.log(float(start.get("dispersion", 1.0))) if family.has_dispersion else None
    disp_lower = np.array([-np.inf]) if family.has_dispersion else np.zeros(0)
    disp_x0 = np.array([log_disp0]) if log_disp0 is not None else np.zeros(0)

    if "theta" in start and "beta" in start:
        theta0 = np.asarray(start["theta"], dtype=float)
        beta0 = np.asarray(start["beta"], dtype=float)
        x_disp = disp_x0
        stage1_message = "skipped (start given)"
    else:
        state: dict[str, Mode | None] = {"mode": None}

        def stage1(x: np.ndarray, anchor: Mode | None) -> float:
            theta = x[:n_theta]
            dispersion = float(np.exp(x[n_theta])) if family.has_dispersion else None
            return problem.mode(theta, None, dispersion, start=anchor).laplace

        def gradient1(x: np.ndarray, mode: Mode) -> tuple[float, np.ndarray]:
            theta = x[:n_theta]
            dispersion = float(np.exp(x[n_theta])) if family.has_dispersion else None
            grad_theta, _, grad_disp = laplace_gradient(problem, mode, theta, None, dispersion)
            extra = [np.array([grad_disp])] if grad_disp is not None else []
            return mode.laplace, np.concatenate([grad_theta] + extra)

        def anchor1(x: np.ndarray) -> Mode:
            theta = x[:n_theta]
            dispersion = float(np.exp(x[n_theta])) if family.has_dispersion else None
            mode = problem.mode(theta, None, dispersion, start=state["mode"])
            state["mode"] = mode
            return mode

        x1 = np.concatenate([np.asarray(start.get("theta", problem.structure.layout.start()),
                                        dtype=float), disp_x0])
        lower1 = np.concatenate([lower_theta, disp_lower])
        # the curvatures' scale keeps the first quasi-Newton steps from overshooting into a
        # boundary (a random slope's SD far steeper than the intercept's)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            anchor1(x1)  # the differences start PIRLS from the modes at x1
            scale1 = _curvature_scale(lambda z: stage1(z, state["mode"]), x1, lower1)
        # a start for stage 2 only: a loose tolerance is enough
        x1, _, _, stage1_message = _minimize(stage1, anchor1, x1, lower1, max_evaluations,
                                             gtol=1e-2, ftol=1e-8, scale=scale1,
                                             gradient=gradient1, probe=_PROBE)
        theta0 = x1[:n_theta]
        x_disp = x1[n_theta:]
        dispersion1 = float(np.exp(x_disp[0])) if family.has_dispersion else None
        beta0 = problem.mode(theta0, None, dispersion1, start=state["mode"]).beta

    deviance = Deviance(problem, nagq)
    lower = np.concatenate([lower_theta, np.full(beta0.size, -np.inf), disp_lower])
    x0 = np.concatenate([theta0, beta0, x_disp])
    deviance.anchor = problem.mode(theta0, beta0, deviance.split(x0)[2])

    def anchor2(x: np.ndarray) -> Mode:
        deviance.anchor = deviance.mode(x)
        return deviance.anchor

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        scale = _curvature_scale(lambda z: deviance(z, deviance.anchor), x0, lower)
    gradient2 = ((lambda x, a: deviance.value_and_gradient(x, a)) if deviance.analytic
                 else None)
    x_opt, value, converged, message = _minimize(lambda x, a: deviance(x, a), anchor2, x0, lower,
                                                 max_evaluations, scale=scale, gradient=gradient2,
                                                 probe=_PROBE)
    # lme4's bounds: a diagonal theta entry below 1e-8 of its bound is the boundary itself
    x_opt[:n_theta] = np.where((lower_theta == 0) & (x_opt[:n_theta] < 1e-8), 0.0, x_opt[:n_theta])
    theta, beta, dispersion = deviance.split(x_opt)
    mode = problem.mode(theta, beta, dispersion, start=deviance.anchor)
    value = deviance.value_of(mode, x_opt)
    if not converged:
        warnings.warn(f"The GLMM optimiser stopped without converging: {message}.",
                      ConvergenceWarning, skip_file_prefixes=(PACKAGE_DIR,))

    hess = None
    vcov_beta = None
    source = "RX"
    if hessian:
        deviance.anchor = mode
        hess = None
        if deviance.analytic:
            try:
                hess = _hessian_of_gradient(
                    lambda z: deviance.value_and_gradient(z, deviance.mode(z, mode))[1], x_opt)
            except (FitError, np.linalg.LinAlgError):
                hess = None  # the observed information not positive definite next to the optimum
        if hess is None or not np.all(np.isfinite(hess)):
            hess = _hessian(lambda z: deviance(z, mode), x_opt)
        try:
            inverse = np.linalg.inv(hess)
            block = 2.0 * inverse[n_theta:n_theta + beta.size, n_theta:n_theta + beta.size]
            if np.all(np.linalg.eigvalsh(hess) > 0) and np.all(np.diag(block) > 0):
                vcov_beta = 0.5 * (block + block.T)
                source = "Hessian"
        except np.linalg.LinAlgError:
            pass
    if vcov_beta is None:
        vcov_beta = _rx_vcov(problem, mode, dispersion)
        if hessian:
            warnings.warn("The Hessian of the deviance is not positive definite at the optimum; "
                          "the fixed effects' covariance is the RX approximation (lme4's "
                          "fallback), which ignores the uncertainty of theta.",
                          ConvergenceWarning, skip_file_prefixes=(PACKAGE_DIR,))
    optimum = GlmmOptimum(theta=theta, beta=beta, dispersion=dispersion, deviance=value,
                          mode=mode, hessian=hess, vcov_beta=vcov_beta, vcov_source=source,
                          converged=converged, message=f"stage 1: {stage1_message}; stage 2: "
                          f"{message}", evaluations=problem.evaluations, nagq=nagq)
    result = GlmmResult(problem, optimum, model=model, fitter=fit_glmm)
    warn_after_fit(result)
    return result
