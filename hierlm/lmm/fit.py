"""Minimise lme4's profiled criterion over theta and keep a record of how.

``fit_lmm`` does three things only: form the cross-products once, minimise the
kernel of :mod:`hierlm.lmm.objective` over theta under lme4's box constraints
(0 below every diagonal entry), and wrap the optimum in an
:class:`~hierlm.lmm.result.LmmResult` together with a :class:`FitRecord`.

The default optimiser is L-BFGS-B with the kernel's exact gradient, started
at lme4's values (1 on template diagonals, 0 elsewhere). Two polishing steps
follow: diagonal entries that ended next to their bound are tried at exactly
0 (kept there when the criterion does not get worse), so singular fits are
exactly singular as in lme4; and the optimiser is restarted from the result
to confirm that it does not move.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from scipy.optimize import OptimizeResult, minimize

from hierlm.core.warn import PACKAGE_DIR
from hierlm.design.blocks import Design
from hierlm.design.checks import require_varying_response
from hierlm.errors import ConvergenceWarning, FitError, SingularFitWarning
from hierlm.lmm.newton1d import NEWTON_1D, newton_1d
from hierlm.lmm.optimum import (
    SINGULAR_TOL,
    FitRecord,
    blas_threads,
    projected_gradient,
    singular_components,
)
from hierlm.lmm.parameters import Criterion, criterion_for
from hierlm.lmm.result import LmmResult
from hierlm.options import require_bool

__all__ = ["FitRecord", "fit_lmm", "minimize_theta", "resolve_optimizer", "singular_components",
           "SINGULAR_TOL", "blas_threads", "theta_column_scale", "projected_gradient"]

# A fit counts as converged when the projected gradient of the criterion
# (-2 log-likelihood units per unit of theta) is below this, as lme4's check.
_GRADIENT_OK = 2e-3
_GRADIENT_OPTIMIZERS = ("L-BFGS-B", "TNC", "SLSQP", "trust-constr", NEWTON_1D)
_OPTIMIZER_ALIASES = {"lbfgsb": "L-BFGS-B", "l-bfgs-b": "L-BFGS-B", "bobyqa": "COBYQA",
                      "cobyqa": "COBYQA", "cobyla": "COBYLA", "powell": "Powell",
                      "nelder-mead": "Nelder-Mead", "neldermead": "Nelder-Mead", "tnc": "TNC",
                      "slsqp": "SLSQP", "trust-constr": "trust-constr", "newton1d": NEWTON_1D,
                      NEWTON_1D.lower(): NEWTON_1D}


def resolve_optimizer(optimizer: str, kernel: Criterion) -> str:
    """The method an ``optimizer=`` name stands for with this criterion.

    ``"auto"`` (the default) is the bounded 1-D secant-Newton iteration
    (:mod:`hierlm.lmm.newton1d`) for a bounded criterion of one parameter (a
    ``cs``/``ar1``/``car1`` residual structure without random effects), and
    L-BFGS-B otherwise; ``"newton1d"`` asks for the former explicitly.
    """
    name = str(optimizer).lower()
    one_bounded = False
    if kernel.needs_bounds:
        box_lower, box_upper = kernel.box()
        one_bounded = box_lower.size == 1 and bool(np.isfinite(box_lower).all()
                                                   and np.isfinite(box_upper).all())
    if name == "auto":
        return NEWTON_1D if one_bounded else "L-BFGS-B"
    method = _OPTIMIZER_ALIASES.get(name)
    if method is None:
        raise FitError(f"Unknown optimizer {optimizer!r}; choose 'auto' or one of "
                       f"{', '.join(sorted(set(_OPTIMIZER_ALIASES.values()) - {NEWTON_1D}))}, "
                       "or 'newton1d'.")
    if method == NEWTON_1D and not one_bounded:
        raise FitError(f"optimizer='newton1d' minimises a criterion of one bounded parameter; "
                       f"this one has {kernel.lower.size}: use 'auto' or 'L-BFGS-B'.")
    return method


# Scaled criterion value returned for trial points where the criterion cannot be evaluated.
_REFUSED = 1e30


def _warn_at_limits(kernel: Criterion, theta: np.ndarray) -> None:
    """Warn when a structure's parameter ended at the optimiser's finite limit."""
    lower, upper = kernel.box()
    finite_hi, finite_lo = np.isfinite(upper), np.isfinite(lower) & ~np.isfinite(kernel.lower)
    tol = 1e-6
    hi = np.where(finite_hi, upper, 0.0)
    lo = np.where(finite_lo, lower, 0.0)
    at = (finite_hi & (theta >= hi - tol * np.abs(hi))) | (finite_lo & (theta <= lo + tol * np.abs(lo)))
    if at.any():
        names = [kernel.names[k] for k in np.flatnonzero(at)]
        warnings.warn(
            "boundary fit: " + ", ".join(names) + " ended at the optimiser's limit: a "
            "correlation within 1e-6 of +-1, or an SD more than 1000 times sigma (sigma is then "
            "not identified: the residual is confounded with the term's diagonal, one observation "
            "per group and term). Simplify the structure, or write the within-group covariance "
            "as a residual structure (residual='ar1(time | group)') without that term.",
            SingularFitWarning, skip_file_prefixes=(PACKAGE_DIR,))


def minimize_theta(kernel: Criterion, reml: bool, optimizer: str = "auto",
                   start: np.ndarray | None = None, max_evaluations: int = 2000,
                   ftol: float = 1e-12, gtol: float = 1e-6, polish: bool = True,
                   column_scale: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, float, bool, str, int]:
    """Minimise the kernel's criterion over theta under lme4's bounds.

    Parameters
    ----------
    kernel : LmmObjective or StructuredObjective
        The criterion (over lme4's theta, or over the structures' parameters).
    reml : bool
        REML criterion or ML deviance.
    optimizer : str
        ``"auto"`` (default: :func:`resolve_optimizer`, L-BFGS-B with the exact
        gradient, or for one bounded parameter the 1-D secant-Newton iteration),
        ``"L-BFGS-B"`` or another bound-constrained :func:`scipy.optimize.minimize`
        method (``"COBYQA"``, ``"Powell"``, ``"Nelder-Mead"``, ``"TNC"``, ...).
    start : numpy.ndarray, optional
        Starting theta; lme4's default when omitted.
    max_evaluations : int
        Cap on optimiser iterations.
    ftol, gtol : float
        L-BFGS-B's relative-decrease tolerance and projected-gradient tolerance
        (the latter in units of the criterion, i.e. -2 log-likelihood).
    polish : bool
        Snap near-boundary diagonal entries to 0 when that does not worsen
        the criterion, and restart once from the result.
    column_scale : numpy.ndarray, optional
        Per theta entry, the scale (root mean square) of the random-effect
        column of its template row. The optimiser, its default start, the
        boundary probes and the convergence check then work on
        ``theta * column_scale``, which does not change when a predictor is
        rescaled (``x * 1e-6`` multiplies its theta entries by 1e6).

    Returns
    -------
    theta, value, converged, message, n_evaluations
    """
    method = resolve_optimizer(optimizer, kernel)
    lower = kernel.lower
    unit = np.ones(lower.size) if column_scale is None else np.asarray(column_scale, dtype=float)
    # lme4's start (1 on template diagonals) in the scaled parametrisation
    theta0 = kernel.start() / unit if start is None else np.array(start, dtype=float)
    if theta0.shape != lower.shape:
        raise FitError(f"start must have {lower.size} theta entries, got {theta0.size}.")
    if np.any(theta0 < lower):
        raise FitError("start has a negative diagonal theta entry; diagonal entries are >= 0.")
    before = kernel.evaluations
    if lower.size == 0:  # independent residuals, no random effects: nothing to optimise
        value0 = float(kernel(theta0, reml))
        return theta0, value0, True, "no covariance parameters", kernel.evaluations - before
    uses_gradient = method in _GRADIENT_OPTIMIZERS
    # The optimiser works on x = theta * sqrt(levels): the curvature of the
    # criterion in a variance parameter grows about linearly with the number
    # of levels of its factor, so this evens out the scales (crossed designs
    # with 3000 and 14 levels need markedly fewer iterations).
    cp = kernel.cp
    levels = kernel.parameter_levels()
    x_scale = np.sqrt(np.maximum(levels, 1.0)) * unit
    box_lower, box_upper = kernel.box()
    bounds = [(lo * s if np.isfinite(lo) else None, hi * s if np.isfinite(hi) else None)
              for lo, hi, s in zip(box_lower, box_upper, x_scale, strict=True)]
    # Scale the criterion (about n times a constant) so that tolerances do not
    # depend on the number of rows.
    scale = 1.0 / max(1.0, float(cp.n))

    def value(x: np.ndarray) -> float:
        return kernel(x / x_scale, reml) * scale

    def value_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            val, grad = kernel.value_and_gradient(x / x_scale, reml)
        except FitError:
            if not kernel.needs_bounds:
                raise
            # A trial point of the line search where a patterned structure's factor is
            # numerically singular (a correlation at its limit): refuse it, the search backs off.
            return _REFUSED, np.zeros_like(x)
        return val * scale, grad * (scale / x_scale)

    def run(theta_start: np.ndarray) -> Any:
        x0 = theta_start * x_scale
        if method == NEWTON_1D:  # the same projected-gradient test as bounded L-BFGS-B's
            (lo, hi), = bounds
            assert lo is not None and hi is not None  # resolve_optimizer: a finite box
            return newton_1d(value_grad, x0, lo, hi, gtol * scale * 1e-3, max_evaluations,
                             _REFUSED)
        if method == "L-BFGS-B" and not kernel.needs_bounds:
            # Unconstrained: the criterion only depends on Lambda Lambda', which
            # is unchanged when a column of a template changes sign, so iterates
            # may cross 0 freely (no projection onto the bound, where the
            # gradient of a variance parameter vanishes); signs are fixed below.
            return minimize(value_grad, x0, jac=True, method=method,
                            options={"maxiter": max_evaluations, "maxfun": max_evaluations,
                                     "ftol": ftol, "gtol": gtol * scale, "maxcor": 20})
        if method == "L-BFGS-B":
            # Bounded (structured models): a tighter gradient tolerance, since the flat ridges
            # of patterned and residual structures would otherwise stop it early.
            return _lbfgsb_to_stationary(value_grad, x0, bounds,
                                         {"maxiter": max_evaluations, "maxfun": max_evaluations,
                                          "ftol": ftol, "gtol": gtol * scale * 1e-3,
                                          "maxcor": 20})
        if uses_gradient:
            return minimize(value_grad, x0, jac=True, method=method, bounds=bounds,
                            options={"maxiter": max_evaluations})
        return minimize(value, x0, method=method, bounds=bounds,
                        options={"maxiter": max_evaluations})

    try:
        res = run(theta0)
    except FitError:
        raise
    except (ValueError, np.linalg.LinAlgError) as err:
        raise FitError(f"The optimiser {method} failed: {err}") from err
    theta = kernel.canonical(np.asarray(res.x, dtype=float) / x_scale)
    converged = bool(res.success)
    message = str(res.message)
    best = kernel(theta, reml)
    if kernel.needs_bounds and not _settled(res, bounds, best, scale):
        # L-BFGS-B stops on the relative decrease of the scaled criterion; on the flat ridges
        # of structured models a restart from the end point (fresh curvature memory) goes on,
        # unless the run's own curvature model predicts no gain worth a restart (_settled).
        for _ in range(4):
            again = run(theta)
            candidate = kernel.canonical(np.asarray(again.x, dtype=float) / x_scale)
            cand_value = kernel(candidate, reml)
            improved = cand_value < best - 1e-10 * max(1.0, abs(best))
            if cand_value < best:
                theta, best = candidate, cand_value
                converged, message = bool(again.success), str(again.message)
            if not improved:
                break
    if polish and np.isfinite(lower).any():  # (nothing to probe or snap without bounds)
        # theta_j = 0 is a stationary point of the criterion in the direction of
        # a variance parameter (the criterion is even in it), so a gradient-based
        # method that lands there by projection stays. Probe and restart.
        for _ in range(5):
            escape = _escape_boundary(kernel, reml, theta, best, lower, unit)
            if escape is None:
                break
            again = run(escape)
            candidate = kernel.canonical(np.asarray(again.x, dtype=float) / x_scale)
            cand_value = kernel(candidate, reml)
            if cand_value >= best:
                break
            theta, best = candidate, cand_value
            converged, message = bool(again.success), str(again.message)
        theta, best = _snap_to_boundary(kernel, reml, theta, best, lower, unit)
    if not converged and uses_gradient:
        # L-BFGS-B reports ABNORMAL when a line search cannot improve at the
        # limit of floating-point precision; accept a vanishing projected gradient.
        _, grad = kernel.value_and_gradient(theta, reml)
        scaled_grad = projected_gradient(theta, grad, lower) / unit
        if np.max(np.abs(scaled_grad), initial=0.0) < _GRADIENT_OK:
            converged = True
            message = f"{message} (projected gradient below {_GRADIENT_OK:g})"
    return theta, float(best), converged, message, kernel.evaluations - before


class _Stationary(Exception):
    """Raised inside L-BFGS-B's objective at a point that meets its own convergence test."""

    def __init__(self, x: np.ndarray, value: float, grad: np.ndarray, evaluations: int) -> None:
        super().__init__("stationary")
        self.x, self.value, self.grad, self.evaluations = x, value, grad, evaluations


