"""Count and proportion posterior predictive checks, computed by hand from hand-made draws."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import hierlm as hl
from hierlm.errors import InputTypeError
from hierlm.plots.counts import count_frequencies, group_proportions, plot_ppc_counts, plot_ppc_proportions
from tests.bayes.test_glmm import _fake_fit


@pytest.fixture(scope="module")
def cbpp_fit():
    model = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     hl.datasets.load("cbpp"), family="binomial")
    return _fake_fit(model)[0]


def test_count_frequencies_are_the_bincounts(cbpp_fit) -> None:
    table = count_frequencies(cbpp_fit, max_count=5)
    idata = cbpp_fit.idata
    name = next(iter(idata["observed_data"].data_vars))
    observed = idata["observed_data"][name].values.astype(int)
    replicated = idata["posterior_predictive"][name].values.reshape(-1, observed.size)
    np.testing.assert_array_equal(table["observed"], np.bincount(np.minimum(observed, 5), minlength=6))
    expected = np.mean([np.bincount(np.minimum(r, 5), minlength=6) for r in replicated], axis=0)
    np.testing.assert_allclose(table["expected"], expected)
    assert table["observed"].sum() == observed.size
    assert np.all(table["lower"] <= table["expected"]) and np.all(table["expected"] <= table["upper"])
    assert len(plot_ppc_counts(cbpp_fit, max_count=5).axes[0].patches) == 6


def test_group_proportions_divide_successes_by_trials(cbpp_fit) -> None:
    table = group_proportions(cbpp_fit, "herd")
    data = hl.datasets.load("cbpp")
    by_herd = data.groupby("herd", observed=True)[["incidence", "size"]].sum()
    np.testing.assert_allclose(table["observed"], (by_herd["incidence"] / by_herd["size"]).to_numpy())
    np.testing.assert_allclose(table["trials"], by_herd["size"].to_numpy())
    assert plot_ppc_proportions(cbpp_fit).axes[0].get_ylabel() == "herd"
    with pytest.raises(InputTypeError, match="not a grouping factor"):
        group_proportions(cbpp_fit, "farm")
