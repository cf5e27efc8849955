"""The conditional-effects plot draws the predictions table."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
from hierlm.errors import GridError
from hierlm.plots import plot_conditional_effects


@pytest.fixture(scope="module")
def cake_fit():
    return hl.Model("angle ~ recipe + temp + (1 | recipe:replicate)", hl.datasets.load("cake")).fit()


def test_covariate_lines_by_factor(cake_fit):
    figure = plot_conditional_effects(cake_fit, "temp", by="recipe", n_points=20)
    ax = figure.axes[0]
    assert len(ax.lines) == 3
    table = cake_fit.predictions({"temp": np.linspace(175, 225, 20), "recipe": "A"}, include_random=False)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), table["estimate"])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), np.linspace(175, 225, 20))
    assert ax.get_xlabel() == "temp"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["recipe = A", "recipe = B", "recipe = C"]


def test_factor_points_and_errors(cake_fit):
    figure = plot_conditional_effects(cake_fit, "recipe", points=True)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C"]
    with pytest.raises(GridError, match="'replicate' is not a variable"):
        plot_conditional_effects(cake_fit, "replicate")
    with pytest.raises(GridError, match="by='temp' is not a factor"):
        plot_conditional_effects(cake_fit, "recipe", by="temp")
