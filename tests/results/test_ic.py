"""WAIC and PSIS-LOO against direct computations and an exact LOO."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import norm

from hierlm.errors import FitError, HierlmWarning, InputTypeError
from hierlm.results.draws import FitDraws
from hierlm.results.grouped import group_loglik
from hierlm.results.ic import loo, pointwise_loglik, waic


def direct_waic(log_lik):
    """WAIC written out point by point with plain Python sums (Vehtari et al. 2017, eqs. 3-5)."""
    s, n = log_lik.shape
    elpd_i, p_i = [], []
    for i in range(n):
        column = log_lik[:, i]
        top = column.max()
        lppd = top + math.log(sum(math.exp(v - top) for v in column) / s)
        mean = sum(column) / s
        var = sum((v - mean) ** 2 for v in column) / (s - 1)
        elpd_i.append(lppd - var)
        p_i.append(var)
    elpd_i = np.array(elpd_i)
    se = math.sqrt(n * np.var(elpd_i, ddof=1))
    return sum(elpd_i), se, sum(p_i), elpd_i


def normal_mean_example(n=30, draws=4000, seed=0):
    """y_i ~ N(mu, 1), flat prior: posterior mu ~ N(ybar, 1/n), exact draws; exact LOO known."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0.3, 1.0, n)
    mu = rng.normal(y.mean(), 1 / np.sqrt(n), draws)
    log_lik = norm.logpdf(y[None, :], mu[:, None], 1.0)
    exact = sum(norm.logpdf(y[i], np.delete(y, i).mean(), np.sqrt(1 + 1 / (n - 1))) for i in range(n))
    return log_lik, exact, y


def test_waic_matches_direct_computation():
    rng = np.random.default_rng(4)
    log_lik = rng.normal(-1.0, 0.3, size=(500, 12)) - rng.gamma(2.0, 0.5, size=(1, 12))
    result = waic(log_lik)
    elpd, se, p, elpd_i = direct_waic(log_lik)
    assert result.elpd == pytest.approx(elpd, rel=1e-12)
    assert result.se == pytest.approx(se, rel=1e-10)
    assert result.p == pytest.approx(p, rel=1e-12)
    np.testing.assert_allclose(result.pointwise["elpd"], elpd_i, rtol=1e-12)
    assert result.ic == pytest.approx(-2 * elpd)
    assert result.warning == ""
    assert "elpd_waic" in repr(result)


def test_waic_warns_about_large_pointwise_penalty():
    rng = np.random.default_rng(5)
    log_lik = rng.normal(-1.0, 0.1, size=(400, 10))
    log_lik[:, 3] = rng.normal(-3.0, 1.0, size=400)  # variance about 1 > 0.4
    with pytest.warns(HierlmWarning, match="1 of 10 points have p_waic > 0.4"):
        result = waic(log_lik)
    assert "p_waic" in result.warning


def test_loo_and_waic_agree_with_exact_loo_in_a_conjugate_model():
    log_lik, exact, y = normal_mean_example()
    loo_result = loo(log_lik, chains=4)
    waic_result = waic(log_lik)
    # Monte Carlo error of either estimate is a few hundredths here
    assert loo_result.elpd == pytest.approx(exact, abs=0.05)
    assert waic_result.elpd == pytest.approx(exact, abs=0.05)
    # var over mu ~ N(ybar, 1/n) of -(y_i - mu)^2 / 2 is (y_i - ybar)^2 / n + 1 / (2 n^2)
    n = y.size
    p_expected = ((y - y.mean()) ** 2).sum() / n + 1 / (2 * n)
    assert waic_result.p == pytest.approx(p_expected, abs=0.05)
    assert loo_result.p == pytest.approx(p_expected, abs=0.05)
    assert (loo_result.pointwise["pareto_k"] < 0.5).all()
    three_d = loo(log_lik.reshape(4, 1000, -1))
    assert three_d.elpd == pytest.approx(loo_result.elpd, rel=1e-12)


def test_loo_flags_high_pareto_k():
    rng = np.random.default_rng(6)
    log_lik = rng.normal(-1.0, 0.1, size=(1000, 8))
    log_lik[:, 0] = 3 * rng.standard_t(1.5, size=1000)  # heavy-tailed importance ratios
    with pytest.warns(HierlmWarning, match="Pareto k"):
        result = loo(log_lik)
    assert result.pointwise["pareto_k"].iloc[0] > 0.7


def test_constant_units_need_no_importance_sampling():
    log_lik, _, _ = normal_mean_example(n=10, draws=1000)
    log_lik = np.column_stack([log_lik, np.full(1000, -2.5)])
    result = loo(log_lik)
    assert result.pointwise["elpd"].iloc[-1] == pytest.approx(-2.5)
    assert result.pointwise["p"].iloc[-1] == pytest.approx(0.0, abs=1e-12)


def posterior_like(point: FitDraws, s: int, seed: int) -> FitDraws:
    rng = np.random.default_rng(seed)
    return FitDraws(
        beta=point.beta + rng.normal(0, 0.5, size=(s, point.beta.shape[1])),
        sigma=point.sigma[0] * rng.gamma(400, 1 / 400, size=s),
        covariances=tuple(c * rng.gamma(50, 1 / 50, size=(s, 1, 1)) for c in point.covariances),
        effects=tuple(e + rng.normal(0, 1.0, size=(s,) + e.shape[1:]) for e in point.effects),
        design=point.design, point=False)


@pytest.mark.filterwarnings("ignore::hierlm.errors.HierlmWarning")
def test_fit_level_log_likelihoods(lme4_draws):
    point, _, model = lme4_draws("sleep_slope_reml")
    draws = posterior_like(point, 200, seed=8)
    direct = norm.logpdf(model.design.y[None, :], draws.linear_predictor(), draws.sigma[:, None])
    np.testing.assert_allclose(pointwise_loglik(draws), direct, rtol=1e-12)
    by_fit = waic(draws)
    assert by_fit.elpd == pytest.approx(waic(direct).elpd, rel=1e-12)
    np.testing.assert_array_equal(by_fit.y, model.design.y)
    grouped = loo(draws, level="group")
    assert grouped.group == "Subject"
    assert list(grouped.pointwise.index) == list(point.design.blocks[0].levels)
    assert grouped.elpd == pytest.approx(loo(group_loglik(draws, "Subject")).elpd, rel=1e-12)


def test_point_fits_and_bad_arguments(lme4_draws):
    point, _, _ = lme4_draws("sleep_int_reml")
    with pytest.raises(FitError, match="method='nuts'"):
        waic(point)
    draws = posterior_like(point, 20, seed=1)
    with pytest.raises(InputTypeError, match="level"):
        loo(draws, level="subject")
    with pytest.raises(InputTypeError, match="chains=3"):
        waic(np.zeros((20, 4)), chains=3)
    crossed, _, _ = lme4_draws("penicillin_crossed_reml")
    with pytest.raises(InputTypeError, match="group="), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo(posterior_like(crossed, 20, seed=2), level="group")
