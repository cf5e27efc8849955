"""Profile-likelihood confidence intervals of a GLMM fit (fixed effects and scalar SDs).

For a parameter ``x_k`` (a fixed effect, or the SD of a one-term random-effect
block, which is its theta since sigma is 1), the profiled deviance
``D_k(v) = min over the others of D(x | x_k = v)`` is computed by the same
L-BFGS-B as the fit, warm-started from the optimum; the interval is where the
signed root ``sign(v - x_k_hat) sqrt(D_k(v) - D_min)`` crosses the normal
quantile of ``level`` (lme4's ``confint(method = "profile")``). An SD whose
profile stays below the cut-off down to 0 gets the lower bound 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from hierlm.errors import FitError
from hierlm.glmm.deviance import Deviance, _minimize

__all__ = ["profile_confint"]


def _profiled(deviance: Deviance, x_opt: np.ndarray, lower: np.ndarray, k: int, value: float,
              max_evaluations: int) -> float:
    """``min D`` over every coordinate but ``k``, with ``x_k = value``."""
    free = np.array([j for j in range(x_opt.size) if j != k])

    def full(z: np.ndarray) -> np.ndarray:
        x = x_opt.copy()
        x[free] = z
        x[k] = value
        return x

    def f(z: np.ndarray, anchor: Any) -> float:
        return deviance(full(z), anchor)

    def anchor(z: np.ndarray) -> Any:
        deviance.anchor = deviance.mode(full(z))
        return deviance.anchor

    if free.size == 0:
        return deviance(full(np.zeros(0)))
    _, best, _, _ = _minimize(f, anchor, x_opt[free], lower[free], max_evaluations, gtol=1e-3,
                              ftol=1e-10)
    return best


def profile_confint(fit: Any, level: float, max_evaluations: int = 200) -> pd.DataFrame:
    """Profile intervals: ``sd_(Intercept)|<group>`` rows of scalar blocks, then the fixed effects.

    Raises
    ------
    FitError
        For blocks with several terms (their SDs are not single theta entries)
        and for the negative binomial (its dispersion is not profiled).
    """
    problem = fit.problem
    if problem.family.has_dispersion:
        raise FitError("Profile intervals are not available for negative binomial fits yet; use "
                       "confint(method='wald').")
    if any(block.q > 1 for block in fit.design.blocks):
        raise FitError("Profile intervals of GLMMs cover one-term random-effect blocks only; this "
                       "model has correlated or multi-term blocks. Use confint(method='wald').")
    deviance = Deviance(problem, fit.nagq)
    x_opt = np.concatenate([fit.theta, fit.beta])
    n_theta = fit.theta.size
    lower = np.concatenate([problem.structure.layout.lower, np.full(fit.beta.size, -np.inf)])
    d_min = fit.deviance
    cut = float(stats.norm.ppf(0.5 + level / 2.0))
    se_beta = np.sqrt(np.diag(fit.optimum.vcov_beta))
    labels = [f"sd_{'(Intercept)' if b.columns[0] == 'Intercept' else b.columns[0]}|{b.group}"
              for b in fit.design.blocks] + list(fit.design.fixed_names)
    rows = []
    for k in range(x_opt.size):
        deviance.anchor = fit.optimum.mode
        scale = se_beta[k - n_theta] if k >= n_theta else max(0.5 * x_opt[k], 0.05)

        def signed_root(v: float, k: int = k) -> float:
            gap = max(_profiled(deviance, x_opt, lower, k, v, max_evaluations) - d_min, 0.0)
            return float(np.sign(v - x_opt[k]) * np.sqrt(gap))

        bounds = []
        for side in (-1.0, 1.0):
            target = side * cut
            step, edge = scale, x_opt[k]
            found = None
            for _ in range(12):
                trial = x_opt[k] + side * step
                if k < n_theta and trial <= 0.0:
                    trial = 0.0
                value = signed_root(trial) - target
                if side * value >= 0:
                    found = trial
                    break
                if trial == 0.0:
                    break
                edge, step = trial, 2.0 * step
            if found is None:
                bounds.append(0.0 if (k < n_theta and side < 0) else np.nan)
                continue
            a, b = sorted((edge, found))
            bounds.append(float(optimize.brentq(lambda v, t=target: signed_root(v) - t, a, b,
                                                xtol=1e-6 * max(1.0, abs(x_opt[k])))))
        rows.append(bounds)
    return pd.DataFrame(rows, index=pd.Index(labels), columns=["lower", "upper"])
