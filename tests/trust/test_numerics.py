"""Numerics at the edges: ill-conditioned fixed effects, extreme response scales, huge dense blocks.

* A predictor spanning 1..10,000 and its powers: the REML criterion from
  raw cross-products lost about 1e-4 to cancellation; the kernel now works
  on an orthonormal basis of X, and the criterion, estimates and standard
  errors agree with a computation that forms no cross-products (per-group
  whitening and a QR factorisation).
* Responses at 1e200 or 1e-200 cannot be squared in double precision: they
  are refused with the scale and the fix; inside the safe range a rescaled
  response gives exactly rescaled estimates.
* The dense Schur complement is refused, with the memory it needs, before
  it is allocated.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.design import checks, crossprod, memory
from hierlm.design.crossprod import crossproducts
from hierlm.errors import DataError, FitError
from hierlm.lmm.conditioning import ConditionedObjective, conditioned_objective
from hierlm.lmm.objective import LmmObjective

SLEEP = hl.datasets.load("sleepstudy")


def quiet(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return call()


def group_level_polynomial(n_groups: int = 50, per_group: int = 20, seed: int = 2) -> pd.DataFrame:
    """A group-level predictor 1..10,000 with a strong group effect: the worst case for X'X."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = np.linspace(1.0, 10_000.0, n_groups)[g]
    y = 3 + 0.002 * x + rng.normal(0, 100.0, n_groups)[g] + rng.normal(0, 1, g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def reference_reml(design, theta: float) -> tuple[float, np.ndarray, np.ndarray]:
    """REML criterion, beta and (X'V^-1X)^-1 of a random-intercept design without cross-products.

    ``V_j = I + theta^2 11'`` is whitened group by group (``V_j^-1/2 = I - a 11'``) and the
    whitened X factored by Householder QR: accurate to about 1e-11 here (checked against
    exact rational arithmetic when this test was written).
    """
    X, y = np.asarray(design.X, dtype=float), np.asarray(design.y, dtype=float)
    n, p = X.shape
    codes = design.blocks[0].codes
    xw, yw, logdet = X.copy(), y.copy(), 0.0
    for level in np.unique(codes):
        rows = codes == level
        m = int(rows.sum())
        a = (1.0 - 1.0 / np.sqrt(1.0 + m * theta**2)) / m
        xw[rows] = X[rows] - a * X[rows].sum(axis=0)
        yw[rows] = y[rows] - a * y[rows].sum()
        logdet += np.log1p(m * theta**2)
    norms = np.linalg.norm(xw, axis=0)
    q, r = np.linalg.qr(xw / norms)
    residual = yw - q @ (q.T @ yw)
    r2 = float(residual @ residual)
    criterion = (logdet + 2 * np.sum(np.log(np.abs(np.diag(r)))) + 2 * np.sum(np.log(norms))
                 + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))))
    beta = np.linalg.solve(r, q.T @ yw) / norms
    r_inv = np.linalg.inv(r) / norms[:, None]
    return float(criterion), beta, r_inv @ r_inv.T


FORMULA = "y ~ x + I(x**2) + I(x**3) + (1 | g)"


@pytest.mark.parametrize("theta", [100.0, 1000.0])
def test_criterion_with_a_predictor_spanning_1_to_10000_is_accurate(theta):
    model = quiet(lambda: hl.Model(FORMULA, group_level_polynomial()))
    exact, _, _ = reference_reml(model.design, theta)
    kernel = conditioned_objective(model.design)
    assert isinstance(kernel, ConditionedObjective)
    assert kernel(np.array([theta]), True) == pytest.approx(exact, abs=2e-7)
    # the raw cross-products were off by far more (documents what was fixed)
    raw = LmmObjective(crossproducts(model.design))(np.array([theta]), True)
    assert abs(raw - exact) > 1e-6


def test_fit_estimates_and_standard_errors_on_the_original_scale():
    model = quiet(lambda: hl.Model(FORMULA, group_level_polynomial()))
    fit = quiet(model.fit)
    theta = float(fit.theta[0])
    exact, beta, unscaled = reference_reml(model.design, theta)
    assert fit.criterion == pytest.approx(exact, abs=2e-7)
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-6)
    np.testing.assert_allclose(fit.vcov().to_numpy(), fit.sigma**2 * unscaled, rtol=1e-6)
    # the fitted values (X beta + Z b) are the data's scale too
    assert np.corrcoef(fit.fitted(), model.design.y)[0, 1] > 0.99


