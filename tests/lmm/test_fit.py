"""fit_lmm and LmmResult beyond the lme4 numbers: routes that must agree,
the fit record, singular fits, predictions, tables and error messages."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm.datasets as datasets
from hierlm.design.crossprod import crossproducts
from hierlm.errors import ConvergenceWarning, FitError, SingularFitWarning
from hierlm.lmm import fit_lmm
from hierlm.lmm.objective import LmmObjective
from hierlm.model import Model

from .simulate import dense_reference, simulate


@pytest.fixture(scope="module")
def sleep():
    return datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def slope_fit(sleep):
    return Model("Reaction ~ Days + (Days | Subject)", sleep).fit(method="reml")


def test_split_bars_equal_double_bar(sleep):
    double = Model("Reaction ~ Days + (Days || Subject)", sleep).fit()
    split = Model("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep).fit()
    np.testing.assert_allclose(split.theta, double.theta, rtol=1e-6)
    assert split.criterion == pytest.approx(double.criterion, abs=1e-8)
    pd.testing.assert_frame_equal(split.fixef(), double.fixef(), rtol=1e-5)


def test_fit_record(slope_fit):
    record = slope_fit.fit_record
    assert record.optimizer == "L-BFGS-B"
    assert record.criterion == "REML criterion"
    days_rms = np.sqrt(np.mean(slope_fit.design.X[:, 1] ** 2))  # start: 1 / RMS of the column
    np.testing.assert_allclose(record.start, [1.0, 0.0, 1.0 / days_rms], rtol=1e-12)
    np.testing.assert_array_equal(record.end, slope_fit.theta)
    assert record.value == pytest.approx(slope_fit.criterion)
    assert record.converged and record.n_evaluations > 3 and record.seconds > 0
    assert record.boundary == ()
    assert np.max(np.abs(record.gradient)) < 2e-3
    assert "converged" in str(record)


def test_optimum_is_a_stationary_point_of_the_dense_definition(slope_fit):
    design = slope_fit.design
    theta = slope_fit.theta
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = 1e-4
        up = dense_reference(design, theta + step, True)["value"]
        down = dense_reference(design, theta - step, True)["value"]
        assert abs(up - down) / 2e-4 < 2e-3


def test_derivative_free_optimizer_reaches_the_same_optimum(sleep, slope_fit):
    model = Model("Reaction ~ Days + (Days | Subject)", sleep)
    other = model.fit(method="reml", optimizer="COBYQA")
    assert other.fit_record.optimizer == "COBYQA"
    assert other.criterion == pytest.approx(slope_fit.criterion, abs=1e-4)
    np.testing.assert_allclose(other.fixef()["estimate"], slope_fit.fixef()["estimate"],
                               rtol=1e-5)


def test_singular_fit_is_exactly_on_the_boundary():
    data = datasets.load("Dyestuff2")
    with pytest.warns(SingularFitWarning, match=r"boundary \(singular\) fit: Batch"):
        fit = Model("Yield ~ 1 + (1 | Batch)", data).fit()
    assert fit.theta[0] == 0.0
    assert fit.is_singular and fit.fit_record.boundary == ("Batch.(Intercept)",)
    assert "boundary (singular) fit" in str(fit.summary())
    # conditional modes of a zero variance are zero
    np.testing.assert_array_equal(fit.ranef()["estimate"], 0.0)


def test_singular_correlated_term_is_found_from_any_start():
    # Random slopes with no slope variance: the slope's diagonal theta goes to 0.
    rng = np.random.default_rng(3)
    n, groups = 600, 30
    g = np.repeat(np.arange(groups), n // groups)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=groups)[g] + rng.normal(size=n)
    data = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})
    model = Model("y ~ x + (x | g)", data)
    fits = []
    for start in (None, [0.5, 0.3, 0.8]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularFitWarning)
            fits.append(model.fit(start=start))
    for fit in fits:
        assert fit.criterion == pytest.approx(fits[0].criterion, abs=1e-6)
    assert fits[0].is_singular == fits[1].is_singular


def test_convergence_warning_when_the_optimizer_is_cut_short(sleep):
    model = Model("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.warns(ConvergenceWarning):
        fit = model.fit(max_evaluations=2, polish=False)
    assert not fit.fit_record.converged


def test_fit_lmm_on_a_hand_built_design():
    design = simulate([("g", 12, ["Intercept", "x"])], n=240, seed=7)
    fit = fit_lmm(design, reml=False)
    assert fit.method == "ml" and fit.model is None
    kernel = LmmObjective(crossproducts(design))
    assert fit.criterion == pytest.approx(kernel(fit.theta, False))
    assert fit.deviance == pytest.approx(fit.criterion)
    with pytest.raises(FitError, match="needs the Model"):
        fit.predict(pd.DataFrame({"x": [0.0]}))


def test_errors():
    design = simulate([("g", 5, ["Intercept"])], n=50, seed=1)
    with pytest.raises(FitError, match="start must have 1"):
        fit_lmm(design, start=[1.0, 2.0])
    with pytest.raises(FitError, match="negative diagonal"):
        fit_lmm(design, start=[-1.0])
    with pytest.raises(FitError, match="needs a Design"):
        fit_lmm("not a design")  # type: ignore[arg-type]


def test_reml_deviance_is_ml_loglik_at_reml_estimates(slope_fit):
    sol = slope_fit.solution
    design = slope_fit.design
    z = design.sparse_z().toarray()
    sigma = slope_fit.sigma
    cov = np.kron(np.eye(18), slope_fit.covariances()[0])
    marginal = z @ cov @ z.T + sigma ** 2 * np.eye(design.n)
    resid = design.y - design.X @ sol.beta
    sign, logdet = np.linalg.slogdet(marginal)
    minus2ll = logdet + resid @ np.linalg.solve(marginal, resid) + design.n * np.log(2 * np.pi)
    assert slope_fit.deviance == pytest.approx(minus2ll, rel=1e-10)


def test_tables(slope_fit):
    fe = slope_fit.fixef()
    assert list(fe.columns) == ["estimate", "std_error", "eti95_lb", "eti95_ub", "df", "t_value",
                                "p_value"]
    assert list(fe.index) == ["Intercept", "Days"]
    vc = slope_fit.varcorr()
    assert list(vc.columns) == ["group", "term1", "term2", "estimate", "std_error", "eti95_lb",
                                "eti95_ub", "vcov"]
    assert list(vc["group"]) == ["Subject"] * 3 + ["Residual"]
    assert vc["term2"].tolist() == [None, None, "Days", None]
    assert vc["estimate"].iloc[-1] == pytest.approx(slope_fit.sigma)
    ranef = slope_fit.ranef()
    assert list(ranef.columns) == ["group", "level", "term", "estimate", "std_error", "eti95_lb",
                                   "eti95_ub"]
    assert len(ranef) == 36 and (ranef["std_error"] > 0).all()
    # std_error is lme4's conditional SD (condVar)
    cond_sd = np.sqrt(np.diagonal(slope_fit.cond_var()["Subject"], axis1=1, axis2=2))
    np.testing.assert_allclose(ranef["std_error"], cond_sd.T.ravel())
    wide = slope_fit.ranef(wide=True)["Subject"]
    assert wide.shape == (18, 2)
    coef = slope_fit.coef(wide=True)["Subject"]
    np.testing.assert_allclose(coef["Days"], fe.loc["Days", "estimate"] + wide["Days"])
    ci = slope_fit.confint()
    assert (ci["lower"] < fe["estimate"]).all() and (fe["estimate"] < ci["upper"]).all()
    np.testing.assert_allclose(ci.to_numpy(), fe[["eti95_lb", "eti95_ub"]].to_numpy())


def test_contrast_equals_fixef_row(slope_fit):
    row = slope_fit.fixef().loc["Days"]
    test = slope_fit.contrast({"Days": 1.0})
    assert test["df"] == pytest.approx(row["df"])
    assert test["p_value"] == pytest.approx(row["p_value"])
    both = slope_fit.contrast([1.0, 10.0])
    assert both["estimate"] == pytest.approx(
        slope_fit.beta[0] + 10 * slope_fit.beta[1])


def test_fitted_residuals_and_predict(sleep, slope_fit):
    fitted = slope_fit.fitted()
    np.testing.assert_allclose(fitted + slope_fit.residuals(), sleep["Reaction"])
    np.testing.assert_allclose(slope_fit.predict(sleep)["estimate"], fitted)
    fixed_only = slope_fit.predict(sleep, include_random=False)["estimate"]
    np.testing.assert_allclose(fixed_only, slope_fit.beta[0] + slope_fit.beta[1] * sleep["Days"])
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["308", "999"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = slope_fit.predict(new)["estimate"]
    b308 = slope_fit.ranef(wide=True)["Subject"].loc["308"]
    assert pred[0] == pytest.approx(slope_fit.beta[0] + b308["Intercept"])
    assert pred[1] == pytest.approx(slope_fit.beta[0] + 5 * slope_fit.beta[1])


def test_summary_text(slope_fit):
    text = str(slope_fit.summary())
    for piece in ("Linear mixed model fit by REML", "REML criterion at convergence: 1743.6",
                  "Scaled residuals", "Random effects:", "Subject", "Residual",
                  "Number of obs: 180, groups:  Subject, 18", "Fixed effects:", "(Intercept)",
                  "Satterthwaite", "Correlation of Fixed Effects:"):
        assert piece in text, piece


def test_summary_ml(sleep):
    fit = Model("Reaction ~ Days + (Days | Subject)", sleep).fit(method="ml")
    text = str(fit.summary())
    assert "maximum likelihood" in text and "AIC" in text and "1751.9" in text


def test_draws_are_the_point_estimates(slope_fit):
    draws = slope_fit.draws()
    assert draws.point and draws.n_draws == 1
    np.testing.assert_allclose(draws.linear_predictor()[0], slope_fit.fitted())


def test_blas_thread_setting_does_not_change_the_fit(sleep, slope_fit):
    other = Model("Reaction ~ Days + (Days | Subject)", sleep).fit(threads=None)
    np.testing.assert_allclose(other.theta, slope_fit.theta, rtol=1e-10)


def test_bounded_lbfgsb_stops_at_a_trial_point_that_meets_its_gradient_test():
    """A rounding-level wobble in the value must not keep the line search going.

    The value of ``(x - 1)^2`` carries a deterministic wobble of 1e-13 (rounding
    next to the optimum) while the gradient is exact: the run ends at the first
    evaluated point whose projected gradient meets L-BFGS-B's ``gtol``, and says so.
    """
    from hierlm.lmm.fit import _REFUSED, _lbfgsb_to_stationary, _settled

    calls = []

    def value_grad(x):
        calls.append(float(x[0]))
        wobble = 1e-13 * np.sin(1e9 * x[0])
        return float((x[0] - 1.0) ** 2 + wobble), np.array([2.0 * (x[0] - 1.0)])

    options = {"maxiter": 200, "maxfun": 200, "ftol": 1e-12, "gtol": 1e-9, "maxcor": 20}
    res = _lbfgsb_to_stationary(value_grad, np.array([3.0]), [(-5.0, 5.0)], options)
    assert res.success and res.get("stationary", False)
    assert abs(res.x[0] - 1.0) <= 0.5e-9  # |gradient| <= gtol
    assert res.nfev == len(calls) and calls[-1] == res.x[0]
    assert _settled(res, [(-5.0, 5.0)], float(res.fun), 1.0)  # no restart after it

    # a refused trial point (the criterion could not be evaluated) never counts as stationary
    refused = _lbfgsb_to_stationary(
        lambda x: (_REFUSED, np.zeros(1)) if x[0] > 4 else value_grad(x),
        np.array([4.5]), [(-5.0, 5.0)], options)
    assert not refused.get("stationary", False)  # L-BFGS-B's own end (zero gradient at x0)
    assert refused.x[0] == 4.5
