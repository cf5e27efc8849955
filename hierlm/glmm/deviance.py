"""The GLMM deviance as a function of the optimiser's vector, and the optimiser's helpers.

:class:`Deviance` evaluates the Laplace (or adaptive Gauss-Hermite) deviance at
``x = [theta | beta | dispersion]`` from the conditional modes PIRLS finds;
``_minimize`` (bounded quasi-Newton on the analytic Laplace gradient or central
differences), ``_curvature_scale``, ``_hessian`` and ``_hessian_of_gradient`` serve both the fit
(:mod:`hierlm.glmm.fit`) and the profiles (:mod:`hierlm.glmm.profile`), which
therefore do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import optimize

from hierlm.errors import FitError
from hierlm.glmm.gradient import laplace_gradient
from hierlm.glmm.pirls import GlmmProblem, Mode
from hierlm.glmm.quadrature import agq_deviance

__all__ = ["Deviance"]


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

    @property
    def analytic(self) -> bool:
        """Whether the gradient comes from the modes (Laplace) rather than differences (AGQ)."""
        return self.nagq == 1

    def value_and_gradient(self, x: np.ndarray, mode: Mode) -> tuple[float, np.ndarray]:
        """The Laplace deviance and its gradient at ``x`` from the mode there.

        See :mod:`hierlm.glmm.gradient`.
        """
        theta, beta, dispersion = self.split(x)
        grad_theta, grad_beta, grad_disp = laplace_gradient(self.problem, mode, theta, beta,
                                                            dispersion)
        assert grad_beta is not None
        parts = [grad_theta, grad_beta] + ([np.array([grad_disp])] if self.has_dispersion else [])
        return self.value_of(mode, x), np.concatenate(parts)


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
              ftol: float = 1e-12, scale: np.ndarray | None = None,
              gradient: Callable[[np.ndarray, Any], tuple[float, np.ndarray]] | None = None,
              probe: float | None = None) -> tuple[np.ndarray, float, bool, str]:
    """L-BFGS-B; PIRLS warm-starts from the current point.

    ``gradient(x, anchor)``: the value and gradient at ``x`` from the mode there
    (the analytic Laplace gradient); without it, or where it fails, central
    differences of ``f``. ``scale``: the optimiser works on ``z = x * scale`` (e.g.
    the square roots of the deviance's curvatures, so that all coordinates are alike).
    ``probe``: where the search ends with a coordinate bounded below by 0 at its bound and a
    vanishing gradient there (the deviance is even in a scalar block's theta and in the last
    diagonal entry of a vector block's, so the bound is always stationary in it, a saddle as
    often as a minimum), search once more from that coordinate set to ``probe`` and keep the
    lower of the two ends.
    """
    unit = np.ones(x0.size) if scale is None else np.asarray(scale, dtype=float)
    best = {"value": np.inf}

    def differences(x: np.ndarray, anchor: Any) -> tuple[float, np.ndarray]:
        return f(x, anchor), _central_gradient(lambda z: f(z, anchor), x, lower)

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                anchor = make_anchor(x)
                value, grad = np.nan, np.full(x.size, np.nan)
                if gradient is not None:
                    try:
                        value, grad = gradient(x, anchor)
                    except (FitError, np.linalg.LinAlgError):
                        pass
                if not (np.isfinite(value) and np.all(np.isfinite(grad))):
                    value, grad = differences(x, anchor)
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
    options = {"maxiter": max_evaluations, "ftol": ftol, "gtol": gtol, "maxcor": 20}
    result = optimize.minimize(scaled, x0 * unit, jac=True, method="L-BFGS-B", bounds=bounds,
                               options=options)
    if probe is not None:
        x_end = np.asarray(result.x, dtype=float) / unit
        stuck = (lower == 0) & (x_end <= 1e-8) & (np.abs(np.asarray(result.jac)) <= 10 * gtol)
        if np.any(stuck):
            x_end[stuck] = probe
            again = optimize.minimize(scaled, x_end * unit, jac=True, method="L-BFGS-B",
                                      bounds=bounds, options=options)
            if again.fun < result.fun:
                result = again
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


def _hessian_of_gradient(gradient: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                         step: float = _HESSIAN_STEP) -> np.ndarray:
    """Central differences of the gradient (``2 d`` evaluations), symmetrised."""
    d = x.size
    h = step * np.maximum(1.0, np.abs(x))
    jac = np.empty((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = h[i]
        jac[:, i] = (gradient(x + e) - gradient(x - e)) / (2.0 * h[i])
    return 0.5 * (jac + jac.T)


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