def test_conditioning_changes_no_result_of_a_well_scaled_model():
    model = hl.Model("Reaction ~ Days + (Days | Subject)", SLEEP)
    raw = LmmObjective(crossproducts(model.design))
    kernel = conditioned_objective(model.design)
    for theta in (np.array([1.0, 0.0, 1.0]), np.array([0.97, 0.015, 0.23])):
        for reml in (True, False):
            assert kernel(theta, reml) == pytest.approx(raw(theta, reml), abs=1e-9)
            a, b = kernel.solution(theta, reml), raw.solution(theta, reml)
            np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10)
            np.testing.assert_allclose(a.unscaled_vcov, b.unscaled_vcov, rtol=1e-9)
            np.testing.assert_allclose(a.R_X.T @ a.R_X, b.R_X.T @ b.R_X, rtol=1e-9)
            np.testing.assert_allclose(kernel.value_and_gradient(theta, reml)[1],
                                       raw.value_and_gradient(theta, reml)[1], rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------ response scale


@pytest.mark.parametrize("factor, words", [(1e200, "reaches"), (1e-200, "varies by only")])
@pytest.mark.parametrize("method", ["reml", "map"])
def test_response_beyond_double_precision_is_refused_with_its_scale(factor, words, method):
    data = SLEEP.assign(Reaction=SLEEP["Reaction"] * factor)
    with pytest.raises(DataError, match=rf"'Reaction' {words}.*Rescale it"):
        hl.Model("Reaction ~ Days + (1 | Subject)", data).fit(method)


@pytest.mark.parametrize("factor", [1e40, 1e-40])
def test_response_at_an_extreme_but_safe_scale_gives_rescaled_estimates(factor):
    formula = "Reaction ~ Days + (Days | Subject)"
    base = quiet(lambda: hl.Model(formula, SLEEP).fit())
    fit = quiet(lambda: hl.Model(formula, SLEEP.assign(Reaction=SLEEP["Reaction"] * factor)).fit())
    np.testing.assert_allclose(fit.beta / factor, base.beta, rtol=1e-6)
    assert fit.sigma / factor == pytest.approx(base.sigma, rel=1e-5)
    np.testing.assert_allclose(fit.fixef()["std_error"] / factor, base.fixef()["std_error"], rtol=1e-5)
    np.testing.assert_allclose(fit.fixef()["df"], base.fixef()["df"], rtol=1e-4)


@pytest.mark.parametrize("method", ["reml", "ml", "map", "nuts"])
def test_constant_response_is_refused_early_by_every_method(method):
    model = hl.Model("Reaction ~ Days + (1 | Subject)", SLEEP.assign(Reaction=250.0))
    with pytest.raises(FitError, match=r"response 'Reaction' is constant \(250"):
        model.fit(method, **({"progressbar": False} if method == "nuts" else {}))


def test_response_reproduced_by_the_fixed_effects_is_refused():
    model = hl.Model("Reaction ~ Days + (1 | Subject)", SLEEP.assign(Reaction=3.0 + 2.0 * SLEEP["Days"]))
    for method in ("reml", "map"):
        with pytest.raises(FitError, match="reproduce the response 'Reaction' exactly"):
            model.fit(method)


# ---------------------------------------------------------- dense memory guard


def test_dense_block_is_refused_before_allocation_with_the_memory_it_needs(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 16 * 10**9)
    with pytest.raises(DataError, match=r"20,000 columns wide.*22\.4 GB.*16\.0 GB.*method='map'"):
        checks.require_dense_memory(20_000, "The remaining effects")
    checks.require_dense_memory(5_000, "The remaining effects")  # 1.4 GB: fine


def test_crossproducts_check_memory_before_forming_the_dense_block(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)  # bytes: less than 8 x 8 x 56
    penicillin = hl.datasets.load("Penicillin")
    model = hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", penicillin)
    with pytest.raises(DataError, match=r"After eliminating .plate. \(24 levels\).*8 columns wide"):
        crossprod.crossproducts(model.design)
    with pytest.raises(DataError, match=r"3\.6 kB of memory.*1\.0 kB are available"):
        model.fit()


def test_available_memory_is_a_positive_number_here():
    found = checks.available_memory()
    assert found is None or found > 0
