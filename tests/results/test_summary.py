"""Posterior summary helper against arviz_stats."""

from __future__ import annotations

import numpy as np
import pytest
from arviz_base import from_dict
from arviz_stats import ess, mcse, rhat

import hierlm as hl
from hierlm.errors import InputTypeError
from hierlm.results.summary import interval_spec, point_or_posterior, summarize


def test_summary_matches_arviz_stats():
    rng = np.random.default_rng(0)
    chains, per_chain = 4, 250
    # an autocorrelated AR(1) chain per chain and quantity, one chain shifted
    values = np.zeros((chains, per_chain, 2))
    for t in range(1, per_chain):
        values[:, t] = 0.8 * values[:, t - 1] + rng.normal(size=(chains, 2))
    values[0] += 0.5
    flat = values.reshape(chains * per_chain, 2)
    table = summarize(flat, chains=chains, prob=0.9, kind="eti")
    tree = from_dict({"posterior": {"a": values}}, dims={"a": ["k"]})
    np.testing.assert_allclose(table["ess_bulk"], ess(tree, method="bulk")["a"].values, rtol=1e-10)
    np.testing.assert_allclose(table["ess_tail"], ess(tree, method="tail", prob=(0.05, 0.95))["a"].values,
                               rtol=1e-10)
    np.testing.assert_allclose(table["r_hat"], rhat(tree)["a"].values, rtol=1e-10)
    np.testing.assert_allclose(table["mcse_mean"], mcse(tree, method="mean")["a"].values, rtol=1e-10)
    np.testing.assert_allclose(table["eti90_lb"], np.quantile(flat, 0.05, axis=0), rtol=1e-12)
    np.testing.assert_allclose(table["median"], np.median(flat, axis=0))
    assert table["r_hat"].iloc[0] > 1.01


def test_defaults_and_point_values():
    spec = interval_spec()
    assert (spec.prob, spec.kind) == (hl.DEFAULT_PROB, "eti") == (0.95, "eti")
    assert (spec.lower, spec.upper) == ("eti95_lb", "eti95_ub")
    hdi = interval_spec(0.5, "hdi")
    lower, upper = hdi.bounds(np.random.default_rng(1).normal(size=(4000, 1)))
    assert upper[0] - lower[0] == pytest.approx(2 * 0.6745, abs=0.1)
    assert list(point_or_posterior(np.array([[1.0, 2.0]]), point=True)["estimate"]) == [1.0, 2.0]
    single_chain = summarize(np.arange(100.0), chains=1)
    assert np.isnan(single_chain["r_hat"].iloc[0])
    with pytest.raises(InputTypeError, match="prob"):
        interval_spec(1.5)
    with pytest.raises(InputTypeError, match="prob"):
        interval_spec(True)
    with pytest.raises(InputTypeError, match="chains=3"):
        summarize(np.zeros(100), chains=3)
