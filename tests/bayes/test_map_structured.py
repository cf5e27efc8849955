"""MAP of patterned random-effect blocks and of residual structures (hierlm.bayes.map_structured).

* With flat priors the mode is the ML estimate (``fit("ml")``, the ML/REML
  engine): fixed effects, sigma, the block SDs and the structure's parameter
  within rel 1e-4, the log-likelihood within 1e-6, the Laplace standard errors
  of the fixed effects within rel 1e-3 of ML's ``vcov`` (for ``un``, whose
  observed information differs from the expected one by 47 % here: within
  rel 1e-4 of the inverse observed information of the ML engine's
  likelihood, by central differences of its exact gradient) (Machines
  ``ar1(0 + Machine | Worker)``; pigs ``ar1(week | id)``, ``car1(week | id)``
  with ``variance=``, and ``un(week | id)`` over 5 weeks, whose LKJ reals'
  transform Jacobian MAP takes out).
* With the default priors the mode equals the maximum a direct optimiser finds
  on the NUTS model's own log density (the PyMC model with the likelihood
  potential, ``compile_logp(jacobian=False)``, L-BFGS-B with PyMC's gradient
  from a jittered start): the same point within rel 1e-6 in PyMC's transformed
  coordinates, and PyMC's log density at our mode equals the reported
  objective (abs 1e-8); pigs ``ar1(week | id)`` and Machines
  ``ar1(0 + Machine | Worker)``.
* save/load keeps the fit (tables equal at rel 1e-12), the report is written (its
  ``fixef.csv`` and ``residual_covariance.csv`` are the fit's, rel 1e-12);
  ``residual_covariance()`` at the mode is ``sigma^2 rho^|i - j|`` written out
  (rel 1e-12) and, with flat priors, the ML fit's (rel 1e-6); ``structure_parameters()``
  and ``summary()`` show the mode; ``reml=True`` is refused by name.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import hierlm as hl
from hierlm.errors import FitError, HierlmWarning

from .helpers import ml_observed_information

PIGS = "/work/shared/data/pigs.csv"

pytestmark = pytest.mark.slow

CASES = {
    "machines_ar1": ("score ~ Machine + ar1(0 + Machine | Worker)", "Machines", None, None),
    "pigs_ar1": ("weight ~ week", "pigs", "ar1(week | id)", None),
    "pigs_car1_sex": ("weight ~ week", "pigs", "car1(week | id)", "sex"),
    # LKJ reals: the transform's Jacobian (PyMC's density of corr_raw) is taken out
    "pigs5_un": ("weight ~ week", "pigs5", "un(week | id)", None),
}


def _data(name: str) -> pd.DataFrame:
    if not name.startswith("pigs"):
        return hl.datasets.load(name)
    data = pd.read_csv(PIGS)
    data["sex"] = np.where(data["id"] % 2 == 0, "f", "m")
    return data[data["week"] <= 5].reset_index(drop=True) if name == "pigs5" else data


def _model(case: str) -> hl.Model:
    formula, data, residual, variance = CASES[case]
    return hl.Model(formula, _data(data), residual=residual, variance=variance)


def _quiet_fit(model: hl.Model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return model.fit(*args, **kwargs)


@pytest.fixture(scope="module")
def pigs_ar1_default():
    return _quiet_fit(_model("pigs_ar1"), "map")


def _observed_information_se(ml) -> np.ndarray:
    """SEs of beta from the inverse observed information of the ML engine's own likelihood.

    Central differences of :class:`GaussianLikelihood`'s exact gradient in
    ``(beta, phi, log sigma)`` at the ML optimum: the Laplace approximation's
    definition, computed without the Bayesian engine.
    """
    _, information = ml_observed_information(ml)
    return np.sqrt(np.diag(np.linalg.inv(information))[:ml.design.p])


@pytest.mark.parametrize("case", list(CASES))
def test_flat_priors_give_the_ml_estimate(case):
    model = _model(case)
    ml = _quiet_fit(model, "ml")
    got = _quiet_fit(model, "map", priors="flat")
    assert got.info["converged"]
    np.testing.assert_allclose(got.fixef()["estimate"], ml.fixef()["estimate"], rtol=1e-4)
    assert float(got.idata["map"]["sigma"]) == pytest.approx(float(ml.sigma), rel=1e-4)
    assert got.info["loglik"] == pytest.approx(float(ml.loglik), abs=1e-6)
    if case == "pigs5_un":  # 14 covariance parameters for 48 pigs: observed != expected information
        np.testing.assert_allclose(got.fixef()["std_error"], _observed_information_se(ml), rtol=1e-4)
        assert not np.allclose(got.fixef()["std_error"], ml.fixef()["std_error"], rtol=0.1)
    else:
        np.testing.assert_allclose(got.fixef()["std_error"], ml.fixef()["std_error"], rtol=1e-3)
    sd_rows = ml.varcorr()["term2"].isna()
    np.testing.assert_allclose(got.varcorr()["estimate"][sd_rows.to_numpy()],
                               ml.varcorr()["estimate"][sd_rows], rtol=1e-4)
    if case == "pigs5_un":  # no natural rows in the ML table: the variances by week instead
        mode = got.idata["map"]
        ratios = np.concatenate([[1.0], mode["ratio_residual"].values])
        variances = float(mode["sigma"]) ** 2 * ratios ** 2
        np.testing.assert_allclose(variances, np.diag(np.asarray(ml.residual_covariance())),
                                   rtol=1e-4)
        return
    reml_table = ml.structure_parameters()
    ours = got.structure_parameters()
    merged = reml_table.merge(ours, on=["structure", "parameter"], suffixes=("_ml", "_map"))
    assert len(merged) == len(reml_table) > 0
    np.testing.assert_allclose(merged["estimate_map"], merged["estimate_ml"], rtol=1e-4)


def _direct_mode(fit):
    """L-BFGS-B on the NUTS model's PyMC log density (no Jacobian), from a jittered start.

    Returns the optimum by free variable (PyMC's transformed values), its log
    density, and that density as a function of our flat vector (``fit.info["free_names"]``).
    """
    from pymc.blocking import DictToArrayBijection, RaveledVars

    from hierlm.bayes.build import build_model

    built = build_model(fit.design, fit.priors, formulation="marginal")
    model = built.pymc_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        logp = model.compile_logp(jacobian=False, mode="FAST_RUN")
        dlogp = model.compile_dlogp(jacobian=False, mode="FAST_RUN")
    point = model.initial_point()
    rng = np.random.default_rng(3)
    start = DictToArrayBijection.map({v.name: point[v.name] + rng.normal(0, 0.2, np.shape(point[v.name]))
                                      for v in model.value_vars})

    def as_point(x):
        return DictToArrayBijection.rmap(RaveledVars(x, start.point_map_info))

    def negative(x):
        at = as_point(x)
        return -float(logp(at)), -np.asarray(dlogp(at), dtype=float)

    found = optimize.minimize(negative, start.data, jac=True, method="L-BFGS-B",
                              options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10})
    # polished by BFGS from there: L-BFGS-B's relative-reduction stop can leave the reference
    # ~5e-8 from the optimum along a flat direction (Machines ar1: gradient 4e-6, hierlm's 2e-6)
    found = optimize.minimize(negative, found.x, jac=True, method="BFGS",
                              options={"maxiter": 500, "gtol": 1e-9})
    sizes = {name: int(np.size(point[name])) for name in point}

    def ours(x):  # our flat vector, in fit.info["free_names"] order
        at, offset = {}, 0
        for name in fit.info["free_names"]:
            at[name] = np.reshape(x[offset:offset + sizes[name]], np.shape(point[name]))
            offset += sizes[name]
        return at

    return as_point(found.x), -found.fun, lambda x: float(logp(ours(x))), ours


@pytest.mark.parametrize("case", ["pigs_ar1", "machines_ar1"])
def test_default_priors_mode_is_the_nuts_models(case, pigs_ar1_default):
    fit = pigs_ar1_default if case == "pigs_ar1" else _quiet_fit(_model(case), "map")
    assert fit.info["converged"]
    direct, best, logp_of, ours = _direct_mode(fit)
    mode = ours(fit.info["x"])
    assert set(mode) == set(direct)
    for name in mode:  # fixef, log SDs, log-odds of rho: the same point
        np.testing.assert_allclose(mode[name], direct[name], rtol=1e-6, atol=1e-8)
    # the same density: PyMC's at our mode is our objective, and no better point was found
    assert logp_of(fit.info["x"]) == pytest.approx(-fit.info["objective"], abs=1e-8)
    assert -fit.info["objective"] >= best - 1e-8
    # the default priors move the mode away from the ML estimate (the test can fail)
    ml = _quiet_fit(_model(case), "ml")
    assert abs(float(fit.idata["map"]["sigma"]) - float(ml.sigma)) > 1e-6


def test_save_load_summary_and_tables(pigs_ar1_default, tmp_path):
    fit = pigs_ar1_default
    loaded = hl.load_fit(fit.save(tmp_path / "map_ar1"))
    assert loaded.method == "map"
    assert loaded.design.residual.describe() == "ar1(week | id)"
    pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef(), rtol=1e-12)
    pd.testing.assert_frame_equal(loaded.varcorr(), fit.varcorr(), rtol=1e-12)
    pd.testing.assert_frame_equal(loaded.structure_parameters(), fit.structure_parameters(),
                                  rtol=1e-12)
    table = fit.structure_parameters()
    assert list(table["parameter"]) == ["rho"]
    assert table["estimate"].iloc[0] == pytest.approx(float(fit.idata["map"]["rho_residual"]),
                                                      rel=1e-12)
    text = str(fit.summary())
    assert "Posterior mode" in text or "MAP" in text
    assert "ar1(week | id)" in text


def test_reml_is_refused_by_name():
    model = _model("pigs_ar1")
    with pytest.raises(FitError, match=r"reml=True is not available for residual='ar1\(week \| id\)'"):
        model.fit("map", reml=True)


def test_report_of_the_map_fit(pigs_ar1_default, tmp_path):
    from pathlib import Path

    from hierlm.cards import load_card
    from hierlm.report import write_report

    card = load_card(Path(__file__).resolve().parents[2] / "models" / "pigs_ar1.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        files = write_report(pigs_ar1_default, card, tmp_path / "report", time=False)
    fixef = pd.read_csv(files.html.parent / "fixef.csv", index_col=0)
    np.testing.assert_allclose(fixef["estimate"], pigs_ar1_default.fixef()["estimate"], rtol=1e-12)
    assert "posterior mode" in files.html.read_text().lower()
    # the REML report's table, from the same function (results.structures.residual_covariance_at)
    written = pd.read_csv(files.html.parent / "residual_covariance.csv", index_col=0)
    np.testing.assert_allclose(written.to_numpy(), pigs_ar1_default.residual_covariance().to_numpy(),
                               rtol=1e-12)


def test_residual_covariance_at_the_mode():
    model = _model("pigs_ar1")
    got = _quiet_fit(model, "map", priors="flat")
    mode = got.idata["map"]
    rho, sigma = float(mode["rho_residual"]), float(mode["sigma"])
    weeks = np.arange(9)
    dense = sigma ** 2 * rho ** np.abs(weeks[:, None] - weeks[None, :])  # AR(1), written out
    np.testing.assert_allclose(got.residual_covariance().to_numpy(), dense, rtol=1e-12)
    np.testing.assert_allclose(got.residual_covariance(correlation=True).to_numpy(),
                               dense / sigma ** 2, rtol=1e-12)
    ml = _quiet_fit(model, "ml")  # flat priors: the ML estimate's matrix (modes agree to 3e-8)
    np.testing.assert_allclose(got.residual_covariance().to_numpy(),
                               ml.residual_covariance().to_numpy(), rtol=1e-6)
    assert list(got.residual_covariance().index) == list(ml.residual_covariance().index)


def test_a_new_response_at_a_fitted_visit():
    # the ML/REML plug-in at the mode: PEV + the row's own residual variance,
    # sigma^2 ratio_week^2 from the mode's natural parameters, written out
    data = _data("pigs")
    data = data[data["week"] <= 4].reset_index(drop=True)
    fit = _quiet_fit(hl.Model("weight ~ week", data, residual="csh(week | id)"), "map")
    table = fit.structure_parameters().set_index("parameter")["estimate"]
    ratio = np.array([1.0 if w == 1 else table[f"ratio.{w}"] for w in data["week"]])
    expected = float(fit.idata["map"]["sigma"]) ** 2 * ratio ** 2
    mean, response = fit.predict(kind="mean"), fit.predict(kind="response")
    np.testing.assert_allclose(response["std_error"] ** 2 - mean["std_error"] ** 2, expected,
                               rtol=1e-10)
    np.testing.assert_allclose(response["estimate"], mean["estimate"], rtol=1e-14)
    assert np.ptp(expected) > 1.0  # heterogeneous: not sigma^2 for every row
