"""Predictions: lme4 fitted values, plug-in intervals, new-level draws."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import hierlm as hl
from hierlm.errors import DataError, HierlmWarning, InputTypeError
from hierlm.results.draws import FitDraws
from hierlm.results.prediction import predict


def new_design(model, frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return model.new_design(frame)


def test_point_fit_reproduces_lme4_fitted_values(lme4_draws):
    draws, fix, model = lme4_draws("sleep_slope_reml")
    table = predict(draws)
    np.testing.assert_allclose(table["estimate"].to_numpy()[:10], fix["fitted_head"], rtol=1e-10)
    population = predict(draws, include_random=False)["estimate"].to_numpy()
    np.testing.assert_allclose(population, model.design.X @ draws.beta[0], rtol=1e-12)
    assert list(table.index[:3]) == list(model.design.row_index[:3])


def test_bare_point_draws_have_no_mean_standard_error(lme4_draws):
    draws, _, _ = lme4_draws("sleep_slope_reml")
    table = predict(draws)
    assert list(table.columns) == ["estimate", "std_error", "eti95_lb", "eti95_ub"]
    assert table["std_error"].isna().all()


def test_point_fit_response_interval_adds_new_level_variance(lme4_draws):
    draws, fix, model = lme4_draws("sleep_slope_reml")
    frame = pd.DataFrame({"Days": [5, 5], "Subject": ["308", "new"]})
    table = predict(draws, new_design(model, frame), kind="response", prob=0.9)
    sigma2 = fix["sigma"] ** 2
    g = draws.covariances[0][0]
    z = np.array([1.0, 5.0])
    half_known = norm.ppf(0.95) * np.sqrt(sigma2)
    half_new = norm.ppf(0.95) * np.sqrt(sigma2 + z @ g @ z)
    width = (table["eti90_ub"] - table["eti90_lb"]).to_numpy()
    np.testing.assert_allclose(width, [2 * half_known, 2 * half_new], rtol=1e-12)
    b0, b1 = draws.beta[0]
    assert table["estimate"].iloc[1] == pytest.approx(b0 + 5 * b1, rel=1e-12)


def posterior_like(point: FitDraws, s: int) -> FitDraws:
    """Draws that repeat the point estimate: the only randomness is what predict adds."""
    return FitDraws(beta=np.repeat(point.beta, s, axis=0), sigma=np.repeat(point.sigma, s),
                    covariances=tuple(np.repeat(c, s, axis=0) for c in point.covariances),
                    effects=tuple(np.repeat(e, s, axis=0) for e in point.effects),
                    design=point.design, point=False)


def test_new_levels_are_drawn_from_the_population(lme4_draws):
    point, _, model = lme4_draws("sleep_slope_reml")
    draws = posterior_like(point, 20000)
    frame = pd.DataFrame({"Days": [0, 5, 3], "Subject": ["new", "new", "308"]})
    design = new_design(model, frame)
    labels = {"Subject": frame["Subject"]}
    values = predict(draws, design, summary=False, seed=5, new_level_labels=labels)
    again = predict(draws, design, summary=False, seed=5, new_level_labels=labels)
    np.testing.assert_array_equal(values, again)
    b0, b1 = point.beta[0]
    g = point.covariances[0][0]
    effect0 = values[:, 0] - b0
    effect5 = values[:, 1] - (b0 + 5 * b1)
    # same new subject: both rows use one draw of (intercept, slope) ~ N(0, G)
    expected = np.array([[g[0, 0], g[0, 0] + 5 * g[0, 1]],
                         [g[0, 0] + 5 * g[0, 1], g[0, 0] + 10 * g[0, 1] + 25 * g[1, 1]]])
    np.testing.assert_allclose(np.cov(effect0, effect5), expected, rtol=0.05)
    # the known subject's prediction is its conditional mean, without added spread
    assert np.ptp(values[:, 2]) == pytest.approx(0.0, abs=1e-9)
    # without labels every row is its own new level: independent draws
    separate = predict(draws, design, summary=False, seed=5)
    assert abs(np.corrcoef(separate[:, 0], separate[:, 1])[0, 1]) < 0.03
    population = predict(draws, design, summary=False, new_levels="population")
    np.testing.assert_allclose(population[:, 0], b0, rtol=1e-12)


def test_posterior_predictive_adds_residual_noise(lme4_draws):
    point, fix, model = lme4_draws("sleep_int_reml")
    draws = posterior_like(point, 20000)
    table = predict(draws, kind="response", seed=11, prob=0.5)
    assert table["std_error"].iloc[0] == pytest.approx(fix["sigma"], rel=0.03)
    assert table["estimate"].iloc[0] == pytest.approx(fix["fitted_head"][0], abs=4 * fix["sigma"] / 141)
    assert list(table.columns) == ["estimate", "std_error", "eti50_lb", "eti50_ub"]


def test_bad_arguments(lme4_draws):
    draws, _, model = lme4_draws("sleep_slope_reml")
    with pytest.raises(InputTypeError, match="kind"):
        predict(draws, kind="link")
    with pytest.raises(InputTypeError, match="new_levels"):
        predict(draws, new_levels="zero")
    other = hl.Model("Reaction ~ 1 + (1 | Subject)", model.data).design
    with pytest.raises(DataError, match="new_design"):
        predict(draws, other)
    bayes = posterior_like(draws, 4)
    frame = pd.DataFrame({"Days": [0, 1], "Subject": ["new", "new"]})
    with pytest.raises(InputTypeError, match="3 entries"):
        predict(bayes, new_design(model, frame), new_level_labels={"Subject": ["a", "b", "c"]})
