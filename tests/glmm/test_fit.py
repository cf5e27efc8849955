"""GLMM ML fits against lme4 1.1-31 ``glmer`` and glmmTMB 1.1.5 (table-driven over the fixtures).

Tolerances (issue 14): fixed effects rel 2e-3, standard errors rel 1e-2, random-effect
SDs rel 1e-2, log-likelihood within 0.01 (Laplace and AGQ alike).

One stated exception: for the canonical-link Laplace fits (cbpp logit, cbpp Poisson)
glmer's standard errors are compared at rel 2e-2. glmer evaluates its Laplace
deviance with a loose PIRLS tolerance (lme4's devfun at its own optimum gives
184.053133 on cbpp, the exact Laplace deviance there is 184.052572), and its
finite-difference Hessian of that surface is off by about 1%. The exact Laplace
references of the same models (glmmTMB, ``tests/fixtures/glmm_tmb``) are met at
rel 1e-4 (standard errors) and 1e-5 (log-likelihood), which pins the values down.
AGQ log-likelihoods are compared with glmer's plus its saturated log-likelihood
(``loglik_normalised``: glmer's AGQ ``logLik`` leaves the normalising constants out).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.glmm.reference import fitted, fixef_reference, fixture, rel, sd_reference

FIXED_REL, SE_REL, SD_REL, LOGLIK_ABS = 2e-3, 1e-2, 1e-2, 0.01
SE_REL_GLMER_LOOSE = 2e-2  # see the module docstring

slow = pytest.mark.slow
# (fixture, SE tolerance against glmer)
GLMER = [
    pytest.param("cbpp_binomial_laplace", SE_REL_GLMER_LOOSE, id="cbpp-logit-laplace"),
    pytest.param("cbpp_binomial_agq25", SE_REL, id="cbpp-logit-agq25"),
    pytest.param("cbpp_poisson_offset_laplace", SE_REL_GLMER_LOOSE, id="cbpp-poisson-offset"),
    pytest.param("cbpp_binomial_probit", SE_REL, id="cbpp-probit", marks=slow),
    pytest.param("cbpp_binomial_cloglog", SE_REL, id="cbpp-cloglog", marks=slow),
    pytest.param("cbpp_binomial_proportion", SE_REL_GLMER_LOOSE, id="cbpp-proportion-weights",
                 marks=slow),
    pytest.param("cbpp_poisson_offset_agq10", SE_REL, id="cbpp-poisson-offset-agq10", marks=slow),
    pytest.param("sim_bernoulli_few_laplace", SE_REL, id="bernoulli-few-laplace", marks=slow),
    pytest.param("sim_bernoulli_few_agq25", SE_REL, id="bernoulli-few-agq25", marks=slow),
    pytest.param("sim_poisson_slope", SE_REL, id="poisson-random-slope", marks=slow),
    pytest.param("grouseticks_poisson_3re", SE_REL, id="grouseticks-3-intercepts", marks=slow),
    pytest.param("verbagg_bernoulli_crossed", SE_REL, id="verbagg-crossed", marks=slow),
]


def _ours(fit) -> dict[str, np.ndarray]:
    table = fit.varcorr()
    sds = table[table["term2"].isna() & (table["group"] != "Dispersion")]["estimate"].to_numpy()
    return {"beta": fit.beta, "se": fit.fixef()["std_error"].to_numpy(), "sd": sds}


@pytest.mark.parametrize(("name", "se_rel"), GLMER)
def test_glmer_reference(name: str, se_rel: float) -> None:
    ref = fixture(f"glmer/{name}")
    fit = fitted(f"glmer/{name}")
    ours = _ours(fit)
    estimate, std_error = fixef_reference(ref)
    assert list(fit.design.fixed_names) == [n.replace("(Intercept)", "Intercept")
                                            for n in ref["X_colnames"]]
    assert rel(ours["beta"], estimate) < FIXED_REL
    assert rel(ours["se"], std_error) < se_rel
    assert rel(ours["sd"], sd_reference(ref)) < SD_REL
    assert abs(fit.loglik - ref["loglik_normalised"]) < LOGLIK_ABS
    assert fit.df_residual == ref["df_resid"]
    assert abs(fit.aic - (ref["aic"] - 2 * (ref["loglik_normalised"] - ref["loglik"]))) < 2 * LOGLIK_ABS


@pytest.mark.parametrize("name", ["cbpp_binomial_laplace", "cbpp_poisson_offset_laplace",
                                  pytest.param("grouseticks_poisson_3re", marks=slow)])
def test_exact_laplace_reference(name: str) -> None:
    """glmmTMB's exact Laplace fits of the same models: tight agreement."""
    ref = fixture(f"glmm_tmb/{name}")
    fit = fitted(f"glmer/{name}")
    ours = _ours(fit)
    assert rel(ours["beta"], [r["estimate"] for r in ref["fixef"]]) < 1e-4
    assert rel(ours["se"], [r["std_error"] for r in ref["fixef"]]) < 1e-4
    assert rel(ours["sd"], [s for row in ref["sd"] for s in np.atleast_1d(row["sd"])]) < 1e-4
    assert abs(fit.loglik - ref["loglik"]) < 1e-5


