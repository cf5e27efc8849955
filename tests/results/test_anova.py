"""Likelihood-ratio tests against lme4's ``anova`` (fixtures ``lrt_*.json``).

Tolerances: logLik, deviance, AIC, BIC and Chisq absolute 1e-4 (the
brief's criterion for log-likelihoods); p-values relative 1e-4.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierlm.datasets as datasets
from hierlm.errors import DataError, FitError, HierlmWarning
from hierlm.model import Model
from hierlm.results.anova import anova, mixture_pvalue

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"


@pytest.mark.parametrize("name", ["lrt_sleep", "lrt_pastes"])
def test_matches_lme4(name):
    fx = json.loads((FIXTURES / f"{name}.json").read_text())
    data = datasets.load(fx["dataset"])
    small = Model(fx["small"], data).fit()
    big = Model(fx["big"], data).fit()
    with pytest.warns(HierlmWarning, match=r"refitting model\(s\) with ML \(instead of REML\)"):
        result = anova(big, small)  # order does not matter
    assert result.refitted
    for ref, (_, row) in zip(fx["rows"], result.table.iterrows(), strict=True):
        assert row["npar"] == ref["npar"]
        for key in ("AIC", "BIC", "logLik", "deviance"):
            assert row[key] == pytest.approx(ref[key], abs=1e-4)
    ref = fx["rows"][1]
    assert result.statistic == pytest.approx(ref["Chisq"], abs=1e-4)
    assert result.df == ref["Df"]
    assert result.p_value == pytest.approx(ref["p_value"], rel=1e-4)
    assert result.p_boundary == pytest.approx(mixture_pvalue(result.statistic, result.df))
    assert result.p_boundary < result.p_value
    assert "50:50 mixture" in str(result)


def test_mixture_pvalue():
    assert mixture_pvalue(2.0, 1) == pytest.approx(0.5 * stats.chi2.sf(2.0, 1))
    assert mixture_pvalue(0.0, 1) == pytest.approx(1.0)
    assert mixture_pvalue(3.0, 2) == pytest.approx(
        0.5 * stats.chi2.sf(3.0, 1) + 0.5 * stats.chi2.sf(3.0, 2))
    with pytest.raises(FitError):
        mixture_pvalue(1.0, 0)


def test_fixed_effect_only_difference_has_no_boundary_correction():
    data = datasets.load("sleepstudy")
    small = Model("Reaction ~ 1 + (1 | Subject)", data).fit(method="ml")
    big = Model("Reaction ~ Days + (1 | Subject)", data).fit(method="ml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ML fits: no refit message
        result = anova(small, big)
    assert not result.refitted and result.p_boundary is None
    assert "no variance parameter" in result.method
    assert result.statistic == pytest.approx(-2 * (small.loglik - big.loglik))


def test_several_added_variances_are_labelled_approximate():
    data = datasets.load("Penicillin")
    small = Model("diameter ~ 1 + (1 | plate)", data).fit(method="ml")
    big = Model("diameter ~ 1 + (1 | plate) + (1 | sample)", data).fit(method="ml")
    assert "approximation" not in anova(small, big).method
    data = datasets.load("Pastes")
    small = Model("strength ~ 1 + (1 | batch)", data).fit(method="ml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cask variance may be singular
        big = Model("strength ~ 1 + (1 | batch) + (1 | sample) + (1 | cask)", data).fit(
            method="ml")
    result = anova(small, big)
    assert result.df == 2 and "approximation" in result.method


def test_errors():
    data = datasets.load("sleepstudy")
    a = Model("Reaction ~ Days + (1 | Subject)", data).fit(method="ml")
    b = Model("Reaction ~ Days + (1 | Subject)", data.iloc[:170]).fit(method="ml")
    with pytest.raises(DataError, match="different numbers of observations"):
        anova(a, b)
    c = Model("Reaction ~ 1 + (Days || Subject)", data).fit(method="ml")
    d = Model("Reaction ~ Days + (1 | Subject)", data).fit(method="ml")
    with pytest.raises(FitError, match="not nested"):
        anova(c.refit(reml=False), d)
    other = data.assign(Reaction=np.asarray(data["Reaction"]) + 1.0)
    e = Model("Reaction ~ Days + (Days | Subject)", other).fit(method="ml")
    with pytest.raises(DataError, match="different responses"):
        anova(a, e)
    with pytest.raises(Exception, match="LmmResult"):
        anova(a, pd.DataFrame())


def test_one_fit_gives_its_f_table():
    """hl.anova(fit) is fit.anova(): lmerTest's anova(fit) (checked in tests/lmm/test_ftests.py)."""
    fit = Model("angle ~ recipe * temp + (1 | replicate)", datasets.load("cake")).fit()
    table = anova(fit)
    pd.testing.assert_frame_equal(table.table, fit.anova().table)
    assert list(anova(fit, type=1).table.index) == ["recipe", "temp", "recipe:temp"]
    assert str(table).startswith("Type III Analysis of Variance Table with Satterthwaite's method")
    with pytest.raises(TypeError, match=r"anova\(fit\) tests the terms of an ML/REML fit"):
        anova("not a fit")


