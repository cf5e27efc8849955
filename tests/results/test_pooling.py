"""Shrinkage tables against hand computations from lme4's numbers and the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hierlm.errors import ColumnNotFoundError, InputTypeError
from hierlm.results.draws import FitDraws
from hierlm.results.pooling import shrinkage


def vc(fix, grp, var1="(Intercept)", var2=None):
    return next(r["vcov"] for r in fix["varcorr"]
                if r["grp"] == grp and r["var1"] == var1 and r["var2"] == var2)


def fixef(fix, term):
    return next(r["estimate"] for r in fix["fixef"] if r["term"] == term)


def ranef_frame(fix, group):
    entry = next(r for r in fix["ranef"] if r["group"] == group)
    return pd.DataFrame(entry["modes"], index=entry["levels"], columns=entry["terms"])


def test_random_intercept_reliability_and_partial_pooling(lme4_draws):
    draws, fix, model = lme4_draws("sleep_int_reml")
    result = shrinkage(draws, "Subject")
    table = result.table.set_index("level")
    tau2, sigma2 = vc(fix, "Subject"), vc(fix, "Residual", None)
    b0, b1 = fixef(fix, "(Intercept)"), fixef(fix, "Days")
    modes = ranef_frame(fix, "Subject")["(Intercept)"]
    # partial pooling = fixef + BLUP, straight from lme4
    np.testing.assert_allclose(table.loc[modes.index, "partial_pooling"], b0 + modes, rtol=1e-12)
    # reliability n tau2 / (n tau2 + sigma2) with n = 10 days per subject
    assert (table["n"] == 10).all()
    np.testing.assert_allclose(table["shrinkage_factor"], 10 * tau2 / (10 * tau2 + sigma2), rtol=1e-10)
    # no pooling: subject mean of Reaction - b1 * Days, by pandas groupby
    data = model.data.assign(adj=model.data["Reaction"] - b1 * model.data["Days"])
    means = data.groupby(data["Subject"].astype(str))["adj"].mean()
    np.testing.assert_allclose(table.loc[means.index, "no_pooling"], means, rtol=1e-12)
    np.testing.assert_allclose(table["no_pooling_se"], np.sqrt(sigma2 / 10), rtol=1e-10)
    assert (table["complete_pooling"] == b0).all()
    # for a one-factor random-intercept model the BLUP pulls exactly by the reliability
    np.testing.assert_allclose(table["pull"], table["shrinkage_factor"], rtol=1e-6)
    assert "Subject / Intercept" in repr(result)
    assert result.summary.loc["Intercept", "levels"] == 18


def test_random_slope_no_pooling_is_per_subject_ols(lme4_draws):
    draws, fix, model = lme4_draws("sleep_slope_reml")
    table = shrinkage(draws, "Subject").table
    wide = table.pivot(index="level", columns="coefficient", values="no_pooling")
    for subject, rows in model.data.groupby(model.data["Subject"].astype(str)):
        slope, intercept = np.polyfit(rows["Days"], rows["Reaction"], 1)
        assert wide.loc[subject, "Intercept"] == pytest.approx(intercept, rel=1e-10)
        assert wide.loc[subject, "Days"] == pytest.approx(slope, rel=1e-10)


def test_random_slope_blup_is_shrinkage_matrix_times_own_deviation(lme4_draws):
    draws, fix, model = lme4_draws("sleep_slope_reml")
    result = shrinkage(draws, "Subject")
    table = result.table
    g = np.array([[vc(fix, "Subject"), vc(fix, "Subject", "(Intercept)", "Days")],
                  [vc(fix, "Subject", "(Intercept)", "Days"), vc(fix, "Subject", "Days")]])
    sigma2 = vc(fix, "Residual", None)
    days = np.arange(10.0)
    ztz = np.array([[10, days.sum()], [days.sum(), (days**2).sum()]])
    # Henderson: b = (Z'Z + sigma2 G^-1)^-1 Z'Z (b_OLS - beta)
    lam = np.linalg.solve(ztz + sigma2 * np.linalg.inv(g), ztz)
    beta = np.array([fixef(fix, "(Intercept)"), fixef(fix, "Days")])
    modes = ranef_frame(fix, "Subject")
    own = table.pivot(index="level", columns="coefficient", values="no_pooling")[["Intercept", "Days"]]
    for subject in modes.index:
        predicted = lam @ (own.loc[subject].to_numpy() - beta)
        np.testing.assert_allclose(predicted, modes.loc[subject].to_numpy(), rtol=1e-6, atol=1e-6)
    factors = table.pivot(index="level", columns="coefficient", values="shrinkage_factor")
    np.testing.assert_allclose(factors["Intercept"], lam[0, 0], rtol=1e-10)
    np.testing.assert_allclose(factors["Days"], lam[1, 1], rtol=1e-10)
    partial = table.pivot(index="level", columns="coefficient", values="partial_pooling")
    np.testing.assert_allclose(partial.loc[modes.index, "Days"], beta[1] + modes["Days"], rtol=1e-12)


def test_uncorrelated_blocks_on_one_factor_are_combined(lme4_draws):
    draws, fix, _ = lme4_draws("sleep_uncorr_reml")
    table = shrinkage(draws, "Subject").table
    assert set(table["coefficient"]) == {"Intercept", "Days"}
    tau2, tau2_days, sigma2 = vc(fix, "Subject"), vc(fix, "Subject.1", "Days"), vc(fix, "Residual", None)
    days = np.arange(10.0)
    ztz = np.array([[10, days.sum()], [days.sum(), (days**2).sum()]])
    lam = np.linalg.solve(ztz + sigma2 * np.diag([1 / tau2, 1 / tau2_days]), ztz)
    factors = table.pivot(index="level", columns="coefficient", values="shrinkage_factor")
    np.testing.assert_allclose(factors["Intercept"], lam[0, 0], rtol=1e-10)
    np.testing.assert_allclose(factors["Days"], lam[1, 1], rtol=1e-10)


def test_nested_factor_counts_inner_variance_as_noise(lme4_draws):
    draws, fix, model = lme4_draws("pastes_nested_reml")
    table = shrinkage(draws, "batch").table.set_index("level")
    cask, batch, sigma2 = vc(fix, "cask:batch"), vc(fix, "batch"), vc(fix, "Residual", None)
    # a batch mean averages 3 casks x 2 samples
    noise = cask / 3 + sigma2 / 6
    np.testing.assert_allclose(table["shrinkage_factor"], batch / (batch + noise), rtol=1e-10)
    np.testing.assert_allclose(table["no_pooling_se"], np.sqrt(noise), rtol=1e-10)
    means = model.data.groupby("batch")["strength"].mean()
    np.testing.assert_allclose(table.loc[means.index, "no_pooling"], means, rtol=1e-12)
    modes = ranef_frame(fix, "batch")["(Intercept)"]
    np.testing.assert_allclose(table.loc[modes.index, "partial_pooling"],
                               fixef(fix, "(Intercept)") + modes, rtol=1e-12)
    np.testing.assert_allclose(table["pull"], table["shrinkage_factor"], rtol=1e-6)


def test_complete_pooling_ols_and_errors(lme4_draws):
    draws, _, model = lme4_draws("sleep_slope_reml")
    table = shrinkage(draws, "Subject", complete="ols").table
    slope, intercept = np.polyfit(model.data["Days"], model.data["Reaction"], 1)
    pooled = table.groupby("coefficient")["complete_pooling"].first()
    assert pooled["Intercept"] == pytest.approx(intercept, rel=1e-10)
    assert pooled["Days"] == pytest.approx(slope, rel=1e-10)
    with pytest.raises(ColumnNotFoundError, match="'Days'.*Subject"):
        shrinkage(draws, "Days")
    with pytest.raises(InputTypeError, match="complete"):
        shrinkage(draws, "Subject", complete="none")


def test_posterior_shrinkage_has_intervals(lme4_draws):
    point, fix, _ = lme4_draws("sleep_int_reml")
    rng = np.random.default_rng(7)
    s = 300
    tau2 = point.covariances[0][0, 0, 0] * rng.gamma(40, 1 / 40, size=s)
    sigma = point.sigma[0] * rng.gamma(300, 1 / 300, size=s)
    effects = point.effects[0] + rng.normal(0, 5, size=(s, 18, 1))
    draws = FitDraws(beta=np.repeat(point.beta, s, axis=0), sigma=sigma,
                     covariances=(tau2[:, None, None],), effects=(effects,),
                     design=point.design, point=False)
    result = shrinkage(draws, "Subject", prob=0.8)
    table = result.table
    per_draw = 10 * tau2 / (10 * tau2 + sigma**2)
    np.testing.assert_allclose(table["shrinkage_factor"], per_draw.mean(), rtol=1e-12)
    np.testing.assert_allclose(table["factor_lb"], np.quantile(per_draw, 0.1), rtol=1e-12)
    partial = point.beta[0, 0] + effects[:, :, 0]
    np.testing.assert_allclose(table["partial_pooling"], partial.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(table["eti80_ub"], np.quantile(partial, 0.9, axis=0), rtol=1e-12)
    np.testing.assert_allclose(table["partial_pooling_sd"], partial.std(axis=0, ddof=1), rtol=1e-12)
    assert result.factor_draws.shape == (s, 18, 1)


def test_works_on_hierlm_reml_fits(lme4_draws):
    draws, _, model = lme4_draws("sleep_slope_reml")
    reference = shrinkage(draws, "Subject").table
    ours = shrinkage(model.fit(method="reml"), "Subject").table
    for column in ("no_pooling", "partial_pooling", "shrinkage_factor", "complete_pooling"):
        np.testing.assert_allclose(ours[column], reference[column], rtol=1e-4, err_msg=column)
