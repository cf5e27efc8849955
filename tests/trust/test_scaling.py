"""Numerical robustness: ML/REML results do not depend on the units of y and x.

Measuring the response in units ``c_y`` times smaller and a predictor in
units ``c_x`` times larger (``y * c_y``, ``x * c_x``) is a reparametrisation:
the fixed effect of ``x`` becomes ``beta * c_y / c_x``, the intercept
``beta * c_y``, SDs likewise, correlations, t values, Satterthwaite's df and
p-values do not change, and the log-likelihood shifts by a known constant:

* ML:   ``- n log c_y``
* REML: ``- (n - p) log c_y - log|det D|`` with ``D = diag(column factors of X)``
  (the restricted likelihood has ``log|X'V^-1 X|``, which picks up the
  column scaling of X).

Tolerances. theta is found to a projected gradient of about 1e-6 in
scale-free units, so parameters agree to about 1e-5 relative (variance
components) and the criterion to about 1e-9 relative; fixed effects, being the
GLS solution at theta, agree to about 1e-7. The tolerances below are 10 to
100 times the differences measured on these problems. With lme4's raw
parametrisation (theta in the units of 1/x, optimiser started at theta = 1),
``x * 1e-6`` gave a wrong optimum reported as converged and ``x * 1e6`` a
failure; these tests guard the scale-free optimiser, its start, Satterthwaite's
Hessian and the singular-fit rule.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm as hl

SLEEP = hl.datasets.load("sleepstudy")
SCALES = [(1e6, 1e-6), (1e-6, 1e6), (1e6, 1.0), (1e-6, 1e-6), (1e9, 1e-9)]


def _fit(data, formula, method):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = hl.Model(formula, data).fit(method=method)
        fit.fixef()  # Satterthwaite's Hessian may warn too
    return fit, sorted({type(w.message).__name__ for w in caught
                        if issubclass(w.category, hl.errors.HierlmWarning)})


@pytest.fixture(scope="module", params=["reml", "ml"])
def reference(request):
    return request.param, _fit(SLEEP, "Reaction ~ Days + (Days | Subject)", request.param)


@pytest.mark.parametrize("c_y, c_x", SCALES, ids=[f"y*{a:g},x*{b:g}" for a, b in SCALES])
def test_results_are_equivariant_under_rescaling(reference, c_y, c_x):
    method, (base, base_warnings) = reference
    data = SLEEP.assign(Reaction=SLEEP["Reaction"] * c_y, Days=SLEEP["Days"] * c_x)
    fit, fit_warnings = _fit(data, "Reaction ~ Days + (Days | Subject)", method)
    assert fit_warnings == base_warnings  # no false singular-fit or convergence warnings
    assert fit.is_singular == base.is_singular and fit.fit_record.converged

    coef_scale = np.array([c_y, c_y / c_x])
    fa, fb = base.fixef(), fit.fixef()
    np.testing.assert_allclose(fb["estimate"] / coef_scale, fa["estimate"], rtol=1e-7)
    np.testing.assert_allclose(fb["std_error"] / coef_scale, fa["std_error"], rtol=1e-4)
    np.testing.assert_allclose(fb["t_value"], fa["t_value"], rtol=1e-4)
    np.testing.assert_allclose(fb["df"], fa["df"], rtol=1e-3)
    np.testing.assert_allclose(fb["p_value"], fa["p_value"], rtol=1e-3, atol=1e-12)

    # varcorr rows: SD(Intercept), SD(Days), corr, Residual
    sdcor_scale = np.array([c_y, c_y / c_x, 1.0, c_y])
    np.testing.assert_allclose(fit.varcorr()["estimate"] / sdcor_scale, base.varcorr()["estimate"],
                               rtol=1e-4)
    ranef_scale = np.array([c_y, c_y / c_x])
    for group, table in base.ranef(wide=True).items():
        np.testing.assert_allclose(fit.ranef(wide=True)[group].to_numpy() / ranef_scale,
                                   table.to_numpy(), rtol=1e-4, atol=1e-4 * table.abs().max().max())
    np.testing.assert_allclose(fit.fitted() / c_y, base.fitted(), rtol=1e-7)

    n, p = base.nobs, base.design.p
    if method == "ml":
        shift = -n * np.log(c_y)
    else:
        shift = -(n - p) * np.log(c_y) - np.log(c_x)  # D = diag(1, c_x)
    assert fit.loglik == pytest.approx(base.loglik + shift, rel=1e-9, abs=1e-7)


def test_crossed_model_with_tiny_response_scale():
    data = hl.datasets.load("Penicillin")
    base, _ = _fit(data, "diameter ~ 1 + (1 | plate) + (1 | sample)", "reml")
    fit, _ = _fit(data.assign(diameter=data["diameter"] * 1e-7),
                  "diameter ~ 1 + (1 | plate) + (1 | sample)", "reml")
    np.testing.assert_allclose(fit.varcorr()["estimate"] / 1e-7, base.varcorr()["estimate"], rtol=1e-4)
    np.testing.assert_allclose(fit.fixef()["df"], base.fixef()["df"], rtol=1e-3)


def test_nearly_collinear_fixed_effects_warn_rather_than_fail():
    rng = np.random.default_rng(1)
    # relative residual of D2 on (1, Days) about 2e-5: past the 1e-4 warning threshold,
    # short of the 1e-7 aliasing threshold that raises RankDeficientError
    data = SLEEP.assign(D2=SLEEP["Days"] + 1e-4 * rng.normal(size=len(SLEEP)))
    with warnings.catch_warnings():
        # the criterion is noisy along the ill-determined direction, so L-BFGS-B may also
        # stop with ABNORMAL line-search termination (a ConvergenceWarning): a warning too
        warnings.simplefilter("ignore", hl.errors.ConvergenceWarning)
        with pytest.warns(hl.errors.HierlmWarning, match="nearly rank deficient.*'D2'"):
            fit = hl.Model("Reaction ~ Days + D2 + (Days | Subject)", data).fit()
    assert np.all(np.isfinite(fit.fixef()["estimate"]))
    # the sum of the two nearly equal slopes is well determined: about lme4's 10.47
    total = fit.contrast({"Days": 1.0, "D2": 1.0})
    assert total["estimate"] == pytest.approx(10.467, abs=0.05)
    # exactly collinear still raises, naming the column
    with pytest.raises(hl.errors.RankDeficientError, match="D3"):
        hl.Model("Reaction ~ Days + D3 + (1 | Subject)", SLEEP.assign(D3=2 * SLEEP["Days"]),
                 drop_aliased=False)


def test_well_separated_columns_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", hl.errors.HierlmWarning)
        hl.Model("score ~ Machine + (1 | Worker)", hl.datasets.load("Machines"))
        hl.Model("Reaction ~ Days + I(Days ** 2) + (1 | Subject)", SLEEP)


def test_near_zero_variance_component_warns_singular_rather_than_fails():
    rng = np.random.default_rng(3)
    # no between-group variation at all in the slope: the fit must end on the boundary
    data = SLEEP.assign(Reaction=250 + 10 * SLEEP["Days"] + rng.normal(scale=20, size=len(SLEEP))
                        + np.repeat(rng.normal(scale=30, size=18), 10))
    with pytest.warns(hl.errors.SingularFitWarning, match="Subject"):
        fit = hl.Model("Reaction ~ Days + (Days | Subject)", data).fit()
    assert fit.is_singular
    assert np.all(np.isfinite(fit.fixef()[["estimate", "std_error"]].to_numpy()))
