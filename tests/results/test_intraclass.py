"""ICC against hand computations from lme4's variance components."""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.errors import ColumnNotFoundError, DataError
from hierlm.results.draws import FitDraws
from hierlm.results.intraclass import icc, nesting_matrix


def vc(fix, grp, var1="(Intercept)", var2=None):
    return next(r["vcov"] for r in fix["varcorr"]
                if r["grp"] == grp and r["var1"] == var1 and r["var2"] == var2)


def test_random_intercept_icc_is_tau2_over_total(lme4_draws):
    draws, fix, _ = lme4_draws("sleep_int_reml")
    tau2 = vc(fix, "Subject")
    sigma2 = vc(fix, "Residual", None)
    expected = tau2 / (tau2 + sigma2)
    result = icc(draws)
    assert result.value == pytest.approx(expected, rel=1e-12)
    assert not result.adjusted
    shares = result.components["estimate"]
    assert shares["Subject"] == pytest.approx(expected, rel=1e-12)
    assert shares["Residual"] == pytest.approx(sigma2 / (tau2 + sigma2), rel=1e-12)
    assert result.components.loc["Residual", "variance"] == pytest.approx(sigma2, rel=1e-9)
    assert "0.589" in repr(result)


def test_dyestuff_icc(lme4_draws):
    draws, fix, _ = lme4_draws("dyestuff_reml")
    tau2, sigma2 = vc(fix, "Batch"), vc(fix, "Residual", None)
    assert icc(draws).value == pytest.approx(tau2 / (tau2 + sigma2), rel=1e-12)


def test_nested_factors_share_the_outer_variance(lme4_draws):
    draws, fix, _ = lme4_draws("pastes_nested_reml")
    cask, batch, res = vc(fix, "cask:batch"), vc(fix, "batch"), vc(fix, "Residual", None)
    total = cask + batch + res
    result = icc(draws)
    corr = result.correlations["estimate"]
    # same cask implies same batch
    assert corr["cask:batch"] == pytest.approx((cask + batch) / total, rel=1e-12)
    assert corr["batch"] == pytest.approx(batch / total, rel=1e-12)
    assert result.components.loc["cask:batch", "estimate"] == pytest.approx(cask / total, rel=1e-12)
    nested = nesting_matrix(draws.design)
    # block 0 is cask:batch (nested in batch), block 1 is batch (not nested in cask:batch)
    assert nested.tolist() == [[True, True], [False, True]]
    with pytest.raises(DataError, match="2 ICCs"):
        _ = result.value


def test_crossed_factors_and_shared_sets(lme4_draws):
    draws, fix, _ = lme4_draws("penicillin_crossed_reml")
    plate, sample, res = vc(fix, "plate"), vc(fix, "sample"), vc(fix, "Residual", None)
    total = plate + sample + res
    result = icc(draws, shared=["plate", ("plate", "sample")])
    corr = result.correlations["estimate"]
    assert corr["plate"] == pytest.approx(plate / total, rel=1e-12)
    assert corr["plate & sample"] == pytest.approx((plate + sample) / total, rel=1e-12)
    with pytest.raises(ColumnNotFoundError, match="'batch'"):
        icc(draws, shared=[("batch",)])


def test_adjusted_icc_with_random_slopes(lme4_draws):
    draws, fix, _ = lme4_draws("sleep_slope_reml")
    g00, g11 = vc(fix, "Subject"), vc(fix, "Subject", "Days")
    g01 = vc(fix, "Subject", "(Intercept)", "Days")
    sigma2 = vc(fix, "Residual", None)
    # every subject has Days 0..9: mean(Days) = 4.5, mean(Days^2) = 285 / 10
    v = g00 + 2 * g01 * 4.5 + g11 * 28.5
    result = icc(draws)
    assert result.adjusted
    assert result.value == pytest.approx(v / (v + sigma2), rel=1e-12)
    at0 = icc(draws, at={"Days": 0})
    assert at0.value == pytest.approx(g00 / (g00 + sigma2), rel=1e-12)
    v9 = g00 + 18 * g01 + 81 * g11
    assert icc(draws, at={"Days": 9}).value == pytest.approx(v9 / (v9 + sigma2), rel=1e-12)
    with pytest.raises(ColumnNotFoundError, match="'Days'"):
        icc(draws, at={})
    with pytest.raises(ColumnNotFoundError, match="Weeks"):
        icc(draws, at={"Days": 1, "Weeks": 2})


def test_uncorrelated_blocks_add_up(lme4_draws):
    draws, fix, _ = lme4_draws("sleep_uncorr_reml")
    g00, g11, sigma2 = vc(fix, "Subject"), vc(fix, "Subject.1", "Days"), vc(fix, "Residual", None)
    v = g00 + g11 * 28.5
    result = icc(draws)
    assert result.value == pytest.approx(v / (v + sigma2), rel=1e-12)
    assert list(result.components.index) == ["Subject", "Subject.1", "Residual"]


def test_posterior_icc_summarises_per_draw_values(lme4_draws):
    point, fix, _ = lme4_draws("sleep_int_reml")
    rng = np.random.default_rng(1)
    s = 400
    tau2 = point.covariances[0][0, 0, 0] * rng.gamma(50, 1 / 50, size=s)
    sigma = point.sigma[0] * rng.gamma(200, 1 / 200, size=s)
    draws = FitDraws(beta=np.repeat(point.beta, s, axis=0), sigma=sigma,
                     covariances=(tau2[:, None, None],),
                     effects=(np.repeat(point.effects[0], s, axis=0),),
                     design=point.design, point=False)
    per_draw = tau2 / (tau2 + sigma**2)
    row = icc(draws, prob=0.9).correlations.loc["Subject"]
    assert row["mean"] == pytest.approx(per_draw.mean(), rel=1e-12)
    assert row["sd"] == pytest.approx(per_draw.std(ddof=1), rel=1e-12)
    assert row["eti90_lb"] == pytest.approx(np.quantile(per_draw, 0.05), rel=1e-12)
    assert row["eti90_ub"] == pytest.approx(np.quantile(per_draw, 0.95), rel=1e-12)