def _lbfgsb_to_stationary(value_grad: Any, x0: np.ndarray,
                          bounds: list[tuple[float | None, float | None]],
                          options: dict[str, Any]) -> Any:
    """Bounded L-BFGS-B that stops at the first evaluated point meeting its convergence test.

    L-BFGS-B tests the projected gradient (``options["gtol"]``) at accepted iterates only.
    Next to an optimum the criterion changes by less than its rounding error, so a trial
    point of the line search with a vanishing gradient can be rejected for a value above
    the best by rounding alone (a few 1e-16 of it), and the search goes on for several
    evaluations without moving. Here a trial point whose projected gradient meets the
    same test, and whose value is within 1e-14 (relative) of the best value so far, ends
    the run as L-BFGS-B would have ended it had it accepted the point.
    """
    lower = np.array([-np.inf if lo is None else lo for lo, _ in bounds])
    upper = np.array([np.inf if hi is None else hi for _, hi in bounds])
    tolerance = float(options["gtol"])
    best = [np.inf]
    count = [0]

    def watched(x: np.ndarray) -> tuple[float, np.ndarray]:
        val, grad = value_grad(x)
        count[0] += 1
        previous = best[0]
        best[0] = min(previous, val)
        projected = np.clip(x - grad, lower, upper) - x
        if (val < _REFUSED and val <= previous + 1e-14 * max(1.0, abs(val))
                and np.max(np.abs(projected), initial=0.0) <= tolerance):
            raise _Stationary(np.array(x, dtype=float), float(val), np.array(grad), count[0])
        return val, grad

    try:
        return minimize(watched, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    except _Stationary as stop:
        return OptimizeResult(x=stop.x, fun=stop.value, jac=stop.grad, success=True, status=0,
                              nfev=stop.evaluations, stationary=True,
                              message="CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL")


def _settled(res: Any, bounds: list[tuple[float | None, float | None]], value: float,
             scale: float) -> bool:
    """True when L-BFGS-B's own curvature model sees nothing left to gain at its end point.

    The predicted decrease of the quasi-Newton step, ``g' H^-1 g / 2`` over the free
    coordinates (those not held at a bound by their gradient), below 1e-3 of the improvement
    a restart must bring (``1e-10 max(1, |value|)`` of the criterion ``value``): a restart from
    there only repeats the failed line search. ``res`` is of the criterion times ``scale``.
    Other methods (no inverse-Hessian model): never settled. A run that stopped at a point
    meeting L-BFGS-B's projected-gradient test (:func:`_lbfgsb_to_stationary`) is settled.
    """
    if getattr(res, "stationary", False):
        return True
    hess_inv = getattr(res, "hess_inv", None)
    grad = getattr(res, "jac", None)
    if hess_inv is None or grad is None or not hasattr(hess_inv, "matvec"):
        return False
    x, grad = np.asarray(res.x, dtype=float), np.asarray(grad, dtype=float)
    lower = np.array([-np.inf if lo is None else lo for lo, _ in bounds])
    upper = np.array([np.inf if hi is None else hi for _, hi in bounds])
    held = ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))
    free = np.where(held, 0.0, grad)
    predicted = 0.5 * float(free @ hess_inv.matvec(free))
    if not np.isfinite(predicted) or predicted < 0:
        return False
    return predicted < 1e-13 * max(1.0, abs(value)) * scale


