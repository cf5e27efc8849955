"""Likelihood-ratio tests and confidence intervals of GLMM fits against lme4 (cbpp).

References: ``tests/fixtures/glmm_inference`` (script beside it). The LRT statistic
is within 0.01 (twice the log-likelihood tolerance); profile bounds within 1e-3
absolute (lme4's profile is interpolated on a grid of its own deviance surface,
itself 5e-4 from the exact Laplace one, see tests/glmm/test_fit.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import hierlm as hl
from tests.glmm.reference import data_of, fitted, fixture


def _pair():
    big = fitted("glmer/cbpp_binomial_laplace")
    ref = fixture("glmer/cbpp_binomial_laplace")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        small = hl.Model("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", data_of(ref),
                         family="binomial").fit("ml")
    return small, big


def test_likelihood_ratio_test() -> None:
    ref = fixture("glmm_inference/cbpp_binomial_inference")["lrt"]
    small, big = _pair()
    table = hl.anova(small, big).table
    assert table["Chisq"].iloc[1] == pytest.approx(ref["chisq"], abs=0.01)
    assert table["Df"].iloc[1] == ref["df"]
    assert table["p_value"].iloc[1] == pytest.approx(ref["p_value"], rel=1e-3)
    assert table["logLik"].iloc[0] == pytest.approx(ref["loglik_small"], abs=0.01)


def test_wald_intervals() -> None:
    fit = fitted("glmer/cbpp_binomial_laplace")
    ci = fit.confint(level=0.9)
    z = stats.norm.ppf(0.95)
    se = fit.fixef()["std_error"].to_numpy()
    np.testing.assert_allclose(ci["lower"], fit.beta - z * se, rtol=1e-12)
    np.testing.assert_allclose(ci["upper"], fit.beta + z * se, rtol=1e-12)


@pytest.mark.slow
def test_profile_intervals() -> None:
    ref = fixture("glmm_inference/cbpp_binomial_inference")["profile"]
    fit = fitted("glmer/cbpp_binomial_laplace")
    ci = fit.confint(method="profile")
    assert list(ci.index) == ["sd_(Intercept)|herd", "Intercept", "period2", "period3", "period4"]
    np.testing.assert_allclose(ci["lower"], ref["lower"], atol=1e-3)
    np.testing.assert_allclose(ci["upper"], ref["upper"], atol=1e-3)
