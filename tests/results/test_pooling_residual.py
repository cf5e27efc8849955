"""Shrinkage with a residual structure: the factors and no-pooling estimates use ``Omega_j``.

A random intercept with AR(1) (or CS) residuals within the subject: the shrinkage factor of
level ``j`` is ``tau^2 1' V_j^-1 1`` with ``V_j = tau^2 11' + sigma^2 Omega_j``, written out
densely here from the fitted parameters; and the partial-pooling deviation (the fit's
conditional mode) is the factor times the generalised least-squares no-pooling deviation,
so ``pull`` equals the factor (rel 1e-10). With ``Omega_j = I`` in its place (the
independent-residual formula) both checks fail by more than 1e-2.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import ColumnNotFoundError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        times = np.sort(rng.choice(8, size=rng.integers(3, 9), replace=False))
        u = rng.normal(0.0, 2.0)
        e = np.zeros(8)
        e[0] = rng.normal()
        for t in range(1, 8):
            e[t] = 0.6 * e[t - 1] + np.sqrt(1 - 0.36) * rng.normal()
        rows += [(f"s{i}", t, 10 + 0.5 * t + u + e[t]) for t in times]
    return pd.DataFrame(rows, columns=["id", "week", "y"])


def _dense_factor(fit, frame, residual):
    tau2 = float(fit.covariances()[0][0, 0])
    sigma2 = fit.sigma ** 2
    corr = fit.residual_covariance(correlation=True)
    weeks = [float(c) for c in corr.columns]
    out = []
    for _, rows in frame.groupby("id", sort=True):
        slots = [weeks.index(float(t)) for t in rows["week"]]
        omega = corr.to_numpy()[np.ix_(slots, slots)]
        ones = np.ones(len(slots))
        v = tau2 * np.outer(ones, ones) + sigma2 * omega
        out.append(tau2 * ones @ np.linalg.solve(v, ones))
    return np.array(out)


@pytest.mark.parametrize("residual", ["ar1(week | id)", "cs(id)"])
def test_shrinkage_factor_and_pull_under_a_residual_structure(data, residual):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cs(id) with (1 | id): the identification warning
        fit = hl.Model("y ~ week + (1 | id)", data, residual=residual).fit("reml")
    table = fit.shrinkage("id").table.set_index("level")
    dense = _dense_factor(fit, data, residual)
    levels = sorted(data["id"].unique())
    factors = table.loc[levels, "shrinkage_factor"].to_numpy()
    np.testing.assert_allclose(factors, dense, rtol=1e-10)
    np.testing.assert_allclose(table["pull"], table["shrinkage_factor"], rtol=1e-10)
    # the independent-residual formula n tau^2 / (n tau^2 + sigma^2) is not the answer here
    tau2, sigma2 = float(fit.covariances()[0][0, 0]), fit.sigma ** 2
    n = data.groupby("id", sort=True).size().to_numpy()
    assert np.max(np.abs(n * tau2 / (n * tau2 + sigma2) - dense)) > 1e-2


def test_gls_model_has_nothing_to_shrink(data):
    fit = hl.Model("y ~ week", data, residual="ar1(week | id)").fit("reml")
    with pytest.raises(ColumnNotFoundError, match=r"no random-effect terms.*residual_covariance"):
        fit.shrinkage("id")
    with pytest.raises(hl.errors.DataError, match=r"no intraclass correlation.*ar1\(week \| id\)"):
        fit.icc()
