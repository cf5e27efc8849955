"""Profile-likelihood intervals with a residual structure against a dense computation.

The reference writes the ML deviance of ``weight ~ week`` with AR(1) residuals on a subset
of the pig data out densely (``V = sigma^2 rho^|t - s|`` per pig, GLS ``beta``), and finds
where it rises by ``chi2_1(0.95)`` with a root finder: for ``rho`` with ``sigma`` profiled,
for ``sigma`` with ``rho`` minimised numerically. Tolerance rel 1e-5 (optimiser and root
finder tolerances on both sides).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import chi2

import hierlm as hl
from hierlm.errors import FitError
from hierlm.lmm.profile import profile_confint

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def case():
    pigs = pd.read_csv(DATA / "pigs.csv")
    pigs = pigs[pigs["id"] <= 12]
    fit = hl.Model("weight ~ week", pigs, residual="ar1(week | id)").fit("reml")
    return pigs, fit, profile_confint(fit)


def _deviance(pigs, rho, sigma2=None):
    X = np.column_stack([np.ones(len(pigs)), pigs["week"]])
    y = pigs["week"].to_numpy() * 0 + pigs["weight"].to_numpy()
    week = pigs["week"].to_numpy()
    same = np.equal.outer(pigs["id"].to_numpy(), pigs["id"].to_numpy())
    corr = same * rho ** np.abs(np.subtract.outer(week, week))
    inv = np.linalg.inv(corr)
    beta = np.linalg.solve(X.T @ inv @ X, X.T @ inv @ y)
    r2 = (y - X @ beta) @ inv @ (y - X @ beta)
    n = len(y)
    s2 = r2 / n if sigma2 is None else sigma2
    return np.linalg.slogdet(corr)[1] + n * np.log(2 * np.pi * s2) + r2 / s2


@pytest.mark.slow  # two profiles of four parameters: about 30 s
def test_profile_limits_match_the_dense_deviance(case):
    pigs, fit, table = case
    cut = chi2.ppf(0.95, 1)
    best = minimize_scalar(lambda r: _deviance(pigs, r), bounds=(0.0, 0.999), method="bounded",
                           options={"xatol": 1e-12})
    dev_hat, rho_hat = best.fun, best.x
    row = table.loc["residual.rho"]
    assert row["estimate"] == pytest.approx(rho_hat, rel=1e-5)
    lower = brentq(lambda r: _deviance(pigs, r) - dev_hat - cut, 0.0, rho_hat, xtol=1e-12)
    upper = brentq(lambda r: _deviance(pigs, r) - dev_hat - cut, rho_hat, 0.9999, xtol=1e-12)
    assert row["lower"] == pytest.approx(lower, rel=1e-5)
    assert row["upper"] == pytest.approx(upper, rel=1e-5)

    def sigma_profile(sigma):
        return minimize_scalar(lambda r: _deviance(pigs, r, sigma ** 2), bounds=(0.0, 0.999),
                               method="bounded", options={"xatol": 1e-12}).fun - dev_hat - cut
    sigma_hat = table.loc["sigma", "estimate"]
    assert table.loc["sigma", "lower"] == pytest.approx(
        brentq(sigma_profile, 0.3 * sigma_hat, sigma_hat), rel=1e-5)
    assert table.loc["sigma", "upper"] == pytest.approx(
        brentq(sigma_profile, sigma_hat, 3 * sigma_hat), rel=1e-5)
    assert list(table.index) == ["residual.rho", "sigma", "Intercept", "week"]
    shown = fit.confint(method="profile")
    np.testing.assert_allclose(shown[["lower", "upper"]].to_numpy(),
                               table[["lower", "upper"]].to_numpy(), rtol=1e-8)


def test_profiles_not_built_are_refused_by_name():
    pigs = pd.read_csv(DATA / "pigs.csv")
    toep = hl.Model("weight ~ week", pigs, residual="toep(week | id)").fit("reml")
    with pytest.raises(FitError, match=r"residual='toep\(week \| id\)' are not built yet"):
        toep.confint(method="profile")