def _escape_boundary(kernel: Criterion, reml: bool, theta: np.ndarray, value: float,
                     lower: np.ndarray, unit: np.ndarray) -> np.ndarray | None:
    """Return a better start when a bounded entry at (or near) 0 should be positive."""
    tolerance = 1e-10 * max(1.0, abs(value))
    best_trial, best_value = None, value - tolerance
    for k in np.flatnonzero(np.isfinite(lower) & (theta < lower + 1e-3 / unit)):
        for delta in (1e-2, 1e-1, 1.0):
            trial = theta.copy()
            trial[k] = lower[k] + delta / unit[k]
            trial_value = kernel(trial, reml)
            if trial_value < best_value:
                best_trial, best_value = trial, trial_value
    return best_trial


def _snap_to_boundary(kernel: Criterion, reml: bool, theta: np.ndarray, value: float,
                      lower: np.ndarray, unit: np.ndarray) -> tuple[np.ndarray, float]:
    """Set tiny diagonal entries to exactly 0 when the criterion does not increase."""
    tolerance = 1e-10 * max(1.0, abs(value))
    for k in np.flatnonzero(np.isfinite(lower) & (theta > lower) & (theta < 1e-3 / unit)):
        trial = theta.copy()
        trial[k] = lower[k]
        trial_value = kernel(trial, reml)
        if trial_value <= value + tolerance:
            theta, value = trial, min(value, trial_value)
    return theta, value


