"""The search machinery of profile-likelihood intervals, shared by both profilers.

:mod:`hierlm.lmm.profile` (lme4's structures) and
:mod:`hierlm.lmm.profile_structures` (residual structures) describe a
parameter's profile as a ``Profile`` (estimate, domain, deviance function),
find its limits with ``profile_limit`` and profile the fixed effects with
``fixed_effect_profiles``. Keeping them here lets the two profilers share them
without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize

from hierlm.errors import FitError
from hierlm.lmm.likelihood import GaussianLikelihood

__all__ = ["Profile", "profile_limit", "minimise_profile", "fixed_effect_profiles"]

_OPTIONS = {"ftol": 1e-13, "gtol": 1e-9, "maxiter": 500}


def minimise_profile(function: Callable[[np.ndarray], Any], start: np.ndarray,
                     bounds: list[tuple[float | None, float | None]],
                     gradient: bool = False) -> tuple[float, np.ndarray]:
    """Minimise ``function`` from ``start`` within ``bounds``: the best value and its point.

    With ``gradient``, ``function`` returns ``(value, gradient)``; otherwise the value only
    (the gradient is then approximated by differences).
    """
    if start.size == 0:
        value = function(start)
        return float(value[0] if gradient else value), start
    result = minimize(function, start, jac=gradient or None, method="L-BFGS-B", bounds=bounds,
                      options=_OPTIONS)
    return float(result.fun), np.asarray(result.x)


@dataclass
class Profile:
    """One parameter's profile: estimate, domain and the profile deviance function."""

    name: str
    estimate: float
    low: float
    high: float
    scale: float
    deviance: Callable[[float], float]


def profile_limit(profile: Profile, cutoff: float, direction: int) -> float:
    """Where the profile deviance rises by ``cutoff`` on one side of the estimate."""
    edge = profile.low if direction < 0 else profile.high
    step = profile.scale
    inner = profile.estimate
    for _ in range(60):
        outer = profile.estimate + direction * step
        if (direction < 0 and outer <= edge) or (direction > 0 and outer >= edge):
            outer = edge
        value = profile.deviance(outer) - cutoff
        if value > 0:
            return float(brentq(lambda v: profile.deviance(v) - cutoff, min(inner, outer),
                                max(inner, outer), xtol=1e-10 * max(abs(profile.estimate), 1.0),
                                rtol=1e-12))
        if outer == edge:
            return float(edge)
        inner, step = outer, step * 2.0
    raise FitError(f"the profile of {profile.name} does not reach the confidence limit; the "
                   "likelihood is flat in that direction")


def fixed_effect_profiles(fit: Any, reference: float) -> list[Profile]:
    """Profiles of the fixed effects of an ML fit."""
    kernel, n = fit.kernel, fit.design.n
    likelihood = GaussianLikelihood(fit.design, kernel)
    lower = np.asarray(kernel.lower, dtype=float)
    bounds: list[tuple[float | None, float | None]] = [
        (None if not np.isfinite(lo) else float(lo), None) for lo in lower]
    diagonal = np.isfinite(lower)
    # theta at exactly 0 is a stationary point of the deviance: a second start lifts it off 0
    lifted = np.where(diagonal, np.maximum(np.asarray(fit.theta, dtype=float), 0.1),
                      np.asarray(fit.theta, dtype=float))
    profiles = []
    se = np.sqrt(np.diag(fit.vcov().to_numpy()))
    for j, name in enumerate(fit.design.fixed_names):
        state = {"start": np.array(fit.theta, dtype=float)}

        def deviance(value: float, j: int = j, state: dict[str, np.ndarray] = state) -> float:
            def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
                # the other fixed effects at their best given beta_j = value, sigma in closed form;
                # the gradient in theta at that beta is exact (envelope theorem over beta, sigma)
                sol = kernel.solution(theta, reml=False, cond_var=False)
                vcov = np.asarray(sol.unscaled_vcov)
                beta = np.asarray(sol.beta) - vcov[:, j] * (sol.beta[j] - value) / vcov[j, j]
                logdet, pwrss, d_logdet, d_pwrss, _ = likelihood.terms_at_beta(theta, beta, True)
                assert d_logdet is not None and d_pwrss is not None
                dev = float(logdet + n * (1.0 + np.log(2.0 * np.pi * pwrss / n)))
                return dev, np.asarray(d_logdet + n / pwrss * d_pwrss, dtype=float)

            dev, solution = minimise_profile(objective, state["start"], bounds, gradient=True)
            if np.any(solution[diagonal] < 1e-3):
                dev_fresh, fresh = minimise_profile(objective, lifted, bounds, gradient=True)
                if dev_fresh < dev:
                    dev, solution = dev_fresh, fresh
            state["start"] = solution
            return dev - reference

        profiles.append(Profile(name, float(fit.beta[j]), -np.inf, np.inf, float(se[j]), deviance))
    return profiles
