"""The bounded 1-D secant-Newton minimiser (hierlm.lmm.newton1d) and its use by fit_lmm.

On functions with known minima (inside the interval, at a bound, beyond a region
that cannot be evaluated) it must stop at the minimum to the tolerance of its
projected-gradient test; on residual-structure fits of one parameter it is the
default and must reach the optimum L-BFGS-B reaches (criterion within 1e-9,
parameter within 1e-6), on balanced and unbalanced data, ML and REML.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import FitError
from hierlm.lmm.newton1d import NEWTON_1D, newton_1d
from tests.lmm.helpers import repeated_weights

REFUSED = 1e30


def _wrap(f, df):
    calls = []

    def value_grad(x):
        calls.append(float(x[0]))
        return f(float(x[0])), np.array([df(float(x[0]))])

    return value_grad, calls


CASES = [
    # name, f, f', start, lower, upper, minimiser
    ("quadratic", lambda x: (x - 1.3) ** 2, lambda x: 2 * (x - 1.3), 5.0, -10.0, 10.0, 1.3),
    ("quartic", lambda x: (x - 2) ** 4 + (x - 2) ** 2, lambda x: 4 * (x - 2) ** 3 + 2 * (x - 2),
     -3.0, -10.0, 10.0, 2.0),
    ("log-cosh", lambda x: np.log(np.cosh(x + 0.7)), lambda x: np.tanh(x + 0.7), 3.0, -40.0, 40.0,
     -0.7),
    ("at the lower bound", lambda x: np.exp(x), lambda x: np.exp(x), 1.0, -2.0, 3.0, -2.0),
    ("at the upper bound", lambda x: -x + 0.01 * x ** 2, lambda x: -1 + 0.02 * x, 0.0, -5.0, 7.0,
     7.0),
    ("concave start", lambda x: -np.exp(-((x - 1) ** 2)), lambda x: 2 * (x - 1) * np.exp(-((x - 1) ** 2)),
     2.2, -6.0, 6.0, 1.0),
]


@pytest.mark.parametrize(("name", "f", "df", "start", "lower", "upper", "minimiser"), CASES,
                         ids=[c[0] for c in CASES])
def test_finds_the_minimum(name, f, df, start, lower, upper, minimiser):
    value_grad, calls = _wrap(f, df)
    res = newton_1d(value_grad, np.array([start]), lower, upper, 1e-10, 200, REFUSED)
    assert res.success and res.stationary
    assert res.x[0] == pytest.approx(minimiser, abs=1e-6)
    assert res.nfev == len(calls) < 60
    assert all(lower <= c <= upper for c in calls)
    assert res.fun == pytest.approx(f(res.x[0]), abs=0)


def test_a_refused_region_is_backed_off():
    # not evaluable beyond 0.5; minimum of (x - 0.4)^2 at 0.4, start far on the other side
    def value_grad(x):
        if x[0] > 0.5:
            return REFUSED, np.zeros(1)
        return (x[0] - 0.4) ** 2, np.array([2 * (x[0] - 0.4)])

    res = newton_1d(value_grad, np.array([-3.0]), -5.0, 5.0, 1e-10, 200, REFUSED)
    assert res.success and res.x[0] == pytest.approx(0.4, abs=1e-8)


def test_the_evaluation_cap_is_reported():
    value_grad, _ = _wrap(lambda x: np.log(np.cosh(x)), np.tanh)
    res = newton_1d(value_grad, np.array([3.0]), -40.0, 40.0, 1e-12, 3, REFUSED)
    assert not res.success and res.nfev == 3 and "LIMIT" in res.message


def _pigs_like(drop: bool) -> pd.DataFrame:
    return repeated_weights(11, 20, 7, level_sd=3, slope=6, noise_sd=1.5,
                            dropped=[3, 10, 11, 40, 41, 77, 100] if drop else ())


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("structure", ["cs(id)", "ar1(week | id)", "car1(week | id)"])
def test_default_fit_matches_lbfgsb(structure, method, drop):
    model = hl.Model("weight ~ week", _pigs_like(drop), residual=structure)
    auto = model.fit(method=method)
    reference = model.fit(method=method, optimizer="L-BFGS-B")
    assert auto.fit_record.optimizer == NEWTON_1D
    assert reference.fit_record.optimizer == "L-BFGS-B"
    assert auto.fit_record.converged
    assert auto.fit_record.value == pytest.approx(reference.fit_record.value, rel=1e-9)
    np.testing.assert_allclose(auto.fit_record.end, reference.fit_record.end, atol=1e-6)
    assert np.max(np.abs(auto.fit_record.gradient)) < 1e-6
    np.testing.assert_allclose(auto.fixef().iloc[:, 0], reference.fixef().iloc[:, 0], rtol=1e-8)


def test_more_parameters_keep_lbfgsb():
    model = hl.Model("weight ~ week", _pigs_like(False), residual="csh(week | id)")
    assert model.fit(method="reml").fit_record.optimizer == "L-BFGS-B"
    with pytest.raises(FitError, match="one bounded parameter"):
        model.fit(method="reml", optimizer="newton1d")


def test_a_cubic_is_minimised_after_the_probe():
    # the cubic step is exact for a cubic: start, probe, the minimiser (gradient 0 there)
    value_grad, calls = _wrap(lambda x: (x - 1) ** 3 / 3 - 4 * (x - 1), lambda x: (x - 1) ** 2 - 4)
    res = newton_1d(value_grad, np.array([4.0]), 0.0, 10.0, 1e-10, 50, REFUSED)
    assert res.success and res.x[0] == pytest.approx(3.0, abs=1e-9)
    assert res.nfev <= 4
