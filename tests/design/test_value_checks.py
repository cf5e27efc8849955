"""The response checks' least squares (hierlm.design.value_checks)."""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.design.value_checks import _least_squares, require_varying_response
from hierlm.errors import FitError


def _design(n: int = 60, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.normal(size=n), rng.uniform(size=n)])
    return x, x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=n)


def test_qr_solution_and_residual_norm_equal_the_svd_solver():
    x, y = _design()
    coef, residual = _least_squares(x, y)
    want = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(coef, want, rtol=1e-12)
    assert residual == pytest.approx(np.linalg.norm(y - x @ want), rel=1e-12)


def test_dependent_columns_fall_back_to_the_minimum_norm_solution():
    x, y = _design()
    dependent = np.column_stack([x, 2.0 * x[:, 1]])  # exactly aliased: QR's R has a ~0 diagonal
    coef, residual = _least_squares(dependent, y)
    want = np.linalg.lstsq(dependent, y, rcond=None)[0]
    np.testing.assert_allclose(coef, want, rtol=1e-10)
    assert np.max(np.abs(coef)) < 10  # not QR's huge cancelling pair
    assert residual == pytest.approx(np.linalg.norm(y - x @ np.linalg.lstsq(x, y, rcond=None)[0]),
                                     rel=1e-10)


def test_fewer_rows_than_columns_use_the_svd_solver():
    x, y = _design(n=2)
    coef, residual = _least_squares(x, y)
    np.testing.assert_allclose(coef, np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-12)
    assert residual == pytest.approx(0.0, abs=1e-12)


def test_a_response_the_fixed_effects_reproduce_is_refused():
    x, _ = _design()
    with pytest.raises(FitError, match="reproduce the response 'y' exactly"):
        require_varying_response(x @ np.array([1.0, 2.0, 3.0]), x, "y")
    coef = require_varying_response(_design()[1], x, "y")
    assert coef is not None and coef.shape == (3,)
