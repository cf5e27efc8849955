"""Profile-likelihood intervals with a residual structure against a dense computation.

The reference writes the ML deviance of ``weight ~ week`` with AR(1) residuals on a subset
of the pig data out densely (``V = sigma^2 rho^|t - s|`` per pig, GLS ``beta``), and finds
where it rises by ``chi2_1(0.95)`` with a root finder: for ``rho`` with ``sigma`` profiled,
for ``sigma`` with ``rho`` minimised numerically; and, with a random intercept
(``V = sd^2 11' + sigma^2 rho^|t - s|``, simulated data), each of ``sd``, ``rho`` and ``sigma``
fixed in turn and the other two minimised. Tolerance rel 1e-5 (optimiser and root finder
tolerances on both sides).
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
    toep = hl.Model("weight ~ week + (1 | id)", pigs, residual="toep(week | id)").fit("reml")
    with pytest.raises(FitError, match=r"residual='toep\(week \| id\)' are not built yet"):
        toep.confint(method="profile")


def _dense_toeplitz_deviance(y, X, lags):
    """ML deviance (sigma and beta profiled) with S = toeplitz(1, lags) per pig, dense."""
    from scipy.linalg import toeplitz

    S = toeplitz(np.concatenate([[1.0], lags]))
    if np.linalg.eigvalsh(S).min() <= 1e-12:
        return 1e10
    inverse = np.linalg.inv(S)
    beta = np.linalg.solve(np.einsum("kap,ab,kbq->pq", X, inverse, X),
                           np.einsum("kap,ab,kb->p", X, inverse, y))
    r = y - X @ beta
    n = y.size
    r2 = np.einsum("ka,ab,kb->", r, inverse, r)
    return y.shape[0] * np.linalg.slogdet(S)[1] + n * (1 + np.log(2 * np.pi * r2 / n))


@pytest.mark.slow  # three constrained profiles (SLSQP) and twelve dense profile points
def test_toeplitz_lag_correlation_profiles_match_the_dense_deviance():
    """toep over weeks 1-4: the reference takes the lag correlations themselves as coordinates
    (hierlm's kernel has partial correlations, so each rho_k is held by an equality
    constraint there), minimises over the other two by Nelder-Mead."""
    from scipy.optimize import minimize

    pigs = pd.read_csv(DATA / "pigs.csv")
    sub = pigs[pigs["week"] <= 4].sort_values(["id", "week"])
    y = sub["weight"].to_numpy().reshape(-1, 4)
    X = np.stack([np.ones_like(y), sub["week"].to_numpy().reshape(-1, 4)], axis=2)
    table = profile_confint(hl.Model("weight ~ week", sub, residual="toep(week | id)").fit("reml"))
    assert list(table.index[:4]) == ["residual.rho1", "residual.rho2", "residual.rho3", "sigma"]
    options = {"xatol": 1e-11, "fatol": 1e-13, "maxiter": 2000}
    best = minimize(lambda r: _dense_toeplitz_deviance(y, X, r), [0.9, 0.8, 0.7],
                    method="Nelder-Mead", options=options)
    best = minimize(lambda r: _dense_toeplitz_deviance(y, X, r), best.x, method="Nelder-Mead",
                    options=options)
    cut = chi2.ppf(0.95, 1)

    def profile(k, value):
        others = [j for j in range(3) if j != k]

        def objective(rest):
            lags = np.empty(3)
            lags[k], lags[others] = value, rest
            return _dense_toeplitz_deviance(y, X, lags)
        # start inside the positive-definite region: the estimate's other lags, shrunk, or the
        # AR(1) with this lag correlation (positive definite for 0 < value < 1)
        ar1 = abs(value) ** ((np.arange(3) + 1.0) / (k + 1.0))
        candidates = [best.x[others] * f for f in (1.0, 0.95, 0.9, 0.8)] + [ar1[others]]
        start = next(c for c in candidates if objective(c) < 1e9)
        inner = minimize(objective, start, method="Nelder-Mead", options=options)
        inner = minimize(objective, inner.x, method="Nelder-Mead", options=options)
        return inner.fun - best.fun - cut

    for k in range(3):
        row = table.loc[f"residual.rho{k + 1}"]
        assert row["estimate"] == pytest.approx(best.x[k], rel=1e-5)
        # the dense profile crosses the cutoff between 1e-5 inside and 1e-5 outside each of
        # hierlm's limits (it rises monotonically away from the estimate): the dense root is
        # within rel 1e-5 of hierlm's limit, without root-finding the dense profile
        for side, outward in (("lower", -1.0), ("upper", 1.0)):
            limit = float(row[side])
            inside = limit - outward * 1e-5 * abs(limit)
            outside = limit + outward * 1e-5 * abs(limit)
            assert profile(k, inside) < 0 < profile(k, outside), (k, side, limit)


def _simulated_random_intercept_ar1():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(20):
        times = np.sort(rng.choice(6, size=rng.integers(3, 7), replace=False))
        u = rng.normal(0.0, 2.0)
        e = np.zeros(6)
        e[0] = rng.normal()
        for t in range(1, 6):
            e[t] = 0.6 * e[t - 1] + np.sqrt(1 - 0.36) * rng.normal()
        rows += [(f"s{i}", t, 10 + 0.5 * t + u + e[t]) for t in times]
    return pd.DataFrame(rows, columns=["id", "week", "y"])


def _dense_ml_deviance(frame, sd, rho, sigma):
    """-2 log-likelihood of y ~ week + (1 | id) with AR(1) residuals, beta by GLS, dense."""
    X = np.column_stack([np.ones(len(frame)), frame["week"]])
    y = frame["y"].to_numpy()
    week = frame["week"].to_numpy()
    same = np.equal.outer(frame["id"].to_numpy(), frame["id"].to_numpy())
    V = same * (sd ** 2 + sigma ** 2 * rho ** np.abs(np.subtract.outer(week, week)))
    inv = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ inv @ X, X.T @ inv @ y)
    r = y - X @ beta
    return len(y) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ inv @ r


@pytest.mark.slow  # three profiles with a random intercept: about 30 s loaded
def test_profile_with_a_random_intercept_and_ar1_matches_the_dense_deviance():
    """sd of (1 | id), sigma and rho: each fixed in turn, the other two minimised densely
    (Nelder-Mead on (log sd, atanh rho, log sigma)), the limits by brentq; rel 1e-5."""
    from scipy.optimize import minimize

    frame = _simulated_random_intercept_ar1()
    fit = hl.Model("y ~ week + (1 | id)", frame, residual="ar1(week | id)").fit("reml")
    table = profile_confint(fit)
    assert list(table.index) == ["sd_Intercept|id", "sigma", "residual.rho", "Intercept", "week"]
    cut = chi2.ppf(0.95, 1)
    hat = table["estimate"]
    start = np.array([np.log(hat["sd_Intercept|id"]), np.arctanh(hat["residual.rho"]),
                      np.log(hat["sigma"])])

    def unpack(x):
        return np.exp(x[0]), np.tanh(x[1]), np.exp(x[2])

    best = minimize(lambda x: _dense_ml_deviance(frame, *unpack(x)), start, method="Nelder-Mead",
                    options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
    dev_hat = best.fun
    np.testing.assert_allclose([hat["sd_Intercept|id"], hat["residual.rho"], hat["sigma"]],
                               unpack(best.x), rtol=1e-5)

    def profile(index, value):
        others = [k for k in range(3) if k != index]

        def objective(rest):
            x = np.empty(3)
            x[index], x[others] = value, rest
            return _dense_ml_deviance(frame, *unpack(x))
        inner = minimize(objective, best.x[others], method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        return inner.fun - dev_hat - cut

    for index, name, to_x in [(0, "sd_Intercept|id", np.log), (1, "residual.rho", np.arctanh),
                              (2, "sigma", np.log)]:
        x_hat = best.x[index]
        lower = brentq(lambda v, index=index: profile(index, v), to_x(table.loc[name, "lower"]) - 0.3, x_hat,
                       xtol=1e-12)
        upper = brentq(lambda v, index=index: profile(index, v), x_hat, to_x(table.loc[name, "upper"]) + 0.3,
                       xtol=1e-12)
        back = np.tanh if name == "residual.rho" else np.exp
        assert table.loc[name, "lower"] == pytest.approx(back(lower), rel=1e-5), name
        assert table.loc[name, "upper"] == pytest.approx(back(upper), rel=1e-5), name


@pytest.mark.slow  # six constrained profiles: about 40 s loaded
def test_unstructured_first_variance_profile_equals_the_sigma_profile():
    """un over weeks 1-3: sigma is the first week's SD, so the profile of un(1,1) (an equality
    constraint on sigma^2 L L', SLSQP) must give the squares of sigma's limits (sigma fixed
    on a grid of the unprofiled deviance, the structure minimised by L-BFGS-B); rel 1e-5."""
    pigs = pd.read_csv(DATA / "pigs.csv")
    sub = pigs[pigs["week"] <= 3]
    table = profile_confint(hl.Model("weight ~ week", sub, residual="un(week | id)").fit("reml"))
    first, sigma = table.loc["residual.un(1,1)"], table.loc["sigma"]
    assert first["estimate"] == pytest.approx(sigma["estimate"] ** 2, rel=1e-8)
    assert first["lower"] == pytest.approx(sigma["lower"] ** 2, rel=1e-5)
    assert first["upper"] == pytest.approx(sigma["upper"] ** 2, rel=1e-5)
    assert first["lower"] < first["estimate"] < first["upper"]