def test_modes_conditional_variances_and_predictions() -> None:
    """cbpp: ranef with condVar, fitted values and predictions with and without the herd effects."""
    ref = fixture("glmer/cbpp_binomial_agq25")
    fit = fitted("glmer/cbpp_binomial_agq25")
    table = fit.ranef()
    expected = np.array(ref["ranef"][0]["modes"]).ravel()
    np.testing.assert_allclose(table["estimate"].to_numpy(), expected, rtol=0, atol=2e-4)
    cond = np.array(ref["ranef"][0]["condvar_blocks"][0]["matrices"]).ravel()
    np.testing.assert_allclose(table["std_error"].to_numpy() ** 2, cond, rtol=2e-3)
    np.testing.assert_allclose(fit.fitted()[:10], ref["fitted_head"], rtol=FIXED_REL)
    link = fit.predict(type="link")["estimate"].to_numpy()[:10]
    np.testing.assert_allclose(link, ref["predict_link_head"], rtol=FIXED_REL)
    fixed = fit.predict(include_random=False)["estimate"].to_numpy()[:10]
    np.testing.assert_allclose(fixed, ref["predict_response_fixed_head"], rtol=FIXED_REL)
    new = fit.model.data.iloc[:10]
    np.testing.assert_allclose(fit.predict(new)["estimate"], ref["predict_response_head"],
                               rtol=FIXED_REL)


def test_residuals_and_deviance() -> None:
    ref = fixture("glmer/cbpp_binomial_laplace")
    fit = fitted("glmer/cbpp_binomial_laplace")
    # sum of squared deviance residuals is lme4's deviance(); our optimum is 3e-4 better in logLik
    assert abs(np.sum(fit.residuals() ** 2) - ref["deviance_residuals_sumsq"]) < 0.02
    np.testing.assert_allclose(fit.residuals(type="response"), fit.design.y - fit.fitted())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["salamanders_nb2_mined", "salamanders_nb2_spp_mined"])
def test_negative_binomial_against_glmmtmb(name: str) -> None:
    """NB2 with theta estimated jointly; the Laplace log-determinant uses the observed information."""
    ref = fixture(f"glmer/{name}")
    fit = fitted(f"glmer/{name}")
    ours = _ours(fit)
    estimate, std_error = fixef_reference(ref)
    assert rel(ours["beta"], estimate) < FIXED_REL
    assert rel(ours["se"], std_error) < SE_REL
    assert rel(ours["sd"], sd_reference(ref)) < SD_REL
    assert abs(fit.loglik - ref["loglik"]) < LOGLIK_ABS
    assert fit.dispersion == pytest.approx(ref["dispersion"]["theta"], rel=SD_REL)
    row = fit.varcorr().query("group == 'Dispersion'")
    assert row["term1"].item() == "theta" and row["estimate"].item() == pytest.approx(fit.dispersion)


@pytest.mark.slow
def test_random_slope_where_glmer_stops_early() -> None:
    """grouseticks (1 + cHEIGHT | LOCATION): glmer warns (max|grad| 0.0029 > 0.002) and its two
    optimisers disagree on the tiny slope SD (0.00094 vs 0.00128); this fit's log-likelihood is
    above both, and the well-determined parts agree with the bobyqa fit."""
    ours = fitted("glmer/grouseticks_poisson_slope")
    for name in ("grouseticks_poisson_slope", "grouseticks_poisson_slope_bobyqa"):
        assert ours.loglik >= fixture(f"glmer/{name}")["loglik"]
    ref = fixture("glmer/grouseticks_poisson_slope_bobyqa")
    estimate, _ = fixef_reference(ref)
    assert rel(ours.beta, estimate) < 5e-3
    assert rel(_ours(ours)["sd"][:1], sd_reference(ref)[:1]) < SD_REL
