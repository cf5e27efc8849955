"""Formula edge cases lme4 accepts (so hierlm does) or explains (so hierlm says so)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm as hl
from hierlm.errors import FormulaError, HierlmWarning

SLEEP = hl.datasets.load("sleepstudy")


def quiet(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return call()


@pytest.fixture(scope="module")
def base():
    return quiet(lambda: hl.Model("Reaction ~ Days + (Days | Subject)", SLEEP).fit())


def test_redundant_parentheses_around_a_bar(base):
    for formula in ("Reaction ~ Days + ((Days | Subject))", "Reaction ~ Days + (((Days | Subject)))"):
        fit = quiet(lambda f=formula: hl.Model(f, SLEEP).fit())
        assert fit.criterion == pytest.approx(base.criterion, abs=1e-10)
        assert fit.model.random_terms[0].columns == ["Intercept", "Days"]


@pytest.mark.parametrize("name, written", [("my subject", "`my subject`"), ("Sujet_é", "Sujet_é"),
                                           ("受试者", "受试者"), ("subj.id", "subj.id"),
                                           ("2nd-subject", "`2nd-subject`")])
def test_backticked_and_unicode_grouping_names(base, name, written):
    data = SLEEP.rename(columns={"Subject": name})
    fit = quiet(lambda: hl.Model(f"Reaction ~ Days + (Days | {written})", data).fit())
    assert fit.model.random_terms[0].group == name
    assert fit.criterion == pytest.approx(base.criterion, abs=1e-10)


def test_unquoted_name_that_is_not_a_name_is_still_refused():
    with pytest.raises(FormulaError, match="not a column name"):
        hl.Model("Reaction ~ Days + (1 | 2nd-subject)", SLEEP.rename(columns={"Subject": "2nd-subject"}))


def test_r_style_dotted_names_everywhere(base):
    data = SLEEP.rename(columns={"Days": "my.days", "Reaction": "re.action"})
    fit = quiet(lambda: hl.Model("re.action ~ my.days + (my.days | Subject)", data).fit())
    assert fit.model.fixed_names == ["Intercept", "my.days"]
    assert fit.model.random_terms[0].columns == ["Intercept", "my.days"]
    assert fit.criterion == pytest.approx(base.criterion, abs=1e-10)
    # inside transforms too, and for new data
    logged = quiet(lambda: hl.Model(
        "log(re.action) ~ np.log1p(my.days) + I(my.days ** 2) + (1 | Subject)", data).fit())
    reference = quiet(lambda: hl.Model("log(Reaction) ~ np.log1p(Days) + I(Days ** 2) + (1 | Subject)",
                                       SLEEP).fit())
    np.testing.assert_allclose(logged.beta, reference.beta, rtol=1e-9)
    new = logged.model.new_design(data.iloc[:5])
    np.testing.assert_array_equal(new.X, logged.design.X[:5])


def test_dotted_names_that_are_not_columns_are_left_to_formulaic():
    cake = hl.datasets.load("cake")
    fit = quiet(lambda: hl.Model("angle ~ C(recipe, contr.sum) + np.log(temp) + (1 | replicate)",
                                 cake).fit())
    assert fit.model.fixed_names[0] == "Intercept" and len(fit.model.fixed_names) == 4


def test_model_without_fixed_effects_fits_and_summarises():
    fit = quiet(lambda: hl.Model("Reaction ~ 0 + (1 | Subject)", SLEEP).fit())
    assert len(fit.fixef()) == 0 and fit.beta.size == 0
    assert "Reaction ~ 0 + (1 | Subject)" in str(fit.summary())
    assert fit.vcov().shape == (0, 0)
    map_fit = quiet(lambda: hl.Model("Reaction ~ 0 + (1 | Subject)", SLEEP).fit("map"))
    assert len(map_fit.fixef()) == 0


def test_model_without_fixed_effects_has_tables_with_their_columns():
    fit = quiet(lambda: hl.Model("Reaction ~ 0 + (1 | Subject)", SLEEP).fit())
    assert "estimate" in fit.fixef().columns
    assert len(fit.confint()) == 0


@pytest.mark.parametrize("formula, words", [
    ("Reaction ~ . + (1 | Subject)", r"'\.' shorthand .* not supported"),
    ("Reaction ~ Days + (. | Subject)", r"'\.' shorthand .* not supported"),
])
def test_unsupported_lme4_syntax_is_named_as_such(formula, words):
    with pytest.raises(FormulaError, match=words) as info:
        hl.Model(formula, SLEEP)
    assert "not found" not in str(info.value) and "^" in str(info.value)


def test_dots_inside_names_and_numbers_are_not_the_shorthand():
    data = SLEEP.rename(columns={"Days": "d.1"})
    quiet(lambda: hl.Model("Reaction ~ d.1 + I(d.1 * .5) + I(d.1 * 1.5) + (1 | Subject)", data))


@pytest.mark.parametrize("formula", [
    "Reaction ~ Days + (1 | Subject) + (1 | Subject)",
    "Reaction ~ Days + (1 | Subject) + (1 + Days | Subject)",
])
def test_a_repeated_random_effect_warns_that_the_split_is_unidentifiable(formula):
    with pytest.warns(HierlmWarning, match=r"'Intercept' of 'Subject'.*only the sum of their variances"):
        hl.Model(formula, SLEEP)


def test_distinct_terms_of_one_factor_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", HierlmWarning)
        hl.Model("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", SLEEP)
        hl.Model("Reaction ~ Days + (Days || Subject)", SLEEP)
