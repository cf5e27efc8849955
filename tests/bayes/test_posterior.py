"""ArviZ directly on ``fit.idata``: summary labels, posterior predictive, LOO (hierlm.bayes.posterior)."""

from __future__ import annotations

import itertools
import warnings

import matplotlib
import numpy as np
import pytest
import xarray as xr

import hierlm as hl
from hierlm.errors import FitError, SamplingWarning

matplotlib.use("Agg")
az = pytest.importorskip("arviz")

SHORT = {"chains": 2, "draws": 80, "tune": 80, "progressbar": False}


def _nuts(model, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # short chains on purpose
        return model.fit(method="nuts", **{**SHORT, **options})


@pytest.fixture(scope="module")
def sleep_fit(sleep_model):
    return _nuts(sleep_model, random_seed=5)


@pytest.fixture(scope="module")
def two_block_fit(sleep_df):
    """Two blocks on one factor (``||``): dims Subject_term and Subject.1_term."""
    return _nuts(hl.Model("Reaction ~ Days + (Days || Subject)", sleep_df), random_seed=6)


def _label(name: str, coords: dict[str, object]) -> str:
    """ArviZ's default label of one value, e.g. ``ranef_Subject[Days, 308]``."""
    return f"{name}[{', '.join(str(v) for v in coords.values())}]" if coords else name


def assert_summary_labels_every_value(dataset: xr.Dataset, table) -> None:
    """Each row of ``az.summary`` is the mean of the value its label names, selected by coordinate."""
    assert len(table) == sum(int(np.prod([dataset.sizes[d] for d in dataset[name].dims
                                           if d not in ("chain", "draw")]))
                             for name in dataset.data_vars)
    for name in dataset.data_vars:
        variable = dataset[name]
        dims = [d for d in variable.dims if d not in ("chain", "draw")]
        for values in itertools.product(*(variable[d].values for d in dims)):
            coords = dict(zip(dims, values, strict=True))
            expected = float(variable.sel(coords).mean())
            assert float(table.loc[_label(str(name), coords), "mean"]) == pytest.approx(
                expected, rel=1e-10, abs=1e-10), _label(str(name), coords)


def test_summary_of_a_correlated_fit_labels_every_value(sleep_fit):
    table = az.summary(sleep_fit.idata, round_to="none")
    assert "cor_Subject[Intercept,Days]" in table.index
    assert_summary_labels_every_value(sleep_fit.idata["posterior"].to_dataset(), table)


def test_summary_row_of_each_group_effect_equals_ranef(sleep_fit):
    table = az.summary(sleep_fit.idata, round_to="none", kind="stats")
    ranef = sleep_fit.ranef()
    assert len(ranef) == 36
    for row in ranef.itertuples():
        summary_row = table.loc[f"ranef_Subject[{row.term}, {row.level}]"]
        assert summary_row["mean"] == pytest.approx(row.estimate, rel=1e-10)
        assert summary_row["sd"] == pytest.approx(row.std_error, rel=1e-10)


def test_summary_labels_do_not_depend_on_variable_order(sleep_fit):
    """ArviZ stacks by first appearance of each dim: sd before or after ranef must not matter."""
    for names in (["sd_Subject", "ranef_Subject"], ["ranef_Subject", "sd_Subject"]):
        table = az.summary(sleep_fit.idata, var_names=names, round_to="none", kind="stats")
        assert_summary_labels_every_value(sleep_fit.idata["posterior"].to_dataset()[names], table)


def test_summary_with_two_blocks_on_one_factor(two_block_fit):
    table = az.summary(two_block_fit.idata, round_to="none", kind="stats")
    assert_summary_labels_every_value(two_block_fit.idata["posterior"].to_dataset(), table)
    ranef = two_block_fit.ranef()
    row = ranef[(ranef.group == "Subject") & (ranef.term == "Days") & (ranef.level == "309")].iloc[0]
    assert table.loc["ranef_Subject.1[Days, 309]", "mean"] == pytest.approx(row["estimate"], rel=1e-10)


def test_posterior_predictive_group_matches_observed_data(sleep_fit, sleep_model):
    idata = sleep_fit.idata
    replicates = idata["posterior_predictive"]["Reaction"]
    assert replicates.dims == ("chain", "draw", "obs")
    assert replicates.shape == (2, 80, sleep_model.nobs)
    np.testing.assert_array_equal(replicates["obs"].values, idata["observed_data"]["obs"].values)
    # replicates scatter around the fitted values with the residual SD
    fitted = np.asarray(sleep_fit.predict(summary=False))  # (chain * draw, obs), chain-major
    residual = replicates.values.reshape(-1, sleep_model.nobs) - fitted
    sigma = idata["posterior"]["sigma"].values.reshape(-1)
    assert np.mean(residual**2) / np.mean(sigma**2) == pytest.approx(1.0, abs=0.05)
    assert abs(residual.mean()) < 1.0


def test_arviz_functions_work_on_the_idata(sleep_fit):
    loo = az.loo(sleep_fit.idata)
    assert np.isfinite(loo.elpd) and loo.n_data_points == 180
    ours = sleep_fit.loo()
    assert loo.elpd == pytest.approx(ours.elpd, rel=1e-6)
    assert az.plot_ppc_dist(sleep_fit.idata, backend="matplotlib") is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k warnings of short chains
        assert az.plot_loo_pit(sleep_fit.idata, backend="matplotlib") is not None
    matplotlib.pyplot.close("all")


def test_posterior_predictive_can_be_skipped_and_is_reproducible(sleep_model, sleep_fit):
    skipped = _nuts(sleep_model, random_seed=5, posterior_predictive=False, log_likelihood=False)
    assert "posterior_predictive" not in skipped.idata.children
    assert "log_likelihood" not in skipped.idata.children
    np.testing.assert_array_equal(skipped.idata["posterior"]["fixef"].values,
                                  sleep_fit.idata["posterior"]["fixef"].values)
    again = _nuts(sleep_model, random_seed=5)
    np.testing.assert_array_equal(again.idata["posterior_predictive"]["Reaction"].values,
                                  sleep_fit.idata["posterior_predictive"]["Reaction"].values)
    with pytest.raises(FitError, match="posterior_predictive must be True, False or 'auto'"):
        sleep_model.fit(method="nuts", posterior_predictive="yes")


def test_prior_predictive_uses_the_same_layout(sleep_model, sleep_fit):
    tree = sleep_model.prior_predictive(draws=60, random_seed=2)
    prior, posterior = tree["prior"].to_dataset(), sleep_fit.idata["posterior"].to_dataset()
    assert {name: prior[name].dims[2:] for name in prior.data_vars} == {
        name: posterior[name].dims[2:] for name in posterior.data_vars}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one chain: no R-hat
        table = az.summary(tree, group="prior", round_to="none", kind="stats")
    assert_summary_labels_every_value(prior, table)


def test_map_estimates_use_the_same_layout(sleep_model):
    fit = sleep_model.fit(method="map")
    estimates = fit.idata["map"]
    assert estimates["ranef_Subject"].dims == ("Subject_term", "Subject_level")
    ranef = fit.ranef()
    row = ranef[(ranef.level == "330") & (ranef.term == "Days")].iloc[0]
    assert float(estimates["ranef_Subject"].sel(Subject_term="Days", Subject_level="330")) == \
        pytest.approx(row["estimate"], rel=1e-12)


@pytest.mark.slow
def test_full_formulation_on_crossed_factors_labels_every_value(crossed_df):
    fit = _nuts(hl.Model("y ~ x + (x | a) + (1 | b)", crossed_df), random_seed=3)
    assert fit.formulation == "full"
    table = az.summary(fit.idata, round_to="none", kind="stats")
    assert_summary_labels_every_value(fit.idata["posterior"].to_dataset(), table)
    ranef = fit.ranef()
    row = ranef[(ranef.group == "a") & (ranef.level == "a3") & (ranef.term == "x")].iloc[0]
    assert table.loc["ranef_a[x, a3]", "mean"] == pytest.approx(row["estimate"], rel=1e-10)
    assert fit.idata["posterior_predictive"]["y"].shape == (2, 80, len(crossed_df))


def test_negative_seed_is_refused_before_sampling(sleep_model):
    with pytest.raises(FitError, match=r"random_seed must be an integer in \[0, 2\*\*64\), got -1"):
        sleep_model.fit(method="nuts", random_seed=-1)
