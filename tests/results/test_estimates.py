"""Side-by-side Bayesian / REML / GEE table."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t as student_t

import hierlm as hl
from hierlm.errors import DataError, InputTypeError
from hierlm.results.draws import FitDraws
from hierlm.results.estimates import compare_estimates


@pytest.fixture(scope="module")
def reml_fit():
    model = hl.Model("Reaction ~ Days + (1 | Subject)", hl.datasets.load("sleepstudy"))
    return model.fit(method="reml")


def fake_posterior(point: FitDraws, s=400, chains=4, seed=0) -> FitDraws:
    rng = np.random.default_rng(seed)
    draws = FitDraws(
        beta=point.beta + rng.normal(0, 1, size=(s, point.beta.shape[1])),
        sigma=point.sigma[0] * rng.gamma(200, 1 / 200, size=s),
        covariances=tuple(c * rng.gamma(30, 1 / 30, size=(s, 1, 1)) for c in point.covariances),
        effects=tuple(np.repeat(e, s, axis=0) for e in point.effects),
        design=point.design, point=False)
    object.__setattr__(draws, "n_chains", chains)
    return draws


def test_table_rows_and_columns(reml_fit, lme4_draws):
    _, fix, _ = lme4_draws("sleep_int_reml")
    point = reml_fit.draws()
    posterior = fake_posterior(point)
    table = compare_estimates(posterior, reml_fit, gee=True, prob=0.95)
    assert list(table["kind"]) == ["fixed", "fixed", "sd", "sigma", "icc"]
    fixed = table[table["kind"] == "fixed"].set_index("term1")
    lme4 = {r["term"].strip("()"): r for r in fix["fixef"]}
    for term in ("Intercept", "Days"):
        ref = lme4[term]
        assert fixed.loc[term, "estimate"] == pytest.approx(ref["estimate"], rel=1e-5)
        assert fixed.loc[term, "std_error"] == pytest.approx(ref["std_error"], rel=1e-4)
        q = student_t.ppf(0.975, ref["df"])
        assert fixed.loc[term, "ci95_lb"] == pytest.approx(ref["estimate"] - q * ref["std_error"], rel=1e-4)
        column = 0 if term == "Intercept" else 1
        assert fixed.loc[term, "post_mean"] == pytest.approx(posterior.beta[:, column].mean())
    sd_row = table[table["kind"] == "sd"].iloc[0]
    tau = np.sqrt(posterior.covariances[0][:, 0, 0])
    assert sd_row["post_mean"] == pytest.approx(tau.mean(), rel=1e-12)
    assert sd_row["eti95_ub"] == pytest.approx(np.quantile(tau, 0.975), rel=1e-12)
    assert sd_row["estimate"] == pytest.approx(fix["varcorr"][0]["sdcor"], rel=1e-4)
    assert np.isnan(sd_row["std_error"])
    assert "r_hat" in table.columns
    icc_row = table[table["kind"] == "icc"].iloc[0]
    vc = fix["varcorr"]
    assert icc_row["estimate"] == pytest.approx(vc[0]["vcov"] / (vc[0]["vcov"] + vc[1]["vcov"]), rel=1e-4)


def test_gee_columns_against_hand_computation(reml_fit):
    table = compare_estimates(fake_posterior(reml_fit.draws()), reml_fit, gee=True)
    fixed = table[table["kind"] == "fixed"]
    design = reml_fit.draws().design
    X, y = design.X, design.y
    # every subject has Days 0..9, so exchangeable GEE reduces to OLS
    ols = np.linalg.solve(X.T @ X, X.T @ y)
    np.testing.assert_allclose(fixed["gee_estimate"], ols, rtol=1e-8)
    # sandwich SE: (X'X)^-1 sum_j X_j' e_j e_j' X_j (X'X)^-1
    bread = np.linalg.inv(X.T @ X)
    residual = y - X @ ols
    meat = np.zeros((2, 2))
    codes = design.blocks[0].codes
    for level in np.unique(codes):
        score = X[codes == level].T @ residual[codes == level]
        meat += np.outer(score, score)
    robust = np.sqrt(np.diag(bread @ meat @ bread))
    np.testing.assert_allclose(fixed["gee_se_robust"], robust, rtol=1e-6)
    assert 0 < table.loc[table["kind"] == "icc", "gee_estimate"].iloc[0] < 1


def test_refusals(reml_fit):
    point = reml_fit.draws()
    with pytest.raises(InputTypeError, match="bayes_fit"):
        compare_estimates(point, reml_fit)
    with pytest.raises(InputTypeError, match="freq_fit"):
        compare_estimates(fake_posterior(point), fake_posterior(point))
    other = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy")).fit()
    with pytest.raises(DataError, match="one model"):
        compare_estimates(fake_posterior(point), other)
