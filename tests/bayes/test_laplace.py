"""The Laplace covariance of MAP fits against a brute-force Hessian (hierlm.bayes.laplace).

Reference: the negative log posterior over ``x = (theta, log sigma, beta)``
(``beta`` left out for REML), rebuilt here from its values only
(``MarginalDensity.minus_two_loglik`` and ``log_prior_density``), its Hessian
by central second differences at steps ``h, h/2, h/4`` (``h = 5e-2 max(|x|,
0.1)``) extrapolated twice (Richardson, truncation ``O(h^6)``). Its own error on
sleepstudy, from the spread over h = 0.03, 0.05, 0.1: ~3e-8 relative at
h = 0.05 (roundoff ``eps |f| / (h/4)^2`` grows below, truncation above).
``laplace_uncertainty`` differences the exact gradient instead (its error ~1e-8:
steps 1e-4 and 1e-6 move it by 3e-8 and 6e-8). Tolerance: 1e-7 relative on
the SEs (measured 2.6e-8 to 3.4e-8), where function-value second differences
at steps 1e-4 |theta| (before) were off by up to 7e-3 (an SE of the engine-data
MAP fit of tests/sources/test_learn).
"""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.bayes.map import MarginalDensity, log_prior_density

pytestmark = pytest.mark.filterwarnings("ignore::hierlm.errors.HierlmWarning")


def _second_differences(func, x, steps):
    d = x.size
    unit = np.eye(d) * steps
    hess = np.empty((d, d))
    for i in range(d):
        for j in range(i + 1):
            cross = (func(x + unit[i] + unit[j]) - func(x + unit[i] - unit[j])
                     - func(x - unit[i] + unit[j]) + func(x - unit[i] - unit[j]))
            hess[i, j] = hess[j, i] = cross / (4 * steps[i] * steps[j])
    return hess


def reference_hessian(func, x, steps):
    """Second differences at h, h/2, h/4 with two Richardson extrapolations (error O(h^6))."""
    d1, d2, d4 = (_second_differences(func, x, steps / k) for k in (1, 2, 4))
    r1, r2 = (4 * d2 - d1) / 3, (4 * d4 - d2) / 3
    return (16 * r2 - r1) / 15


def reference_cov(fit, free=None):
    """The inverse brute-force Hessian of a MAP fit's negative log posterior over ``x[free]``."""
    design, info = fit.design, fit.info
    density = MarginalDensity(design)
    theta = np.asarray(info["theta"], dtype=float)
    reml = bool(info["reml"])
    sigma = float(fit.idata["map"]["sigma"])
    beta = fit.draws().beta[0]
    n_theta = theta.size
    x0 = np.concatenate([theta, [np.log(sigma)], [] if reml else beta])
    free = np.arange(x0.size) if free is None else np.asarray(free)

    def nlp(v):
        x = x0.copy()
        x[free] = v
        th, s = x[:n_theta], float(np.exp(x[n_theta]))
        b = None if reml else x[n_theta + 1:]
        value = 0.5 * density.minus_two_loglik(density.pieces(th), s, b, reml)
        return value - log_prior_density(fit.priors, fit.names, density.templates(th), s, b,
                                         design.fixed_names)

    hess = reference_hessian(nlp, x0[free], 5e-2 * np.maximum(np.abs(x0[free]), 0.1))
    return np.linalg.inv(hess)


@pytest.fixture(scope="module")
def fits(sleep_model):
    return {"map": sleep_model.fit(method="map"),
            "flat_reml": sleep_model.fit(method="map", priors="flat", reml=True),
            "flat_ml": sleep_model.fit(method="map", priors="flat")}


@pytest.mark.parametrize("name", ["map", "flat_reml", "flat_ml"])
def test_laplace_matches_brute_force_hessian(fits, name):
    fit = fits[name]
    want = reference_cov(fit)
    got = np.asarray(fit.info["laplace_cov"])
    se_got, se_want = np.sqrt(np.diag(got)), np.sqrt(np.diag(want))
    np.testing.assert_allclose(se_got, se_want, rtol=1e-7)
    # the whole covariance, relative to its largest entry (off-diagonal entries can be near 0)
    assert np.max(np.abs(got - want)) <= 1e-7 * np.max(np.abs(want))


def test_theta_on_its_bound_has_nan_rows():
    """Dyestuff2 (REML, flat): the SD is 0, its row and column NaN; log sigma's variance as the reference."""
    import hierlm as hl

    fit = hl.Model("Yield ~ 1 + (1 | Batch)", hl.datasets.load("Dyestuff2")).fit(
        method="map", priors="flat", reml=True)
    assert fit.info["theta"][0] == 0.0
    cov = np.asarray(fit.info["laplace_cov"])
    assert np.isnan(cov[0]).all() and np.isnan(cov[:, 0]).all()
    want = reference_cov(fit, free=[1])
    np.testing.assert_allclose(cov[1:, 1:], want, rtol=1e-7)
