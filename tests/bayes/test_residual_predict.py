"""Bayesian prediction of new visits with a residual structure (hierlm.bayes.residual_predict).

* Each draw's residual structure carried to the ML/REML engine's parameters
  reproduces the engine's own (an ML fit's natural parameters back to its
  parameters, rel 1e-9; ar1, car1, cs, csh, arh1, toep, toeph, un, and the
  ``variance=`` ratios).
* Per posterior draw the prediction is the conditional Gaussian given the
  subject's observed visits: against a dense calculation from the draw's own
  ``sigma``, ``rho`` (or ``phi``), ``sd_id`` and ``beta`` (``V`` built entry
  by entry, the conditional mean ``x_n'beta + V_nO V_OO^-1 (y_O - X_O beta)``),
  exact at 1e-10 on every draw (AR(1) without random effects; CAR(1) with a
  random intercept and ``variance=``). New pigs get ``x'beta`` per draw
  (``new_levels="population"``), rows at a fitted visit keep the fitted
  prediction, extrapolated AR(1) weeks are placed by the engine (week 7 of 5).
* ``kind="response"``: the per-row variance of the draws minus the means
  equals the mean conditional variance over draws (Monte Carlo: 10
  replicates of each of the 200 draws' new visit; rel 0.1).
* The posterior mean of the AR(1) prediction is within half a posterior SD
  of the REML prediction (48 pigs: the posterior is close to the REML fit).
* MAP with flat priors predicts new visits as the ML fit does (estimates rel
  1e-6, standard errors rel 1e-3).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.bayes.residual_predict import engine_parameters
from hierlm.errors import HierlmWarning

PIGS = "/work/shared/data/pigs.csv"


def _pigs() -> pd.DataFrame:
    data = pd.read_csv(PIGS)
    data["sex"] = np.where(data["id"] % 2 == 0, "f", "m")
    return data[data["week"] <= 5].reset_index(drop=True)


def _split():
    data = _pigs()
    held = (data["week"] == 5) & (data["id"] <= 6)
    new = pd.concat([data[held], pd.DataFrame({"id": [1, 999, 999], "week": [7, 2, 3],
                                               "sex": ["m", "f", "f"], "weight": np.nan}),
                     data[(data["id"] == 7) & (data["week"] == 2)]],  # a fitted visit
                    ignore_index=True)
    return data[~held].reset_index(drop=True), new


def _quiet(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return model.fit(*args, **kwargs)


@pytest.mark.parametrize("residual", ["ar1(week | id)", "car1(week | id)", "cs(id)",
                                      "csh(week | id)", "arh1(week | id)", "toep(week | id)",
                                      "toeph(week | id)", "un(week | id)"])
def test_draws_carry_to_the_engine_parameters(residual):
    from hierlm.bayes.structures import residual_structure

    model = hl.Model("weight ~ week", _pigs(), residual=residual, variance="sex")
    fit = _quiet(model, "ml")
    design = fit.design.residual
    structure = design.structure
    theta = np.asarray(fit.theta, dtype=float)
    params = theta[len(theta) - design.n_params:][: structure.n_params]
    natural = structure.natural(params)
    values = {}
    if "rho" in natural:
        values["rho_residual"] = np.array(natural["rho"])
    lags = [k for k in natural if k.startswith("rho") and k[3:].isdigit()]
    if lags:
        values["rho_residual"] = np.array([natural[k] for k in lags])
    if "phi" in natural:
        values["phi_residual"] = np.array(natural["phi"])
    ratios = [natural[k] for k in natural if k.startswith("ratio.")]
    if ratios:
        values["ratio_residual"] = np.array(ratios)
    s_matrix, _ = structure.over_times(params)
    assert residual_structure(design).structure is structure
    got = engine_parameters(structure, values, s_matrix, start=None)
    np.testing.assert_allclose(got, params, rtol=1e-9, atol=1e-9)


def _dense_conditional(times_o, times_n, y_o, x_o, x_n, beta, cov_of):
    """``x_n'beta + V_nO V_OO^-1 (y_O - X_O beta)`` and ``V_nn - V_nO V_OO^-1 V_On``, dense."""
    times = np.concatenate([times_o, times_n])
    m = times_o.size
    v = np.array([[cov_of(i, j, times[i], times[j]) for j in range(times.size)]
                  for i in range(times.size)])
    weights = np.linalg.solve(v[:m, :m], v[:m, m:])
    mean = x_n @ beta + weights.T @ (y_o - x_o @ beta)
    return mean, v[m:, m:] - v[m:, :m] @ weights


@pytest.fixture(scope="module")
def ar1_fit():
    train, _ = _split()
    model = hl.Model("weight ~ week", train, residual="ar1(week | id)")
    return _quiet(model, "nuts", chains=2, draws=100, tune=200, random_seed=3, progressbar=False)


