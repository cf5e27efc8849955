"""Prior predictive draws: layout, moments, agreement with PyMC's forward sampler, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pymc as pm
import pytest
from scipy import stats

import hierlm as hl
from hierlm import Prior
from hierlm.bayes.prior_predictive import MAX_PREDICTIVE_ELEMENTS, sample_prior_predictive
from hierlm.errors import FitError, InputTypeError, PriorError

NORMAL_PRIORS = {
    "Intercept": Prior("normal", mu=250.0, sigma=20.0),
    "Days": Prior("normal", mu=10.0, sigma=5.0),
    "sd:Subject:Intercept": Prior("half_normal", sigma=30.0),
    "sd:Subject:Days": Prior("half_normal", sigma=6.0),
    "sigma": Prior("half_normal", sigma=25.0),
}


def test_layout_matches_the_posterior_names(sleep_model):
    tree = sleep_model.prior_predictive(draws=50, random_seed=1)
    assert set(tree.children) == {"prior", "prior_predictive", "observed_data"}
    prior = tree["prior"]
    assert set(prior.data_vars) == {"fixef", "sigma", "sd_Subject", "cor_Subject", "ranef_Subject"}
    assert prior["ranef_Subject"].dims == ("chain", "draw", "Subject_term", "Subject_level")
    assert list(prior["Subject_pair"].values) == ["Intercept,Days"]
    assert tree["prior_predictive"]["Reaction"].shape == (1, 50, sleep_model.nobs)
    np.testing.assert_array_equal(tree["observed_data"]["Reaction"].values, sleep_model.design.y)


def test_seed_reproduces_and_differs(sleep_model):
    first = sleep_model.prior_predictive(draws=20, random_seed=4)["prior_predictive"]["Reaction"].values
    again = sample_prior_predictive(sleep_model, draws=20, random_seed=4)["prior_predictive"]["Reaction"]
    other = sleep_model.prior_predictive(draws=20, random_seed=5)["prior_predictive"]["Reaction"].values
    np.testing.assert_array_equal(first, again.values)
    assert not np.allclose(first, other)


def test_response_moments_match_the_analytic_prior(sleep_df):
    """With normal / half-normal priors, E[y_i] = mu_0 + Days_i mu_1 and
    Var[y_i] = s_0^2 + Days_i^2 s_1^2 + tau_0^2 + Days_i^2 tau_1^2 + tau_sigma^2
    (correlations average to zero under LKJ, E[sd^2] = tau^2 for half-normal(tau)).
    """
    model = hl.Model("Reaction ~ Days + (Days | Subject)", sleep_df, priors=NORMAL_PRIORS)
    y = model.prior_predictive(draws=20_000, random_seed=3)["prior_predictive"]["Reaction"].values[0]
    days = sleep_df["Days"].to_numpy(dtype=float)
    mean = 250.0 + 10.0 * days
    var = 20.0**2 + days**2 * 5.0**2 + 30.0**2 + days**2 * 6.0**2 + 25.0**2
    z_mean = (y.mean(axis=0) - mean) / np.sqrt(var / y.shape[0])
    assert np.abs(z_mean).max() < 4.5
    # the variance estimate of 20,000 roughly normal values has relative SE about 1%
    np.testing.assert_allclose(y.var(axis=0), var, rtol=0.06)


def test_rows_of_one_level_share_the_group_effect(sleep_df):
    """Rows 0 and 1 (subject 308, Days 0 and 1) share the intercept prior and the subject's
    intercept: Cov = 20^2 + 30^2 (the correlation term has mean 0). Rows 0 and 10 (Days 0 of
    subjects 308 and 309) share only the fixed intercept: Cov = 20^2.
    """
    assert list(sleep_df["Subject"].iloc[[0, 1, 10]].astype(str)) == ["308", "308", "309"]
    model = hl.Model("Reaction ~ Days + (Days | Subject)", sleep_df, priors=NORMAL_PRIORS)
    y = model.prior_predictive(draws=20_000, random_seed=8)["prior_predictive"]["Reaction"].values[0]
    same = np.cov(y[:, 0], y[:, 1])[0, 1]
    across = np.cov(y[:, 0], y[:, 10])[0, 1]
    # SE of a covariance of about 1300 from 20,000 draws with variances near 2000: about 17
    assert abs(same - (20.0**2 + 30.0**2)) < 85
    assert abs(across - 20.0**2) < 85


def test_agrees_with_pymc_forward_sampling_of_the_full_model(sleep_df):
    """Our NumPy sampler and pm.sample_prior_predictive on the PyMC model give one distribution."""
    heavy_tail = Prior("half_student_t", nu=3.0, sigma=6.0)
    priors = {**NORMAL_PRIORS, "cor": Prior("lkj", eta=2.0), "sd:Subject:Days": heavy_tail}
    model = hl.Model("Reaction ~ Days + (Days | Subject)", sleep_df, priors=priors)
    ours = model.prior_predictive(draws=3000, random_seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with model.build(formulation="full").pymc_model:
            theirs = pm.sample_prior_predictive(
                draws=3000, random_seed=2, compile_kwargs={"mode": "FAST_COMPILE"}
            )
    checks = {
        "fixef": lambda g: g["fixef"].values[0, :, 1],
        "sigma": lambda g: g["sigma"].values[0],
        "sd_Subject": lambda g: g["sd_Subject"].values[0, :, 1],
        "cor_Subject": lambda g: g["cor_Subject"].values[0, :, 0],
        "ranef_Subject": lambda g: g["ranef_Subject"].sel(Subject_term="Intercept").values[0, :, 3],
    }
    for name, pick in checks.items():
        assert stats.ks_2samp(pick(ours["prior"]), pick(theirs["prior"])).pvalue > 1e-4, name
    y_ours = ours["prior_predictive"]["Reaction"].values[0, :, 17]
    y_theirs = theirs["prior_predictive"]["Reaction"].values[0, :, 17]
    assert stats.ks_2samp(y_ours, y_theirs).pvalue > 1e-4


def test_crossed_and_nested_structures(crossed_df):
    model = hl.Model("y ~ x + (x | a) + (1 | b)", crossed_df)
    tree = model.prior_predictive(draws=30, random_seed=0)
    prior = tree["prior"]
    assert {"ranef_a", "ranef_b", "sd_a", "sd_b", "cor_a"} <= set(prior.data_vars)
    assert prior["ranef_b"].shape == (1, 30, 1, 5)
    y = tree["prior_predictive"]["y"].values[0]
    assert np.isfinite(y).all() and y.shape == (30, len(crossed_df))
    pastes = hl.Model("strength ~ 1 + (1 | batch/cask)", hl.datasets.load("Pastes"))
    nested = pastes.prior_predictive(draws=10, random_seed=0)["prior"]
    assert nested.sizes["cask:batch_level"] == 30 and nested["ranef_batch"].shape[3] == 10


def test_default_priors_cover_the_data_scale(sleep_model):
    """The data-scaled defaults put the observed responses well inside the prior predictive range."""
    y = sleep_model.prior_predictive(draws=2000, random_seed=6)["prior_predictive"]["Reaction"].values[0]
    low, high = np.quantile(y, [0.05, 0.95], axis=0)
    observed = sleep_model.design.y
    assert ((observed > low) & (observed < high)).all()


def test_flat_priors_are_refused_with_the_keys_to_set(sleep_df):
    model = hl.Model("Reaction ~ Days + (Days | Subject)", sleep_df, priors="flat")
    with pytest.raises(PriorError, match=r"flat \(improper\): Intercept, Days, sd:Subject:Intercept"):
        model.prior_predictive()
    partly = hl.Model("Reaction ~ Days + (Days | Subject)", sleep_df, priors={"sigma": "flat"})
    with pytest.raises(PriorError, match=r"flat \(improper\): sigma;"):
        partly.prior_predictive()


def test_bad_draw_counts(sleep_model):
    with pytest.raises(InputTypeError, match="draws must be a positive integer"):
        sleep_model.prior_predictive(draws=2.5)  # type: ignore[arg-type]
    with pytest.raises(FitError, match="at least one"):
        sleep_model.prior_predictive(draws=0)
    too_many = MAX_PREDICTIVE_ELEMENTS // sleep_model.nobs + 1
    with pytest.raises(FitError, match=f"use draws <= {too_many - 1}"):
        sleep_model.prior_predictive(draws=too_many)
