"""The parametric bootstrap with residual and patterned structures simulates the fitted covariance.

Monte Carlo tolerances: 4000 simulated responses give covariances within about 2.5 % (one
standard error) of the truth; the test allows 4 standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
from hierlm.lmm.bootstrap import parametric_bootstrap


def test_simulated_residuals_have_the_fitted_covariance():
    data = hl.datasets.load("Orthodont")
    fit = hl.Model("distance ~ age", data, residual="car1(age | Subject)", variance="Sex").fit()
    rng = np.random.default_rng(7)
    draws = np.stack([fit.kernel.simulate_residuals(fit.theta, fit.sigma, rng) for _ in range(4000)])
    residual = fit.design.residual
    table = fit.structure_parameters().set_index("parameter")["estimate"]
    phi = table["phi"]
    for subject in (0, len(residual.group_labels) - 1):  # a girl and a boy
        rows = np.flatnonzero(residual.group_codes == subject)
        ages = residual.times[rows]
        level = residual.variance_labels[residual.variance_codes[rows[0]]]
        ratio = 1.0 if level == residual.variance_labels[0] else table[f"ratio.Sex.{level}"]
        want = (fit.sigma * ratio) ** 2 * phi ** np.abs(np.subtract.outer(ages, ages))
        got = np.cov(draws[:, rows], rowvar=False)
        np.testing.assert_allclose(got, want, atol=0.1 * want[0, 0])
    # groups are independent
    first = np.flatnonzero(residual.group_codes == 0)
    second = np.flatnonzero(residual.group_codes == 1)
    across = np.cov(draws[:, first[0]], draws[:, second[0]])[0, 1]
    assert abs(across) < 0.1 * (fit.sigma ** 2)


def test_bootstrap_records_the_structure_and_is_seeded():
    data = hl.datasets.load("Orthodont")
    fit = hl.Model("distance ~ age", data, residual="ar1(age | Subject)").fit()
    one = parametric_bootstrap(fit, n_boot=12, random_seed=3)
    two = parametric_bootstrap(fit, n_boot=12, random_seed=3)
    assert list(one.columns) == ["sigma", "Intercept", "age", "residual.rho"]
    np.testing.assert_array_equal(one.to_numpy(), two.to_numpy())
    rho = fit.structure_parameters()["estimate"].iloc[0]
    # replicates scatter around the estimate (sampling SD of rho here is about 0.05)
    assert one["residual.rho"].mean() == pytest.approx(rho, abs=0.1)
    assert one["residual.rho"].std() > 1e-3
