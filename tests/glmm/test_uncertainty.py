"""Prediction standard errors of GLMM ML fits with group effects, against a dense computation.

The reference builds everything densely from the data and the fit's estimates: ``Z`` (one
column per level and term), ``Lambda`` from theta, the Laplace weights from the family's
formulas at ``eta = X beta + Z b`` (binomial: ``n p (1 - p)``; Poisson: ``mu``), the joint
Hessian ``H`` of the penalised deviance in ``(beta, u)`` and its inverse. Tolerance rel 1e-8
(the same algebra, sparse vs dense solves).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.glmm.uncertainty import prediction_error_variance
from hierlm.results.linear import LinearFunction
from tests.glmm.reference import fitted

CASES = ["glmer/cbpp_binomial_laplace", "glmer/grouseticks_poisson_3re", "glmer/sim_poisson_slope"]


def dense_system(fit):
    """Dense ``X``, ``Z Lambda``, ``W`` and the joint Hessian ``H`` of (beta, u)."""
    design = fit.design
    X = np.asarray(design.X, dtype=float)
    z_parts, lam_parts, b_parts = [], [], []
    for block, t, b in zip(design.blocks, fit._templates(), fit.effects(), strict=True):
        z = np.zeros((design.n, block.n_levels * block.q))
        for i, level in enumerate(block.codes):
            z[i, level * block.q:(level + 1) * block.q] = block.z[i]
        z_parts.append(z)
        lam_parts.append(np.kron(np.eye(block.n_levels), t))
        b_parts.append(b.ravel())
    Z = np.hstack(z_parts)
    lam = np.zeros((Z.shape[1], Z.shape[1]))
    start = 0
    for part in lam_parts:
        lam[start:start + part.shape[0], start:start + part.shape[0]] = part
        start += part.shape[0]
    eta = X @ fit.beta + Z @ np.concatenate(b_parts)
    if fit.family.name == "binomial":
        p = 1.0 / (1.0 + np.exp(-eta))
        w = np.asarray(fit.problem.prior_weights) * p * (1.0 - p)
    else:
        w = np.exp(eta)
    ZL = Z @ lam
    A = ZL.T @ (w[:, None] * ZL) + np.eye(ZL.shape[1])
    H = np.block([[X.T @ (w[:, None] * X), X.T @ (w[:, None] * ZL)],
                  [ZL.T @ (w[:, None] * X), A]])
    return X, Z, lam, ZL, w, A, H


@pytest.fixture(scope="module", params=CASES)
def case(request):
    return fitted(request.param)


def test_joint_hessian_inverse(case):
    X, Z, lam, _, _, _, H = dense_system(case)
    p = X.shape[1]
    inverse = np.linalg.inv(H)
    function = LinearFunction.from_design(case.design, True)
    g = np.hstack([X, Z @ lam])  # (a_i, Lambda' z_i) per row
    expected = np.einsum("ri,ij,rj->r", g, inverse, g)
    ours = prediction_error_variance(case, function, vcov_beta=inverse[:p, :p])
    np.testing.assert_allclose(ours, expected, rtol=1e-8)


def test_predict_uses_the_fits_vcov_and_the_modes(case):
    X, Z, lam, ZL, w, A, _ = dense_system(case)
    v = Z @ lam
    solved = np.linalg.solve(A, v.T).T
    d = X - solved @ (X.T @ (w[:, None] * ZL)).T
    expected = np.einsum("ri,ij,rj->r", d, case.optimum.vcov_beta, d) + np.einsum("rm,rm->r", v, solved)
    link = case.predict(type="link")
    np.testing.assert_allclose(link["std_error"] ** 2, expected, rtol=1e-8)
    # the response scale: delta method, bounds through the inverse link
    response = case.predict()
    mu_eta = case.family.link.mu_eta(link["estimate"].to_numpy())
    np.testing.assert_allclose(response["std_error"], mu_eta * link["std_error"], rtol=1e-12)
    lower = [c for c in link.columns if c.endswith("_lb")][0]
    np.testing.assert_allclose(response[lower], case.family.link.inverse(link[lower].to_numpy()),
                               rtol=1e-12)
    # the modes' part alone is lme4's condVar: z' Lambda A^-1 Lambda' z = z' C z
    block = case.design.blocks[0]
    cond = case.conditional_variances()[0]
    zc = np.einsum("ij,ijk,ik->i", block.z, cond[block.codes], block.z)
    first = np.asarray(LinearFunction.from_design(case.design, True).random[0].todense())
    v0 = first @ lam[:first.shape[1], :first.shape[1]]
    part = np.einsum("rm,rm->r", np.hstack([v0, np.zeros((v0.shape[0], v.shape[1] - v0.shape[1]))]),
                     np.linalg.solve(A, np.hstack([v0, np.zeros((v0.shape[0],
                                                                 v.shape[1] - v0.shape[1]))]).T).T)
    np.testing.assert_allclose(part, zc, rtol=1e-8)


def test_new_levels_and_population_rows():
    fit = fitted("glmer/cbpp_binomial_laplace")
    data = hl.datasets.cbpp().iloc[:3].copy()
    data["herd"] = pd.Categorical(["1", "no such herd", "2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        conditional = fit.predict(data, type="link")
        population = fit.predict(data, type="link", include_random=False)
    known = fit.predict(type="link")
    # a new herd gets the population prediction and its standard error
    assert conditional["std_error"].iloc[1] == pytest.approx(population["std_error"].iloc[1], rel=1e-12)
    # known herds: the same as the fitted rows of that herd and period
    assert conditional["std_error"].iloc[0] == pytest.approx(known["std_error"].iloc[0], rel=1e-10)
    assert np.all(conditional["std_error"].iloc[[0, 2]] > population["std_error"].iloc[[0, 2]])
