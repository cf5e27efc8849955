import numpy as np
import pytest

from hierlm.errors import InputTypeError
from hierlm.plots import plot_ppc, plot_rank, plot_residuals, plot_trace
from hierlm.plots.common import posterior_tree
from hierlm.plots.diagnostics import predictive_tree

from .helpers import scatters, visible_axes


def test_residuals_against_fitted_values(sleep_reml):
    figure = plot_residuals(sleep_reml)
    ax = figure.axes[0]
    (points,) = scatters(ax)
    np.testing.assert_allclose(points[:, 0], sleep_reml.fitted())
    np.testing.assert_allclose(points[:, 1], sleep_reml.residuals())
    assert ax.get_ylabel() == "conditional residual"
    assert ax.get_xlabel() == "fitted value (with group effects)"


def test_marginal_and_scaled_residuals(sleep_reml):
    population = sleep_reml.predict(include_random=False)["estimate"].to_numpy()
    (points,) = scatters(plot_residuals(sleep_reml, include_random=False, scaled=True).axes[0])
    np.testing.assert_allclose(points[:, 0], population)
    np.testing.assert_allclose(points[:, 1], (sleep_reml.design.y - population) / sleep_reml.sigma)


def test_predictive_tree_holds_replicates_and_the_observed_response(sleep_posterior):
    tree = predictive_tree(sleep_posterior, n_draws=30, seed=3)
    replicates = tree["posterior_predictive"]["Reaction"]
    assert dict(replicates.sizes) == {"chain": 1, "draw": 30, "obs": 180}
    np.testing.assert_array_equal(tree["observed_data"]["Reaction"].values, sleep_posterior.design.y)
    # replicate = linear predictor of a posterior draw + N(0, sigma^2) noise: centred on it
    mean_of_replicates = replicates.values[0].mean(axis=0)
    expected = sleep_posterior.linear_predictor().mean(axis=0)
    assert np.corrcoef(mean_of_replicates, expected)[0, 1] > 0.95
    full = predictive_tree(sleep_posterior, n_draws=None)
    assert dict(full["posterior_predictive"]["Reaction"].sizes) == {"chain": 2, "draw": 100, "obs": 180}


def test_ppc_draws_one_density_per_replicate_plus_the_data(sleep_posterior):
    figure = plot_ppc(sleep_posterior, n_draws=20)
    (ax,) = visible_axes(figure)
    assert len(ax.lines) == 21
    assert "20 replicated" in figure.get_suptitle()


def test_trace_and_rank_cover_every_main_parameter(sleep_posterior):
    trace = plot_trace(sleep_posterior)
    labels = [ax.get_ylabel() for ax in trace.axes if ax.get_xlabel() == "Draw"]
    assert labels == ["fixef\nIntercept", "fixef\nDays", "sigma", "sd_Subject\nIntercept",
                      "sd_Subject\nDays", "cor_Subject\nIntercept,Days"]
    # one trace per chain in every panel, and it is the chain's draws
    (days_trace,) = [ax for ax in trace.axes if ax.get_ylabel() == "fixef\nDays"]
    assert len(days_trace.lines) == 2
    np.testing.assert_allclose(days_trace.lines[1].get_ydata(), sleep_posterior.beta[100:, 1])
    rank = plot_rank(sleep_posterior)
    titles = [ax.get_title() for ax in visible_axes(rank)]
    assert titles == ["fixef\nIntercept", "fixef\nDays", "sigma", "sd_Subject\nIntercept",
                      "sd_Subject\nDays", "cor_Subject\nIntercept,Days"]
    assert all(len(ax.lines) == 2 for ax in visible_axes(rank))  # one rank curve per chain
    only = plot_rank(sleep_posterior, var_names=["sigma"])
    assert [ax.get_title() for ax in visible_axes(only)] == ["sigma"]


def test_posterior_tree_splits_chains(sleep_posterior):
    tree = posterior_tree(sleep_posterior)
    fixef = tree["posterior"]["fixef"]
    assert dict(fixef.sizes) == {"chain": 2, "draw": 100, "fixef_term": 2}
    np.testing.assert_array_equal(fixef.values.reshape(200, 2), sleep_posterior.beta)
    assert list(tree["posterior"]["cor_Subject"].coords["Subject_pair"].values) == ["Intercept,Days"]
    with pytest.raises(InputTypeError, match="chains"):
        posterior_tree(sleep_posterior, chains=3)


def test_point_fits_and_unknown_names_are_refused(sleep_reml, sleep_posterior):
    for plot in (plot_ppc, plot_trace, plot_rank):
        with pytest.raises(InputTypeError, match="posterior draws"):
            plot(sleep_reml)
    with pytest.raises(InputTypeError, match="beta"):
        plot_trace(sleep_posterior, var_names=["beta"])
    with pytest.raises(InputTypeError, match="positive"):
        predictive_tree(sleep_posterior, n_draws=0)
