import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import ColumnNotFoundError, InputTypeError
from hierlm.plots import plot_shrinkage
from hierlm.plots.pooling import shrinkage_wide
from hierlm.results import shrinkage

from .helpers import quivers, scatters


def _wide(table, coefficient, column):
    return table[table["coefficient"] == coefficient][column].to_numpy()


def test_plane_has_one_arrow_per_subject_from_no_pooling_to_partial_pooling(sleep_reml):
    table = shrinkage(sleep_reml, "Subject").table
    figure = plot_shrinkage(sleep_reml, "Subject")
    ax = figure.axes[0]
    (arrows,) = quivers(ax)
    assert arrows.N == 18
    np.testing.assert_allclose(arrows.X, _wide(table, "Intercept", "no_pooling"))
    np.testing.assert_allclose(arrows.Y, _wide(table, "Days", "no_pooling"))
    np.testing.assert_allclose(arrows.X + arrows.U, _wide(table, "Intercept", "partial_pooling"))
    np.testing.assert_allclose(arrows.Y + arrows.V, _wide(table, "Days", "partial_pooling"))
    own, partial, pooled = scatters(ax)
    np.testing.assert_allclose(partial[:, 0], _wide(table, "Intercept", "partial_pooling"))
    # complete pooling is the fixed effect (251.4, 10.47)
    np.testing.assert_allclose(pooled[0], sleep_reml.fixef()["estimate"].to_numpy())
    assert ax.get_xlabel() == "Intercept" and ax.get_ylabel() == "Days"
    # two population contours, centred on the fixed effects
    contours = [line for line in ax.lines if "population" in line.get_label()]
    assert len(contours) == 2
    centre = np.array([contours[0].get_xdata().mean(), contours[0].get_ydata().mean()])
    np.testing.assert_allclose(centre, pooled[0], rtol=1e-2)


def test_partial_pooling_of_a_subject_equals_lme4_coef(sleep_reml):
    """Arrow heads are the per-subject coefficients, fixed effect plus BLUP (lme4's coef())."""
    coef = sleep_reml.coef(wide=True)["Subject"]
    (arrows,) = quivers(plot_shrinkage(sleep_reml, "Subject").axes[0])
    np.testing.assert_allclose(arrows.X + arrows.U, coef["Intercept"].to_numpy())
    np.testing.assert_allclose(arrows.Y + arrows.V, coef["Days"].to_numpy())


def test_one_coefficient_rows_sorted_by_own_estimate_with_complete_pooling_line(sleep_reml):
    table = shrinkage(sleep_reml, "Subject").table
    days = table[table["coefficient"] == "Days"]
    figure = plot_shrinkage(sleep_reml, "Subject", coefficients="Days")
    ax = figure.axes[0]
    (arrows,) = quivers(ax)
    assert arrows.N == 18
    np.testing.assert_allclose(arrows.V, 0.0)
    order = np.argsort(days["no_pooling"].to_numpy(), kind="stable")
    np.testing.assert_allclose(arrows.X, days["no_pooling"].to_numpy()[order])
    np.testing.assert_allclose(arrows.X + arrows.U, days["partial_pooling"].to_numpy()[order])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == list(days["level"].to_numpy()[order])
    (pooling_line,) = [line for line in ax.lines if "complete pooling" in line.get_label()]
    assert pooling_line.get_xdata()[0] == pytest.approx(sleep_reml.fixef().loc["Days", "estimate"])
    assert ax.get_xlabel() == "Days" and ax.get_ylabel() == "Subject"


def test_crossed_factor_plots_its_own_levels(penicillin_reml):
    figure = plot_shrinkage(penicillin_reml, "plate")
    (arrows,) = quivers(figure.axes[0])
    assert arrows.N == 24
    figure = plot_shrinkage(penicillin_reml, "sample")
    assert quivers(figure.axes[0])[0].N == 6


def test_level_without_own_estimate_gets_a_point_but_no_arrow():
    data = hl.datasets.load("sleepstudy")
    lone = data[data["Subject"].astype(str) == "308"].iloc[:1]
    rest = data[data["Subject"].astype(str) != "308"]
    fit = hl.Model("Reaction ~ Days + (Days | Subject)", pd.concat([rest, lone])).fit(method="reml")
    ax = plot_shrinkage(fit, "Subject").axes[0]
    assert quivers(ax)[0].N == 17
    own, partial, _ = scatters(ax)
    assert len(own) == 17 and len(partial) == 18


def test_posterior_draws_plot_posterior_means(sleep_posterior):
    wide = shrinkage_wide(sleep_posterior, "Subject")
    subject_means = sleep_posterior.beta.mean(axis=0) + sleep_posterior.effects[0].mean(axis=0)
    np.testing.assert_allclose(wide["partial_pooling"].to_numpy(), subject_means)
    (arrows,) = quivers(plot_shrinkage(sleep_posterior, "Subject").axes[0])
    np.testing.assert_allclose(arrows.X + arrows.U, subject_means[:, 0])


def test_bad_requests_say_what_is_available(sleep_reml):
    with pytest.raises(ColumnNotFoundError, match="Subject"):
        plot_shrinkage(sleep_reml, "Patient")
    with pytest.raises(ColumnNotFoundError, match="Intercept"):
        plot_shrinkage(sleep_reml, "Subject", coefficients="Weeks")
    with pytest.raises(InputTypeError, match="one or two"):
        plot_shrinkage(sleep_reml, "Subject", coefficients=[])


def test_many_levels_are_placed_by_their_size():
    data = hl.datasets.load("InstEval").iloc[:6000]
    fit = hl.Model("y ~ service + (1 | d)", data).fit(method="reml")
    table = shrinkage(fit, "d").table
    figure = plot_shrinkage(fit, "d")
    ax = figure.axes[0]
    (arrows,) = quivers(ax)
    finite = table["no_pooling"].notna().to_numpy()
    assert len(table) > 60 and arrows.N == finite.sum()
    np.testing.assert_allclose(arrows.X, table["n"].to_numpy()[finite])
    np.testing.assert_allclose(arrows.U, 0.0)
    np.testing.assert_allclose(arrows.Y + arrows.V, table["partial_pooling"].to_numpy()[finite])
    assert ax.get_xlabel() == "rows per level of d" and ax.get_xscale() == "log"
    assert quivers(plot_shrinkage(fit, "d", by_size=False).axes[0])[0].V.max() == 0.0
