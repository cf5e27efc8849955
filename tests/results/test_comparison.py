"""Model comparison against arviz_stats.compare and direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from arviz_base import from_dict
from arviz_stats import compare as arviz_compare
from arviz_stats import loo as arviz_loo
from scipy.stats import norm

from hierlm.errors import DataError, InputTypeError
from hierlm.results.comparison import compare, pseudo_bma_weights, stacking_weights
from hierlm.results.ic import loo, waic


def three_models(n=40, s=2000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(0.3, 1.0, n)
    mu = rng.normal(y.mean(), 1 / np.sqrt(n), s)
    near_zero = rng.normal(0.0, 0.05, s)
    return {
        "free_mean": norm.logpdf(y[None, :], mu[:, None], 1.0),
        "zero_mean": norm.logpdf(y[None, :], near_zero[:, None], 1.0),
        "wide": norm.logpdf(y[None, :], mu[:, None], 1.5),
    }


def test_table_matches_direct_computation_and_arviz():
    arrays = three_models()
    ours = compare({k: loo(v) for k, v in arrays.items()})
    reference = arviz_compare(
        {k: arviz_loo(from_dict({"log_likelihood": {"y": v[None]}}), pointwise=True, reff=1.0)
         for k, v in arrays.items()},
        round_to="none")
    assert list(ours.index) == list(reference.index)
    np.testing.assert_allclose(ours["elpd"], reference["elpd"], rtol=1e-10)
    np.testing.assert_allclose(ours["elpd_diff"], reference["elpd_diff"], rtol=1e-8, atol=1e-10)
    # we use the sample variance (divisor n - 1) of Vehtari et al. 2017, eq. 24, and R's loo;
    # arviz_stats uses divisor n
    n = 40
    np.testing.assert_allclose(ours["dse"], reference["dse"] * np.sqrt(n / (n - 1)), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours["weight"], reference["weight"], atol=2e-3)
    # paired SE of the difference, by hand
    pointwise = {k: loo(v).pointwise["elpd"].to_numpy() for k, v in arrays.items()}
    best = ours.index[0]
    diff = pointwise["wide"] - pointwise[best]
    assert ours.loc["wide", "dse"] == pytest.approx(np.sqrt(diff.size * diff.var(ddof=1)), rel=1e-12)
    assert ours.loc[best, "rank"] == 0 and ours.loc[best, "elpd_diff"] == 0
    assert ours.attrs["ic"] == "loo"


def test_stacking_weights_maximise_the_log_score():
    pointwise = np.column_stack([loo(v).pointwise["elpd"] for v in three_models().values()])
    weights = stacking_weights(pointwise)
    assert weights.sum() == pytest.approx(1.0)

    def score(w):
        return np.log(np.exp(pointwise) @ w).sum()

    rng = np.random.default_rng(2)
    for candidate in rng.dirichlet(np.ones(3), size=200):
        assert score(weights) >= score(candidate) - 1e-9


def test_pseudo_bma_weights():
    pointwise = np.column_stack([waic(v).pointwise["elpd"] for v in three_models().values()])
    totals = pointwise.sum(axis=0)
    expected = np.exp(totals - totals.max()) / np.exp(totals - totals.max()).sum()
    np.testing.assert_allclose(pseudo_bma_weights(pointwise), expected, rtol=1e-12)
    bb = pseudo_bma_weights(pointwise, bootstrap=500, seed=3)
    np.testing.assert_allclose(bb, pseudo_bma_weights(pointwise, bootstrap=500, seed=3))
    assert bb.sum() == pytest.approx(1.0)
    table = compare({k: waic(v) for k, v in three_models().items()}, ic="waic", method="pseudo-BMA")
    np.testing.assert_allclose(table.loc[["free_mean", "zero_mean", "wide"], "weight"], expected)


def test_refuses_fits_on_different_data():
    arrays = three_models()
    a = loo(arrays["free_mean"])
    shorter = loo(arrays["wide"][:, :30])
    with pytest.raises(DataError, match="30"):
        compare({"a": a, "b": shorter})
    b = loo(arrays["wide"])
    y = np.arange(40.0)
    with pytest.raises(DataError, match="different responses"):
        compare({"a": a.__class__(**{**a.__dict__, "y": y}), "b": b.__class__(**{**b.__dict__, "y": y + 1})})
    grouped = a.__class__(**{**a.__dict__, "level": "group", "group": "g"})
    with pytest.raises(DataError, match="like with like"):
        compare({"a": a, "b": grouped})
    with pytest.raises(InputTypeError, match="two"):
        compare({"a": a})
    with pytest.raises(InputTypeError, match="method"):
        compare({"a": a, "b": b}, method="bma")