@pytest.mark.slow
def test_ar1_draws_are_the_conditional_gaussian(ar1_fit):
    fit = ar1_fit
    train, new = _split()
    draws = fit.predict(new, summary=False)
    post = fit.idata.posterior
    beta = post["fixef"].values.reshape(-1, 2)
    sigma = post["sigma"].values.reshape(-1)
    rho = post["rho_residual"].values.reshape(-1)
    assert draws.shape == (sigma.size, len(new))
    x_new = np.column_stack([np.ones(len(new)), new["week"].to_numpy(float)])
    fitted = fit.predict(summary=False)  # the fitted visit keeps the fitted rows' prediction
    row7 = int(np.flatnonzero((train["id"] == 7) & (train["week"] == 2))[0])
    np.testing.assert_allclose(draws[:, -1], fitted[:, row7], rtol=1e-12)
    for k in range(sigma.size):
        for pig in (1, 2, 6):
            rows_o = np.flatnonzero(train["id"] == pig)
            rows_n = np.flatnonzero(new["id"] == pig)
            t_o = train["week"].to_numpy(float)[rows_o]
            x_o = np.column_stack([np.ones(rows_o.size), t_o])
            mean, _ = _dense_conditional(
                t_o, new["week"].to_numpy(float)[rows_n], train["weight"].to_numpy(float)[rows_o],
                x_o, x_new[rows_n], beta[k],
                lambda i, j, a, b, k=k: sigma[k] ** 2 * rho[k] ** abs(a - b))
            np.testing.assert_allclose(draws[k, rows_n], mean, rtol=1e-10)
        unseen = np.flatnonzero(new["id"] == 999)
        np.testing.assert_allclose(draws[k, unseen], x_new[unseen] @ beta[k], rtol=1e-10)
    table = fit.predict(new)
    np.testing.assert_allclose(table["estimate"].to_numpy(), draws.mean(axis=0), rtol=1e-12)
    # near the REML prediction: the posterior is close to the REML fit here (48 pigs)
    reml = _quiet(hl.Model("weight ~ week", train, residual="ar1(week | id)"), "reml")
    known = (new["id"] != 999).to_numpy()
    gap = np.abs(table["estimate"].to_numpy() - reml.predict(new)["estimate"].to_numpy())
    assert np.all(gap[known] < 0.5 * table["std_error"].to_numpy()[known])


@pytest.mark.slow
def test_ar1_response_adds_the_conditional_variance(ar1_fit):
    fit = ar1_fit
    train, new = _split()
    one = new.iloc[[0]]  # pig 1, week 5
    post = fit.idata.posterior
    sigma = post["sigma"].values.reshape(-1)
    rho = post["rho_residual"].values.reshape(-1)
    means = fit.predict(one, summary=False)[:, 0]
    spread = np.concatenate([fit.predict(one, kind="response", summary=False, seed=s)[:, 0] - means
                             for s in range(10)])
    # AR(1) given weeks 1..4: the conditional variance at week 5 is sigma^2 (1 - rho^2)
    expected = np.mean(sigma ** 2 * (1 - rho ** 2))
    assert np.var(spread) == pytest.approx(expected, rel=0.1)


@pytest.mark.slow
def test_car1_with_random_intercept_and_variance():
    train, new = _split()
    model = hl.Model("weight ~ week + (1 | id)", train, residual="car1(week | id)",
                     variance="sex")
    fit = _quiet(model, "nuts", chains=2, draws=40, tune=100, random_seed=5, progressbar=False)
    with warnings.catch_warnings():  # pig 999 is new: said once, by name
        warnings.simplefilter("ignore", HierlmWarning)
        draws = fit.predict(new, summary=False, new_levels="population")
    post = fit.idata.posterior
    beta = post["fixef"].values.reshape(-1, 2)
    sigma = post["sigma"].values.reshape(-1)
    phi = post["phi_residual"].values.reshape(-1)
    sd = post["sd_id"].values.reshape(-1)
    ratio = post["ratio_residual_variance"].values.reshape(-1)  # level "m" against "f"
    x_new = np.column_stack([np.ones(len(new)), new["week"].to_numpy(float)])
    for k in range(sigma.size):
        for pig in (1, 2, 6):
            rows_o = np.flatnonzero(train["id"] == pig)
            rows_n = np.flatnonzero(new["id"] == pig)
            m = 1.0 if pig % 2 == 0 else ratio[k]
            t_o = train["week"].to_numpy(float)[rows_o]
            x_o = np.column_stack([np.ones(rows_o.size), t_o])
            mean, _ = _dense_conditional(
                t_o, new["week"].to_numpy(float)[rows_n], train["weight"].to_numpy(float)[rows_o],
                x_o, x_new[rows_n], beta[k],
                lambda i, j, a, b, k=k, m=m: sd[k] ** 2 + sigma[k] ** 2 * m * m * phi[k] ** abs(a - b))
            np.testing.assert_allclose(draws[k, rows_n], mean, rtol=1e-10)
        unseen = np.flatnonzero(new["id"] == 999)
        np.testing.assert_allclose(draws[k, unseen], x_new[unseen] @ beta[k], rtol=1e-10)


@pytest.mark.slow
def test_flat_map_predicts_as_ml():
    train, new = _split()
    model = hl.Model("weight ~ week", train, residual="ar1(week | id)")
    ml = _quiet(model, "ml")
    got = _quiet(model, "map", priors="flat")
    for kind in ("mean", "response"):
        ours, ref = got.predict(new, kind=kind), ml.predict(new, kind=kind)
        np.testing.assert_allclose(ours["estimate"], ref["estimate"], rtol=1e-6)
        np.testing.assert_allclose(ours["std_error"], ref["std_error"], rtol=1e-3)
