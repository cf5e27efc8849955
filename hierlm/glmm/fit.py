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

Both stages use L-BFGS-B with central-difference gradients (PIRLS is
converged so that the deviance is smooth to about 1e-13 relative).
The covariance of the fixed effects is lme4's default: twice the inverse of
the numerical Hessian of the deviance over ``(theta, beta)`` (its ``beta``
block); where that Hessian is not positive definite, the inverse of the
fixed-effect Schur complement of the penalised system (lme4's ``RX``
fallback), with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import optimize

from hierlm.core.warn import PACKAGE_DIR
from hierlm.design.blocks import Design
from hierlm.errors import ConvergenceWarning, FitError
from hierlm.families import Family
from hierlm.glmm.checks import warn_after_fit, warn_before_fit
from hierlm.glmm.optimum import GlmmOptimum
from hierlm.glmm.pirls import GlmmProblem, Mode
from hierlm.glmm.quadrature import agq_deviance, check_agq
from hierlm.glmm.result import GlmmResult
from hierlm.lmm.optimum import blas_threads

__all__ = ["fit_glmm", "Deviance"]

_STEP = 1e-5      # relative step of the central differences of the gradient
_HESSIAN_STEP = 1e-4  # lme4's deriv12 step


class Deviance:
    """The stage-2 deviance as a function of ``x = (theta, beta[, log dispersion])``, warm-started.

    Parameters
    ----------
    problem : GlmmProblem
    nagq : int
        1 for Laplace, more for adaptive Gauss-Hermite quadrature.
    """

    def __init__(self, problem: GlmmProblem, nagq: int) -> None:
        self.problem = problem
        self.nagq = nagq
        self.n_theta = problem.n_theta
        self.p = problem.X.shape[1]
        self.has_dispersion = problem.family.has_dispersion
        self.anchor: Mode | None = None

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
        """``(theta, beta, dispersion)`` of a parameter vector."""
        theta = x[:self.n_theta]
        beta = x[self.n_theta:self.n_theta + self.p]
        dispersion = float(np.exp(x[-1])) if self.has_dispersion else None
        return theta, beta, dispersion

    def mode(self, x: np.ndarray, start: Mode | None = None) -> Mode:
        """PIRLS at ``x``."""
        theta, beta, dispersion = self.split(x)
        return self.problem.mode(theta, beta, dispersion, start=start or self.anchor)

    def value_of(self, mode: Mode, x: np.ndarray) -> float:
        """The deviance of a mode (Laplace, or AGQ for ``nagq > 1``)."""
        if self.nagq == 1:
            return mode.laplace
        return agq_deviance(self.problem, mode, self.nagq, self.split(x)[2])

    def __call__(self, x: np.ndarray, start: Mode | None = None) -> float:
        """The deviance at ``x``."""
        mode = self.mode(x, start)
        return self.value_of(mode, x)


def _central_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray,
                      step: float = _STEP) -> np.ndarray:
    """Central differences (one-sided, second order, next to a lower bound)."""
    grad = np.empty(x.size)
    for k in range(x.size):
        h = step * max(1.0, abs(x[k]))
        e = np.zeros(x.size)
        e[k] = h
        if x[k] - h < lower[k]:
            f0, f1, f2 = f(x), f(x + e), f(x + 2 * e)
            grad[k] = (-3.0 * f0 + 4.0 * f1 - f2) / (2.0 * h)
        else:
            grad[k] = (f(x + e) - f(x - e)) / (2.0 * h)
    return grad


