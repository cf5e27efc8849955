"""Building and sampling (short runs): names, dims, reproducibility, diagnostics, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm as hl
from hierlm.bayes import build_model, choose_formulation, fit_bayes
from hierlm.bayes.diagnostics import count_true, diagnose, max_rhat, min_ess, warn_if_problems
from hierlm.bayes.sample import SamplerSettings
from hierlm.errors import FitError, SamplingWarning

SHORT = {"draws": 60, "tune": 60, "chains": 2, "progressbar": False}


@pytest.fixture(scope="module")
def sleep_fit(sleep_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return fit_bayes(sleep_model, random_seed=11, **SHORT)


def test_auto_picks_marginal_for_one_factor_and_full_otherwise(sleep_df, crossed_df):
    assert choose_formulation(hl.Model("Reaction ~ Days + (Days | Subject)", sleep_df).design) == "marginal"
    two = hl.Model("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep_df).design
    assert choose_formulation(two) == "marginal"
    crossed = hl.Model("y ~ x + (x | a) + (1 | b)", crossed_df)
    assert choose_formulation(crossed.design) == "full"
    assert choose_formulation(crossed.design, "auto", family="binomial") == "full"
    # the marginal form exists for crossed designs (the one likelihood); "auto" keeps the full one
    assert choose_formulation(crossed.design, "marginal") == "marginal"
    with pytest.raises(FitError, match="needs a Gaussian response"):
        choose_formulation(crossed.design, "marginal", family="binomial")
    with pytest.raises(FitError, match="formulation='mixed'"):
        choose_formulation(crossed.design, "mixed")


def test_built_models_share_parameter_names(sleep_model):
    marginal = build_model(sleep_model, formulation="marginal")
    full = sleep_model.build(formulation="full")
    free_marginal = {rv.name for rv in marginal.pymc_model.free_RVs}
    free_full = {rv.name for rv in full.pymc_model.free_RVs}
    assert free_marginal == {"fixef", "sigma", "sd_Subject", "corr_raw_Subject"}
    assert free_full == free_marginal | {"z_Subject"}
    assert full.pymc_model.named_vars_to_dims["ranef_Subject"] == ("Subject_term", "Subject_level")
    assert marginal.pymc_model.coords["Subject_pair"] == ("Intercept,Days",)
    assert marginal.stats is not None and full.stats is None


def test_posterior_layout(sleep_fit, sleep_model):
    idata = sleep_fit.idata
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood", "log_likelihood_group"} <= set(
        idata.children
    )
    post = idata["posterior"]
    assert set(post.data_vars) == {"fixef", "sigma", "sd_Subject", "cor_Subject", "ranef_Subject"}
    assert post["fixef"].dims == ("chain", "draw", "fixef_term")
    assert list(post["fixef_term"].values) == ["Intercept", "Days"]
    assert post["cor_Subject"].dims == ("chain", "draw", "Subject_pair")
    assert list(post["Subject_pair"].values) == ["Intercept,Days"]
    assert set(post.coords) == {"chain", "draw", "fixef_term", "Subject_term", "Subject_level",
                                "Subject_pair"}
    assert post["ranef_Subject"].dims == ("chain", "draw", "Subject_term", "Subject_level")
    assert post.sizes["Subject_level"] == 18 and post.sizes["draw"] == 60 and post.sizes["chain"] == 2
    assert idata["log_likelihood"]["Reaction"].shape == (2, 60, 180)
    assert idata["log_likelihood_group"]["Reaction"].shape == (2, 60, 18)
    assert {"diverging", "tree_depth", "reached_max_treedepth", "step_size"} <= set(
        idata["sample_stats"].data_vars
    )
    assert (
        sleep_fit.formulation == "marginal" and sleep_fit.sampler == "nutpie" and sleep_fit.method == "nuts"
    )
    assert {"build", "compile", "sample", "postprocess", "total"} <= set(sleep_fit.timing)
    np.testing.assert_array_equal(idata["observed_data"]["Reaction"].values, sleep_model.design.y)


def test_result_tables(sleep_fit):
    fixef = sleep_fit.fixef()
    assert list(fixef.index) == ["Intercept", "Days"]
    # the result protocol: posterior mean and SD as estimate / std_error, interval at DEFAULT_PROB
    assert list(fixef.columns) == ["estimate", "std_error", "eti95_lb", "eti95_ub", "ess_bulk",
                                   "ess_tail", "r_hat", "mcse_mean"]
    beta = sleep_fit.draws().beta
    np.testing.assert_allclose(fixef["estimate"], beta.mean(axis=0))
    np.testing.assert_allclose(fixef["std_error"], beta.std(axis=0, ddof=1), rtol=1e-6)
    varcorr = sleep_fit.varcorr()
    assert varcorr[["group", "term1", "term2"]].values.tolist() == [
        ["Subject", "Intercept", None],
        ["Subject", "Days", None],
        ["Subject", "Intercept", "Days"],
        ["Residual", None, None],
    ]
    ranef = sleep_fit.ranef()
    assert len(ranef) == 36 and list(ranef.columns[:3]) == ["group", "level", "term"]
    draws = sleep_fit.draws()
    assert not draws.point and draws.beta.shape == (120, 2) and draws.effects[0].shape == (120, 18, 2)
    cov = draws.covariances[0]
    np.testing.assert_allclose(
        np.sqrt(cov[:, 1, 1]), sleep_fit.idata["posterior"]["sd_Subject"].values[..., 1].ravel()
    )


def test_same_seed_same_draws(sleep_model, sleep_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        again = fit_bayes(sleep_model, random_seed=11, **SHORT)
        other = fit_bayes(sleep_model, random_seed=12, **SHORT)
    for name in ("fixef", "sigma", "cor_Subject", "ranef_Subject"):
        np.testing.assert_array_equal(
            again.idata["posterior"][name].values, sleep_fit.idata["posterior"][name].values
        )
    assert not np.array_equal(
        other.idata["posterior"]["fixef"].values, sleep_fit.idata["posterior"]["fixef"].values
    )
    assert again.seed == 11


def test_full_formulation_on_crossed_factors(crossed_df):
    model = hl.Model("y ~ x + (x | a) + (1 | b)", crossed_df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        fit = fit_bayes(model, random_seed=1, **SHORT)
    assert fit.formulation == "full"
    post = fit.idata["posterior"]
    assert post["ranef_a"].dims == ("chain", "draw", "a_term", "a_level")
    assert post["ranef_b"].shape == (2, 60, 1, 5)
    assert "log_likelihood_group" not in fit.idata.children
    assert fit.idata["log_likelihood"]["y"].shape == (2, 60, len(crossed_df))
    # the full formulation adapts to a higher acceptance rate by default
    assert fit.settings["target_accept"] == 0.95


def test_default_target_accept_depends_on_formulation(sleep_fit, sleep_model):
    assert sleep_fit.formulation == "marginal" and sleep_fit.settings["target_accept"] == 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        chosen = fit_bayes(sleep_model, random_seed=3, target_accept=0.9, **SHORT)
    assert chosen.settings["target_accept"] == 0.9


def test_bad_settings_raise_fit_errors(sleep_model):
    with pytest.raises(FitError, match="method='bayes'"):
        fit_bayes(sleep_model, method="bayes")
    with pytest.raises(FitError, match="draws must be a positive integer"):
        fit_bayes(sleep_model, draws=0, progressbar=False)
    with pytest.raises(FitError, match="target_accept"):
        fit_bayes(sleep_model, target_accept=1.5, progressbar=False)
    with pytest.raises(FitError, match="sampler='stan'"):
        SamplerSettings("stan", "numba", 1, 1, 1, 0.8, 10, 0, False)
    with pytest.raises(FitError, match="backend='gpu'"):
        fit_bayes(sleep_model, backend="gpu", progressbar=False)
    with pytest.raises(FitError, match="'reml' for method='nuts'"):
        fit_bayes(sleep_model, reml=True, progressbar=False)


def test_diagnostics_are_pure_functions_on_arrays():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(4, 500, 2))
    assert max_rhat(good) < 1.01 and min_ess(good) > 1000
    stuck = good + np.arange(4)[:, None, None]  # chains disagree
    assert max_rhat(stuck) > 1.5
    sticky = np.cumsum(rng.normal(size=(4, 500)), axis=1)  # random walk: tiny ESS
    assert min_ess(sticky, "bulk") < 100 and min_ess(sticky, "tail") < 100
    assert count_true(np.array([[True, False], [True, True]])) == 3 and count_true(None) == 0


def test_diagnose_explains_each_problem():
    rng = np.random.default_rng(1)
    draws = {
        "fixef": rng.normal(size=(4, 300, 2)) + np.arange(4)[:, None, None],
        "sigma": rng.normal(size=(4, 300)),
    }
    diverging = np.zeros((4, 300), bool)
    diverging[0, :3] = True
    depth = np.zeros((4, 300), bool)
    depth[1, 0] = True
    report = diagnose(draws, diverging, depth, "full", 0.8)
    assert not report.ok and report.divergences == 3 and report.treedepth_hits == 1
    text = " ".join(report.problems)
    assert "3 of 1200 transitions diverged" in text and "target_accept (e.g. 0.95)" in text
    assert "formulation='marginal'" in text and "R-hat above 1.01 for fixef" in text
    assert "maximum tree depth" in text
    with pytest.warns(SamplingWarning, match="MCMC diagnostics"):
        warn_if_problems(report)
    clean = diagnose({"x": rng.normal(size=(4, 300))}, np.zeros((4, 300), bool), None, "marginal", 0.8)
    assert clean.ok
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_problems(clean)


def test_too_few_draws_warn_about_ess(sleep_model):
    with pytest.warns(SamplingWarning, match="effective sample size below 400"):
        fit_bayes(sleep_model, draws=30, tune=100, chains=4, random_seed=2, progressbar=False)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["pymc", "numpyro"])
def test_other_samplers_give_the_same_layout_and_posterior(sleep_model, sampler):
    """PyMC's and numpyro's NUTS run the PyMC model (with its LKJ CustomDist) and fill the same
    DataTree; their fixed-effect means lie within 3 posterior SDs of the REML estimates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_bayes(sleep_model, sampler=sampler, draws=150, tune=150, chains=2, random_seed=4,
                        progressbar=False)
    assert fit.sampler == sampler
    post = fit.idata["posterior"]
    assert set(post.data_vars) == {"fixef", "sigma", "sd_Subject", "cor_Subject", "ranef_Subject"}
    assert {"diverging", "energy"} <= set(fit.idata["sample_stats"].data_vars)
    draws = post["fixef"].values.reshape(-1, 2)
    reml = sleep_model.fit("reml").beta
    assert (np.abs(draws.mean(axis=0) - reml) < 3 * draws.std(axis=0)).all()
