"""Latent-scale Nakagawa R² and adjusted ICC of GLMM ML fits against performance 0.10.2.

Reference: ``tests/fixtures/glmer/nakagawa/nakagawa.json`` from ``make_nakagawa.R``
(performance 0.10.2, insight 0.19.0, lme4 1.1-31, glmmTMB 1.1.5). Tolerance rel 1e-3:
performance runs on glmer's estimates, which sit within about 5e-4 of the exact Laplace
optimum hierlm reaches (docs/glmm.md).
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import InputTypeError
from hierlm.results import icc, r2
from tests.glmm.reference import FIXTURES, ROOT

REL = 1e-3
REF = json.loads((FIXTURES / "glmer" / "nakagawa" / "nakagawa.json").read_text())
LINKS = {"cbpp_binomial_probit": "probit"}


@cache
def fit_of(fit_id: str) -> hl.GlmmResult:
    ref = REF[fit_id]
    path = ROOT / ref["data_file"]
    data = (hl.datasets.load(path.stem) if "datasets" in path.parts else pd.read_csv(path))
    kwargs = {"link": LINKS[fit_id]} if fit_id in LINKS else {}
    return hl.Model(ref["formula"], data, family=ref["family"], **kwargs).fit("ml")


def all_factors(fit: hl.GlmmResult) -> list[tuple[str, ...]]:
    return [tuple(dict.fromkeys(block.group for block in fit.design.blocks))]


FAST = ["cbpp_binomial", "cbpp_binomial_probit", "sim_poisson_slope", "salamanders_nb2_spp_mined"]
CASES = FAST + [pytest.param("grouseticks_poisson_3re", marks=pytest.mark.slow)]


@pytest.mark.parametrize("fit_id", CASES)
def test_r2_and_icc_match_performance(fit_id):
    ref, fit = REF[fit_id], fit_of(fit_id)
    expected_count = None
    if "null_intercept" in ref:
        # glmer's null fit of grouseticks stops short of the optimum hierlm (and glmmTMB) reach
        assert fit.null_intercept() == pytest.approx(ref["null_intercept_glmmTMB"], abs=1e-4)
        expected_count = np.array([np.exp(ref["null_intercept"])])
    table = r2(fit, expected_count=expected_count)
    assert table.loc["marginal", "estimate"] == pytest.approx(ref["r2_marginal"], rel=REL)
    assert table.loc["conditional", "estimate"] == pytest.approx(ref["r2_conditional"], rel=REL)
    result = icc(fit, shared=all_factors(fit), expected_count=expected_count)
    assert result.correlations["estimate"].iloc[0] == pytest.approx(ref["icc_adjusted"], rel=REL)
    if fit_id != "grouseticks_poisson_3re":  # by_group there keeps INDEX as a group variance
        for group, value in (ref.get("icc_by_group") or {}).items():
            assert result.components.loc[group, "estimate"] == pytest.approx(value, rel=REL)


@pytest.mark.parametrize("fit_id", FAST)
def test_the_methods_use_the_null_model(fit_id):
    ref, fit = REF[fit_id], fit_of(fit_id)
    table = fit.r2()
    if "null_intercept" in ref and fit_id != "grouseticks_poisson_3re":
        assert table.loc["marginal", "estimate"] == pytest.approx(ref["r2_marginal"], rel=REL)
        assert fit.icc().value == pytest.approx(ref["icc_adjusted"], rel=REL)
    assert list(table.index) == ["marginal", "conditional"]


@pytest.mark.parametrize("fit_id", ["sim_poisson_slope", "salamanders_nb2_spp_mined"])
@pytest.mark.parametrize("method", ["delta", "trigamma"])
def test_other_count_approximations(fit_id, method):
    ref, fit = REF[fit_id], fit_of(fit_id)
    mu = np.array([np.exp(ref["null_intercept"])])
    # given R's mu, only theta (NB2: hierlm's vs glmmTMB's, rel ~3e-7) separates the two
    components = icc(fit, method=method, expected_count=mu).components
    assert components.loc["Residual", "variance"] == pytest.approx(
        ref[f"var_distribution_{method}"], rel=1e-5)
    lognormal = icc(fit, expected_count=mu).components
    assert lognormal.loc["Residual", "variance"] == pytest.approx(ref["var_distribution"], rel=1e-5)


def test_unknown_expected_count_is_refused():
    fit = fit_of("sim_poisson_slope")
    assert fit.icc().adjusted  # random slopes: design-averaged variance
    with pytest.raises(InputTypeError, match="expected_count"):
        fit.r2(expected_count="fitted")


@pytest.mark.slow
def test_grouseticks_index_goes_to_the_residual():
    ref, fit = REF["grouseticks_poisson_3re"], fit_of("grouseticks_poisson_3re")
    mu = np.exp(ref["null_intercept"])
    components = icc(fit, expected_count=np.array([mu])).components
    assert components.loc["INDEX", "variance"] == 0.0
    index_variance = fit.covariances()[0][0, 0]
    assert components.loc["Residual", "variance"] == pytest.approx(
        np.log1p(1 / mu) + index_variance, rel=1e-12)
    assert ref["var_distribution"] == pytest.approx(np.log1p(1 / mu), rel=1e-9)
