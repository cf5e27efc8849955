"""Kenward-Roger with covariance structures (random-effect ``cs``/``ar1``, residual structures).

References
----------
* Residual ``cs`` on balanced data with positive correlation is the random-intercept
  model, linear in (common covariance, residual variance): its KR df, SEs and F equal
  pbkrtest's / lmerTest's ``ddf = "Kenward-Roger"`` on ``(1 | id)``
  (``tests/fixtures/pbkrtest/residual_cs.json`` from ``make_residual_cs.R``, versions
  inside). Tolerances: df rel 1e-5, SE/t/F rel 1e-4 (the REML optima agree to ~1e-7).
* Non-linear structures: an independent dense computation here. ``Sigma(gamma)`` is written
  out from the fit's natural parameters in the covariance parameters the module documents
  (variances and correlations), differentiated by central differences of ``Sigma`` itself
  (first and second order), and pushed through Kenward & Roger's formulas with the
  second-derivative term. Tolerances: adjusted covariance, ``W`` and df rel 1e-5 (finite
  differences of order 1e-8 on both sides).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.lmm.kenward_roger import KenwardRoger, kenward_roger, kr_test

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "pbkrtest"
                      / "residual_cs.json").read_text())
MODELS = {m["id"]: m for m in FIXTURE["models"]}
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _pigs() -> pd.DataFrame:
    pigs = pd.read_csv(DATA / "pigs.csv")
    pigs["group"] = np.where(pigs["id"] % 2 == 0, "even", "odd")
    return pigs


@pytest.fixture(scope="module", params=sorted(MODELS))
def cs_case(request):
    spec = MODELS[request.param]
    fixed = spec["formula"].replace(" + (1 | id)", "")
    return spec, hl.Model(fixed, _pigs(), residual="cs(id)").fit("reml")


def test_residual_cs_is_pbkrtest_random_intercept(cs_case):
    spec, fit = cs_case
    assert fit.loglik == pytest.approx(spec["loglik"], abs=1e-6)
    assert fit.structure_parameters()["estimate"].iloc[0] == pytest.approx(spec["rho"], rel=1e-6)
    table = fit.fixef(ddf="kenward-roger")
    for row in spec["fixef"]:
        got = table.loc[row["term"].replace("(Intercept)", "Intercept")]
        assert got["df"] == pytest.approx(row["df"], rel=1e-5), row["term"]
        assert got["std_error"] == pytest.approx(row["std_error"], rel=1e-4), row["term"]
        assert got["t_value"] == pytest.approx(row["t_value"], rel=1e-4), row["term"]
    anova = fit.anova(ddf="Kenward-Roger").table
    for row in spec["anova"]:
        got = anova.loc[[t for t in anova.index if set(t.split(":")) == set(row["term"].split(":"))][0]]
        assert got["DenDF"] == pytest.approx(row["den_df"], rel=1e-5)
        assert got["F value"] == pytest.approx(row["f_value"], rel=1e-4)


# ------------------------------------------------------------------ dense reference
def _dense_kr(X: np.ndarray, sigma_of, gamma: np.ndarray) -> KenwardRoger:
    """Kenward & Roger's Phi_A, P_r and W from Sigma(gamma) by finite differences."""
    k = gamma.size
    h1 = 1e-5 * np.maximum(np.abs(gamma), 1e-2)
    h2 = 1e-4 * np.maximum(np.abs(gamma), 1e-2)

    def shifted(steps):
        return sigma_of(gamma + steps)

    def unit(r, h):
        out = np.zeros(k)
        out[r] = h
        return out

    sigma = sigma_of(gamma)
    d1 = [(shifted(unit(r, h1[r])) - shifted(-unit(r, h1[r]))) / (2 * h1[r]) for r in range(k)]
    d2 = {}
    for r in range(k):
        for s in range(r, k):
            a, b = unit(r, h2[r]), unit(s, h2[s])
            d2[r, s] = d2[s, r] = (shifted(a + b) - shifted(a - b) - shifted(b - a)
                                   + shifted(-a - b)) / (4 * h2[r] * h2[s])
    inv = np.linalg.inv(sigma)
    phi = np.linalg.inv(X.T @ inv @ X)
    proj = inv - inv @ X @ phi @ X.T @ inv
    P = [-(X.T @ inv @ d @ inv @ X) for d in d1]
    info = np.array([[np.trace(proj @ d1[r] @ proj @ d1[s]) for s in range(k)] for r in range(k)])
    W = 2 * np.linalg.inv(info)
    U = sum(W[r, s] * (X.T @ inv @ d1[r] @ inv @ d1[s] @ inv @ X - P[r] @ phi @ P[s]
                       - 0.25 * X.T @ inv @ d2[r, s] @ inv @ X) for r in range(k) for s in range(k))
    return KenwardRoger(vcov=phi, vcov_adjusted=phi + 2 * phi @ U @ phi, P=P, W=W)


