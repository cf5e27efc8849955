"""F-tests of fixed-effect terms against lmerTest's anova() (type I and III, Satterthwaite).

Fixture: ``tests/fixtures/lmertest/anova.json`` from ``make_anova.R`` (versions inside).
Tolerances (relative): F value and sums of squares 1e-5, DenDF and p 1e-4. The df depend
on the numerical Hessian of the variance parameters, which lmerTest and we compute by
different finite differences, and the optimum itself agrees to about 1e-6; measured
worst cases over the 16 tables: F 1.4e-6, df 2.3e-6, sums of squares 2.7e-6, p 1.9e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.design.terms import contained_in, fixed_terms
from hierlm.errors import FitError, InputTypeError
from hierlm.lmm.ftests import combine_df, f_test, type1_contrasts, type3_contrasts

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "lmertest" / "anova.json").read_text()
)
MODELS = {m["id"]: m for m in FIXTURE["models"]}


def _data(name: str) -> pd.DataFrame:
    if name == "cake_unbalanced":
        cake = hl.datasets.load("cake")
        data = cake.drop(index=cake.index[::7]).copy()
        early = data["replicate"].astype(int) <= 8
        data["replicate_half"] = np.where(early, "early", "late")
        return data
    return hl.datasets.load(name)


def _fit(model_id: str):
    spec = MODELS[model_id]
    return hl.Model(spec["formula"], _data(spec["data"])).fit("reml" if spec["reml"] else "ml")


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    return MODELS[request.param], _fit(request.param)


@pytest.mark.parametrize("kind", [1, 2, 3])
def test_tables_match_lmertest(case, kind):
    spec, fit = case
    if f"type{kind}" not in spec:
        with pytest.raises(FitError, match="type III tests need treatment-coded factors"):
            fit.anova(type=kind)
        return
    ours = fit.anova(type=kind).table
    theirs = spec[f"type{kind}"]
    assert len(ours) == len(theirs), [row["term"] for row in theirs]
    for (term, row), ref in zip(ours.iterrows(), theirs, strict=True):
        # R orders the variables of an interaction by their first appearance in the formula
        assert set(term.replace(" ", "").replace("**", "^").split(":")) == set(
            ref["term"].replace(" ", "").split(":")
        )
        assert row["NumDF"] == ref["num_df"], term
        np.testing.assert_allclose(row["F value"], ref["f_value"], rtol=1e-5, err_msg=term)
        np.testing.assert_allclose(row["Sum Sq"], ref["sum_sq"], rtol=1e-5, err_msg=term)
        np.testing.assert_allclose(row["DenDF"], ref["den_df"], rtol=1e-4, err_msg=term)
        np.testing.assert_allclose(row["Pr(>F)"], ref["p_value"], rtol=1e-4, atol=1e-300, err_msg=term)


def test_unbalanced_design_separates_type_one_and_three():
    """The fixture's types differ on unbalanced data, so agreement above is not by coincidence."""
    spec = MODELS["cake_unbalanced_numeric_by_factor"]
    first = [row["f_value"] for row in spec["type1"]]
    second = [row["f_value"] for row in spec["type2"]]
    third = [row["f_value"] for row in spec["type3"]]
    assert abs(first[0] - third[0]) > 1e-3 * abs(first[0])
    # temp is contained in recipe:temp: type II leaves the interaction out, type III does not
    assert abs(second[1] - third[1]) > 1e-4 * abs(third[1])  # 8e-4 here; F is tested to 1e-5


def test_one_df_term_is_the_squared_t_test():
    fit = _fit("sleep_single_term")
    row = fit.anova().table.loc["Days"]
    test = fit.contrast({"Days": 1.0})
    assert row["F value"] == pytest.approx(test["t_value"] ** 2, rel=1e-10)
    assert row["DenDF"] == pytest.approx(test["df"], rel=1e-10)
    assert row["Pr(>F)"] == pytest.approx(test["p_value"], rel=1e-8)


def test_type_three_main_effect_is_orthogonal_to_its_interaction():
    """For recipe * temp, the recipe hypotheses have no weight on the recipe:temp columns' span
    beyond what orthogonalisation leaves, and the interaction is tested by its own columns."""
    fit = _fit("cake_unbalanced_numeric_by_factor")
    contrasts = fit.anova(type=3).contrasts
    names = list(fit.design.fixed_names)
    interaction = contrasts["recipe:temp"]
    expected = np.zeros((2, len(names)))
    expected[0, names.index("recipeB:temp")] = 1.0
    expected[1, names.index("recipeC:temp")] = 1.0
    np.testing.assert_allclose(interaction, expected, atol=1e-12)


