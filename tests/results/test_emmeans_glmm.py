"""Estimated marginal means of GLMMs on the link and response scales, against R's emmeans.

Reference: ``tests/fixtures/glmm_downstream/glmm_downstream.json`` written by
``make_glmm_downstream.R`` (emmeans 1.8.4-1, lme4 1.1-31): ``emmeans(fit, ~ f)`` and
``emmeans(fit, ~ f, type = "response")`` with ``pairs(..., adjust = "none")`` of glmer
fits of cbpp (binomial logit) and grouseticks (Poisson log, three random intercepts).

Tolerances. The transformation itself (``response_table`` fed emmeans's own link-scale
rows) must reproduce emmeans's response rows to 1e-9 (relative). End to end, our means
follow our fit: estimates rel 2e-3 (glmer's fixed effects at rel 2e-3, the GLMM reference
tests' tolerance), standard errors and interval bounds rel 2e-2 (the stated exception of
canonical-link Laplace SEs against glmer, ``tests/glmm``: glmer stops its PIRLS early).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.families import get_link
from hierlm.results.emmeans import response_table
from hierlm.results.linear import LinearEstimates
from tests.glmm.reference import fitted, rel

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "glmm_downstream" / "glmm_downstream.json"
CASES = {"cbpp_period": ("glmer/cbpp_binomial_laplace", "logit", "prob", "odds.ratio"),
         "grouseticks_year": ("glmer/grouseticks_poisson_3re", "log", "rate", "ratio")}


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", list(CASES))
def test_back_transformation_is_emmeans(reference, case):
    _, link, quantity, _ = CASES[case]
    ref = reference["emmeans"][case]
    on_link = pd.DataFrame(ref["link"])
    est = LinearEstimates(estimate=on_link["emmean"].to_numpy(float),
                          std_error=on_link["SE"].to_numpy(float), df=np.full(len(on_link), np.inf))
    ours = response_table(est, get_link(link), 0.95)
    theirs = pd.DataFrame(ref["response"])
    assert ours.attrs["scale"] == "response"
    for column, their_column in [("estimate", quantity), ("std_error", "SE"),
                                 ("lower", "asymp.LCL"), ("upper", "asymp.UCL")]:
        assert rel(ours[column], theirs[their_column].to_numpy(float)) < 1e-9, column


@pytest.mark.parametrize("case", list(CASES))
def test_response_scale_means_against_emmeans(reference, case):
    name, _, quantity, ratio = CASES[case]
    ref = reference["emmeans"][case]
    fit = fitted(name)
    emm = fit.emmeans(ref["specs"], type="response")
    ours, theirs = emm.table, pd.DataFrame(ref["response"])
    assert list(ours[ref["specs"]].astype(str)) == list(theirs[ref["specs"]])
    assert np.all(np.isinf(ours["df"]))
    assert rel(ours["estimate"], theirs[quantity].to_numpy(float)) < 2e-3
    assert rel(ours["std_error"], theirs["SE"].to_numpy(float)) < 2e-2
    assert rel(ours["lower"], theirs["asymp.LCL"].to_numpy(float)) < 2e-2
    assert rel(ours["upper"], theirs["asymp.UCL"].to_numpy(float)) < 2e-2
    # the link-scale table is emmeans's default
    link, theirs_link = fit.emmeans(ref["specs"]).table, pd.DataFrame(ref["link"])
    assert link.attrs["scale"] == "link"
    assert rel(link["estimate"], theirs_link["emmean"].to_numpy(float)) < 2e-3
    assert rel(link["std_error"], theirs_link["SE"].to_numpy(float)) < 2e-2
    # pairs of response-scale means: (odds) ratios, tested on the link scale
    pairs, theirs_pairs = emm.pairs(adjust="none"), pd.DataFrame(ref["pairs_response"])
    assert pairs.attrs["scale"] == ratio.replace(".", " ")
    labels = [c.replace(ref["specs"], "") for c in theirs_pairs["contrast"]]
    assert list(pairs["contrast"]) == labels
    # exp of a link-scale difference: its relative error is the difference's absolute error
    assert rel(pairs["estimate"], theirs_pairs[ratio].to_numpy(float)) < 6e-3
    assert rel(pairs["std_error"], theirs_pairs["SE"].to_numpy(float)) < 2e-2
    assert rel(pairs["lower"], theirs_pairs["asymp.LCL"].to_numpy(float)) < 2e-2
    assert rel(pairs["upper"], theirs_pairs["asymp.UCL"].to_numpy(float)) < 2e-2
    assert np.max(np.abs(pairs["t_value"] - theirs_pairs["z.ratio"].to_numpy(float))) < 0.05
    # ML fits are not read as posteriors: df and p-values, no prob_direction
    assert "p_value" in pairs and "prob_direction" not in pairs


def test_gaussian_response_scale_is_the_link_scale():
    fit = hl.Model("score ~ Machine + (1 | Worker)", hl.datasets.machines()).fit()
    link, response = fit.emmeans("Machine").table, fit.emmeans("Machine", type="response").table
    pd.testing.assert_frame_equal(link, response, check_like=True, check_exact=False, rtol=1e-12)


def test_bad_type_is_refused():
    fit = fitted("glmer/cbpp_binomial_laplace")
    with pytest.raises(hl.errors.InputTypeError, match="type='mean'.*'response'"):
        fit.emmeans("period", type="mean")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::hierlm.errors.HierlmWarning")
def test_posterior_draws_are_transformed_one_by_one():
    data = hl.datasets.cbpp()
    fit = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data,
                   family="binomial").fit("nuts", draws=150, tune=150, chains=2, random_seed=3,
                                          progressbar=False)
    emm = fit.emmeans("period", type="response", prob=0.9)
    table = emm.table
    beta = np.asarray(fit.idata["posterior"]["fixef"].values).reshape(-1, 4)
    eta = beta @ emm.function.fixed.T
    p = 1.0 / (1.0 + np.exp(-eta))
    np.testing.assert_allclose(table["estimate"], p.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(table["std_error"], p.std(axis=0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(table["lower"], np.quantile(p, 0.05, axis=0), rtol=1e-10)
    np.testing.assert_allclose(table["upper"], np.quantile(p, 0.95, axis=0), rtol=1e-10)
    odds_ratio = np.exp(eta[:, 0] - eta[:, 1])
    first = emm.pairs().iloc[0]
    assert first["contrast"] == "1 / 2"
    assert first["estimate"] == pytest.approx(odds_ratio.mean(), rel=1e-10)
    assert first["prob_direction"] == pytest.approx(np.mean(odds_ratio > 1.0), rel=1e-12)
