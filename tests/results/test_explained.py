"""R² against hand computations and against arviz_stats' implementation."""

from __future__ import annotations

import numpy as np
import pytest
from arviz_stats.base.array import array_stats

from hierlm.errors import InputTypeError
from hierlm.results.draws import FitDraws
from hierlm.results.explained import bayes_r2_draws, r2


def vc(fix, grp, var1="(Intercept)", var2=None):
    return next(r["vcov"] for r in fix["varcorr"]
                if r["grp"] == grp and r["var1"] == var1 and r["var2"] == var2)


def fixef(fix, term):
    return next(r["estimate"] for r in fix["fixef"] if r["term"] == term)


# Days takes 0..9 once per subject: population variance 8.25, R's var over 180 rows
VAR_DAYS = 8.25 * 180 / 179


def test_nakagawa_r2_random_intercept(lme4_draws):
    draws, fix, _ = lme4_draws("sleep_int_reml")
    vf = fixef(fix, "Days") ** 2 * VAR_DAYS
    tau2, sigma2 = vc(fix, "Subject"), vc(fix, "Residual", None)
    table = r2(draws)
    assert list(table.index) == ["marginal", "conditional"]
    assert table.loc["marginal", "estimate"] == pytest.approx(vf / (vf + tau2 + sigma2), rel=1e-10)
    assert table.loc["conditional", "estimate"] == pytest.approx((vf + tau2) / (vf + tau2 + sigma2),
                                                                 rel=1e-10)


def test_nakagawa_r2_random_slope_uses_design_average(lme4_draws):
    draws, fix, _ = lme4_draws("sleep_slope_reml")
    vf = fixef(fix, "Days") ** 2 * VAR_DAYS
    vr = (vc(fix, "Subject") + 2 * 4.5 * vc(fix, "Subject", "(Intercept)", "Days")
          + 28.5 * vc(fix, "Subject", "Days"))
    sigma2 = vc(fix, "Residual", None)
    table = r2(draws)
    assert table.loc["marginal", "estimate"] == pytest.approx(vf / (vf + vr + sigma2), rel=1e-10)
    assert table.loc["conditional", "estimate"] == pytest.approx((vf + vr) / (vf + vr + sigma2), rel=1e-10)


def test_intercept_only_model_has_zero_marginal_r2(lme4_draws):
    draws, fix, _ = lme4_draws("penicillin_crossed_reml")
    table = r2(draws)
    assert table.loc["marginal", "estimate"] == 0.0
    v = vc(fix, "plate") + vc(fix, "sample")
    assert table.loc["conditional", "estimate"] == pytest.approx(v / (v + vc(fix, "Residual", None)))


def jittered(point: FitDraws, s: int, seed: int) -> FitDraws:
    rng = np.random.default_rng(seed)
    beta = point.beta + rng.normal(0, 1, size=(s, point.beta.shape[1]))
    sigma = point.sigma[0] * rng.gamma(100, 1 / 100, size=s)
    covs = tuple(c * rng.gamma(30, 1 / 30, size=(s, 1, 1)) for c in point.covariances)
    effects = tuple(e + rng.normal(0, 2, size=(s,) + e.shape[1:]) for e in point.effects)
    return FitDraws(beta=beta, sigma=sigma, covariances=covs, effects=effects,
                    design=point.design, point=False)


def test_bayes_r2_matches_arviz_stats(lme4_draws):
    point, _, _ = lme4_draws("sleep_slope_reml")
    draws = jittered(point, 60, seed=3)
    mu = draws.linear_predictor()
    ours = bayes_r2_draws(draws, residual="model")
    reference = array_stats.bayesian_r2(mu, draws.sigma, scale_kind="sd")
    np.testing.assert_allclose(ours, reference, rtol=1e-10)
    ours_data = bayes_r2_draws(draws, residual="data")
    reference_data = array_stats.residual_r2(draws.design.y, mu)
    np.testing.assert_allclose(ours_data, reference_data, rtol=1e-10)
    table = r2(draws)
    assert list(table.index) == ["marginal", "conditional", "bayes", "bayes_marginal"]
    assert table.loc["bayes", "mean"] == pytest.approx(ours.mean(), rel=1e-12)
    fixed_only = draws.linear_predictor(include_random=False)
    expected = fixed_only.var(axis=1, ddof=1) / (fixed_only.var(axis=1, ddof=1) + draws.sigma**2)
    assert table.loc["bayes_marginal", "mean"] == pytest.approx(expected.mean(), rel=1e-12)
    with pytest.raises(InputTypeError, match="residual"):
        bayes_r2_draws(draws, residual="sigma")
