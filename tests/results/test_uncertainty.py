"""Standard errors of point fits: prediction error variances and the delta method for SDs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.results import uncertainty


def _pev_by_brute_force(fit, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Henderson's prediction error variances from the inverse of the full MME matrix (b-space)."""
    design = fit.design
    X, Z = np.asarray(design.X, dtype=float), design.sparse_z().toarray()
    sigma2 = fit.sigma ** 2
    G = np.zeros((Z.shape[1], Z.shape[1]))
    start = 0
    for block, cov in zip(design.blocks, fit.covariances(), strict=True):
        size = block.n_levels * block.q
        G[start:start + size, start:start + size] = np.kron(np.eye(block.n_levels), cov)
        start += size
    C = np.block([[X.T @ X, X.T @ Z], [Z.T @ X, Z.T @ Z + sigma2 * np.linalg.inv(G)]]) / sigma2
    rows = np.hstack([x, z])
    return np.einsum("ri,ij,rj->r", rows, np.linalg.inv(C), rows)


@pytest.fixture(scope="module", params=[("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
                                        ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)")])
def fit(request):
    data, formula = request.param
    return hl.Model(formula, hl.datasets.load(data)).fit()


def test_prediction_standard_errors_are_henderson_pev(fit):
    design = fit.design
    expected = _pev_by_brute_force(fit, np.asarray(design.X, dtype=float), design.sparse_z().toarray())
    table = fit.predict()
    np.testing.assert_allclose(table["std_error"] ** 2, expected, rtol=1e-6)
    assert table.attrs["std_error"] == "prediction error variance"
    population = fit.predict(include_random=False)
    np.testing.assert_allclose(population["std_error"] ** 2,
                               np.einsum("ni,ij,nj->n", design.X, fit.vcov().to_numpy(), design.X),
                               rtol=1e-8)
    response = fit.predict(kind="response")
    np.testing.assert_allclose(response["std_error"] ** 2, expected + fit.sigma ** 2, rtol=1e-6)


def test_coefficient_standard_errors_are_henderson_pev(fit):
    design = fit.design
    table = fit.coef()
    p, m = design.p, design.sparse_z().shape[1]
    offsets = np.cumsum([0] + [b.n_levels * b.q for b in design.blocks])
    for row in table.sample(5, random_state=0).itertuples():
        x, z = np.zeros((1, p)), np.zeros((1, m))
        if row.term in design.fixed_names:
            x[0, list(design.fixed_names).index(row.term)] = 1.0
        for k, block in enumerate(design.blocks):
            if block.group == row.group and row.term in block.columns:
                level = list(block.levels).index(row.level)
                z[0, offsets[k] + level * block.q + list(block.columns).index(row.term)] = 1.0
        assert row.std_error ** 2 == pytest.approx(_pev_by_brute_force(fit, x, z)[0], rel=1e-6)


def test_without_the_dense_equations_the_covariances_are_left_out(fit, monkeypatch):
    monkeypatch.setattr(uncertainty, "MME_LIMIT", 0)
    fit.__dict__.pop("_uncertainty", None)
    try:
        table = fit.predict()
        assert "left out" in table.attrs["std_error"]
        design = fit.design
        approx = np.einsum("ni,ij,nj->n", design.X, fit.vcov().to_numpy(), design.X)
        for block, cond_var in zip(design.blocks, fit.cond_var().values(), strict=True):
            approx += np.einsum("nq,nqr,nr->n", block.z, cond_var[block.codes], block.z)
        np.testing.assert_allclose(table["std_error"] ** 2, approx, rtol=1e-8)
    finally:
        fit.__dict__.pop("_uncertainty", None)


def test_variance_component_intervals_follow_the_delta_method(fit):
    table = fit.varcorr(prob=0.9)
    unc = fit._point_uncertainty()
    cov = unc.varpar_cov()
    x = unc.varpar
    # the residual SD is the last variance parameter: its SE is sqrt(Var(sigma)) directly
    residual = table.iloc[-1]
    assert residual["std_error"] == pytest.approx(np.sqrt(cov[-1, -1]), rel=1e-5)
    z = 1.6448536269514722
    assert residual["eti90_lb"] == pytest.approx(x[-1] * np.exp(-z * np.sqrt(cov[-1, -1]) / x[-1]), rel=1e-5)
    assert (table["eti90_lb"] < table["estimate"]).all() and (table["estimate"] < table["eti90_ub"]).all()


def test_a_zero_sd_has_no_interval():
    sleep = hl.datasets.load("sleepstudy")
    data = sleep.assign(Reaction=sleep["Days"] * 3.0 + np.sin(np.arange(len(sleep))))
    with pytest.warns(hl.errors.SingularFitWarning):
        fit = hl.Model("Reaction ~ Days + (1 | Subject)", data).fit()
    table = fit.varcorr()
    assert table["estimate"].iloc[0] == 0.0
    assert np.isnan(table[["std_error", "eti95_lb", "eti95_ub"]].iloc[0]).all()
    assert np.isfinite(table[["std_error", "eti95_lb", "eti95_ub"]].iloc[-1]).all()
    assert isinstance(fit.predict(pd.DataFrame({"Days": [1.0], "Subject": ["308"]})), pd.DataFrame)