# ------------------------------------------------------------------ GLMMs (issue 14)
GLMM_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "glmm_downstream" / "glmm_downstream.json"
GLMM_FORMULAS = {
    "cbpp": "cbind(incidence, size - incidence) ~ period + (1 | herd)",
    "cbpp_null": "cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
    "grouseticks": "TICKS ~ YEAR + cHEIGHT + (1 | INDEX) + (1 | BROOD) + (1 | LOCATION)",
    "grouseticks_no_height": "TICKS ~ YEAR + (1 | INDEX) + (1 | BROOD) + (1 | LOCATION)",
}


def _glmm(name: str, link: str | None = None):
    data = datasets.cbpp() if name.startswith("cbpp") else datasets.grouseticks()
    family = "binomial" if name.startswith("cbpp") else "poisson"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return Model(GLMM_FORMULAS[name], data, family=family, link=link).fit("ml")


@pytest.mark.parametrize("case", ["cbpp_period", "grouseticks_height"])
def test_glmm_likelihood_ratio_matches_glmer(case):
    """anova(glmer0, glmer1): logLik/AIC/BIC/deviance within 1e-3 absolute (our Laplace optimum
    is at or above glmer's, whose PIRLS stops early: up to 5.6e-4 in deviance), Chisq within
    1e-3, p rel 1e-3."""
    ref = json.loads(GLMM_FIXTURE.read_text(encoding="utf-8"))["anova"][case]
    result = anova(_glmm(ref["big"]), _glmm(ref["small"]))
    assert not result.refitted
    for theirs, (_, row) in zip(ref["table"], result.table.iterrows(), strict=True):
        assert row["npar"] == theirs["npar"]
        for key in ("AIC", "BIC", "logLik", "deviance"):
            assert row[key] == pytest.approx(theirs[key], abs=1e-3), key
    theirs = ref["table"][1]
    assert result.df == theirs["Df"]
    assert result.statistic == pytest.approx(theirs["Chisq"], abs=1e-3)
    assert result.p_value == pytest.approx(theirs["Pr(>Chisq)"], rel=1e-3)


def test_glmm_comparisons_across_families_or_links_are_refused():
    from hierlm.errors import FamilyError

    binomial = _glmm("cbpp")
    with pytest.raises(FamilyError, match=r"different links \(logit and probit\)"):
        anova(_glmm("cbpp_null"), _glmm("cbpp", link="probit"))
    data = datasets.cbpp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        counts = Model("incidence ~ period + (1 | herd)", data, family="poisson").fit("ml")
        gaussian_reml = Model("incidence ~ 1 + (1 | herd)", data).fit()
    with pytest.raises(FamilyError, match=r"different families \(poisson and binomial\)"):
        anova(counts, binomial)
    with pytest.raises(FamilyError, match=r"gaussian and poisson.*REML is Gaussian-only"):
        anova(gaussian_reml, counts)


def test_glmm_different_quadrature_is_flagged():
    laplace = _glmm("cbpp_null")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        agq = laplace.refit(nagq=9)
    with pytest.warns(HierlmWarning, match=r"nagq=9 and 1"):
        anova(agq, _glmm("cbpp"))
