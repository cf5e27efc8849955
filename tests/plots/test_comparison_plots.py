import warnings

import numpy as np
import pytest
from scipy.stats import norm

import hierlm as hl
from hierlm.errors import InputTypeError
from hierlm.plots import plot_compare, plot_compare_estimates
from hierlm.plots.comparison import parameter_label
from hierlm.results import compare, compare_estimates

from .helpers import pseudo_posterior, scatters, visible_axes


@pytest.fixture(scope="module")
def comparison(sleep_posterior):
    intercept = hl.Model("Reaction ~ Days + (1 | Subject)", hl.datasets.load("sleepstudy")).fit(method="reml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings of the cheap draws
        return compare({"slope": sleep_posterior, "intercept": pseudo_posterior(intercept)})


def test_elpd_differences_and_their_standard_errors(comparison):
    figure = plot_compare(comparison)
    ax = figure.axes[0]
    (points,) = scatters(ax)
    np.testing.assert_allclose(points[:, 0], comparison["elpd_diff"])
    # models top to bottom in table order (best first), each with weight in its label
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        f"{name}\nweight {w:.2f}" for name, w in zip(comparison.index, comparison["weight"], strict=True)]
    bars = [line for line in ax.lines if len(set(line.get_ydata())) == 1 and line.get_ydata()[0] > 0]
    spans = sorted((min(b.get_xdata()), max(b.get_xdata())) for b in bars)
    expected = sorted(zip(comparison["elpd_diff"] - comparison["dse"],
                          comparison["elpd_diff"] + comparison["dse"], strict=True))
    np.testing.assert_allclose(spans, expected)
    assert "LOO" in ax.get_xlabel()


def test_compare_needs_the_compare_table(comparison):
    with pytest.raises(InputTypeError, match="hl.compare"):
        plot_compare(comparison.drop(columns="dse"))
    with pytest.raises(InputTypeError, match="two models"):
        plot_compare(comparison.iloc[:1])


def test_estimates_panel_per_parameter_with_bayes_and_wald_intervals(sleep_posterior, sleep_reml):
    table = compare_estimates(sleep_posterior, sleep_reml, prob=0.9)
    figure = plot_compare_estimates(table)
    axes = visible_axes(figure)
    assert [ax.get_title(loc="left") for ax in axes] == [parameter_label(row) for _, row in table.iterrows()]
    assert axes[0].get_title(loc="left") == "Intercept"
    assert axes[2].get_title(loc="left") == "sd(Intercept | Subject)"
    for ax, (_, row) in zip(axes, table.iterrows(), strict=True):
        assert [t.get_text() for t in ax.get_yticklabels()] == ["ML/REML", "Bayes"]
        lines = {tuple(seg.get_segments()[0][:, 1].round()): seg.get_segments()[0][:, 0]
                 for seg in ax.collections}
        np.testing.assert_allclose(lines[(1.0, 1.0)], [row["eti90_lb"], row["eti90_ub"]])
        points = {line.get_ydata()[0]: line.get_xdata()[0] for line in ax.lines}
        assert points[1] == pytest.approx(row["post_mean"]) and points[0] == pytest.approx(row["estimate"])
        if row["kind"] == "fixed":
            half = norm.ppf(0.95) * row["std_error"]
            np.testing.assert_allclose(lines[(0.0, 0.0)], [row["estimate"] - half, row["estimate"] + half],
                                       rtol=0.05)  # Satterthwaite t vs normal quantile
            np.testing.assert_allclose(lines[(0.0, 0.0)], [row["ci90_lb"], row["ci90_ub"]])
        else:
            assert (0.0, 0.0) not in lines  # variance parameters: point only


def test_gee_row(sleep_posterior, sleep_reml):
    table = compare_estimates(sleep_posterior, sleep_reml, gee=True)
    figure = plot_compare_estimates(table)
    first = visible_axes(figure)[0]
    assert [t.get_text() for t in first.get_yticklabels()] == ["GEE", "ML/REML", "Bayes"]
    points = {line.get_ydata()[0]: line.get_xdata()[0] for line in first.lines}
    assert points[0] == pytest.approx(table.loc[0, "gee_estimate"])
    assert len(visible_axes(plot_compare_estimates(table, gee=False))[0].get_yticklabels()) == 2
    with pytest.raises(InputTypeError, match="compare_estimates"):
        plot_compare_estimates(table[["kind", "group"]])
