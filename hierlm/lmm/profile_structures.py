"""Profile-likelihood intervals of a model with a residual structure and no random effects.

As :mod:`hierlm.lmm.profile`, the ML deviance is profiled (a REML fit is refitted by ML):

* a structure parameter (``rho``, ``phi``, an SD ratio) is fixed on the optimiser's scale
  and the deviance minimised over the others (``sigma`` and ``beta`` profiled out
  exactly by the criterion); its limits are mapped to the natural scale, which is a
  monotone function of that one parameter;
* ``sigma``: ``min_phi [sum log|W_i| + r2(phi) / sigma^2 + n log(2 pi sigma^2)]``;
* the fixed effects as for every fit (:func:`hierlm.lmm.profile_search.fixed_effect_profiles`).

Structures whose natural parameters are not one per coordinate (``toep``, ``toeph``:
lag correlations from all the partial ones; ``un``) and models with random effects and a
residual structure are refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from hierlm.errors import FitError
from hierlm.lmm.profile_search import Profile, fixed_effect_profiles, minimise_profile, profile_limit

__all__ = ["structured_profile_confint"]


def _residual_names(residual: Any) -> list[str]:
    structure = residual.structure
    zeros = np.zeros(residual.n_params)
    names = [f"residual.{name}" for name in structure.natural(zeros[: structure.n_params])]
    if residual.variance_function is not None:
        names += [f"residual.{name}" for name in residual.variance_function.natural(
            zeros[structure.n_params:])]
    return names


def _natural(residual: Any, params: np.ndarray, k: int) -> float:
    structure = residual.structure
    values = list(structure.natural(params[: structure.n_params]).values())
    if residual.variance_function is not None:
        values += list(residual.variance_function.natural(params[structure.n_params:]).values())
    return float(values[k])


def structured_profile_confint(fit: Any, level: float = 0.95) -> pd.DataFrame:
    """Profile intervals of the structure's parameters, ``sigma`` and the fixed effects.

    Returns
    -------
    pandas.DataFrame
        Index ``residual.<parameter>`` (natural scale), ``sigma``, fixed-effect names;
        columns ``estimate`` (ML), ``lower``, ``upper``.

    Raises
    ------
    FitError
        For random effects with a residual structure, or a structure without per-coordinate
        natural parameters.
    """
    residual = fit.design.residual
    if fit.design.blocks:
        raise FitError(f"Profile-likelihood intervals with random effects and residual="
                       f"{residual.describe()!r} are not built yet; use confint(method='boot') "
                       "or the Wald intervals.")
    if not residual.structure.per_coordinate_natural:
        raise FitError(f"Profile-likelihood intervals of residual={residual.describe()!r} are not "
                       "built yet (its parameters are not one per coordinate); use "
                       "confint(method='boot') or the Wald intervals.")
    ml = fit.refit(reml=False, warn=False) if fit.reml else fit
    kernel = ml.kernel
    reference = float(ml.deviance)
    theta_hat = np.asarray(ml.theta, dtype=float)
    box_lower, box_upper = kernel.box()
    cutoff = float(chi2.ppf(level, 1))
    rows = []
    names = _residual_names(residual)
    for k, name in enumerate(names):
        others = [j for j in range(theta_hat.size) if j != k]
        bounds = [(float(box_lower[j]) if np.isfinite(box_lower[j]) else None,
                   float(box_upper[j]) if np.isfinite(box_upper[j]) else None) for j in others]
        state = {"start": theta_hat[others].copy()}

        def deviance(value: float, k: int = k, others: list[int] = others,
                     bounds: list = bounds, state: dict = state) -> float:
            def objective(rest: np.ndarray) -> float:
                phi = theta_hat.copy()
                phi[k] = value
                phi[others] = rest
                try:
                    return float(kernel(phi, reml=False))
                except FitError:
                    return float("inf")
            dev, solution = minimise_profile(objective, state["start"], bounds)
            state["start"] = solution
            return dev - reference

        profile = Profile(name, float(theta_hat[k]), float(box_lower[k]), float(box_upper[k]),
                           0.1, deviance)
        limits = [profile_limit(profile, cutoff, -1), profile_limit(profile, cutoff, +1)]
        ends = []
        for limit in limits:
            params = theta_hat.copy()
            params[k] = limit
            ends.append(_natural(residual, params, k))
        rows.append((name, _natural(residual, theta_hat, k), min(ends), max(ends)))
    rows.append(_sigma_row(ml, reference, cutoff))
    for profile in fixed_effect_profiles(ml, reference):
        rows.append((profile.name, profile.estimate, profile_limit(profile, cutoff, -1),
                     profile_limit(profile, cutoff, +1)))
    frame = pd.DataFrame(rows, columns=["parameter", "estimate", "lower", "upper"])
    return frame.set_index("parameter")


def _sigma_row(ml: Any, reference: float, cutoff: float) -> tuple[str, float, float, float]:
    kernel, n = ml.kernel, ml.design.n
    box_lower, box_upper = kernel.box()
    bounds = [(float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None)
              for lo, hi in zip(box_lower, box_upper, strict=True)]
    state = {"start": np.asarray(ml.theta, dtype=float).copy()}

    def deviance(log_sigma: float) -> float:
        sigma2 = float(np.exp(2.0 * log_sigma))

        def objective(phi: np.ndarray) -> float:
            try:
                comp = kernel.components(phi, reml=False, gradient=False)
            except FitError:
                return float("inf")
            return float(comp.logdet + comp.r2 / sigma2 + n * np.log(2.0 * np.pi * sigma2))
        dev, solution = minimise_profile(objective, state["start"], bounds)
        state["start"] = solution
        return dev - reference

    estimate = float(np.log(ml.sigma))
    profile = Profile("sigma", estimate, -np.inf, np.inf, 0.05, deviance)
    return ("sigma", float(ml.sigma), float(np.exp(profile_limit(profile, cutoff, -1))),
            float(np.exp(profile_limit(profile, cutoff, +1))))
