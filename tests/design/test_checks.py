"""hierlm.design.checks: bad input is refused early, with our own errors that name the culprit."""

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.design import checks
from hierlm.errors import (
    ColumnNotFoundError,
    DataError,
    FamilyError,
    FormulaError,
    HierlmError,
    HierlmWarning,
    InputTypeError,
    MissingDataWarning,
    RankDeficientError,
)


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return hl.datasets.load("sleepstudy")


def raises(error, formula, data, **kwargs):
    """Build the model and return the exception, checking it is one of ours."""
    with pytest.raises(error) as info:
        hl.Model(formula, data, **kwargs)
    assert isinstance(info.value, HierlmError)
    return str(info.value)


# ---------------------------------------------------------------- columns


@pytest.mark.parametrize(
    ("formula", "missing", "suggestion"),
    [
        ("Reaction ~ Dayz + (1 | Subject)", "Dayz", "Days"),
        ("Reaction ~ Days + (1 | Subjct)", "Subjct", "Subject"),
        ("Reaction ~ Days + (Dayz | Subject)", "Dayz", "Days"),
        ("Reaction ~ np.log(Dayz + 1) + (1 | Subject)", "Dayz", "Days"),
        ("Reactoin ~ Days + (1 | Subject)", "Reactoin", "Reaction"),
    ],
)
def test_unknown_column_with_did_you_mean(sleep, formula, missing, suggestion):
    message = raises(ColumnNotFoundError, formula, sleep)
    assert f"Column {missing!r}" in message
    assert f"Did you mean {suggestion!r}" in message
    assert isinstance(ColumnNotFoundError("x"), KeyError)


def test_unknown_column_without_a_close_match(sleep):
    message = raises(ColumnNotFoundError, "Reaction ~ qqq + (1 | Subject)", sleep)
    assert "'qqq'" in message and "Did you mean" not in message
    assert "'Days'" in message  # lists what is there


def test_require_columns_directly():
    frame = pd.DataFrame({"alpha": [1], "beta": [2]})
    checks.require_columns(frame, ["alpha"], "here")
    with pytest.raises(ColumnNotFoundError, match=r"'alhpa' used in here.*Did you mean 'alpha'"):
        checks.require_columns(frame, ["alpha", "alhpa"], "here")


# ---------------------------------------------------------------- formula syntax (through Model)


def caret_column(message: str, text: str) -> int:
    lines = message.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() == text and "^" in lines[i + 1]:
            return lines[i + 1].index("^") - (len(line) - len(line.lstrip()))
    raise AssertionError(f"no caret line under {text!r} in:\n{message}")


def test_bar_syntax_error_has_a_caret(sleep):
    formula = "Reaction ~ Days + (1 | Subject"
    message = raises(FormulaError, formula, sleep)
    assert caret_column(message, formula) == formula.index("(")


def test_fixed_part_syntax_error_has_a_caret(sleep):
    message = raises(FormulaError, "Reaction ~ Days + * Days + (1 | Subject)", sleep)
    assert caret_column(message, "Days + * Days") == len("Days ")


def test_python_syntax_error_in_a_term_is_our_error(sleep):
    # used to escape as a bare SyntaxError from inside formulaic
    message = raises(FormulaError, "Reaction ~ I(Days**) + (1 | Subject)", sleep)
    assert caret_column(message, "I(Days**)") == len("I(Days**")
    message = raises(FormulaError, "Reaction ~ Days + (I(Days**) | Subject)", sleep)
    assert "I(Days**)" in message


def test_unknown_function_is_named(sleep):
    message = raises(FormulaError, "Reaction ~ np.lg(Days) + (1 | Subject)", sleep)
    assert "np.lg" in message


def test_bar_with_no_columns(sleep):
    message = raises(FormulaError, "Reaction ~ Days + (0 | Subject)", sleep)
    assert "(0 | Subject)" in message


# ---------------------------------------------------------------- response and values


def test_non_numeric_response(sleep):
    data = sleep.assign(label=sleep.Reaction.round().astype(int).astype(str))
    message = raises(DataError, "label ~ Days + (1 | Subject)", data)
    assert "'label'" in message and "not numeric" in message


def test_categorical_response(sleep):
    message = raises(DataError, "Subject ~ Days + (1 | Subject)", sleep)
    assert "'Subject'" in message


