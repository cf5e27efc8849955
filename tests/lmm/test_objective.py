"""The ML/REML kernel at fixed theta, before any optimiser is involved.

* Fast kernel == dense textbook definition (dense Z, dense Lambda, one Cholesky
  factor of the whole penalised system) on hand-built designs covering every
  structure the kernel distinguishes: scalar, correlated vector (q = 2, 3),
  several blocks on one factor (``||``), nested, crossed, crossed with vector
  terms in the dense part, and a merged ``||`` factor in the dense part.
* Its exact gradient == finite differences.
* ``(1|g) + (0+x|g)`` == ``(x||g)`` == the correlated term with the
  off-diagonal theta held at 0.
* lme4's ``devfun`` values in ``tests/fixtures/lme4`` at three theta each
  (tolerance 1e-9 relative, far tighter than the 1e-6 asked for).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hierlm.design.crossprod import crossproducts, group_crossproducts, theta_layout
from hierlm.lmm.objective import LmmObjective, objective

from .simulate import dense_reference, make_block, simulate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"


def _structures():
    rng = np.random.default_rng(5)
    n = 300
    g15 = rng.integers(0, 15, size=n)
    a30, b12, c4 = rng.integers(0, 30, n), rng.integers(0, 12, n), rng.integers(0, 4, n)
    inner = rng.integers(0, 40, size=n)
    outer = inner // 8  # nested: every inner level lies in one outer level
    return {
        "scalar": [("g", rng.integers(0, 20, n), ["Intercept"])],
        "slope": [("g", g15, ["Intercept", "x"])],
        "q3": [("g", rng.integers(0, 12, n), ["Intercept", "x", "w"])],
        "uncorrelated": [("g", g15, ["Intercept"]), ("g", g15, ["x"])],
        "diagonal_q2": [("g", g15, ["Intercept", "x"], False)],
        "nested": [("a:b", inner, ["Intercept"]), ("a", outer, ["Intercept"])],
        "crossed": [("a", a30, ["Intercept"]), ("b", b12, ["Intercept"]), ("c", c4, ["Intercept"])],
        "crossed_vector": [("a", a30, ["Intercept", "x"]), ("b", b12, ["Intercept", "w"])],
        "crossed_merged": [("a", a30, ["Intercept"]), ("b", b12, ["Intercept"]),
                           ("b", b12, ["x"]), ("c", c4, ["w", "x"])],
    }


STRUCTURES = _structures()


def _thetas(layout, rng):
    size = layout.size
    yield layout.start()
    yield np.where(layout.is_diagonal, rng.uniform(0.2, 2.0, size), rng.normal(size=size))
    # one variance parameter exactly on its bound
    theta = np.where(layout.is_diagonal, rng.uniform(0.2, 2.0, size), rng.normal(size=size))
    theta[np.flatnonzero(layout.is_diagonal)[-1]] = 0.0
    yield theta


@pytest.mark.parametrize("name", sorted(STRUCTURES))
@pytest.mark.parametrize("reml", [True, False])
def test_fast_kernel_equals_dense_definition(name, reml):
    design = simulate(STRUCTURES[name], n=300, seed=3)
    kernel = LmmObjective(crossproducts(design))
    rng = np.random.default_rng(11)
    for theta in _thetas(kernel.cp.layout, rng):
        ref = dense_reference(design, theta, reml)
        sol = kernel.solution(theta, reml)
        assert sol.value == pytest.approx(ref["value"], rel=1e-12, abs=1e-9)
        assert kernel(theta, reml) == pytest.approx(ref["value"], rel=1e-12, abs=1e-9)
        assert sol.ldL2 == pytest.approx(ref["ldL2"], rel=1e-11, abs=1e-10)
        assert sol.ldRX2 == pytest.approx(ref["ldRX2"], rel=1e-11, abs=1e-10)
        assert sol.r2 == pytest.approx(ref["r2"], rel=1e-11)
        np.testing.assert_allclose(sol.beta, ref["beta"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.concatenate([b.ravel() for b in sol.b]), ref["b"],
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.concatenate([u.ravel() for u in sol.u]), ref["u"],
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sol.unscaled_vcov, ref["unscaled"], rtol=1e-9, atol=1e-14)
        assert sol.sigma == pytest.approx(ref["sigma"], rel=1e-12)
        offset = 0
        for block, cv in zip(design.blocks, sol.cond_var, strict=True):
            for level in range(block.n_levels):
                sl = slice(offset + level * block.q, offset + (level + 1) * block.q)
                np.testing.assert_allclose(cv[level], ref["cond_var"][sl, sl], rtol=1e-9,
                                           atol=1e-12)
            offset += block.n_levels * block.q


@pytest.mark.parametrize("name", sorted(STRUCTURES))
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_equals_finite_differences(name, reml):
    design = simulate(STRUCTURES[name], n=300, seed=4)
    kernel = LmmObjective(crossproducts(design))
    rng = np.random.default_rng(12)
    for theta in _thetas(kernel.cp.layout, rng):
        _, grad = kernel.value_and_gradient(theta, reml)
        # Richardson-extrapolated central differences (error O(h^4)).
        fd = np.zeros_like(theta)
        for j in range(theta.size):
            def central(h, j=j, theta=theta):
                e = np.zeros_like(theta)
                e[j] = h
                return (kernel(theta + e, reml) - kernel(theta - e, reml)) / (2 * h)
            fd[j] = (4 * central(1e-4) - central(2e-4)) / 3
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-5)


def test_uncorrelated_blocks_equal_diagonal_correlated_template():
    rng = np.random.default_rng(1)
    n = 250
    g = rng.integers(0, 12, n)
    joint = simulate([("g", g, ["Intercept", "x"])], n=n, seed=9)
    block = joint.blocks[0]
    split = replace(joint, blocks=(make_block("g", g, block.z[:, 0], ["Intercept"]),
                                   make_block("g", g, block.z[:, 1], ["x"])))
    diagonal = replace(joint, blocks=(make_block("g", g, block.z, ["Intercept", "x"], False),))
    k_split = LmmObjective(crossproducts(split))
    k_joint = LmmObjective(crossproducts(joint))
    k_diag = LmmObjective(crossproducts(diagonal))
    for t0, t1 in [(1.0, 1.0), (0.3, 2.0), (0.0, 0.7)]:
        for reml in (True, False):
            v_split = k_split(np.array([t0, t1]), reml)
            v_joint = k_joint(np.array([t0, 0.0, t1]), reml)
            v_diag = k_diag(np.array([t0, t1]), reml)
            assert v_split == pytest.approx(v_joint, rel=1e-13)
            assert v_diag == pytest.approx(v_joint, rel=1e-13)


def test_theta_layout_matches_lme4_names():
    design = simulate(STRUCTURES["crossed_merged"], n=300, seed=3)
    layout = theta_layout(design.blocks)
    assert layout.names == ("a.(Intercept)", "b.(Intercept)", "b.x", "c.w", "c.x.w", "c.x")
    np.testing.assert_array_equal(layout.lower, [0, 0, 0, 0, -np.inf, 0])
    np.testing.assert_array_equal(layout.start(), [1, 1, 1, 1, 0, 1])


def test_group_crossproducts_equal_direct_sums():
    design = simulate([("g", np.arange(200) % 7, ["Intercept", "x"])], n=200, seed=2)
    gcp = group_crossproducts(design)
    z = design.blocks[0].z
    for level in range(7):
        rows = design.blocks[0].codes == level
        np.testing.assert_allclose(gcp.ztz[level], z[rows].T @ z[rows])
        np.testing.assert_allclose(gcp.ztx[level], z[rows].T @ design.X[rows])
        np.testing.assert_allclose(gcp.zty[level], z[rows].T @ design.y[rows])
        np.testing.assert_allclose(gcp.xtx[level], design.X[rows].T @ design.X[rows])
        np.testing.assert_allclose(gcp.xty[level], design.X[rows].T @ design.y[rows])
        assert gcp.yty[level] == pytest.approx(design.y[rows] @ design.y[rows])
        assert gcp.n_obs[level] == rows.sum()


def test_objective_function_is_the_kernel():
    design = simulate(STRUCTURES["slope"], n=300, seed=3)
    cp = crossproducts(design)
    theta = np.array([0.7, 0.1, 0.4])
    assert objective(cp, theta, True) == LmmObjective(cp)(theta, True)


def test_make_block_counts_levels():
    block = make_block("g", [0, 2, 1, 2], np.ones(4), ["Intercept"])
    assert block.n_levels == 3 and block.q == 1


# --------------------------------------------------------------- lme4 devfun
FIXTURE_MODELS = sorted(p.stem for p in FIXTURES.glob("*.json") if not p.stem.startswith("lrt_"))


def _fixture_model(name):
    from .fixture_models import model_for

    fx = json.loads((FIXTURES / f"{name}.json").read_text())
    return fx, model_for(fx)


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_objective_matches_lme4_devfun(name):
    fx, model = _fixture_model(name)
    kernel = LmmObjective(crossproducts(model.design))
    assert len(kernel.cp.layout.names) == len(fx["theta_names"])
    for point in fx["devfun"]:
        value = kernel(np.array(point["theta"], dtype=float), fx["reml"])
        assert value == pytest.approx(point["value"], rel=1e-9), point["label"]


@pytest.mark.parametrize("reml", [True, False])
def test_single_factor_kernel_equals_per_group_woodbury_route(reml):
    """A larger single-factor design (20k rows, 2000 groups, correlated slope):
    the kernel against the per-group formulas on ``group_crossproducts``."""
    rng = np.random.default_rng(8)
    n, groups = 20_000, 2_000
    design = simulate([("g", rng.integers(0, groups, n), ["Intercept", "x"])], n=n, seed=8)
    gcp = group_crossproducts(design)
    kernel = LmmObjective(crossproducts(design))
    for theta in (np.array([0.8, -0.3, 0.5]), np.array([1.3, 0.2, 0.0])):
        t = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
        a = np.einsum("ba,jbc,cd->jad", t, gcp.ztz, t) + np.eye(2)
        zx = np.einsum("ba,jbp->jap", t, gcp.ztx)
        zy = np.einsum("ba,jb->ja", t, gcp.zty)
        a_inv = np.linalg.inv(a)
        xx = gcp.xtx.sum(0) - np.einsum("jap,jab,jbr->pr", zx, a_inv, zx)
        xy = gcp.xty.sum(0) - np.einsum("jap,jab,jb->p", zx, a_inv, zy)
        yy = gcp.yty.sum() - np.einsum("ja,jab,jb->", zy, a_inv, zy)
        beta = np.linalg.solve(xx, xy)
        r2 = yy - xy @ beta
        ldL2 = np.linalg.slogdet(a)[1].sum()
        ldRX2 = np.linalg.slogdet(xx)[1]
        dof = n - design.p if reml else n
        value = ldL2 + (ldRX2 if reml else 0.0) + dof * (1 + np.log(2 * np.pi * r2 / dof))
        sol = kernel.solution(theta, reml)
        assert sol.value == pytest.approx(value, rel=1e-12)
        np.testing.assert_allclose(sol.beta, beta, rtol=1e-10)


def test_size_limits_raise_a_clear_error(monkeypatch):
    import hierlm.design.crossprod as crossprod
    from hierlm.errors import DataError

    design = simulate(STRUCTURES["crossed"], n=300, seed=3)
    monkeypatch.setattr(crossprod, "_MAX_DENSE", 10)
    with pytest.raises(DataError, match="dense block"):
        crossproducts(design)
    monkeypatch.setattr(crossprod, "_MAX_DENSE", 20_000)
    monkeypatch.setattr(crossprod, "_MAX_PAIRS", 10)
    with pytest.raises(DataError, match="pairs"):
        crossproducts(design)
