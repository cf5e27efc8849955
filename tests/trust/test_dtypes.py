"""Column types: R's rules (double precision, exact ID labels, factors from text) or a clear refusal.

Each test states the right behaviour for one dtype that used to give a wrong
answer or a foreign traceback: the number a correct model gives, or an error
of ours naming the column and the fix.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.design.frame import column_kind, group_labels
from hierlm.errors import DataError, HierlmError

SLEEP = hl.datasets.load("sleepstudy")


def quiet_model(formula: str, data: pd.DataFrame, **kw) -> hl.Model:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return hl.Model(formula, data, **kw)


# ------------------------------------------------------------- grouping IDs


def test_integer_ids_above_2_53_stay_distinct_groups():
    codes = SLEEP["Subject"].cat.codes.to_numpy(dtype=np.int64)
    data = SLEEP.assign(id=np.int64(2**53) + codes)  # 2**53 + 1 == 2**53 as a float
    model = quiet_model("Reaction ~ Days + (1 | id)", data)
    assert model.random_terms[0].n_levels == 18
    assert model.design.blocks[0].levels[:2] == (str(2**53), str(2**53 + 1))
    # the same fit as with the original labels
    base = quiet_model("Reaction ~ Days + (1 | Subject)", SLEEP).fit()
    fit = model.fit()
    assert fit.criterion == pytest.approx(base.criterion, abs=1e-8)


def test_unsigned_ids_near_2_64_stay_distinct():
    ids = np.uint64(2**64 - 40) + SLEEP["Subject"].cat.codes.to_numpy(dtype=np.uint64)
    codes, labels = group_labels(pd.Series(ids))
    assert len(labels) == 18 and labels[0] == str(2**64 - 40)
    assert len(np.unique(codes)) == 18


def test_predict_matches_big_integer_ids_exactly():
    codes = SLEEP["Subject"].cat.codes.to_numpy(dtype=np.int64)
    data = SLEEP.assign(id=np.int64(2**53) + codes)
    fit = quiet_model("Reaction ~ Days + (1 | id)", data).fit()
    new = data.iloc[[0, 10]]  # ids 2**53 and 2**53 + 1: different subjects
    predicted = fit.predict(new)
    np.testing.assert_allclose(np.asarray(predicted["estimate"] if isinstance(predicted, pd.DataFrame)
                                          else predicted), fit.fitted()[[0, 10]], rtol=1e-12)


# --------------------------------------------------------- products of ints


@pytest.mark.parametrize("dtype, scale", [(np.int8, 12), (np.int16, 400), (np.int32, 30000),
                                          (np.uint8, 25)])
def test_products_of_small_integer_columns_do_not_overflow(dtype, scale):
    a = (SLEEP["Days"] * scale).astype(dtype)
    data = SLEEP.assign(a=a, b=a)
    model = quiet_model("Reaction ~ a:b + (1 | Subject)", data)
    expected = (SLEEP["Days"].to_numpy(float) * scale) ** 2
    np.testing.assert_array_equal(model.design.X[:, 1], expected)
    inside = quiet_model("Reaction ~ I(a * b) + (1 | Subject)", data)
    np.testing.assert_array_equal(inside.design.X[:, 1], expected)


def test_numeric_factor_levels_are_named_as_r_names_them():
    data = SLEEP.assign(k=SLEEP["Days"] % 3)
    model = quiet_model("Reaction ~ C(k) + (1 | Subject)", data)
    assert model.fixed_names == ["Intercept", "C(k)[T.1]", "C(k)[T.2]"]


# --------------------------------------------------------- objects and text


def test_object_column_mixing_5_and_text_5_is_refused_naming_it():
    values = pd.Series([5 if i % 2 else "5" for i in range(len(SLEEP))], dtype=object)
    data = SLEEP.assign(g=values.where(SLEEP["Days"] < 5, 6).to_numpy())
    for formula in ("Reaction ~ g + (1 | Subject)", "Reaction ~ 1 + (1 | g)"):
        with pytest.raises(DataError, match=r"Column 'g' mixes values of different types.*astype\(str\)"):
            hl.Model(formula, data)


def test_object_column_of_numbers_is_numeric():
    data = SLEEP.assign(d=SLEEP["Days"].astype(object))
    model = quiet_model("Reaction ~ d + (1 | Subject)", data)
    assert model.fixed_names == ["Intercept", "d"]
    np.testing.assert_array_equal(model.design.X[:, 1], SLEEP["Days"].to_numpy(float))


@pytest.mark.parametrize("dtype", ["string", "str", object])
def test_text_dtypes_make_the_same_factor(dtype):
    text = np.where(SLEEP["Days"] < 3, "low", np.where(SLEEP["Days"] < 7, "mid", "high"))
    reference = quiet_model("Reaction ~ f + (1 | Subject)",
                            SLEEP.assign(f=pd.Categorical(text))).fit()
    fit = quiet_model("Reaction ~ f + (1 | Subject)",
                      SLEEP.assign(f=pd.Series(text, dtype=dtype))).fit()
    assert fit.design.fixed_names == ("Intercept", "flow", "fmid")
    np.testing.assert_allclose(fit.beta, reference.beta, rtol=1e-10)
    # and new data of any text dtype predicts the same
    new = SLEEP.assign(f=pd.array(text, dtype="string"))
    np.testing.assert_allclose(np.asarray(fit.model.new_design(new).X), fit.design.X)


def test_pandas_string_dtype_as_grouping_factor():
    model = quiet_model("Reaction ~ Days + (1 | s)", SLEEP.assign(s=SLEEP["Subject"].astype("string")))
    assert model.random_terms[0].n_levels == 18


# ------------------------------------------------------ dates and durations


@pytest.mark.parametrize("make, fix", [
    (lambda d: pd.Timestamp("2020-01-01") + pd.to_timedelta(d["Days"], unit="D"), r"\.dt\.days"),
    (lambda d: pd.to_timedelta(d["Days"], unit="D"), r"total_seconds"),
    (lambda d: d["Days"] + 1j, r"real and imaginary"),
])
def test_predictors_a_model_cannot_take_are_refused_naming_the_column(make, fix):
    data = SLEEP.assign(t=make(SLEEP))
    for formula in ("Reaction ~ t + (1 | Subject)", "Reaction ~ Days + (t | Subject)"):
        with pytest.raises(DataError, match=rf"Column 't'.*dtype.*{fix}") as info:
            hl.Model(formula, data)
        assert isinstance(info.value, HierlmError)


def test_dates_are_labels_as_a_grouping_factor():
    data = SLEEP.assign(day=pd.Timestamp("2020-01-01") + pd.to_timedelta(SLEEP["Days"], unit="D"))
    model = quiet_model("Reaction ~ 1 + (1 | day)", data)
    assert model.design.blocks[0].levels[:2] == ("2020-01-01", "2020-01-02")


def test_column_kind_directly():
    assert column_kind(pd.Series([1, 2], dtype="Int64"), "x") == "numeric"
    assert column_kind(pd.Series([True, False], dtype="boolean"), "x") == "logical"
    assert column_kind(pd.Series(["a", None], dtype=object), "x") == "factor"
    assert column_kind(pd.Series(pd.Categorical([1, 2])), "x") == "factor"
    with pytest.raises(DataError, match="'x'"):
        column_kind(pd.Series(pd.period_range("2020", periods=2, freq="M")), "x")