def _minimize(f: Callable[[np.ndarray, Any], float], make_anchor: Callable[[np.ndarray], Any],
              x0: np.ndarray, lower: np.ndarray, max_evaluations: int, gtol: float = 1e-4,
              ftol: float = 1e-12, scale: np.ndarray | None = None
              ) -> tuple[np.ndarray, float, bool, str]:
    """L-BFGS-B with central-difference gradients; PIRLS warm-starts from the current point.

    ``scale``: the optimiser works on ``z = x * scale`` (e.g. the square roots of the
    deviance's curvatures, so that all coordinates are alike).
    """
    unit = np.ones(x0.size) if scale is None else np.asarray(scale, dtype=float)
    best = {"value": np.inf}

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                anchor = make_anchor(x)
                value = f(x, anchor)
                grad = _central_gradient(lambda z: f(z, anchor), x, lower)
        except (FitError, np.linalg.LinAlgError):
            value, grad = np.nan, np.full(x.size, np.nan)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            if not np.isfinite(best["value"]):
                raise FitError("The deviance cannot be evaluated at the starting values (the "
                               "linear predictor overflows); rescale the predictors of the "
                               "random slopes or give start=.") from None
            # a point where PIRLS breaks down (overflowing means): far worse than the best so
            # far, so that the line search steps back
            return best["value"] + 1e6, np.zeros(x.size)
        best["value"] = min(best["value"], value)
        return value, grad

    def scaled(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(z / unit)
        return value, grad / unit

    bounds = [(lo * u if np.isfinite(lo) else None, None) for lo, u in zip(lower, unit, strict=True)]
    result = optimize.minimize(scaled, x0 * unit, jac=True, method="L-BFGS-B", bounds=bounds,
                               options={"maxiter": max_evaluations, "ftol": ftol, "gtol": gtol,
                                        "maxcor": 20})
    return np.asarray(result.x, dtype=float) / unit, float(result.fun), bool(result.success), \
        str(result.message)


def _curvature_scale(f: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray,
                     step: float = 1e-3) -> np.ndarray:
    """Square roots of the deviance's diagonal curvatures at ``x`` (second differences)."""
    f0 = f(x)
    out = np.empty(x.size)
    for k in range(x.size):
        h = step * max(1.0, abs(x[k]))
        e = np.zeros(x.size)
        e[k] = h
        if x[k] - h < lower[k]:
            curvature = (f(x + 2 * e) - 2 * f(x + e) + f0) / h ** 2
        else:
            curvature = (f(x + e) - 2 * f0 + f(x - e)) / h ** 2
        out[k] = np.sqrt(curvature) if np.isfinite(curvature) and curvature > 1e-4 else 1.0
    return out


def _hessian(f: Callable[[np.ndarray], float], x: np.ndarray, step: float = _HESSIAN_STEP) -> np.ndarray:
    """Central second differences of ``f`` at ``x`` (lme4's ``deriv12`` scheme)."""
    d = x.size
    h = step * np.maximum(1.0, np.abs(x))
    f0 = f(x)
    hess = np.empty((d, d))
    plus = np.empty(d)
    minus = np.empty(d)
    for i in range(d):
        e = np.zeros(d)
        e[i] = h[i]
        plus[i], minus[i] = f(x + e), f(x - e)
        hess[i, i] = (plus[i] - 2.0 * f0 + minus[i]) / h[i] ** 2
    for i in range(d):
        for j in range(i):
            ei = np.zeros(d)
            ej = np.zeros(d)
            ei[i], ej[j] = h[i], h[j]
            value = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
            hess[i, j] = hess[j, i] = value
    return hess


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

        def anchor1(x: np.ndarray) -> Mode:
            theta = x[:n_theta]
            dispersion = float(np.exp(x[n_theta])) if family.has_dispersion else None
            mode = problem.mode(theta, None, dispersion, start=state["mode"])
            state["mode"] = mode
            return mode

        x1 = np.concatenate([np.asarray(start.get("theta", problem.structure.layout.start()),
                                        dtype=float), disp_x0])
        # a start for stage 2 only: a loose tolerance is enough
        x1, _, _, stage1_message = _minimize(stage1, anchor1, x1,
                                             np.concatenate([lower_theta, disp_lower]),
                                             max_evaluations, gtol=1e-2, ftol=1e-8)
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
    x_opt, value, converged, message = _minimize(lambda x, a: deviance(x, a), anchor2, x0, lower,
                                                 max_evaluations, scale=scale)
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
