"""ML/REML with patterned random-effect covariance structures (cs, ar1, toep, diag, us).

The criterion over the structures' parameters is checked against the dense
multivariate-normal definition at the optimum, its gradient against central
differences, and the optima against the nesting of the structures. The
glmmTMB reference fixtures are checked in ``test_structures_glmmtmb.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm as hl
from hierlm.errors import FitError, HierlmWarning
from hierlm.io import load_fit, save_fit

MACHINES = {
    "us": "(0 + Machine | Worker)",
    "diag": "diag(0 + Machine | Worker)",
    "cs": "cs(0 + Machine | Worker)",
    "hcs": "cs(0 + Machine | Worker, hom = FALSE)",
    "ar1": "ar1(0 + Machine | Worker)",
    "har1": "ar1(0 + Machine | Worker, hom = FALSE)",
    "toep": "toep(0 + Machine | Worker)",
    "htoep": "toep(0 + Machine | Worker, hom = FALSE)",
}
N_COVARIANCE = {"us": 6, "diag": 3, "cs": 2, "hcs": 4, "ar1": 2, "har1": 4, "toep": 3, "htoep": 5}


def _fit(structure, method="reml"):
    data = hl.datasets.load("Machines")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return hl.Model(f"score ~ Machine + {MACHINES[structure]}", data).fit(method=method)


@pytest.fixture(scope="module", params=sorted(MACHINES))
def fits(request):
    return request.param, _fit(request.param, "reml"), _fit(request.param, "ml")


def _dense_loglik(fit, reml):
    design = fit.design
    z = design.sparse_z().toarray()
    g = np.zeros((z.shape[1], z.shape[1]))
    start = 0
    for block, cov in zip(design.blocks, fit.covariances(), strict=True):
        for level in range(block.n_levels):
            sl = slice(start + level * block.q, start + (level + 1) * block.q)
            g[sl, sl] = cov
        start += block.n_levels * block.q
    v = z @ g @ z.T + fit.sigma ** 2 * np.eye(design.n)
    x, y = design.X, design.y
    v_inv = np.linalg.inv(v)
    beta = np.linalg.solve(x.T @ v_inv @ x, x.T @ v_inv @ y)
    resid = y - x @ beta
    n, p = x.shape
    value = (n * np.log(2 * np.pi) + np.linalg.slogdet(v)[1] + resid @ v_inv @ resid)
    if reml:
        value += np.linalg.slogdet(x.T @ v_inv @ x)[1] - p * np.log(2 * np.pi)
    return -0.5 * value, beta


def test_loglik_equals_the_dense_definition(fits):
    _, reml, ml = fits
    for fit, is_reml in ((reml, True), (ml, False)):
        dense, beta = _dense_loglik(fit, is_reml)
        assert fit.loglik == pytest.approx(dense, rel=1e-9)
        np.testing.assert_allclose(fit.beta, beta, rtol=1e-8)


def test_parameter_count_and_aic(fits):
    name, reml, ml = fits
    assert ml.n_params == 3 + N_COVARIANCE[name] + 1
    assert ml.aic == pytest.approx(-2 * ml.loglik + 2 * ml.n_params)
    assert len(ml.theta_names) == N_COVARIANCE[name]


def test_optimum_is_stationary_and_gradient_is_exact(fits):
    _, reml, _ = fits
    kernel = reml.kernel
    value, grad = kernel.value_and_gradient(reml.theta, True)
    free = reml.theta > kernel.lower
    assert np.max(np.abs(grad[free]), initial=0.0) < 5e-3
    point = reml.theta + 0.05
    _, grad = kernel.value_and_gradient(point, True)
    h = 1e-2  # kernel values carry ~1e-10 rounding noise; h^4 truncation is ~1e-9 here
    for k in range(point.size):
        step = np.zeros(point.size)
        step[k] = h
        # fourth-order central difference
        numeric = (-kernel(point + 2 * step, True) + 8 * kernel(point + step, True)
                   - 8 * kernel(point - step, True) + kernel(point - 2 * step, True)) / (12 * h)
        assert grad[k] == pytest.approx(numeric, rel=1e-6, abs=1e-7)


def test_nested_structures_are_ordered():
    loglik = {name: _fit(name, "ml").loglik for name in MACHINES}
    tol = 1e-6
    nested = [("diag", "us"), ("cs", "hcs"), ("diag", "hcs"), ("hcs", "us"), ("ar1", "har1"),
              ("har1", "us"), ("ar1", "toep"), ("cs", "toep"), ("toep", "htoep"), ("htoep", "us")]
    for small, big in nested:
        assert loglik[small] <= loglik[big] + tol, (small, big)
    # q = 3 heterogeneous Toeplitz has 5 of us's 6 parameters and nearly reaches it here
    assert loglik["htoep"] > loglik["hcs"]


def test_covariance_has_the_structure(fits):
    name, reml, _ = fits
    cov = reml.covariances()[0]
    sds = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sds, sds)
    cors = corr[np.triu_indices(3, 1)]  # pairs (A,B), (A,C), (B,C)
    if name in ("cs", "ar1", "toep"):
        np.testing.assert_allclose(sds, sds[0])
    if name in ("cs", "hcs"):
        np.testing.assert_allclose(cors, cors[0])
    if name in ("ar1", "har1"):
        assert cors[1] == pytest.approx(cors[0] ** 2) and cors[2] == pytest.approx(cors[0])
    if name in ("toep", "htoep"):
        assert cors[2] == pytest.approx(cors[0])
    if name == "diag":
        np.testing.assert_allclose(cors, 0.0)
    table = reml.varcorr()
    worker = table[table["group"] == "Worker"]
    assert len(worker) == (3 if name == "diag" else 6)
    np.testing.assert_allclose(np.sort(worker["vcov"].to_numpy()),
                               np.sort(np.concatenate([np.diag(cov), cov[np.triu_indices(3, 1)]]
                                                      if name != "diag" else [np.diag(cov)])))


def test_structured_fit_round_trips(tmp_path):
    fit = _fit("har1")
    loaded = load_fit(save_fit(fit, tmp_path / "f"))
    np.testing.assert_array_equal(loaded.theta, fit.theta)
    assert loaded.theta_names == fit.theta_names
    assert loaded.loglik == fit.loglik
    term = "ar1(0 + MachineA + MachineB + MachineC | Worker, hom = FALSE)"
    assert loaded.model.design.blocks[0].term == term


def test_likelihood_ratio_test_counts_structure_parameters():
    small, big = _fit("cs", "ml"), _fit("us", "ml")
    table = hl.anova(small, big).table
    assert list(table["npar"]) == [6, 10]


def test_satterthwaite_df_are_finite():
    table = _fit("cs").fixef()
    assert np.all(np.isfinite(table["df"])) and np.all(table["df"] > 1)


def test_profile_intervals_of_patterned_blocks_refuse_clearly():
    # MAP with patterned blocks is built (tests/bayes/test_map_structured.py); profiles are not
    fit = _fit("cs")
    with pytest.raises(FitError, match=r"cs\(0 \+ MachineA .*us\(\.\.\.\)"):
        fit.confint(method="profile")