def test_boolean_response_is_numeric(sleep):
    m = hl.Model("hi ~ Days + (1 | Subject)", sleep.assign(hi=sleep.Reaction > 300))
    np.testing.assert_allclose(m.design.y, (sleep.Reaction > 300).astype(float))


def test_missing_values_are_dropped_with_a_warning_that_counts(sleep):
    data = sleep.astype({"Days": float})
    data.loc[[0, 5, 7], "Days"] = np.nan
    data.loc[[5, 9], "Reaction"] = np.nan
    with pytest.warns(MissingDataWarning) as record:
        m = hl.Model("Reaction ~ Days + (1 | Subject)", data)
    message = str(record[0].message)
    assert "4 of 180" in message
    assert "'Days': 3" in message and "'Reaction': 2" in message
    assert m.nobs == 176
    kept = ~data.index.isin([0, 5, 7, 9])
    np.testing.assert_allclose(m.design.y, data.Reaction[kept])
    np.testing.assert_allclose(m.design.X[:, 1], data.Days[kept])


def test_missing_values_in_unused_columns_are_ignored(sleep):
    data = sleep.assign(other=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = hl.Model("Reaction ~ Days + (1 | Subject)", data)
    assert m.nobs == 180


def test_missing_grouping_value_is_dropped(sleep):
    data = sleep.assign(Subject=sleep.Subject.astype(object).where(sleep.index != 3))
    with pytest.warns(MissingDataWarning, match="'Subject': 1"):
        m = hl.Model("Reaction ~ Days + (1 | Subject)", data)
    assert m.nobs == 179


def test_na_action_raise(sleep):
    data = sleep.astype({"Days": float})
    data.loc[[2, 3], "Days"] = np.nan
    message = raises(DataError, "Reaction ~ Days + (1 | Subject)", data, na_action="raise")
    assert "2 row(s)" in message and "'Days'" in message


def test_bad_na_action(sleep):
    message = raises(InputTypeError, "Reaction ~ Days + (1 | Subject)", sleep, na_action="drop")
    assert "'drop'" in message


def test_nothing_left_after_dropping_missing_rows(sleep):
    message = raises(DataError, "Reaction ~ Days + (1 | Subject)", sleep.assign(Reaction=np.nan))
    assert "No rows" in message and "'Reaction': 180" in message


def test_empty_frame(sleep):
    message = raises(DataError, "Reaction ~ Days + (1 | Subject)", sleep.iloc[:0])
    assert "no rows" in message


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_non_finite_values(sleep, bad):
    data = sleep.astype({"Days": float})
    data.loc[7, "Days"] = bad
    message = raises(DataError, "Reaction ~ Days + (1 | Subject)", data)
    assert "'Days'" in message and "non-finite" in message and "row 7" in message


def test_non_finite_response(sleep):
    data = sleep.copy()
    data.loc[0, "Reaction"] = np.inf
    message = raises(DataError, "Reaction ~ Days + (1 | Subject)", data)
    assert "'Reaction'" in message


# ---------------------------------------------------------------- grouping factors


def test_grouping_factor_with_one_level(sleep):
    message = raises(DataError, "Reaction ~ Days + (1 | site)", sleep.assign(site="only"))
    assert "'site'" in message and "only 1 level" in message


def test_grouping_factor_with_as_many_levels_as_rows(sleep):
    data = sleep.assign(row=[f"r{i}" for i in range(len(sleep))])
    message = raises(DataError, "Reaction ~ Days + (1 | row)", data)
    assert "'row'" in message and "180 levels for 180 observations" in message


def test_more_random_effects_than_rows(sleep):
    data = sleep.assign(pair=np.arange(180) // 2)
    message = raises(DataError, "Reaction ~ Days + (Days | pair)", data)
    assert "(Days | pair)" in message and "180 random effects" in message


def test_continuous_grouping_variable_warns():
    rng = np.random.default_rng(0)
    values = np.round(rng.uniform(0, 1000, size=3000), 1)  # thousands of distinct values
    data = pd.DataFrame({"y": rng.normal(size=6000), "dose": np.tile(values, 2)})
    with pytest.warns(HierlmWarning, match=r"'dose'.*looks continuous") as record:
        m = hl.Model("y ~ 1 + (1 | dose)", data)
    assert m.random_terms[0].n_levels > 2000
    assert f"({m.random_terms[0].n_levels} distinct" in str(record[0].message)


def test_integer_grouping_ids_do_not_warn(sleep):
    data = sleep.assign(Subject=sleep.Subject.astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = hl.Model("Reaction ~ Days + (1 | Subject)", data)
    assert m.random_terms[0].n_levels == 18


# ---------------------------------------------------------------- rank


def test_rank_deficiency_names_the_later_column(sleep):
    data = sleep.assign(Days2=2.0 * sleep.Days)
    message = raises(RankDeficientError, "Reaction ~ Days + Days2 + (1 | Subject)", data,
                     drop_aliased=False)
    assert "'Days2'" in message and "'Days'" not in message.replace("'Days2'", "")


def test_rank_deficiency_from_a_constant_predictor_names_it(sleep):
    message = raises(RankDeficientError, "Reaction ~ Days + const + (1 | Subject)", sleep.assign(const=3.0),
                     drop_aliased=False)
    assert "'const'" in message and "'Intercept'" not in message


def test_rank_deficiency_from_an_empty_cell(sleep):
    df = pd.DataFrame({
        "y": np.arange(8.0),
        "f": ["a", "a", "b", "b", "a", "a", "b", "b"],
        "h": ["u", "v", "u", "u", "u", "v", "u", "u"],  # no row has f == "b" and h == "v"
        "g": ["p", "q"] * 4,
    })
    message = raises(RankDeficientError, "y ~ f * h + (1 | g)", df, drop_aliased=False)
    assert "'fb:hv'" in message and "'fb'," not in message


def test_aliased_columns_directly():
    x = np.arange(6.0)
    matrix = np.column_stack([np.ones(6), x, 3 * x - 1, x**2, np.zeros(6)])
    assert checks.aliased_columns(matrix, ("one", "x", "lin", "sq", "zero")) == ["lin", "zero"]
    assert checks.aliased_columns(matrix[:, [0, 1, 3]], ("one", "x", "sq")) == []
    assert checks.aliased_columns(np.empty((5, 0)), ()) == []


def test_nearly_collinear_but_full_rank_columns_pass():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    matrix = np.column_stack([np.ones(50), x, x + 1e-4 * rng.normal(size=50)])
    assert checks.aliased_columns(matrix, ("1", "x", "x2")) == []


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("bad", [{"Reaction": [1.0, 2.0]}, np.zeros((3, 3)), [1, 2, 3], None])
def test_data_must_be_a_dataframe(bad):
    with pytest.raises(InputTypeError, match=type(bad).__name__) as info:
        hl.Model("Reaction ~ Days + (1 | Subject)", bad)
    assert isinstance(info.value, TypeError)


def test_unknown_family(sleep):
    message = raises(FamilyError, "Reaction ~ Days + (1 | Subject)", sleep, family="gamma")
    assert "'gamma'" in message and "negative_binomial" in message


def test_bad_reference_level(sleep):
    message = raises(DataError, "Reaction ~ Days + Subject", sleep, reference={"Subject": "999"})
    assert "'999'" in message and "'Subject'" in message and "308" in message


def test_reference_for_an_unknown_column(sleep):
    message = raises(ColumnNotFoundError, "Reaction ~ Days + Subject", sleep, reference={"Subjet": 308})
    assert "'Subjet'" in message and "Did you mean 'Subject'" in message


def test_checks_run_before_any_matrix_is_built(sleep, monkeypatch):
    import hierlm.design.materialize as materialize_module
    import hierlm.design.response as response_module
    import hierlm.design.spec as spec_module

    def boom(*args, **kwargs):
        raise AssertionError("a matrix was built before the data were checked")

    for module in (spec_module, materialize_module, response_module):  # each binds _materialize
        monkeypatch.setattr(module, "_materialize", boom)
    for formula, data in [
        ("Reaction ~ Dayz + (1 | Subject)", sleep),
        ("Reaction ~ Days + (1 | Subject)", sleep.assign(Reaction=np.inf)),
        ("Subject ~ Days + (1 | Subject)", sleep),
    ]:
        with pytest.raises(HierlmError):
            hl.Model(formula, data)
