"""Shrinkage of GLMM levels: per-level GLMs (no pooling) against a direct likelihood maximisation.

The reference maximises each level's log-likelihood written out here (binomial:
``sum s log p + f log(1 - p)``; Poisson: ``sum y eta - exp(eta)``) with scipy's optimiser,
with the offset ``x' beta`` of the other fixed-effect columns at the fit's estimates, and takes
the standard error from the closed-form Fisher information. Tolerances: estimates rel 1e-6
(the optimiser's tolerance), SEs rel 1e-5.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import optimize

import hierlm as hl
from tests.glmm.reference import fitted


def _binomial_mle(s: np.ndarray, n: np.ndarray, offset: np.ndarray) -> tuple[float, float]:
    def nll(a: float) -> float:
        eta = offset + a
        return float(-np.sum(s * eta - n * np.logaddexp(0.0, eta)))

    a = optimize.minimize_scalar(nll, bounds=(-15, 15), method="bounded",
                                 options={"xatol": 1e-10}).x
    p = 1.0 / (1.0 + np.exp(-(offset + a)))
    return a, 1.0 / np.sqrt(np.sum(n * p * (1.0 - p)))


def test_binomial_no_pooling_is_the_per_herd_glm():
    fit = fitted("glmer/cbpp_binomial_laplace")
    table = fit.shrinkage("herd").table
    data = fit.model.data
    X = np.asarray(fit.design.X)
    offset = X[:, 1:] @ fit.beta[1:]  # the period effects; the intercept varies by herd
    for level, row in zip(table["level"], table.itertuples(), strict=True):
        rows = np.flatnonzero(data["herd"].astype(str).to_numpy() == str(level))
        a, se = _binomial_mle(data["incidence"].to_numpy()[rows], data["size"].to_numpy()[rows],
                              offset[rows])
        assert row.no_pooling == pytest.approx(a, rel=1e-6)
        assert row.no_pooling_se == pytest.approx(se, rel=1e-5)
    # partial pooling: intercept + conditional mode; complete: the fixed intercept
    np.testing.assert_allclose(table["partial_pooling"], fit.beta[0] + fit.effects()[0][:, 0],
                               rtol=1e-12)
    np.testing.assert_allclose(table["complete_pooling"], fit.beta[0])
    # a random intercept's shrinkage factor n_j w tau^2 / (...) is close to the pull
    assert np.max(np.abs(table["shrinkage_factor"] - table["pull"])) < 0.06
    assert np.all((table["shrinkage_factor"] > 0) & (table["shrinkage_factor"] < 1))


def test_pooled_glm_is_complete_pooling_with_ols():
    fit = fitted("glmer/cbpp_binomial_laplace")
    data = fit.model.data
    X = np.asarray(fit.design.X)
    s, n = data["incidence"].to_numpy(), data["size"].to_numpy()

    def nll(b: np.ndarray) -> float:
        eta = X @ b
        return float(-np.sum(s * eta - n * np.logaddexp(0.0, eta)))

    def grad(b: np.ndarray) -> np.ndarray:
        return -X.T @ (s - n / (1.0 + np.exp(-(X @ b))))

    ref = optimize.minimize(nll, np.zeros(X.shape[1]), jac=grad, method="BFGS",
                            options={"gtol": 1e-10}).x
    pooled = fit.shrinkage("herd", complete="ols").table["complete_pooling"].iloc[0]
    assert pooled == pytest.approx(ref[0], rel=1e-6)


def test_poisson_random_slope_per_level_glms():
    fit = fitted("glmer/sim_poisson_slope")  # y ~ x + (1 + x | g)
    table = fit.shrinkage("g").table
    data = fit.model.data
    for level in table["level"].unique():
        rows = np.flatnonzero(data["g"].astype(str).to_numpy() == str(level))
        y, x = data["y"].to_numpy(float)[rows], data["x"].to_numpy(float)[rows]
        Z = np.column_stack([np.ones_like(x), x])

        def nll(b: np.ndarray, y=y, Z=Z) -> float:
            return float(-np.sum(y * (Z @ b) - np.exp(Z @ b)))

        def grad(b: np.ndarray, y=y, Z=Z) -> np.ndarray:
            return -Z.T @ (y - np.exp(Z @ b))

        b = optimize.minimize(nll, np.zeros(2), jac=grad, method="BFGS",
                              options={"gtol": 1e-11}).x
        se = np.sqrt(np.diag(np.linalg.inv(Z.T @ (np.exp(Z @ b)[:, None] * Z))))
        ours = table[table["level"] == level].set_index("coefficient")
        np.testing.assert_allclose(ours.loc[["Intercept", "x"], "no_pooling"], b, rtol=1e-6)
        np.testing.assert_allclose(ours.loc[["Intercept", "x"], "no_pooling_se"], se, rtol=1e-5)


def test_a_level_with_no_successes_has_no_finite_estimate():
    data = hl.datasets.cbpp().copy()
    data.loc[data["herd"].astype(str) == "1", "incidence"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        fit = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data,
                       family="binomial").fit("ml")
    table = fit.shrinkage("herd").table.set_index("level")
    assert np.isnan(table.loc["1", "no_pooling"]) and np.isnan(table.loc["1", "no_pooling_se"])
    assert np.isfinite(table.drop(index="1")["no_pooling"]).all()
    assert np.isfinite(table.loc["1", "partial_pooling"])  # the model still has a mode for it


def test_bayesian_fits_use_the_same_per_level_glms():
    data = hl.datasets.cbpp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        fit = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data,
                       family="binomial").fit("map")
    table = fit.shrinkage("herd").table
    draws = fit.draws()
    beta = draws.beta[0]
    offset = np.asarray(fit.design.X)[:, 1:] @ beta[1:]
    rows = np.flatnonzero(data["herd"].astype(str).to_numpy() == "3")
    a, se = _binomial_mle(data["incidence"].to_numpy()[rows], data["size"].to_numpy()[rows],
                          offset[rows])
    row = table[table["level"].astype(str) == "3"].iloc[0]
    assert row["no_pooling"] == pytest.approx(a, rel=1e-6)
    assert row["no_pooling_se"] == pytest.approx(se, rel=1e-5)
    np.testing.assert_allclose(table["partial_pooling"], beta[0] + draws.effects[0][0, :, 0],
                               rtol=1e-12)
    assert np.all((table["shrinkage_factor"] > 0.3) & (table["shrinkage_factor"] < 1.0))