def theta_column_scale(design: Design, kernel: Criterion) -> np.ndarray:
    """Root mean square of the random-effect column of each theta entry's template row.

    1 for intercepts; a predictor multiplied by ``c`` gets ``c`` times its scale,
    so ``theta * scale`` is unchanged (see :func:`minimize_theta`).
    """
    return kernel.column_scale(design)


def fit_lmm(design: Design, reml: bool = True, model: Any = None, optimizer: str = "auto",
            start: np.ndarray | None = None, max_evaluations: int = 2000,
            polish: bool = True, warn: bool = True, threads: int | None = 1) -> LmmResult:
    """Fit a linear mixed model by REML or ML, as lme4's ``lmer``.

    Parameters
    ----------
    design : Design
        Response, fixed-effect matrix and random-effect blocks.
    reml : bool
        Restricted (True, lme4's default) or full maximum likelihood.
    model : Model, optional
        The :class:`~hierlm.Model` the design came from; needed for ``predict``
        on new data and stored on the result.
    optimizer : str
        ``"auto"`` (default): L-BFGS-B with the exact gradient, or for a criterion
        of one bounded parameter (``cs``/``ar1``/``car1`` residual structures
        without random effects) the bounded 1-D secant-Newton iteration of
        :mod:`hierlm.lmm.newton1d`. ``"L-BFGS-B"``, ``"newton1d"`` or another
        bound-constrained method of :func:`scipy.optimize.minimize`, e.g.
        ``"COBYQA"`` (a derivative-free trust-region method like lme4's BOBYQA).
    start : array-like, optional
        Starting theta in lme4's layout. Default: 0 off the diagonals and, on
        them, 1 divided by the root mean square of the entry's random-effect
        column (lme4's start of 1 for intercepts; for a slope, the start does
        not depend on the units of its predictor).
    max_evaluations : int
        Cap on optimiser iterations.
    polish : bool
        Snap near-zero variance parameters to exactly 0 when that does not
        worsen the criterion, and restart once from the optimum.
    warn : bool
        Emit :class:`SingularFitWarning` / :class:`ConvergenceWarning`.
    threads : int or None
        BLAS threads used by the fit and by later computations on the result
        (Satterthwaite's df); None leaves the BLAS library's default.

    Returns
    -------
    LmmResult

    Raises
    ------
    FitError
        If the design has no random-effect term, the response is constant, an
        option is invalid (``warn="no"``, a non-finite ``start``) or the system
        is degenerate.

    Notes
    -----
    The kernel works on an orthonormal basis of the fixed-effect columns
    (:mod:`hierlm.lmm.conditioning`: centred, scaled and decorrelated by QR);
    every result is on the original scale.
    """
    if not isinstance(design, Design):
        raise FitError(f"fit_lmm needs a Design, got {type(design).__name__}.")
    require_bool(reml, "reml")
    require_bool(polish, "polish")
    require_bool(warn, "warn")
    if not design.blocks and design.residual is None:
        raise FitError("The formula has no random-effect term (| group); "
                       "ML/REML mixed-model fitting needs at least one, or a residual "
                       "structure (residual='ar1(week | id)', a GLS / MMRM model).")
    if design.n <= design.p:
        raise FitError(f"{design.n} observations cannot identify {design.p} fixed effects.")
    if isinstance(max_evaluations, bool) or not isinstance(max_evaluations, (int, np.integer)) \
            or max_evaluations < 1:
        raise FitError(f"max_evaluations must be a positive integer, got {max_evaluations!r}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or threads < 1):
        raise FitError(f"threads must be a positive integer or None, got {threads!r}.")
    if start is not None:
        try:
            start = np.array(start, dtype=float)
        except (TypeError, ValueError):
            raise FitError(f"start must be an array of theta values, got {start!r}.") from None
        if not np.all(np.isfinite(start)):
            raise FitError(f"start has non-finite value(s) {start[~np.isfinite(start)].tolist()}; "
                           "give finite theta values, or omit start for lme4's default.")
    ols = require_varying_response(design.y, design.X, design.response)
    clock = time.perf_counter()
    with blas_threads(threads):
        # an orthonormal basis of X (same results, no digits lost to cancellation)
        kernel = criterion_for(design, ols=ols)
        method = resolve_optimizer(optimizer, kernel)
        column_scale = theta_column_scale(design, kernel)
        theta0 = kernel.start() / column_scale if start is None else start
        theta, value, converged, message, n_eval = minimize_theta(
            kernel, reml, optimizer=optimizer, start=theta0, max_evaluations=max_evaluations,
            polish=polish, column_scale=column_scale)
        lower = kernel.lower
        _, grad = kernel.value_and_gradient(theta, reml)
        names = kernel.names
        boundary = tuple(names[k] for k in range(theta.size)
                         if np.isfinite(lower[k]) and theta[k] <= lower[k])
        record = FitRecord(
            optimizer=method,
            criterion="REML criterion" if reml else "deviance",
            start=theta0, end=theta.copy(), value=value, n_evaluations=n_eval,
            converged=converged, message=message, boundary=boundary,
            gradient=projected_gradient(theta, grad, lower),
            seconds=time.perf_counter() - clock,
        )
        # (one block for the fit and the result: each entry costs ~30 us of BLAS pool calls)
        result = LmmResult(design=design, model=model, kernel=kernel, theta=theta, reml=reml,
                           fit_record=record, threads=threads, fitter=fit_lmm)
    if warn:
        _warn_at_limits(kernel, theta)
        singular = singular_components(theta, lower, names, column_scale=column_scale)
        if singular:
            blocks = kernel.parameter_blocks()
            described = [f"{name} in ({design.blocks[blocks[names.index(name)]].term})"
                         for name in singular]
            warnings.warn(
                "boundary (singular) fit: " + ", ".join(described)
                + " estimated at (or next to) zero, so a variance is 0 or a correlation is "
                "+-1; the random-effect structure is too rich for these data. Consider "
                "simplifying that term (e.g. dropping it or its correlations).",
                SingularFitWarning, skip_file_prefixes=(PACKAGE_DIR,))
        if not converged:
            warnings.warn(f"Optimizer {record.optimizer} did not converge: {message}. "
                          "Try another optimizer= or a start= near the current estimate.",
                          ConvergenceWarning, skip_file_prefixes=(PACKAGE_DIR,))
    return result
