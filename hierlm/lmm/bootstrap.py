"""Parametric bootstrap of an ML/REML fit (lme4's ``bootMer`` and ``confint(method = "boot")``).

Each replicate simulates a new response from the fitted model, new group
effects included (lme4's ``use.u = FALSE``):

    y* = X beta_hat + sum_k Z_k b*_k + e*,  b*_k ~ N(0, G_hat_k) per level,  e* ~ N(0, sigma_hat^2),

with a residual structure ``e*_i ~ N(0, sigma_hat^2 M_i S_i M_i)`` per group (the fitted
structure, :meth:`~hierlm.lmm.grouped.GroupedObjective.simulate_residuals`); patterned
random-effect terms draw ``b*`` from their fitted ``G``. The replicates then also record
the structure's natural parameters (``residual.rho``, ``residual.phi``, SD ratios),

refits it by the same criterion (REML or ML, started at the fit's theta) and
records every parameter: SDs and correlations of each block (lme4's order),
sigma and the fixed effects. Percentile intervals are the empirical quantiles
of the replicates. Replicates whose refit is singular are kept (their SD is 0),
as lme4 keeps them; their number is reported.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from hierlm.core.warn import warn
from hierlm.errors import FitError, HierlmWarning, InputTypeError
from hierlm.lmm.profile import parameter_vector

__all__ = ["parametric_bootstrap", "bootstrap_confint"]


def _simulate(fit: Any, rng: np.random.Generator) -> np.ndarray:
    """One response drawn from the fitted model (new group effects and residuals)."""
    design = fit.design
    y = np.asarray(design.X, dtype=float) @ np.asarray(fit.beta, dtype=float)
    for block, cov in zip(design.blocks, fit.covariances(), strict=True):
        values, vectors = np.linalg.eigh(cov)
        root = vectors * np.sqrt(np.clip(values, 0.0, None))
        effects = rng.standard_normal((block.n_levels, block.q)) @ root.T
        codes = np.asarray(block.codes)
        y = y + np.sum(np.asarray(block.z, dtype=float) * effects[codes], axis=1)
    if design.residual is not None:
        return y + fit.kernel.simulate_residuals(fit.theta, fit.sigma, rng)
    return y + fit.sigma * rng.standard_normal(design.n)


def parametric_bootstrap(fit: Any, n_boot: int = 500, random_seed: int | None = None) -> pd.DataFrame:
    """Simulate-and-refit replicates of every parameter.

    Parameters
    ----------
    fit : LmmResult
        An ML or REML fit.
    n_boot : int
        Number of replicates.
    random_seed : int, optional
        Seed; the same seed gives the same replicates.

    Returns
    -------
    pandas.DataFrame
        One row per replicate, one column per parameter (:func:`parameter_vector`
        names, from :mod:`hierlm.lmm.profile`). ``attrs["n_singular"]`` counts the singular refits.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)):
        raise InputTypeError(f"n_boot must be a positive integer, got {n_boot!r}")
    if n_boot < 2:
        raise FitError(f"n_boot={n_boot}: a bootstrap needs at least 2 replicates (lme4 uses 500)")
    rng = np.random.default_rng(random_seed)
    rows, singular = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        for _ in range(int(n_boot)):
            refit = fit.refit(newresp=_simulate(fit, rng), start=fit.theta, warn=False)
            singular += bool(refit.is_singular)
            rows.append(parameter_vector(refit))
    frame = pd.DataFrame(rows).reset_index(drop=True)
    frame.attrs["n_singular"] = singular
    return frame


def bootstrap_confint(fit: Any, level: float = 0.95, n_boot: int = 500,
                      random_seed: int | None = None) -> pd.DataFrame:
    """Percentile intervals of every parameter from :func:`parametric_bootstrap`.

    Returns
    -------
    pandas.DataFrame
        Columns ``lower``, ``upper``; ``attrs`` carries ``n_boot`` and ``n_singular``.
    """
    replicates = parametric_bootstrap(fit, n_boot, random_seed)
    tail = (1.0 - level) / 2.0
    out = pd.DataFrame({"lower": replicates.quantile(tail), "upper": replicates.quantile(1.0 - tail)})
    out.index.name = "parameter"
    if replicates.attrs["n_singular"]:
        warn(f"{replicates.attrs['n_singular']} of {n_boot} bootstrap refits were singular "
             "(an SD at 0); their values are kept, as lme4 keeps them", HierlmWarning)
    out.attrs.update(n_boot=int(n_boot), n_singular=replicates.attrs["n_singular"])
    return out
