"""Variance explained (R²) by a linear mixed model.

Two families of definitions, both computed per draw:

**Nakagawa & Schielzeth (2013, Methods Ecol. Evol. 4: 133-142)**, extended to
random slopes by Johnson (2014) and Nakagawa, Johnson & Schielzeth (2017):

    v_f = var_i(x_i' beta)                  (divisor n - 1, as R's var)
    v_r = sum_k mean_i z_i' G_k z_i         (design-averaged random variance)
    R²_marginal    = v_f / (v_f + v_r + sigma^2)
    R²_conditional = (v_f + v_r) / (v_f + v_r + sigma^2)

The marginal R² is the share explained by the fixed effects, the conditional
R² the share explained by fixed and random effects together.

**Bayesian R² of Gelman, Goodrich, Gabry & Vehtari (2019, Am. Stat. 73:
307-309)**, for posterior draws s:

    R²_s = var_i(mu_i^s) / (var_i(mu_i^s) + sigma_s^2)

with ``mu^s`` the linear predictor including the group effects of draw s
(``residual="model"``, the paper's recommendation), or with the variance of
the realised residuals ``y - mu^s`` in place of ``sigma_s^2``
(``residual="data"``, as rstanarm's ``bayes_R2``). Unlike the classical R²
it is a posterior distribution and cannot exceed 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierlm.errors import InputTypeError
from hierlm.results.common import (
    as_draws,
    chains_of,
    fixed_variance,
    mean_random_variance,
    observation_level_blocks,
    residual_variance,
)
from hierlm.results.draws import FitDraws
from hierlm.results.structures import require_single_residual_variance
from hierlm.results.summary import point_or_posterior

__all__ = ["r2", "nakagawa_r2_draws", "bayes_r2_draws"]


def nakagawa_r2_draws(draws: FitDraws, method: str = "lognormal",
                      expected_count: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Marginal and conditional R² of Nakagawa et al., one value per draw.

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.
    method, expected_count
        The distribution-specific variance of non-Gaussian families (see
        :func:`hierlm.results.common.residual_variance`).

    Returns
    -------
    marginal, conditional : numpy.ndarray
        Each of shape (S,).
    """
    fixed = fixed_variance(draws)
    random = mean_random_variance(draws)[:, ~observation_level_blocks(draws)].sum(axis=1)
    total = fixed + random + residual_variance(draws, method, expected_count)
    return fixed / total, (fixed + random) / total


def bayes_r2_draws(draws: FitDraws, residual: str = "model", include_random: bool = True) -> np.ndarray:
    """Bayesian R² of Gelman et al. (2019), one value per draw.

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.
    residual : {"model", "data"}
        ``"model"``: residual variance ``sigma^2`` of each draw;
        ``"data"``: variance of the residuals ``y - mu`` of each draw.
    include_random : bool
        Whether ``mu`` includes the group effects (the default, as brms).

    Returns
    -------
    numpy.ndarray
        Shape (S,).

    Raises
    ------
    InputTypeError
        If ``residual`` is not one of the two options.
    """
    if residual not in ("model", "data"):
        raise InputTypeError(f"residual must be 'model' or 'data', got {residual!r}.")
    mu = draws.linear_predictor(include_random=include_random)
    if not draws.is_gaussian:
        # Gelman et al.'s R² on the response scale: var(mu) / (var(mu) + mean_i Var(y_i | mu_i))
        mean = draws.family.link.inverse(mu)
        given = getattr(draws.design, "weights", None)
        weights = np.ones(draws.design.n) if given is None else np.asarray(given, dtype=float)
        explained = mean.var(axis=1, ddof=1)
        if residual == "model":
            unexplained = np.array([np.mean(draws.family.variance(
                mean[s], None if draws.dispersion is None else float(draws.dispersion[s])) / weights)
                for s in range(draws.n_draws)])
        else:
            unexplained = (np.asarray(draws.design.y)[None, :] - mean).var(axis=1, ddof=1)
        return np.asarray(explained / (explained + unexplained))
    explained = mu.var(axis=1, ddof=1)
    if residual == "model":
        unexplained = draws.sigma**2
    else:
        unexplained = (np.asarray(draws.design.y)[None, :] - mu).var(axis=1, ddof=1)
    return np.asarray(explained / (explained + unexplained))


def r2(fit: object, bayes: bool | None = None, residual: str = "model",
       prob: float | None = None, method: str = "lognormal",
       expected_count: np.ndarray | None = None) -> pd.DataFrame:
    """Marginal, conditional and (for posterior draws) Bayesian R² of a fit.

    Parameters
    ----------
    fit : FitDraws or fit result
        A hierlm fit or its draws.
    bayes : bool, optional
        Add the rows ``bayes`` (Gelman et al. 2019, group effects included)
        and ``bayes_marginal`` (fixed part only). Default: True for posterior
        draws, False for point fits.
    residual : {"model", "data"}
        Residual variance used by the Bayesian R² (see :func:`bayes_r2_draws`).
    prob : float, optional
        Interval probability for Bayesian fits (ArviZ default when None).
    method, expected_count
        The latent-scale distribution-specific variance of non-Gaussian
        families (see :func:`hierlm.results.common.residual_variance`).

    Returns
    -------
    pandas.DataFrame
        Rows ``marginal`` and ``conditional`` (Nakagawa et al.) and optionally
        ``bayes``, ``bayes_marginal``; columns ``estimate`` (point fits) or a
        posterior summary.
    """
    require_single_residual_variance(fit, "R² (Nakagawa)")
    draws = as_draws(fit)
    marginal, conditional = nakagawa_r2_draws(draws, method, expected_count)
    rows = {"marginal": marginal, "conditional": conditional}
    if bayes is None:
        bayes = not draws.point
    if bayes:
        rows["bayes"] = bayes_r2_draws(draws, residual=residual, include_random=True)
        rows["bayes_marginal"] = bayes_r2_draws(draws, residual=residual, include_random=False)
    table = point_or_posterior(np.column_stack(list(rows.values())), draws.point,
                               chains=chains_of(draws), prob=prob)
    table.index = pd.Index(list(rows), name="r2")
    return table
