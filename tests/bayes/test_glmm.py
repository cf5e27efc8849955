"""Bayesian engine for non-Gaussian families: priors, formulations, likelihood registry, MAP, posterior.

Reference values: glmer (lme4 1.1-31) and glmmTMB 1.1.5 fixtures in
``tests/fixtures/glmer/`` (made by ``make_glmer.R`` there). The posterior
assembly is checked on hand-made draws (no sampling) against the families'
own log-likelihoods, so these tests run in seconds; sampling is in
``test_glmm_brms.py`` (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.bayes.build import build_model, choose_formulation
from hierlm.bayes.likelihoods import LIKELIHOODS, observed_data
from hierlm.bayes.naming import response_variable
from hierlm.bayes.posterior import assemble_datatree
from hierlm.bayes.result import BayesResult
from hierlm.bayes.sample import RawSample
from hierlm.errors import FitError
from hierlm.families import FAMILIES, get_family

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "glmer"


def _fixture(fit_id: str) -> dict:
    return json.loads((FIXTURES / f"{fit_id}.json").read_text())


def _data(ref: dict) -> pd.DataFrame:
    if ref["data_file"].startswith("hierlm/datasets"):
        return hl.datasets.load(ref["dataset"])
    return pd.read_csv(Path(__file__).resolve().parents[2] / ref["data_file"])


def _model(fit_id: str) -> tuple[hl.Model, dict]:
    ref = _fixture(fit_id)
    family = {"nbinom2": "negative_binomial"}.get(ref["family"], ref["family"])
    return hl.Model(ref["formula"], _data(ref), family=family, link=ref["link"]), ref


@pytest.fixture(scope="module")
def cbpp() -> hl.Model:
    return hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    hl.datasets.load("cbpp"), family="binomial")


def test_every_family_has_one_likelihood_entry() -> None:
    assert set(LIKELIHOODS) == set(FAMILIES)
    for name, entry in LIKELIHOODS.items():
        assert entry.dispersion == get_family(name).has_dispersion


def test_default_priors_are_on_the_link_scale(cbpp: hl.Model) -> None:
    table = cbpp.priors.to_frame().set_index("parameter")
    design = cbpp.design
    assert "sigma" not in table.index  # no residual SD for the binomial
    assert table.loc["fixef[Intercept]", "prior"] == "normal(mu=0, sigma=5)"
    k = design.fixed_names.index("period2")
    sd_x = np.std(design.X[:, k], ddof=1)
    assert table.loc["fixef[period2]", "prior"] == f"normal(mu=0, sigma={2.5 / sd_x:.4g})"
    assert table.loc["sd_herd[Intercept]", "prior"] == "exponential(lam=1)"


def test_negative_binomial_gets_a_theta_prior_that_overrides_work() -> None:
    m, _ = _model("salamanders_nb2_mined")
    assert m.priors.to_frame().set_index("parameter").loc["theta", "prior"] == "exponential(lam=1)"
    m2 = hl.Model(m.formula, m.data, family="negative_binomial",
                  priors={"theta": hl.Prior("half_normal", sigma=10)})
    assert str(m2.priors.dispersion("theta")) == "half_normal(sigma=10)"


def test_marginal_formulation_is_refused_for_other_families(cbpp: hl.Model) -> None:
    assert choose_formulation(cbpp.design, "auto", cbpp.family) == "full"
    with pytest.raises(FitError, match="needs a Gaussian response, got family='binomial'"):
        build_model(cbpp, formulation="marginal")


@pytest.mark.parametrize("fit_id", ["cbpp_binomial_laplace", "cbpp_binomial_probit",
                                    "cbpp_poisson_offset_laplace", "salamanders_nb2_mined"])
def test_observed_node_is_the_family_log_likelihood(fit_id: str) -> None:
    """The PyMC model's log-density at a point equals the family's pointwise log-likelihood sum."""
    m, ref = _model(fit_id)
    built = build_model(m)
    model = built.pymc_model
    point = model.initial_point()
    rng = np.random.default_rng(3)
    point = {k: v + 0.1 * rng.standard_normal(np.shape(v)) for k, v in point.items()}
    obs = model[m.design.response] if m.design.response in model.named_vars else None
    terms = [obs] if obs is not None else [model[f"{m.design.response}_weighted"]]
    ours = float(model.compile_logp(vars=terms, sum=True)(point))
    by_name = {var.name: var for var in model.unobserved_value_vars}  # functions of the values
    outputs = ([by_name["fixef"]] + [by_name[bn.ranef] for bn in built.names]
               + ([by_name["theta"]] if "theta" in by_name else []))
    values = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore",
                              mode="FAST_COMPILE")(point)
    design, data = m.design, observed_data(m.design)
    eta = design.X @ values[0] + (data.offset if data.offset is not None else 0.0)
    for bn, effects in zip(built.names, values[1:1 + len(built.names)], strict=True):
        eta = eta + np.sum(bn.block.z * effects[:, bn.block.codes].T, axis=1)
    dispersion = float(values[-1]) if "theta" in by_name else None
    expected = m.family.log_likelihood(data.y, m.family.link.inverse(eta), data.weights, dispersion)
    assert ours == pytest.approx(float(np.sum(expected)), rel=1e-9)


# The mode under flat priors is glmer's Laplace estimate (tolerances of issue 14: fixed
# effects rel 2e-3, SDs rel 1e-2, log-likelihood within 0.01). Our SEs come from the Hessian
# of the whole Laplace criterion, glmer's from its PIRLS fixed-theta part: rel 2e-2.
# The negative binomial reference is glmmTMB (its exact Laplace approximation: the observed
# information, Family.laplace_weights); its SEs come from TMB's joint Hessian, as ours.
MAP_CASES = [  # fit_id, fixef rtol, SE rtol, log-likelihood atol
    ("cbpp_binomial_laplace", 2e-3, 2e-2, 0.01),
    ("cbpp_binomial_probit", 2e-3, 2e-2, 0.01),
    ("cbpp_poisson_offset_laplace", 2e-3, 2e-2, 0.01),
    ("salamanders_nb2_mined", 2e-3, 2e-2, 0.01),
    ("sim_poisson_slope", 2e-3, 2e-2, 0.01),  # correlated (1 + x | g): theta and the LKJ(1) prior
]


@pytest.mark.parametrize(("fit_id", "fixef_rtol", "se_rtol", "loglik_atol"), MAP_CASES)
def test_flat_prior_map_is_the_laplace_estimate(fit_id: str, fixef_rtol: float, se_rtol: float,
                                                loglik_atol: float) -> None:
    m, ref = _model(fit_id)
    with np.errstate(all="ignore"):
        fit = m.fit(method="map", priors="flat")
    fixef = fit.fixef()
    np.testing.assert_allclose(fixef["estimate"], [r["estimate"] for r in ref["fixef"]],
                               rtol=fixef_rtol)
    np.testing.assert_allclose(fixef["std_error"], [r["std_error"] for r in ref["fixef"]],
                               rtol=se_rtol)
    varcorr = fit.varcorr()
    sds = varcorr[varcorr["group"] != "Dispersion"]["estimate"]
    np.testing.assert_allclose(sds, [r["sdcor"] for r in ref["varcorr"]], rtol=1e-2)
    assert fit.info["loglik"] == pytest.approx(ref["loglik"], abs=loglik_atol)
    assert "Residual" not in set(varcorr["group"])
    if m.family.has_dispersion:
        theta = varcorr.set_index("group").loc["Dispersion", "estimate"]
        assert theta == pytest.approx(ref["sigma"], rel=1e-2)
    if "predict_link_head" in ref:  # glmer fixtures: the first ten rows' predictions
        link = fit.predict(m.data.head(10), type="link")["estimate"]
        tol = max(5e-3, fixef_rtol)
        np.testing.assert_allclose(link, ref["predict_link_head"], rtol=tol, atol=tol)
        response = fit.predict(m.data.head(10))["estimate"]
        np.testing.assert_allclose(response, ref["predict_response_head"], rtol=tol, atol=1e-4)


def _fake_fit(m: hl.Model, n_draws: int = 4) -> tuple[BayesResult, RawSample]:
    """A NUTS-shaped result from hand-made draws around the glmer estimate (no sampling)."""
    built = build_model(m)
    rng = np.random.default_rng(11)
    design = m.design
    draws = {"fixef": np.linalg.lstsq(design.X, np.zeros(design.n), rcond=None)[0][None, None, :]
             + 0.1 * rng.standard_normal((1, n_draws, design.p)) - 1.5 * (np.arange(design.p) == 0)}
    for bn in built.names:
        draws[bn.sd] = np.abs(0.5 + 0.1 * rng.standard_normal((1, n_draws, bn.block.q)))
        draws[bn.ranef] = 0.5 * rng.standard_normal((1, n_draws, bn.block.q, bn.block.n_levels))
    if m.family.has_dispersion:
        draws["theta"] = np.abs(2.0 + rng.standard_normal((1, n_draws)))
    raw = RawSample(draws=draws, stats={})
    idata = assemble_datatree(built, raw, seed=5)
    fit = BayesResult(idata=idata, pymc_model=None, formulation="full", sampler="test", method="nuts",
                      design=design, priors=built.priors, names=built.names, family=m.family,
                      model=m)
    return fit, raw


@pytest.mark.parametrize("fit_id", ["cbpp_binomial_laplace", "salamanders_nb2_mined"])
def test_posterior_groups_follow_the_family(fit_id: str) -> None:
    m, _ = _model(fit_id)
    fit, raw = _fake_fit(m)
    design, data = m.design, observed_data(m.design)
    S = 4
    eta = raw.draws["fixef"][0] @ design.X.T
    bn = fit.names[0]
    eta = eta + raw.draws[bn.ranef][0][:, 0, :][:, bn.block.codes] * bn.block.z[:, 0]
    mu = m.family.link.inverse(eta)
    stored = fit.idata["log_likelihood"][response_variable(design)].values.reshape(S, design.n)
    for s in range(S):
        dispersion = float(raw.draws["theta"][0, s]) if "theta" in raw.draws else None
        np.testing.assert_allclose(stored[s], m.family.log_likelihood(data.y, mu[s], data.weights,
                                                                      dispersion), rtol=1e-12)
    # per-group sums for leave-one-group-out; the results layer computes the same from the draws
    group = fit.idata["log_likelihood_group"][response_variable(design)].values.reshape(S, -1)
    np.testing.assert_allclose(group.sum(axis=1), stored.sum(axis=1), rtol=1e-12)
    from hierlm.results.ic import log_likelihood

    values, _, _ = log_likelihood(fit, level="group")
    np.testing.assert_allclose(values, group, rtol=1e-10)
    replicates = fit.idata["posterior_predictive"][response_variable(design)].values
    assert np.issubdtype(replicates.dtype, np.integer) and replicates.min() >= 0
    if m.family.name == "binomial":
        assert np.all(replicates <= np.rint(data.weights))
    observed = fit.idata["observed_data"][response_variable(design)].values
    assert np.all(observed == np.rint(observed))  # successes / counts on the replicates' scale
    varcorr = fit.varcorr()
    assert "Residual" not in set(varcorr["group"])
    assert ("Dispersion" in set(varcorr["group"])) == m.family.has_dispersion
    text = str(fit.summary())
    assert f"Family: {m.family.name}" in text and f"Links: mu = {m.family.link.name}" in text
    assert ("Family Specific Parameters" in text) == m.family.has_dispersion


def test_response_scale_predictions_are_the_inverse_link_of_the_draws(cbpp: hl.Model) -> None:
    fit, _ = _fake_fit(cbpp)
    new = cbpp.data.head(4).copy()
    new["herd"] = pd.Categorical(["1", "2", "new", "new"])
    link = fit.predict(new, type="link", summary=False, seed=1)
    response = fit.predict(new, summary=False, seed=1)
    np.testing.assert_allclose(response, cbpp.family.link.inverse(link), rtol=1e-12)
    population = fit.predict(new, include_random=False, type="link", summary=False)
    np.testing.assert_allclose(population, fit.draws().beta @ cbpp.new_design(new).X.T, rtol=1e-12)
    assert not np.allclose(link[:, 2], population[:, 2])  # a new level's effect is drawn from N(0, G)
    with pytest.raises(hl.errors.InputTypeError, match="posterior_predictive"):
        fit.predict(new, kind="response")


def test_latent_scale_icc_and_r2_use_the_family_variance(cbpp: hl.Model) -> None:
    """Nakagawa et al. (2017): the logit link's residual variance pi^2 / 3 (glmer's herd SD)."""
    ref = _fixture("cbpp_binomial_laplace")
    fit = cbpp.fit(method="map", priors="flat")
    tau2 = ref["varcorr"][0]["vcov"]
    expected = tau2 / (tau2 + np.pi**2 / 3)
    assert float(fit.icc().value) == pytest.approx(expected, rel=2e-2)
    r2 = fit.r2()
    X = cbpp.design.X
    beta = np.array([r["estimate"] for r in ref["fixef"]])
    v_f = np.var(X @ beta, ddof=1)
    np.testing.assert_allclose(r2.loc["marginal", "estimate"], v_f / (v_f + tau2 + np.pi**2 / 3),
                               rtol=2e-2)
