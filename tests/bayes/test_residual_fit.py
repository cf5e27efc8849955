"""A NUTS fit with a residual structure end to end: names, tables, LOO, refusals, save/load.

``weight ~ week + (1 | id)`` with ``residual="arh1(week | id)"`` and
``variance="sex"`` on pig data cut to 5 weeks (2 chains x 150 draws): every
kind of stored variable (a random-effect SD, ``rho_residual``, SD ratios by
time and by level). Checked:

* the posterior's variables and their named dims and coordinates;
* ``structure_parameters()`` rows are the posterior means of the stored draws
  (rel 1e-12) under the REML table's parameter names;
* the ``log_likelihood`` group is one joint density per pig: its sum over pigs
  equals the marginal log-likelihood of the one Gaussian likelihood at a draw
  (rel 1e-10); LOO per pig says so and ``hl.compare(..., level="group")`` uses
  it; per observation (the default of both), another grouping factor, or
  from the draws alone it is refused;
* the replicates' residual covariance: their within-pig correlation at lag 1
  is the posterior's (abs 0.05, a Monte Carlo check over 300 x 48 pigs);
* save/load keeps the structure (same tables, same LOO, rel 1e-12).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.design.residual.base import correlation_reals
from hierlm.errors import FitError, HierlmWarning
from hierlm.lmm.likelihood import GaussianLikelihood

PIGS = "/work/shared/data/pigs.csv"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fit():
    data = pd.read_csv(PIGS)
    data["sex"] = np.where(data["id"] % 2 == 0, "f", "m")
    data = data[data["week"] <= 5].reset_index(drop=True)
    model = hl.Model("weight ~ week + (1 | id)", data, residual="arh1(week | id)", variance="sex")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return model.fit("nuts", chains=2, draws=150, tune=300, random_seed=7, progressbar=False)


def test_posterior_names_and_coords(fit):
    post = fit.idata.posterior
    assert post["rho_residual"].dims == ("chain", "draw")
    assert post["ratio_residual"].dims == ("chain", "draw", "residual_time")
    assert list(post["residual_time"].values) == ["2", "3", "4", "5"]
    assert list(post["ratio_residual_variance"].coords["residual_variance_level"].values) == ["m"]
    assert post["ranef_id"].sizes["id_level"] == 48
    table = fit.structure_parameters()
    rows = table[table["structure"] == "arh1(week | id), variance = sex"]
    assert list(rows["parameter"]) == ["rho", "ratio.2", "ratio.3", "ratio.4", "ratio.5",
                                       "ratio.sex.m"]
    means = [float(post["rho_residual"].mean())] + list(
        post["ratio_residual"].mean(("chain", "draw")).values) + [
        float(post["ratio_residual_variance"].mean())]
    np.testing.assert_allclose(rows["estimate"].to_numpy(), means, rtol=1e-12)
    text = str(fit.summary())
    assert "Residual Structure: arh1(week | id), variance = sex" in text
    assert "ratio.sex.m" in text


def test_group_log_likelihood_is_the_marginal_one(fit):
    group = fit.idata["log_likelihood"]
    values = group["weight"].values  # (chain, draw, pig)
    assert group["weight"].dims == ("chain", "draw", "residual_group")
    assert "joint log density of each id" in group.attrs["unit"]
    post = fit.idata.posterior
    likelihood = GaussianLikelihood(fit.design)
    c, d = 1, 37
    sigma = float(post["sigma"].values[c, d])
    sd = float(post["sd_id"].values[c, d, 0])
    rho = float(post["rho_residual"].values[c, d])
    ratios = np.log(post["ratio_residual"].values[c, d])
    level = np.log(post["ratio_residual_variance"].values[c, d])
    # the ML engine's parameters: relative SD, the correlation's free real, log ratios
    reals = correlation_reals(fit.design.residual.structure._correlation, np.array([rho]))
    phi = np.concatenate([[sd / sigma], reals, ratios, level])
    beta = post["fixef"].values[c, d]
    expected = likelihood.evaluate(beta, phi, sigma, gradient=False).value
    assert values[c, d].sum() == pytest.approx(expected, rel=1e-10)
    with warnings.catch_warnings():  # 150 draws: a Pareto k warning is expected, not tested
        warnings.simplefilter("ignore", HierlmWarning)
        result = fit.loo(level="group")
    assert result.n_points == 48 and "joint log density" in repr(result)
    with pytest.raises(FitError, match=r"per observation is not defined with residual="):
        fit.loo()
    with pytest.raises(FitError, match=r"per observation is not defined"):
        fit.waic()
    with pytest.raises(FitError, match=r"per observation is not defined"):
        hl.compare({"a": fit, "b": fit})  # level="observation" by default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        table = hl.compare({"a": fit, "b": fit}, level="group")
    assert table["elpd"].iloc[0] == pytest.approx(result.elpd, rel=1e-12)
    with pytest.raises(FitError, match=r"the units are the residual groups 'id', not 'week'"):
        fit.waic(level="group", group="week")
    from hierlm.results.ic import loo

    with pytest.raises(FitError, match=r"pass the fit itself"):  # draws alone: densities unknown
        loo(fit.draws(), level="group")
    with pytest.raises(FitError, match=r"predict\(kind='response'\) of the fitted rows of a NUTS fit"):
        fit.predict(kind="response")  # new visits: tests/bayes/test_residual_predict.py


def test_replicates_carry_the_residual_correlation(fit):
    post = fit.idata.posterior
    rep = fit.idata["posterior_predictive"]["weight"].values.reshape(-1, fit.design.n)
    mu = fit.draws().linear_predictor(include_random=True)
    resid = rep - mu
    week = fit.model.data["week"].to_numpy()
    first, second = resid[:, week == 1], resid[:, week == 2]
    observed = np.mean([np.corrcoef(first[k], second[k])[0, 1] for k in range(resid.shape[0])])
    assert observed == pytest.approx(float(post["rho_residual"].mean()), abs=0.05)


def test_save_and_load_keep_the_structure(fit, tmp_path):
    path = fit.save(tmp_path / "arh1")
    loaded = hl.load_fit(path)
    assert loaded.design.residual.describe() == fit.design.residual.describe()
    pd.testing.assert_frame_equal(loaded.structure_parameters(), fit.structure_parameters(),
                                  rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        assert loaded.loo(level="group").elpd == pytest.approx(fit.loo(level="group").elpd,
                                                               rel=1e-12)
