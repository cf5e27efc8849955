"""Satterthwaite's df with residual structures against an independent dense computation.

The reference writes the REML criterion of the marginal model ``V(gamma)`` out densely in
natural parameters (variances, ``phi``), takes its Hessian and the derivative of
``Var(beta) = (X' V^-1 X)^-1`` by central differences, and forms
``df = 2 v^2 / (g' A g)`` with ``A = 2 H^-1`` (lmerTest's definition; the df do not depend
on the parametrisation at the optimum). Tolerance: rel 1e-4 (finite differences on both
sides).
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl


def _reml(X, y, v):
    inv = np.linalg.inv(v)
    xvx = X.T @ inv @ X
    beta = np.linalg.solve(xvx, X.T @ inv @ y)
    r = y - X @ beta
    return (np.linalg.slogdet(v)[1] + np.linalg.slogdet(xvx)[1] + r @ inv @ r), np.linalg.inv(xvx)


def _dense_df(X, y, v_of, gamma, contrast):
    k = gamma.size
    h = 1e-4 * np.maximum(np.abs(gamma), 1e-2)

    def dev(g):
        return _reml(X, y, v_of(g))[0]

    hess = np.zeros((k, k))
    for r in range(k):
        for s in range(k):
            er, es = np.eye(k)[r] * h[r], np.eye(k)[s] * h[s]
            hess[r, s] = (dev(gamma + er + es) - dev(gamma + er - es) - dev(gamma - er + es)
                          + dev(gamma - er - es)) / (4 * h[r] * h[s])
    cov = 2 * np.linalg.inv(hess)
    vbeta = _reml(X, y, v_of(gamma))[1]
    g = np.array([contrast @ (_reml(X, y, v_of(gamma + np.eye(k)[r] * h[r]))[1]
                              - _reml(X, y, v_of(gamma - np.eye(k)[r] * h[r]))[1]) @ contrast
                  / (2 * h[r]) for r in range(k)])
    return 2 * (contrast @ vbeta @ contrast) ** 2 / (g @ cov @ g)


@pytest.mark.parametrize("random", [False, True])
def test_satterthwaite_with_car1_matches_dense_differences(random):
    data = hl.datasets.load("Orthodont")
    formula = "distance ~ age + Sex" + (" + (1 | Subject)" if random else "")
    fit = hl.Model(formula, data, residual="car1(age | Subject)").fit("reml")
    X, y = np.asarray(fit.design.X, dtype=float), np.asarray(fit.design.y, dtype=float)
    age = data["age"].to_numpy(dtype=float)
    same = np.equal.outer(data["Subject"].astype(str).to_numpy(), data["Subject"].astype(str).to_numpy())
    lag = np.abs(np.subtract.outer(age, age))
    phi = fit.structure_parameters()["estimate"].iloc[0]
    if random:
        gamma = np.array([fit.covariances()[0][0, 0], fit.sigma ** 2, phi])

        def v_of(g):
            return same * (g[0] + g[1] * g[2] ** lag)
    else:
        gamma = np.array([fit.sigma ** 2, phi])

        def v_of(g):
            return same * g[0] * g[1] ** lag
    table = fit.fixef(ddf="satterthwaite")
    for j, term in enumerate(table.index):
        want = _dense_df(X, y, v_of, gamma, np.eye(X.shape[1])[j])
        assert table.loc[term, "df"] == pytest.approx(want, rel=1e-4), term
