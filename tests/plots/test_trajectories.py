import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from hierlm.errors import ColumnNotFoundError, DataError, InputTypeError
from hierlm.plots import plot_trajectories
from hierlm.plots.trajectories import trajectory_table

from .helpers import scatters, visible_axes


def _by_level(frame, fitted, population, time, group):
    out = frame.assign(fitted=fitted, population=population).reset_index(drop=True)
    return {str(level): rows.sort_values(time, kind="stable")
            for level, rows in out.groupby(group, observed=True)}


def test_sleepstudy_facets_show_subject_and_population_lines(sleep_model, sleep_reml):
    expected = _by_level(sleep_model.data, sleep_reml.fitted(),
                         sleep_reml.predict(include_random=False)["estimate"], "Days", "Subject")
    figure = plot_trajectories(sleep_reml, "Days")
    axes = visible_axes(figure)
    assert len(axes) == 18
    assert [ax.get_title() for ax in axes] == [str(level) for level in sleep_model.design.blocks[0].levels]
    for ax in axes:
        rows = expected[ax.get_title()]
        subject_line, population_line = ax.lines
        np.testing.assert_allclose(subject_line.get_xdata(), rows["Days"])
        np.testing.assert_allclose(subject_line.get_ydata(), rows["fitted"])
        np.testing.assert_allclose(population_line.get_ydata(), rows["population"])
        (points,) = scatters(ax)
        np.testing.assert_allclose(points[:, 1], rows["Reaction"])
    assert figure.get_supxlabel() == "Days" and figure.get_supylabel() == "Reaction"


def test_pigs_facets_and_overlay(pigs_data, pigs_reml):
    figure = plot_trajectories(pigs_reml, "week")
    assert len(visible_axes(figure)) == 48
    table = trajectory_table(pigs_reml, "week")
    one_pig = table[table["level"] == table["level"].iloc[0]]
    # weight ~ week + (week | id): each pig's line is straight, its slope the pig's coefficient
    slope = np.diff(one_pig["fitted"]) / np.diff(one_pig["time"])
    coef = pigs_reml.coef(wide=True)["id"].iloc[0]
    np.testing.assert_allclose(slope, coef["week"])
    overlay = plot_trajectories(pigs_reml, "week", layout="overlay")
    ax = overlay.axes[0]
    pig_lines = [line for line in ax.lines if line.get_linewidth() < 1.0]
    assert len(pig_lines) == 48
    (population,) = [line for line in ax.lines if line.get_label() == "population line"]
    fixef = pigs_reml.fixef()["estimate"]
    np.testing.assert_allclose(population.get_ydata(), fixef["Intercept"] + fixef["week"] * np.arange(1, 10))
    assert ax.get_xlabel() == "week" and ax.get_ylabel() == "weight"


def test_posterior_fit_adds_bands_and_means(sleep_model, sleep_posterior):
    table = trajectory_table(sleep_posterior, "Days", data=sleep_model.data, prob=0.9)
    conditional = sleep_posterior.linear_predictor().mean(axis=0)
    np.testing.assert_allclose(np.sort(table["fitted"]), np.sort(conditional))
    assert (table["lower"] <= table["fitted"]).all() and (table["fitted"] <= table["upper"]).all()
    figure = plot_trajectories(sleep_posterior, "Days", data=sleep_model.data, levels=["308", "309"])
    axes = visible_axes(figure)
    assert [ax.get_title() for ax in axes] == ["308", "309"]
    assert all(sum(isinstance(c, PolyCollection) for c in ax.collections) == 1 for ax in axes)


def test_bad_inputs(sleep_model, sleep_reml, sleep_posterior):
    with pytest.raises(ColumnNotFoundError, match="Weeks"):
        plot_trajectories(sleep_reml, "Weeks")
    with pytest.raises(ColumnNotFoundError, match="999"):
        plot_trajectories(sleep_reml, "Days", levels=["999"])
    with pytest.raises(InputTypeError, match="layout"):
        plot_trajectories(sleep_reml, "Days", layout="grid")
    with pytest.raises(InputTypeError, match="data="):
        plot_trajectories(sleep_posterior, "Days")
    with pytest.raises(DataError, match="rows"):
        plot_trajectories(sleep_posterior, "Days", data=pd.DataFrame({"Days": [1, 2]}))
