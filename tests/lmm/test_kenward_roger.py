"""Kenward-Roger tests against lmerTest / pbkrtest (``ddf = "Kenward-Roger"``).

Fixture: ``tests/fixtures/lmertest/kenward_roger.json`` from ``make_kenward_roger.R``
(versions inside). Tolerances (relative): df 1e-5, standard errors, t and F 1e-4, p 1e-3.
The df and the adjusted covariance are closed-form functions of the REML estimates,
so they agree as closely as the estimates do. For Machines the fixture comes from lme4
with tight optimiser tolerances: its default fit stops 1.1e-6 short of the REML optimum
hierlm finds, which moves the SEs by 1e-4 (see tests/lmm/test_fit_lme4.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hierlm as hl
from hierlm.errors import FitError
from hierlm.lmm.kenward_roger import _derivative_matrices, check_ddf, kenward_roger

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "lmertest" / "kenward_roger.json").read_text()
)
MODELS = {m["id"]: m for m in FIXTURE["models"]}


def _data(name: str):
    if name == "cake_unbalanced":
        cake = hl.datasets.load("cake")
        return cake.drop(index=cake.index[::7])
    return hl.datasets.load(name)


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    spec = MODELS[request.param]
    return spec, hl.Model(spec["formula"], _data(spec["data"])).fit("reml")


def test_coefficient_table_matches_lmertest(case):
    spec, fit = case
    ours = fit.fixef(ddf="kenward-roger")
    for row in spec["fixef"]:
        term = row["term"].replace("(Intercept)", "Intercept")
        got = ours.loc[term]
        assert got["df"] == pytest.approx(row["df"], rel=1e-5), term
        assert got["std_error"] == pytest.approx(row["std_error"], rel=1e-4), term
        assert got["t_value"] == pytest.approx(row["t_value"], rel=1e-4), term
        assert got["p_value"] == pytest.approx(row["p_value"], rel=1e-3, abs=1e-300), term


def test_anova_table_matches_lmertest(case):
    spec, fit = case
    ours = fit.anova(ddf="Kenward-Roger")
    assert "Kenward-Roger's method" in str(ours)
    assert len(ours.table) == len(spec["anova"])
    for (term, got), row in zip(ours.table.iterrows(), spec["anova"], strict=True):
        assert set(term.split(":")) == set(row["term"].split(":"))
        assert got["NumDF"] == row["num_df"]
        assert got["DenDF"] == pytest.approx(row["den_df"], rel=1e-5), term
        assert got["F value"] == pytest.approx(row["f_value"], rel=1e-4), term
        assert got["Sum Sq"] == pytest.approx(row["sum_sq"], rel=1e-4), term
        assert got["Pr(>F)"] == pytest.approx(row["p_value"], rel=1e-3, abs=1e-300), term


def test_balanced_design_gives_exact_between_subject_df():
    """On balanced sleepstudy, Kenward-Roger's df for both coefficients are exactly 17
    (18 subjects - 1), and the adjusted SE is at least the unadjusted one."""
    fit = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy")).fit()
    table = fit.fixef(ddf="kr")
    np.testing.assert_allclose(table["df"], 17.0, rtol=1e-10)
    assert (table["std_error"] >= fit.fixef()["std_error"] * (1 - 1e-12)).all()


def test_derivative_matrices_rebuild_the_marginal_covariance():
    """sum_r gamma_r G_r is Z G Z' + sigma^2 I, built independently from the sparse Z."""
    fit = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy")).fit()
    design = fit.design
    G = _derivative_matrices(design, design.n)
    cov = fit.covariances()[0]
    gamma = [cov[0, 0], cov[1, 0], cov[1, 1], fit.sigma**2]
    marginal = sum(g * m for g, m in zip(gamma, G, strict=True))
    Z = design.sparse_z().toarray()
    levels = design.blocks[0].n_levels
    expected = Z @ np.kron(np.eye(levels), cov) @ Z.T + fit.sigma**2 * np.eye(design.n)
    np.testing.assert_allclose(marginal, expected, rtol=1e-12, atol=1e-9)


def test_adjustment_vanishes_without_random_variation_in_the_contrast():
    """Balanced Pastes, intercept only: the mean is estimated by the batch means alone and
    its variance does not depend on the nested variances' estimates, so Phi_A = Phi; with
    an unbalanced subset the adjustment is positive."""
    pastes = hl.datasets.load("Pastes")
    kr = kenward_roger(hl.Model("strength ~ 1 + (1 | batch/cask)", pastes).fit())
    assert kr.vcov_adjusted[0, 0] == pytest.approx(kr.vcov[0, 0], rel=1e-10)
    unbalanced = kenward_roger(hl.Model("strength ~ 1 + (1 | batch/cask)", pastes.iloc[5:]).fit())
    assert unbalanced.vcov_adjusted[0, 0] > unbalanced.vcov[0, 0] * (1 + 1e-6)


def test_errors():
    sleep = hl.datasets.load("sleepstudy")
    ml = hl.Model("Reaction ~ Days + (Days | Subject)", sleep).fit("ml")
    with pytest.raises(FitError, match="needs a REML fit"):
        ml.fixef(ddf="kenward-roger")
    with pytest.raises(FitError, match="ddf='containment'"):
        ml.fixef(ddf="containment")
    assert check_ddf("Kenward-Roger") == "kenward-roger" and check_ddf("Satterthwaite") == "satterthwaite"
