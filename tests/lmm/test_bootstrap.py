"""Parametric bootstrap: the simulation follows the fitted model, the intervals behave.

lme4's bootstrap is random, so nothing is compared digit by digit: the checks are
distributional, with stated Monte Carlo tolerances.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm as hl
from hierlm.errors import HierlmWarning
from hierlm.lmm.bootstrap import _simulate, parametric_bootstrap
from hierlm.lmm.profile import parameter_vector


@pytest.fixture(scope="module")
def sleep_fit():
    return hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy")).fit()


def test_simulated_responses_have_the_fitted_marginal_covariance(sleep_fit):
    """Rows 0 and 9 (subject 308, Days 0 and 9) and row 10 (subject 309): 20,000 simulations
    reproduce Var and Cov of Z G Z' + sigma^2 I within 5 %."""
    rng = np.random.default_rng(0)
    sims = np.array([_simulate(sleep_fit, rng)[[0, 9, 10]] for _ in range(20_000)])
    G = sleep_fit.covariances()[0]
    z0, z9 = np.array([1.0, 0.0]), np.array([1.0, 9.0])
    s2 = sleep_fit.sigma**2
    empirical = np.cov(sims.T)
    assert empirical[0, 0] == pytest.approx(z0 @ G @ z0 + s2, rel=0.05)
    assert empirical[1, 1] == pytest.approx(z9 @ G @ z9 + s2, rel=0.05)
    assert empirical[0, 1] == pytest.approx(z0 @ G @ z9, rel=0.05)
    assert abs(empirical[0, 2]) < 0.05 * empirical[0, 0]  # different subjects: independent
    population_mean = (sleep_fit.design.X @ sleep_fit.beta)[[0, 9, 10]]
    np.testing.assert_allclose(sims.mean(axis=0), population_mean, rtol=0.01)


def test_replicates_spread_like_the_standard_errors(sleep_fit):
    """The SD of 300 bootstrap fixed effects matches the model-based SE (15 %, about 3.5 MC
    SEs); simulating without group effects gives about half of it (measured 0.58 and 0.49)."""
    replicates = parametric_bootstrap(sleep_fit, n_boot=300, random_seed=2)
    se = sleep_fit.fixef()["std_error"]
    np.testing.assert_allclose(replicates[["Intercept", "Days"]].std().to_numpy(), se.to_numpy(), rtol=0.15)
    centre = replicates["sigma"].mean()
    assert abs(centre - sleep_fit.sigma) < 4 * replicates["sigma"].std() / np.sqrt(300)


def test_names_follow_the_profile_intervals_and_seed_reproduces(sleep_fit):
    first = sleep_fit.confint(method="boot", n_boot=20, random_seed=5)
    again = sleep_fit.confint(method="boot", n_boot=20, random_seed=5)
    profile_names = list(sleep_fit.confint(method="profile").index)
    assert list(first.index) == profile_names == list(parameter_vector(sleep_fit).index)
    assert first.equals(again) and first.attrs["n_boot"] == 20
    assert (first["lower"] <= first["upper"]).all()


def test_singular_fit_bootstrap_reaches_zero_and_warns():
    fit = hl.Model("Yield ~ 1 + (1 | Batch)", hl.datasets.load("Dyestuff2")).fit(warn=False)
    with pytest.warns(HierlmWarning, match="bootstrap refits were singular"):
        interval = fit.confint(method="boot", n_boot=60, random_seed=1)
    assert interval.loc["sd_Intercept|Batch", "lower"] == 0.0
    assert interval.attrs["n_singular"] >= 15


def test_ml_fit_is_refitted_by_ml(sleep_fit):
    ml = sleep_fit.refit(reml=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        replicates = parametric_bootstrap(ml, n_boot=40, random_seed=3)
    # replicates are refitted by ML, so they centre on the ML estimate of sigma
    assert abs(replicates["sigma"].mean() - ml.sigma) < 4 * replicates["sigma"].std() / np.sqrt(40)
