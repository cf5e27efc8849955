import numpy as np
import pytest
from scipy.stats import norm

from hierlm.errors import ColumnNotFoundError, InputTypeError
from hierlm.plots import plot_caterpillar, plot_effects_qq
from hierlm.plots.effects import group_effect_table, normal_plotting_positions

from .helpers import scatters, segments, visible_axes


def test_reml_caterpillar_shows_blups_with_conditional_intervals(sleep_reml):
    ranef = sleep_reml.ranef()
    z = norm.ppf(0.5 + 0.89 / 2)
    figure = plot_caterpillar(sleep_reml, prob=0.89)
    axes = figure.axes
    assert len(axes) == 2
    assert [ax.get_xlabel() for ax in axes] == ["Intercept effect", "Days effect"]
    intercept = ranef[ranef["term"] == "Intercept"].set_index("level")
    order = intercept["estimate"].sort_values(kind="stable").index.tolist()
    assert [t.get_text() for t in axes[0].get_yticklabels()] == order
    for ax, term in zip(axes, ["Intercept", "Days"], strict=True):
        rows = ranef[ranef["term"] == term].set_index("level").loc[order]
        (bars,) = segments(ax)
        # one interval per level, on the level's row, from mode - z sd to mode + z sd
        assert len(bars) == 18
        bars = bars[np.argsort(bars[:, 0, 1])]
        np.testing.assert_allclose(bars[:, 0, 1], np.arange(18))
        np.testing.assert_allclose(bars[:, 0, 0], rows["estimate"] - z * rows["std_error"])
        np.testing.assert_allclose(bars[:, 1, 0], rows["estimate"] + z * rows["std_error"])
        points = ax.lines[0]
        by_row = np.argsort(points.get_ydata())
        np.testing.assert_allclose(points.get_ydata()[by_row], np.arange(18))
        np.testing.assert_allclose(points.get_xdata()[by_row], rows["estimate"])


def test_coefficients_equal_lme4_coef(sleep_reml):
    coef = sleep_reml.coef(wide=True)["Subject"]
    table = group_effect_table(sleep_reml, "Subject", include_fixed=True)
    days = table[table["term"] == "Days"].set_index("level")
    np.testing.assert_allclose(days["estimate"], coef.loc[days.index, "Days"])
    figure = plot_caterpillar(sleep_reml, terms=["Days"], include_fixed=True)
    assert len(figure.axes) == 1
    np.testing.assert_allclose(np.sort(figure.axes[0].lines[0].get_xdata()), np.sort(coef["Days"]))
    reference = [line for line in figure.axes[0].lines if line.get_linestyle() == "--"][0]
    assert reference.get_xdata()[0] == pytest.approx(sleep_reml.fixef().loc["Days", "estimate"])


def test_posterior_intervals_are_quantiles_of_the_draws(sleep_posterior):
    table = group_effect_table(sleep_posterior, "Subject", prob=0.8)
    assert table.attrs["kind"] == "eti"
    effects = sleep_posterior.effects[0]
    days = table[table["term"] == "Days"]
    np.testing.assert_allclose(days["estimate"], effects[:, :, 1].mean(axis=0))
    np.testing.assert_allclose(days["lower"], np.quantile(effects[:, :, 1], 0.1, axis=0))
    np.testing.assert_allclose(days["upper"], np.quantile(effects[:, :, 1], 0.9, axis=0))
    figure = plot_caterpillar(sleep_posterior, prob=0.8)
    (bars,) = segments(figure.axes[1])
    np.testing.assert_allclose(np.sort(bars[:, 1, 0]), np.sort(days["upper"]))


def test_point_draws_without_conditional_variances_draw_points_only(sleep_reml):
    figure = plot_caterpillar(sleep_reml.draws())
    assert segments(figure.axes[0]) == []
    assert len(figure.axes[0].lines[0].get_xdata()) == 18


def test_two_factors_need_a_choice(penicillin_reml):
    with pytest.raises(InputTypeError, match="group="):
        plot_caterpillar(penicillin_reml)
    figure = plot_caterpillar(penicillin_reml, "sample")
    assert len(segments(figure.axes[0])[0]) == 6
    with pytest.raises(ColumnNotFoundError):
        plot_caterpillar(penicillin_reml, "sample", terms=["x"])


def test_qq_plots_sorted_effects_against_normal_quantiles(sleep_reml):
    ranef = sleep_reml.ranef()
    figure = plot_effects_qq(sleep_reml)
    axes = visible_axes(figure)
    assert len(axes) == 2
    for ax, term in zip(axes, ["Intercept", "Days"], strict=True):
        (points,) = scatters(ax)
        np.testing.assert_allclose(points[:, 0], normal_plotting_positions(18))
        np.testing.assert_allclose(points[:, 1], np.sort(ranef.loc[ranef["term"] == term, "estimate"]))
        assert ax.get_ylabel() == f"{term} effect"


def test_qq_one_panel_per_crossed_factor(penicillin_reml):
    axes = visible_axes(plot_effects_qq(penicillin_reml))
    assert [len(scatters(ax)[0]) for ax in axes] == [24, 6]


def test_plotting_positions_match_r_ppoints():
    # R: qnorm(ppoints(5)) and qnorm(ppoints(20))[1:2]
    np.testing.assert_allclose(normal_plotting_positions(5),
                               [-1.1797611, -0.4972006, 0.0, 0.4972006, 1.1797611], atol=1e-6)
    np.testing.assert_allclose(normal_plotting_positions(20)[:2], [-1.9599640, -1.4395315], atol=1e-6)
