"""Closed-form inverses of residual correlation matrices (hierlm.design.residual.precision).

``cs``, ``ar1`` and ``car1`` give ``S^-1 = sum_k c_k B_k`` over a group's times
and ``log|S|`` in closed form. Each form must reproduce numpy's inverse and
log-determinant of the structure's own ``S`` (``for_groups``), and its
derivatives central differences of its values, at several parameters (negative
correlations, strong ones, and for ``car1`` gaps below and above 1); the
heterogeneous forms (``csh``, ``arh1``) and the other structures have none.
"""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.design.residual import RESIDUAL_STRUCTURES, ResidualStructure
from hierlm.errors import FitError

TIMES = np.array([1.0, 2.0, 4.0, 5.0, 6.0, 9.0])
FRACTIONAL = np.array([0.0, 0.3, 0.6, 1.0, 2.5, 2.8])  # car1: gaps 0.3 (twice), 0.4, 1.5, 0.3
PATTERNS = [np.arange(6), np.array([0, 1, 2]), np.array([1, 3, 4, 5]), np.array([2]),
            np.array([0, 5])]
REALS = [-0.9, -0.2, 0.0, 0.4, 1.3, 2.6]  # the first parameter (atanh / logit scale)


def _bound(name: str, times: np.ndarray = TIMES) -> ResidualStructure:
    labels = tuple(str(t) for t in times)
    return RESIDUAL_STRUCTURES[name]("t", "g").bind(times, labels)


def _params(structure: ResidualStructure, real: float) -> np.ndarray:
    params = structure.start().astype(float)
    params[0] = real
    return params


def _dense(structure: ResidualStructure, params: np.ndarray, slots: np.ndarray, times: np.ndarray
           ) -> np.ndarray:
    s, _ = structure.for_groups(params, slots[None], times[None], gradient=False)
    return s[0]


CASES = [("cs", TIMES), ("ar1", TIMES), ("car1", TIMES), ("car1", FRACTIONAL)]


@pytest.mark.parametrize(("name", "times"), CASES)
@pytest.mark.parametrize("pattern", range(len(PATTERNS)))
def test_form_is_the_inverse_and_log_determinant(name, times, pattern):
    structure = _bound(name, times)
    slots = PATTERNS[pattern]
    form = structure.precision_form(slots, times[slots])
    assert form is not None
    m = slots.size
    for real in REALS:
        params = _params(structure, real)
        dense = _dense(structure, params, slots, times[slots])
        coefficients, logdet, d_logdet = form.coefficients(params, gradient=False)
        assert coefficients.shape == (1, form.basis.shape[0]) and d_logdet is None
        inverse = (coefficients[0] @ form.basis).reshape(m, m)
        np.testing.assert_allclose(inverse @ dense, np.eye(m), atol=1e-11,
                                   err_msg=f"{name} pattern {pattern} r={real}")
        assert logdet == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("name", "times"), CASES)
@pytest.mark.parametrize("pattern", range(len(PATTERNS)))
def test_form_derivatives_match_central_differences(name, times, pattern):
    structure = _bound(name, times)
    slots = PATTERNS[pattern]
    form = structure.precision_form(slots, times[slots])
    assert form is not None
    step = 1e-6
    for real in REALS:
        params = _params(structure, real)
        coefficients, _, d_logdet = form.coefficients(params, gradient=True)
        assert coefficients.shape == (1 + params.size, form.basis.shape[0])
        assert d_logdet is not None and d_logdet.shape == params.shape
        up, down = params.copy(), params.copy()
        up[0] += step
        down[0] -= step
        (c_up, ld_up, _), (c_down, ld_down, _) = (form.coefficients(up, False),
                                                  form.coefficients(down, False))
        np.testing.assert_allclose(coefficients[1], (c_up[0] - c_down[0]) / (2 * step),
                                   rtol=1e-6, atol=1e-7)
        assert d_logdet[0] == pytest.approx((ld_up - ld_down) / (2 * step), rel=1e-6, abs=1e-7)
        # the values at params are those without the gradient
        np.testing.assert_array_equal(coefficients[0], form.coefficients(params, False)[0][0])


@pytest.mark.parametrize("name", sorted(set(RESIDUAL_STRUCTURES) - {"cs", "ar1", "car1"}))
def test_other_structures_have_no_closed_form(name):
    structure = _bound(name)
    assert structure.precision_form(np.arange(6), TIMES) is None


def test_closed_form_refuses_a_matrix_at_its_limit():
    cs = _bound("cs")
    form = cs.precision_form(np.arange(6), TIMES)
    assert form is not None
    with pytest.raises(FitError, match="not positive definite"):
        form.coefficients(np.array([40.0]), gradient=True)  # rho = 1 in floating point
    ar1 = _bound("ar1")
    form = ar1.precision_form(np.arange(6), TIMES)
    assert form is not None
    with pytest.raises(FitError, match="not positive definite"):
        form.coefficients(np.array([40.0]), gradient=False)


def test_car1_derivative_at_gaps_below_one():
    """d phi^lag / d phi = lag phi^(lag - 1) also for lags below 1 (the generic path's dS)."""
    car1 = _bound("car1", FRACTIONAL)
    params = np.array([0.7])
    _, grad = car1.over_times(params)
    step = 1e-6
    numeric = (car1.over_times(params + step)[0] - car1.over_times(params - step)[0]) / (2 * step)
    np.testing.assert_allclose(grad[0], numeric, rtol=1e-6, atol=1e-9)