def test_containment_rule():
    cake = hl.datasets.load("cake")
    model = hl.Model("angle ~ temp + recipe:temp + recipe + (1 | replicate)", cake)
    terms, intercept = fixed_terms(model.spec, model.data)
    by_name = {t.name: t for t in terms}
    assert intercept == 0
    assert contained_in(by_name["temp"], by_name["recipe:temp"])
    assert not contained_in(by_name["recipe"], by_name["recipe:temp"])
    assert by_name["recipe"].overparameterised.shape[1] == 3  # all levels, no reference dropped
    assert by_name["recipe"].numeric == frozenset() and by_name["temp"].numeric == {"temp"}
    # without the recipe main effect, temp's margin in recipe:temp is missing (R marks it 2)
    slopes = hl.Model("angle ~ temp + recipe:temp + (1 | replicate)", cake)
    terms, _ = fixed_terms(slopes.spec, slopes.data)
    assert terms[1].marginal == {"recipe"} and not contained_in(terms[0], terms[1])


def test_combine_df_rules():
    assert combine_df(np.array([7.5])) == 7.5
    assert combine_df(np.array([12.0, 12.0, 12.0])) == 12.0
    assert combine_df(np.array([1.5, 30.0])) == 2.0
    nu = np.array([10.0, 20.0])
    expected = 2 * (10 / 8 + 20 / 18) / ((10 / 8 + 20 / 18) - 2)
    assert combine_df(nu) == pytest.approx(expected)


def test_f_statistic_is_the_wald_quadratic_form():
    fit = _fit("cake_factorial")
    names = list(fit.design.fixed_names)
    columns = [names.index(n) for n in names if n.startswith("temperature")]
    contrast = np.eye(len(names))[columns]
    f_value, num_df, _ = f_test(fit.varpar_covariance, fit.beta, contrast)
    estimate = contrast @ fit.beta
    vcov = contrast @ fit.vcov().to_numpy() @ contrast.T
    assert num_df == 5
    assert f_value == pytest.approx(estimate @ np.linalg.solve(vcov, estimate) / 5, rel=1e-8)


def test_type_one_depends_on_order_and_type_three_does_not():
    data = _data("cake_unbalanced")
    forward = hl.Model("angle ~ recipe + temp + (1 | replicate)", data).fit()
    backward = hl.Model("angle ~ temp + recipe + (1 | replicate)", data).fit()
    f1, b1 = forward.anova(type=1).table, backward.anova(type=1).table
    f3, b3 = forward.anova(type=3).table, backward.anova(type=3).table
    assert abs(f1.loc["recipe", "F value"] - b1.loc["recipe", "F value"]) > 1e-6
    # the two fits are separate optimisations, equal to about 1e-7
    np.testing.assert_allclose(f3.loc["recipe"], b3.loc["recipe"], rtol=1e-6)
    # the last term of a type I table is adjusted for everything: its type III test
    np.testing.assert_allclose(f1.loc["temp"], f3.loc["temp"], rtol=1e-6)


def test_contrast_builders_on_a_small_design():
    """X = [1, a2, x] (treatment-coded a with two levels): type I of a is the first unit row."""
    rng = np.random.default_rng(0)
    a = np.repeat([0, 1], 5)
    x = rng.normal(size=10)
    X = np.column_stack([np.ones(10), a, x])
    from hierlm.design.terms import FixedTerm

    terms = [
        FixedTerm("a", ("a",), frozenset({"a"}), frozenset(), (1,), np.column_stack([1 - a, a]) * 1.0),
        FixedTerm("x", ("x",), frozenset({"x"}), frozenset({"x"}), (2,), x[:, None]),
    ]
    first = type1_contrasts(X, terms)
    R = np.linalg.cholesky(X.T @ X).T
    np.testing.assert_allclose(first[0], (R[1] / R[1, 1])[None, :], atol=1e-12)
    third = type3_contrasts(X, terms, intercept=0)
    np.testing.assert_allclose(third[0], [[0.0, 1.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(third[1], [[0.0, 0.0, 1.0]], atol=1e-12)


def test_errors():
    fit = _fit("sleep_single_term")
    with pytest.raises(InputTypeError, match="type=4"):
        fit.anova(type=4)
    bare = hl.lmm.fit_lmm(fit.design)
    with pytest.raises(FitError, match="fit a hierlm.Model, not a bare Design"):
        bare.anova()