def _block_matrix(groups: np.ndarray, block_of) -> np.ndarray:
    """Sigma with block ``block_of(rows)`` for each group's rows, zero elsewhere."""
    out = np.zeros((groups.size, groups.size))
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        out[np.ix_(rows, rows)] = block_of(rows)
    return out


def _machines_case(name: str):
    data = hl.datasets.load("Machines")
    fit = hl.Model(f"score ~ Machine + {name}(0 + Machine | Worker)", data).fit("reml")
    cov = fit.covariances()[0]
    gamma = np.array([cov[0, 0], fit.structure_parameters()["estimate"].iloc[0], fit.sigma ** 2])
    machine = pd.Categorical(data["Machine"]).codes
    lag = np.abs(np.subtract.outer(machine, machine))
    corr = {"cs": lambda rho: np.where(lag == 0, 1.0, rho), "ar1": lambda rho: rho ** lag}[name]

    def sigma_of(g):
        same = np.equal.outer(data["Worker"].to_numpy(), data["Worker"].to_numpy())
        return same * g[0] * corr(g[1]) + g[2] * np.eye(len(data))
    return fit, sigma_of, gamma


def _orthodont_case(name: str):
    data = hl.datasets.load("Orthodont")
    fit = hl.Model("distance ~ age + Sex + (1 | Subject)", data,
                   residual=f"{name}(age | Subject)").fit("reml")
    rho = fit.structure_parameters()["estimate"].iloc[0]
    gamma = np.array([fit.covariances()[0][0, 0], fit.sigma ** 2, rho])
    age = data["age"].to_numpy(dtype=float)
    groups = data["Subject"].astype(str).to_numpy()

    def sigma_of(g):
        def block(rows):
            lag = np.abs(np.subtract.outer(age[rows], age[rows]))
            # ar1 counts lags in time units, as car1 does: the same matrix on these ages
            return g[0] + g[1] * g[2] ** lag
        return _block_matrix(groups, block)
    return fit, sigma_of, gamma


def _pigs_arh1_case():
    data = _pigs()
    data = data[data["id"] <= 16]
    fit = hl.Model("weight ~ week", data, residual="arh1(week | id)").fit("reml")
    table = fit.structure_parameters().set_index("parameter")["estimate"]
    ratios = np.concatenate([[1.0], [table[f"ratio.{w}"] for w in range(2, 10)]])
    gamma = np.concatenate([fit.sigma ** 2 * ratios ** 2, [table["rho"]]])
    week = data["week"].to_numpy()
    groups = data["id"].to_numpy()

    def sigma_of(g):
        def block(rows):
            sd = np.sqrt(g[week[rows] - 1])
            return np.outer(sd, sd) * g[-1] ** np.abs(np.subtract.outer(week[rows], week[rows]))
        return _block_matrix(groups, block)
    return fit, sigma_of, gamma


CASES = {
    "machines_random_cs": lambda: _machines_case("cs"),
    "machines_random_ar1": lambda: _machines_case("ar1"),
    "orthodont_ri_car1": lambda: _orthodont_case("car1"),
    "orthodont_ri_ar1": lambda: _orthodont_case("ar1"),
    "pigs16_arh1": _pigs_arh1_case,
}
SLOW = {"pigs16_arh1"}  # ten non-linear parameters: 8 s of dense differences


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c
                                  for c in sorted(CASES)])
def test_structured_kr_matches_the_dense_formulas(case):
    fit, sigma_of, gamma = CASES[case]()
    ours = kenward_roger(fit)
    reference = _dense_kr(np.asarray(fit.design.X, dtype=float), sigma_of, gamma)
    scale = np.abs(reference.vcov).max()
    np.testing.assert_allclose(ours.vcov, reference.vcov, rtol=1e-8, atol=1e-12 * scale)
    np.testing.assert_allclose(ours.W, reference.W, rtol=1e-5, atol=1e-9 * np.abs(reference.W).max())
    np.testing.assert_allclose(ours.vcov_adjusted, reference.vcov_adjusted, rtol=1e-5,
                               atol=1e-9 * scale)
    beta = np.asarray(fit.solution.beta)
    for j in range(beta.size):
        contrast = np.eye(beta.size)[j]
        got, want = kr_test(ours, beta, contrast), kr_test(reference, beta, contrast)
        assert got["den_df"] == pytest.approx(want["den_df"], rel=1e-5)
        assert got["se"] == pytest.approx(want["se"], rel=1e-5)
    # the second-derivative term matters here: without it the adjusted SEs move
    assert not np.allclose(ours.vcov_adjusted, ours.vcov, rtol=1e-6)
