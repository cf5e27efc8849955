"""Every posterior figure on a real (short) NUTS fit of the sleepstudy random-slope model."""

import numpy as np
import pytest

from hierlm.plots import (
    plot_caterpillar,
    plot_correlations,
    plot_icc,
    plot_ppc,
    plot_rank,
    plot_shrinkage,
    plot_trace,
    plot_trajectories,
    plot_variance_components,
)
from hierlm.plots.common import main_parameter_tree, posterior_tree
from hierlm.results import icc
from hierlm.results.common import as_draws

from .helpers import quivers, scatters, visible_axes

pytestmark = [pytest.mark.slow]


def test_posterior_tree_uses_the_names_of_the_fit_idata(sleep_nuts):
    own = set(main_parameter_tree(sleep_nuts)["posterior"].data_vars)
    built = set(posterior_tree(as_draws(sleep_nuts))["posterior"].data_vars)
    assert own == built == {"fixef", "sigma", "sd_Subject", "cor_Subject"}


def test_every_posterior_figure(sleep_nuts, sleep_model):
    draws = as_draws(sleep_nuts)
    assert not draws.point
    assert quivers(plot_shrinkage(sleep_nuts, "Subject").axes[0])[0].N == 18
    assert len(plot_caterpillar(sleep_nuts).axes) == 2
    assert len(visible_axes(plot_trajectories(sleep_nuts, "Days"))) == 18
    icc_figure = plot_icc(sleep_nuts)
    np.testing.assert_allclose(scatters(visible_axes(icc_figure)[0])[0][0, 0],
                               icc(sleep_nuts).correlations["mean"].iloc[0])
    assert len(visible_axes(plot_variance_components(sleep_nuts))) == 3
    assert len(visible_axes(plot_correlations(sleep_nuts))) == 1
    assert len(visible_axes(plot_ppc(sleep_nuts, n_draws=40))[0].lines) == 41
    trace = plot_trace(sleep_nuts)
    (days_trace,) = [ax for ax in trace.axes
                     if ax.get_ylabel() == "fixef\nDays" and ax.get_xlabel() == "Draw"]
    assert len(days_trace.lines) == 2  # one per chain
    np.testing.assert_allclose(days_trace.lines[0].get_ydata(),
                               sleep_nuts.idata["posterior"]["fixef"].sel(fixef_term="Days").values[0])
    assert len(visible_axes(plot_rank(sleep_nuts))) == 6
