"""ML/REML fits through ``hierlm.Model(...).fit`` against lme4 / lmerTest.

Acceptance criteria (from the project brief), checked for every fixture in
``tests/fixtures/lme4``:

* fixed effects and sigma: relative 1e-5 (absolute 1e-6 near zero);
* SDs of the variance components: relative 1e-4 (absolute 1e-4 * sigma near zero);
* log-likelihood, REML criterion, deviance, AIC, BIC: absolute 1e-4;
* standard errors (and the whole vcov, scaled by the SDs): relative 1e-4;
* Satterthwaite df: relative 1e-2 (p-values then agree to about the same);
* singular flag equal.

Beyond those: correlations absolute 1e-3, conditional modes and conditional
SDs relative 1e-4 of the term's SD, fitted values and residuals absolute
1e-4 * sigma.

lme4 stops its optimiser (BOBYQA, ``xtol_abs = ftol_abs = 1e-8``) slightly
short of the optimum on two fixtures: Machines with a 3 x 3 correlated term
(criterion 1.1e-6 above the minimum, SEs off by 1.0e-4 relative) and InstEval
(1.3e-6 above, intercept SE off by 1.1e-4). hierlm's criterion is lower on
both, and lme4 run with tight tolerances (``tests/lmm/make_tight_lme4.R``,
output ``tests/lmm/lme4_tight.json``) lands on hierlm's optimum, so for these
two the parameter-level quantities are compared with the tight refit, at the
same tolerances, and the default fixture is only checked for the criterion
and (at 1e-3) the conditional modes.
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from hierlm.errors import SingularFitWarning

from .fixture_models import fixed_name, group_key, model_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"
TIGHT = json.loads((Path(__file__).parent / "lme4_tight.json").read_text())
LOOSE_LME4 = {"machines_corr_reml", "insteval_crossed_reml"}
MODELS = sorted(p.stem for p in FIXTURES.glob("*.json") if not p.stem.startswith("lrt_"))


def _params(models):
    # InstEval (73k rows, crossed) takes about 5 s here including Satterthwaite's
    # df, under the 20 s above which a test is marked slow.
    return list(models)


@cache
def fitted(name):
    fx = json.loads((FIXTURES / f"{name}.json").read_text())
    model = model_for(fx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(method="reml" if fx["reml"] else "ml")
    return fx, fit, caught


def close(actual, expected, rel, abs_):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    return np.all(np.abs(actual - expected) <= np.maximum(rel * np.abs(expected), abs_))


def max_rel(actual, expected):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    return float(np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300)))


@pytest.mark.parametrize("name", _params(MODELS))
def test_criterion_and_information_criteria(name):
    fx, fit, _ = fitted(name)
    assert fit.loglik == pytest.approx(fx["loglik"], abs=1e-4)
    if fx["reml"]:
        assert fit.reml_criterion == pytest.approx(fx["reml_criterion"], abs=1e-4)
    else:
        assert fit.deviance == pytest.approx(fx["deviance"], abs=1e-4)
        assert fit.reml_criterion is None
    assert fit.aic == pytest.approx(fx["aic"], abs=1e-4)
    assert fit.bic == pytest.approx(fx["bic"], abs=1e-4)
    assert fit.n_params == fx["loglik_df"]
    # never worse than lme4's optimum
    assert fit.criterion <= -2 * fx["loglik"] + 1e-7


@pytest.mark.parametrize("name", _params(MODELS))
def test_structure(name):
    fx, fit, caught = fitted(name)
    assert fit.nobs == fx["nobs"]
    assert fit.design.p == fx["X_ncol"]
    assert sum(b.n_levels * b.q for b in fit.design.blocks) == fx["Z_ncol"]
    assert {group_key(g): n for g, n in fit.ngroups.items()} == {
        group_key(g): n for g, n in fx["ngrps"].items()}
    assert fit.is_singular == fx["is_singular"]
    singular_warned = any(issubclass(w.category, SingularFitWarning) for w in caught)
    assert singular_warned == fx["is_singular"]
    assert fit.fit_record.converged
    if fx["is_singular"]:
        assert fit.fit_record.boundary  # exactly on the bound, as lme4
        assert np.any(fit.theta[np.isfinite(fit.kernel.lower)] == 0.0)


def _reference(name, fx):
    """Estimates, SEs, dfs and variance-component SD/cor to compare against."""
    names = [fixed_name(r["term"]) for r in fx["fixef"]]
    if name in LOOSE_LME4:
        t = TIGHT[name]
        return (names, np.array(t["estimate"]), np.array(t["std_error"]), np.array(t["df"]),
                t["sigma"], np.array(t["varcorr_sdcor"]))
    return (names, np.array([r["estimate"] for r in fx["fixef"]]),
            np.array([r["std_error"] for r in fx["fixef"]]),
            np.array([r["df"] for r in fx["fixef"]]), fx["sigma"],
            np.array([r["sdcor"] for r in fx["varcorr"]]))


@pytest.mark.parametrize("name", _params(MODELS))
def test_fixed_effects(name):
    fx, fit, _ = fitted(name)
    names, estimate, std_error, df, sigma, _ = _reference(name, fx)
    table = fit.fixef()
    assert list(table.index) == names
    assert close(table["estimate"], estimate, 1e-5, 1e-6), max_rel(table["estimate"], estimate)
    assert close(table["std_error"], std_error, 1e-4, 0.0), max_rel(table["std_error"], std_error)
    assert close(table["df"], df, 1e-2, 0.0), max_rel(table["df"], df)
    assert fit.sigma == pytest.approx(sigma, rel=1e-5)
    if name not in LOOSE_LME4:
        p_ref = np.array([r["p_value"] for r in fx["fixef"]])
        assert close(table["p_value"], p_ref, 2e-2, 1e-300)
        t_ref = np.array([r["t_value"] for r in fx["fixef"]])
        assert close(table["t_value"], t_ref, 1e-4, 1e-6)
        ref = np.array(fx["vcov"]["matrix"])
        scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
        assert np.max(np.abs(fit.vcov().to_numpy() - ref) / scale) < 2e-4


@pytest.mark.parametrize("name", _params(MODELS))
def test_variance_components(name):
    fx, fit, _ = fitted(name)
    *_, sigma, sdcor = _reference(name, fx)
    ours = fit.varcorr()
    assert len(ours) == len(fx["varcorr"])
    for row, ref, value in zip(ours.itertuples(), fx["varcorr"], sdcor, strict=True):
        assert group_key(row.group) == group_key(ref["grp"])
        assert (row.term1 or None) == (fixed_name(ref["var1"]) if ref["var1"] else None)
        assert (row.term2 or None) == (fixed_name(ref["var2"]) if ref["var2"] else None)
        if ref["var2"] is None:  # an SD
            assert row.estimate == pytest.approx(value, rel=1e-4, abs=1e-4 * sigma)
        else:  # a correlation
            assert row.estimate == pytest.approx(value, abs=1e-3)


def _level_key(label):
    return frozenset(str(label).split(":"))


@pytest.mark.parametrize("name", _params(MODELS))
def test_conditional_modes_and_variances(name):
    fx, fit, _ = fitted(name)
    rel = 1e-3 if name in LOOSE_LME4 else 1e-4
    ours = fit.ranef(wide=True)
    sds = {(row.group, row.term1): row.estimate for row in fit.varcorr().itertuples()
           if row.term2 is None}
    cond_var = fit.cond_var()
    for ref in fx["ranef"]:
        group = next(g for g in ours if group_key(g) == group_key(ref["group"]))
        frame = ours[group]
        position = {_level_key(level): i for i, level in enumerate(frame.index)}
        order = [position[_level_key(level)] for level in ref["levels"]]
        modes = np.array(ref["modes"])
        for j, term in enumerate(ref["terms"]):
            column = fixed_name(term)
            scale = max(v for (g, t), v in sds.items() if t == column
                        and group_key(g.split(".")[0]) == group_key(ref["group"]))
            np.testing.assert_allclose(frame[column].to_numpy()[order], modes[:, j],
                                       rtol=0, atol=rel * max(scale, 1e-4 * fit.sigma))
        for block in ref.get("condvar_blocks", []):
            columns = [fixed_name(c) for c in block["columns"]]
            label = next(lab for lab, b in zip(cond_var, fit.design.blocks, strict=True)
                         if group_key(b.group) == group_key(ref["group"])
                         and list(b.columns) == columns)
            ours_cv = cond_var[label][order]
            np.testing.assert_allclose(ours_cv, np.array(block["matrices"]), rtol=10 * rel,
                                       atol=rel * fit.sigma ** 2 * 1e-2)


@pytest.mark.parametrize("name", _params(MODELS))
def test_fitted_and_residuals(name):
    fx, fit, _ = fitted(name)
    head = len(fx["fitted_head"])
    np.testing.assert_allclose(fit.fitted()[:head], fx["fitted_head"], rtol=0,
                               atol=1e-4 * fit.sigma)
    np.testing.assert_allclose(fit.residuals()[:head], fx["residuals_head"], rtol=0,
                               atol=1e-4 * fit.sigma)
    np.testing.assert_allclose(fit.predict()["estimate"].to_numpy()[:head], fx["fitted_head"], rtol=0,
                               atol=1e-4 * fit.sigma)


@pytest.mark.parametrize("name", _params(sorted(LOOSE_LME4)))
def test_tight_lme4_optimum_is_ours(name):
    _, fit, _ = fitted(name)
    tight = TIGHT[name]
    assert fit.criterion == pytest.approx(tight["criterion"], abs=1e-7)
    np.testing.assert_allclose(fit.theta, tight["theta"], rtol=2e-5, atol=1e-6)
