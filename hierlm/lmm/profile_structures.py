"""Profile-likelihood intervals of a model with a residual structure and no random effects.

As :mod:`hierlm.lmm.profile`, the ML deviance is profiled (a REML fit is refitted by ML):

* a structure parameter (``rho``, ``phi``, an SD ratio) is fixed on the optimiser's scale
  and the deviance minimised over the others (``sigma`` and ``beta`` profiled out
  exactly by the criterion); its limits are mapped to the natural scale, which is a
  monotone function of that one parameter;
* ``sigma``: ``min_phi [sum log|W_i| + r2(phi) / sigma^2 + n log(2 pi sigma^2)]``;
* the fixed effects as for every fit (:func:`hierlm.lmm.profile_search.fixed_effect_profiles`).

Structures whose natural parameters are not one per coordinate (``toep``, ``toeph``:
lag correlations from all the partial ones; ``un``: its variances and covariances) are
profiled with the quantity held by an equality constraint
(:func:`constrained_quantity_profiles`). Models with random effects and a residual
structure are profiled by :func:`hierlm.lmm.profile.profile_confint` (the SDs and
correlations as coordinates, ``sigma`` unprofiled, the structure's parameters appended);
this module gives it the structure's names and natural values, and refuses the
structures that are not one natural parameter per coordinate there
(:func:`require_per_coordinate` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import chi2

from hierlm.errors import FitError
from hierlm.lmm.profile_search import Profile, fixed_effect_profiles, minimise_profile, profile_limit

_FAR = 1e20  # deviance reported where the constraint cannot be held or the system is singular

__all__ = ["structured_profile_confint", "residual_parameter_names", "residual_natural",
           "require_per_coordinate", "constrained_quantity_profiles"]


def residual_parameter_names(residual: Any) -> list[str]:
    """``residual.<name>`` of each natural parameter of a residual structure, in kernel order."""
    structure = residual.structure
    zeros = np.zeros(residual.n_params)
    names = [f"residual.{name}" for name in structure.natural(zeros[: structure.n_params])]
    if residual.variance_function is not None:
        names += [f"residual.{name}" for name in residual.variance_function.natural(
            zeros[structure.n_params:])]
    return names


def residual_natural(residual: Any, params: np.ndarray, k: int) -> float:
    """The ``k``-th natural parameter of a residual structure at its kernel parameters."""
    structure = residual.structure
    values = list(structure.natural(params[: structure.n_params]).values())
    if residual.variance_function is not None:
        values += list(residual.variance_function.natural(params[structure.n_params:]).values())
    return float(values[k])


def require_per_coordinate(residual: Any) -> None:
    """Refuse profiles with random effects of a structure whose natural parameters are not coordinates.

    Without random effects these are profiled (:func:`constrained_quantity_profiles`). With
    them, the SD profiles over the partial-autocorrelation coordinates were found to depend
    on the optimiser's start (a random slope with ``toep``: the profile deviance at one SD
    0.78 from the path's previous point, 5.1 from the estimate), so no limits are given.
    """
    if not residual.structure.per_coordinate_natural:
        raise FitError(f"Profile-likelihood intervals with random effects and "
                       f"residual={residual.describe()!r} are not built yet: its parameters "
                       "(lag correlations, or un's covariances) are functions of several "
                       "coordinates, and the profiles over them are not yet reliably minimised. "
                       "Use confint(method='boot') or the Wald intervals; without random effects "
                       "the profile intervals of this structure are available.")


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
        raise FitError("structured_profile_confint profiles models without random effects; "
                       "hierlm.lmm.profile.profile_confint takes the others.")
    ml = fit.refit(reml=False, warn=False) if fit.reml else fit
    kernel = ml.kernel
    reference = float(ml.deviance)
    theta_hat = np.asarray(ml.theta, dtype=float)
    box_lower, box_upper = kernel.box()
    cutoff = float(chi2.ppf(level, 1))
    rows = []
    names = residual_parameter_names(residual)
    if not residual.structure.per_coordinate_natural:  # toep, toeph, un: constrained profiles
        rows += [(p.name, p.estimate, profile_limit(p, cutoff, -1), profile_limit(p, cutoff, +1))
                 for p in _constrained_profiles(ml, reference)]
        names = []
    for k, name in enumerate(names):
        others = [j for j in range(theta_hat.size) if j != k]
        bounds = [(float(box_lower[j]) if np.isfinite(box_lower[j]) else None,
                   float(box_upper[j]) if np.isfinite(box_upper[j]) else None) for j in others]
        state = {"start": theta_hat[others].copy()}

        def deviance(value: float, k: int = k, others: list[int] = others,
                     bounds: list = bounds, state: dict = state) -> float:
            def objective(rest: np.ndarray) -> tuple[float, np.ndarray]:
                phi = theta_hat.copy()
                phi[k] = value
                phi[others] = rest
                try:
                    dev, grad = kernel.value_and_gradient(phi, reml=False)
                except (FitError, np.linalg.LinAlgError):
                    return _FAR, np.zeros(len(others))
                return float(dev), np.asarray(grad, dtype=float)[others]
            dev, solution = minimise_profile(objective, state["start"], bounds, gradient=True)
            state["start"] = solution
            return dev - reference

        profile = Profile(name, float(theta_hat[k]), float(box_lower[k]), float(box_upper[k]),
                           0.1, deviance)
        limits = [profile_limit(profile, cutoff, -1), profile_limit(profile, cutoff, +1)]
        ends = []
        for limit in limits:
            params = theta_hat.copy()
            params[k] = limit
            ends.append(residual_natural(residual, params, k))
        rows.append((name, residual_natural(residual, theta_hat, k), min(ends), max(ends)))
    rows.append(_sigma_row(ml, reference, cutoff))
    for profile in fixed_effect_profiles(ml, reference):
        rows.append((profile.name, profile.estimate, profile_limit(profile, cutoff, -1),
                     profile_limit(profile, cutoff, +1)))
    frame = pd.DataFrame(rows, columns=["parameter", "estimate", "lower", "upper"])
    return frame.set_index("parameter")


def _quantity_names(residual: Any) -> list[tuple[str, float, float]]:
    """Names and domains of the natural quantities of :func:`_quantity_values`."""
    structure = residual.structure
    out = []
    natural = structure.natural(np.zeros(structure.n_params))
    if natural:
        out += [(f"residual.{name}", *((0.0, np.inf) if name.startswith("ratio.") else (-1.0, 1.0)))
                for name in natural]
    else:
        for name in structure.covariance_parameter_names():
            i, j = name[name.index("(") + 1:-1].split(",")
            out.append((f"residual.{name}", *((0.0, np.inf) if i == j else (-np.inf, np.inf))))
    function = residual.variance_function
    if function is not None:
        out += [(f"residual.{name}", 0.0, np.inf)
                for name in function.natural(np.zeros(residual.n_variance))]
    return out


def _quantity_values(residual: Any, params: np.ndarray, sigma2: float) -> np.ndarray:
    """Natural quantities of a structure that are not coordinates, at ``(params, sigma^2)``.

    ``toep``/``toeph``: the lag correlations (and SD ratios); ``un``: every variance and
    covariance (SAS's ``UN(i,j)``, ``sigma^2 L L'``); then the ``variance=`` ratios.
    """
    structure = residual.structure
    n_struct = structure.n_params
    natural = structure.natural(params[:n_struct])
    values = (list(natural.values()) if natural
              else list(structure.covariance_parameters(params[:n_struct], sigma2)))
    values += list(np.exp(params[n_struct:]))
    return np.asarray(values, dtype=float)


def _constrained_profiles(ml: Any, reference: float) -> list[Profile]:
    """Profiles of quantities that are functions of several parameters, without random effects.

    The ML deviance over ``x = (params, log sigma^2)`` (unprofiled, exact gradient from the
    criterion's components) is minimised with the quantity held at each trial value
    (:func:`constrained_quantity_profiles`).
    """
    kernel, n = ml.kernel, ml.design.n
    theta_hat = np.asarray(ml.theta, dtype=float)
    sigma2_hat = float(ml.sigma) ** 2
    x_hat = np.append(theta_hat, np.log(sigma2_hat))
    box_lower, box_upper = kernel.box()
    bounds = [(float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None)
              for lo, hi in zip(box_lower, box_upper, strict=True)]
    bounds.append((float(x_hat[-1]) - 15.0, float(x_hat[-1]) + 15.0))

    def deviance_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        sigma2 = float(np.exp(x[-1]))
        try:
            comp = kernel.components(x[:-1], reml=False, gradient=True)
        except (FitError, np.linalg.LinAlgError):
            return _FAR, np.zeros_like(x)
        value = comp.ldL2 + n * np.log(2.0 * np.pi * sigma2) + comp.r2 / sigma2 - reference
        grad = np.append(comp.d_logdet + comp.d_r2 / sigma2, n - comp.r2 / sigma2)
        return float(value), grad

    return constrained_quantity_profiles(ml.design.residual, x_hat, bounds, deviance_and_gradient,
                                         lambda x: x[:-1], lambda x: float(np.exp(x[-1])))


def constrained_quantity_profiles(residual: Any, x_hat: np.ndarray, bounds: list,
                                  deviance_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]],
                                  params_of: Callable[[np.ndarray], np.ndarray],
                                  sigma2_of: Callable[[np.ndarray], float]) -> list[Profile]:
    """Profiles of the structure's natural quantities that are not coordinates (SLSQP, equality).

    Parameters
    ----------
    residual : ResidualDesign
        The structure (``toep``, ``toeph``: lag correlations and SD ratios; ``un``:
        every variance and covariance; then the ``variance=`` ratios).
    x_hat : numpy.ndarray
        The ML optimum in the optimiser's coordinates.
    bounds : list
        Their box.
    deviance_and_gradient : callable
        ``x -> (deviance - reference, gradient)``.
    params_of, sigma2_of : callable
        The structure's kernel parameters and ``sigma^2`` at ``x``.

    Returns
    -------
    list of Profile
        One per quantity of :func:`_quantity_names`, on the natural scale.
    """
    profiles = []
    for k, (name, low, high) in enumerate(_quantity_names(residual)):
        def constraint_value(x: np.ndarray, k: int = k) -> float:
            return float(_quantity_values(residual, params_of(x), sigma2_of(x))[k])

        estimate = constraint_value(x_hat)
        state = {"start": x_hat.copy()}

        def deviance(value: float, constraint_value: Callable = constraint_value,
                     state: dict = state) -> float:
            best = None
            for start in (state["start"], x_hat):
                result = minimize(deviance_and_gradient, start, jac=True, method="SLSQP",
                                  bounds=bounds, options={"ftol": 1e-14, "maxiter": 1000},
                                  constraints=[{"type": "eq",
                                                "fun": lambda x: constraint_value(x) - value}])
                held = abs(constraint_value(result.x) - value) <= 1e-9 * max(1.0, abs(value))
                if held and (best is None or result.fun < best.fun):
                    best = result
                if best is not None and best.success:
                    break
            if best is None:
                return _FAR
            state["start"] = np.asarray(best.x)
            return float(best.fun)

        scale = 0.05 if np.isfinite(low) and low < 0 else 0.2 * max(abs(estimate), 1e-3)
        profiles.append(Profile(name, estimate, low, high, scale, deviance))
    return profiles


def _sigma_row(ml: Any, reference: float, cutoff: float) -> tuple[str, float, float, float]:
    kernel, n = ml.kernel, ml.design.n
    box_lower, box_upper = kernel.box()
    bounds = [(float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None)
              for lo, hi in zip(box_lower, box_upper, strict=True)]
    state = {"start": np.asarray(ml.theta, dtype=float).copy()}

    def deviance(log_sigma: float) -> float:
        sigma2 = float(np.exp(2.0 * log_sigma))

        def objective(phi: np.ndarray) -> tuple[float, np.ndarray]:
            try:
                comp = kernel.components(phi, reml=False, gradient=True)
            except (FitError, np.linalg.LinAlgError):
                return _FAR, np.zeros(phi.size)
            value = float(comp.logdet + comp.r2 / sigma2 + n * np.log(2.0 * np.pi * sigma2))
            return value, np.asarray(comp.d_logdet + comp.d_r2 / sigma2, dtype=float)
        dev, solution = minimise_profile(objective, state["start"], bounds, gradient=True)
        state["start"] = solution
        return dev - reference

    estimate = float(np.log(ml.sigma))
    profile = Profile("sigma", estimate, -np.inf, np.inf, 0.05, deviance)
    return ("sigma", float(ml.sigma), float(np.exp(profile_limit(profile, cutoff, -1))),
            float(np.exp(profile_limit(profile, cutoff, +1))))
