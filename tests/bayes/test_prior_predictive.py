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


# ------------------------------------------------------------------ GLMMs (issue 14)
def _standardised_sums(response: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Per row, ``sum_s (y_s - E y_s) / sqrt(sum_s Var y_s)`` given each draw's parameters: N(0, 1)."""
    return (response - mean).sum(axis=0) / np.sqrt(variance.sum(axis=0))


def _eta(tree, model) -> np.ndarray:
    prior = tree["prior"]
    X = np.asarray(model.design.X, dtype=float)
    eta = prior["fixef"].values[0] @ X.T + np.asarray(model.design.offset, dtype=float)
    for block in model.design.blocks:
        effects = prior[f"ranef_{block.group}"].values[0]  # (draw, term, level)
        eta = eta + np.einsum("iq,sqi->si", np.asarray(block.z), effects[:, :, block.codes])
    return eta


def test_binomial_prior_predictive_draws_successes_given_the_drawn_parameters():
    data = hl.datasets.cbpp()
    model = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data,
                     family="binomial")
    tree = model.prior_predictive(draws=4000, random_seed=5)
    assert set(tree["prior"].data_vars) == {"fixef", "sd_herd", "ranef_herd"}  # no sigma
    name = "cbind(incidence, size - incidence)"
    y = tree["prior_predictive"][name].values[0]
    trials = data["size"].to_numpy()
    assert y.dtype.kind == "i" and y.min() >= 0 and np.all(y <= trials)
    np.testing.assert_array_equal(tree["observed_data"][name].values, data["incidence"])
    p = 1.0 / (1.0 + np.exp(-_eta(tree, model)))
    z = _standardised_sums(y, trials * p, trials * p * (1.0 - p))
    assert np.max(np.abs(z)) < 4.5  # 56 rows of N(0, 1): exceeded with probability ~4e-4
    # the default priors are proper and on the link scale: the success rate spreads over (0, 1)
    share = (y / trials).ravel()
    assert 0.2 < np.mean(share) < 0.8 and np.mean(share < 0.1) > 0.05 and np.mean(share > 0.9) > 0.05


def test_count_prior_predictive_uses_the_offset_and_the_dispersion():
    data = hl.datasets.cbpp()
    priors = {"Intercept": Prior("normal", mu=-2.0, sigma=0.5), "b": Prior("normal", sigma=0.3),
              "sd": Prior("half_normal", sigma=0.3)}
    poisson = hl.Model("incidence ~ period + offset(log(size)) + (1 | herd)", data,
                       family="poisson", priors=priors)
    tree = poisson.prior_predictive(draws=4000, random_seed=6)
    mu = np.exp(_eta(tree, poisson))
    y = tree["prior_predictive"]["incidence"].values[0]
    assert np.max(np.abs(_standardised_sums(y, mu, mu))) < 4.5
    # without the offset the counts would be ~size times smaller: the offset is in
    assert np.mean(y) == pytest.approx(np.mean(mu), rel=0.05)
    nb = hl.Model("incidence ~ period + offset(log(size)) + (1 | herd)", data,
                  family="negative_binomial", priors=priors)
    tree = nb.prior_predictive(draws=4000, random_seed=7)
    theta = tree["prior"]["theta"].values[0]
    assert np.all(theta > 0)
    # given the draws' parameters the responses are independent, so the test may keep the draws
    # with theta > 1 (near 0 the gamma-Poisson tail leaves the sums far from normal)
    keep = theta > 1.0
    mu = np.exp(_eta(tree, nb))[keep]
    y = tree["prior_predictive"]["incidence"].values[0][keep]
    variance = mu + mu ** 2 / theta[keep, None]
    assert np.max(np.abs(_standardised_sums(y, mu, variance))) < 4.5


def test_glmm_prior_predictive_needs_proper_priors():
    data = hl.datasets.cbpp()
    model = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data,
                     family="binomial", priors="flat")
    with pytest.raises(PriorError, match="flat"):
        model.prior_predictive(draws=10)
