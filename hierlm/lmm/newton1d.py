"""A bounded one-dimensional minimiser on an exact gradient (safeguarded secant-Newton).

For criteria with one parameter on a bounded interval (the residual
structures ``cs``, ``ar1`` and ``car1`` without random effects: one
correlation parameter), the profiled REML/ML criterion is a smooth function of
one variable. Its minimum is a root of the exact gradient ``g``. Each step goes
to the minimiser of the cubic through the last two points' values and gradients
(Nocedal and Wright's (3.59)), or, once the two values differ by rounding error
only, to the root of the secant of ``g`` (a Newton step with the secant's
curvature); the first pair comes from a probe ``1e-4`` away from the start. A
bracket ``[a, b]`` with ``g(a) < 0 < g(b)`` is kept, which holds a minimum (never
a maximum). Where the secant's curvature is not positive the step goes downhill,
four times the last one; no step is longer than four times the last one or a
sixteenth of the interval, whichever is more, and a step leaving the bracket is
replaced by bisection. It costs a handful of gradient evaluations and none of
the setup of :func:`scipy.optimize.minimize`.

It stops at the first point whose projected gradient meets the tolerance (the
test L-BFGS-B applies; at a bound, a gradient pointing outwards), or when the
bracket has shrunk to rounding error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.optimize import OptimizeResult

__all__ = ["NEWTON_1D", "newton_1d"]

#: The optimiser's name in a fit record.
NEWTON_1D = "bounded secant-Newton (1-D)"


def newton_1d(value_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray,
              lower: float, upper: float, gtol: float, max_evaluations: int,
              refused: float) -> OptimizeResult:
    """Minimise a smooth function of one variable on ``[lower, upper]`` from ``x0``.

    Parameters
    ----------
    value_grad : callable
        ``x (1,) -> (value, gradient (1,))``. A value ``>= refused`` marks a point
        where the function cannot be evaluated (it is treated as too far).
    x0 : numpy.ndarray
        Start, shape ``(1,)``; clipped to the interval.
    lower, upper : float
        Finite bounds.
    gtol : float
        Tolerance of the projected gradient.
    max_evaluations : int
        Cap on evaluations.
    refused : float
        See ``value_grad``.

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x``, ``fun``, ``jac``, ``nfev``, ``success``, ``message``; ``stationary`` is True
        when the projected-gradient test was met.
    """
    a, b = float(lower), float(upper)
    x = _clip(float(np.asarray(x0, dtype=float).ravel()[0]), a, b)
    f, g, n = _evaluate(value_grad, x)
    if f >= refused:
        return _result(x, f, g, n, False, "the start cannot be evaluated")
    best = (x, f, g)
    previous: tuple[float, float, float] | None = None  # (x, f, g) of the point before
    while True:
        if _stationary(x, g, lower, upper, gtol):
            return _result(x, f, g, n, True, "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL")
        if n >= max_evaluations:
            return _result(*best, n, False, "STOP: TOTAL NO. OF EVALUATIONS EXCEEDS LIMIT")
        if g < 0:
            a = max(a, x)
        else:
            b = min(b, x)
        if b - a <= 4e-16 * max(1.0, abs(x)):
            return _result(*best, n, True, "CONVERGENCE: BRACKET AT ROUNDING ERROR")
        if previous is None:  # the first curvature: a probe 1e-4 (relative) downhill
            step = -math.copysign(1e-4 * max(1.0, abs(x)), g)
        else:
            span = abs(x - previous[0])
            curvature = (g - previous[2]) / (x - previous[0])
            step = -g / curvature if curvature > 0 else -math.copysign(4.0 * span, g)
            cubic = _cubic_step(x, f, g, *previous)
            if cubic is not None and curvature > 0:
                step = cubic
            limit = max(4.0 * span, (upper - lower) / 16.0)  # a step grows at most 4-fold
            step = _clip(step, -limit, limit)
            if not a < x + step < b:  # outside the bracket: bisect it
                step = 0.5 * (a + b) - x
        trial = _clip(x + step, a, b)
        if trial == x:
            return _result(*best, n, True, "CONVERGENCE: STEP AT ROUNDING ERROR")
        f_new, g_new, used = _evaluate(value_grad, trial)
        n += used
        if f_new >= refused:  # cannot be evaluated there: the minimum lies nearer
            if trial > x:
                b = trial
            else:
                a = trial
            previous = None
            continue
        previous = (x, f, g)
        x, f, g = trial, f_new, g_new
        if f <= best[1] or _stationary(x, g, lower, upper, gtol):
            best = (x, f, g)


def _cubic_step(x: float, f: float, g: float, x_p: float, f_p: float, g_p: float) -> float | None:
    """Step from ``x`` to the minimiser of the cubic through two points' values and slopes.

    Nocedal and Wright's (3.59). None when the values differ by too little for their
    difference to carry digits (near the optimum: the secant step is used) or the cubic
    has no minimiser.
    """
    if abs(f - f_p) <= 1e-10 * max(1.0, abs(f)):
        return None
    d1 = g_p + g - 3.0 * (f_p - f) / (x_p - x)
    radicand = d1 * d1 - g_p * g
    if radicand < 0:
        return None
    d2 = math.copysign(math.sqrt(radicand), x - x_p)
    denominator = g - g_p + 2.0 * d2
    if denominator == 0:
        return None
    return float(-(x - x_p) * (g + d2 - d1) / denominator)


def _evaluate(value_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], x: float
              ) -> tuple[float, float, int]:
    value, grad = value_grad(np.array([x]))
    return float(value), float(np.asarray(grad).ravel()[0]), 1


def _clip(value: float, low: float, high: float) -> float:
    """``value`` clipped to ``[low, high]`` (numpy's clip, for Python floats)."""
    return min(max(value, low), high)


def _stationary(x: float, g: float, lower: float, upper: float, gtol: float) -> bool:
    """L-BFGS-B's test: ``|clip(x - g, lower, upper) - x| <= gtol``."""
    return abs(min(max(x - g, lower), upper) - x) <= gtol


def _result(x: float, f: float, g: float, n: int, success: bool, message: str) -> OptimizeResult:
    return OptimizeResult(x=np.array([x]), fun=f, jac=np.array([g]), nfev=n, success=success,
                          status=0 if success else 1, message=message, stationary=success)
