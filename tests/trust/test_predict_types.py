"""New data whose column types changed: refused as lme4 refuses them, and the fit never changes.

lme4's ``predict`` checks the classes of the new data's variables
(``.checkMFClasses``): a variable fitted as a factor and given as numbers,
or fitted as a number and given as text or logical, is an error. Here each
such call raises a DataError naming the column, and the spec, design and
estimates of the fitted model are identical before and after the call.
"""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import DataError

SLEEP = hl.datasets.load("sleepstudy")


def quiet(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return call()


def snapshot(fit) -> tuple[bytes, bytes, np.ndarray, np.ndarray, np.ndarray]:
    """Everything a prediction could corrupt: the spec, the design and the estimates."""
    model = fit.model
    return (pickle.dumps(model.spec), pickle.dumps(model.design), fit.beta.copy(),
            np.asarray(model.design.X).copy(), np.asarray(fit.theta).copy())


def assert_unchanged(fit, before) -> None:
    after = snapshot(fit)
    assert after[0] == before[0], "the frozen spec changed"
    assert after[1] == before[1], "the design changed"
    for a, b in zip(after[2:], before[2:], strict=True):
        np.testing.assert_array_equal(a, b)


def mean(prediction) -> np.ndarray:
    frame = prediction if isinstance(prediction, pd.DataFrame) else None
    return np.asarray(frame["estimate"] if frame is not None else prediction, dtype=float)


CASES = [
    # (formula, training column k, new column k, culprit words)
    ("Reaction ~ k + (1 | Subject)", lambda d: pd.Categorical(d["Days"] % 3),
     lambda d: (d["Days"] % 3).astype(int), "was a factor .* is numeric"),
    ("Reaction ~ k + (1 | Subject)", lambda d: pd.Categorical(np.where(d["Days"] < 5, "a", "b")),
     lambda d: (d["Days"] < 5).astype(float), "was a factor .* is numeric"),
    ("Reaction ~ C(k) + (1 | Subject)", lambda d: d["Days"] % 3,
     lambda d: (d["Days"] % 3).astype(str), "was numeric .* is a factor"),
    ("Reaction ~ k + (1 | Subject)", lambda d: d["Days"].astype(float),
     lambda d: d["Days"] > 3, "was numeric .* is logical"),
    ("Reaction ~ k + (1 | Subject)", lambda d: d["Days"] > 3,
     lambda d: (d["Days"] > 3).astype(int), "was logical .* is numeric"),
    ("Reaction ~ 1 + (k | Subject)", lambda d: d["Days"].astype(float),
     lambda d: d["Days"].astype(str), "was numeric .* is a factor"),
]


@pytest.mark.parametrize("formula, train, new, words", CASES,
                         ids=[f"{c[0]} / {c[3]}" for c in CASES])
def test_a_class_change_is_refused_and_the_fit_is_untouched(formula, train, new, words):
    fit = quiet(lambda: hl.Model(formula, SLEEP.assign(k=train(SLEEP))).fit())
    good = SLEEP.assign(k=train(SLEEP))
    expected = mean(fit.predict(good))
    before = snapshot(fit)
    with pytest.raises(DataError, match=rf"Column 'k' {words}"):
        fit.predict(SLEEP.assign(k=new(SLEEP)))
    assert_unchanged(fit, before)
    np.testing.assert_array_equal(mean(fit.predict(good)), expected)


def test_text_levels_of_a_factor_may_come_as_another_text_dtype():
    data = SLEEP.assign(k=np.where(SLEEP["Days"] < 5, "a", "b"))
    fit = quiet(lambda: hl.Model("Reaction ~ k + (1 | Subject)", data).fit())
    expected = mean(fit.predict(data))
    before = snapshot(fit)
    for new in (data.assign(k=pd.Categorical(data["k"], categories=["b", "a"])),
                data.assign(k=data["k"].astype("string")), data.assign(k=data["k"].astype(object))):
        np.testing.assert_allclose(mean(fit.predict(new)), expected, rtol=1e-12)
    assert_unchanged(fit, before)


def test_a_subset_of_levels_without_the_reference_predicts_right():
    data = SLEEP.assign(k=np.where(SLEEP["Days"] < 5, "a", "b"))
    fit = quiet(lambda: hl.Model("Reaction ~ k + (1 | Subject)", data).fit())
    only_b = data[data["k"] == "b"]
    np.testing.assert_allclose(mean(fit.predict(only_b)), mean(fit.predict(data))[data["k"] == "b"],
                               rtol=1e-12)


def test_an_unseen_level_of_a_numeric_factor_is_refused_not_predicted_at_the_reference():
    data = SLEEP.assign(k=SLEEP["Days"] % 3)
    fit = quiet(lambda: hl.Model("Reaction ~ C(k) + (1 | Subject)", data).fit())
    before = snapshot(fit)
    with pytest.raises(DataError, match=r"never saw"):
        fit.predict(data.assign(k=5))
    assert_unchanged(fit, before)


def test_integer_days_where_floats_were_fitted_predict_the_same():
    """int and float are both numeric (lme4: "numeric"), so this is not a class change."""
    fit = quiet(lambda: hl.Model("Reaction ~ Days + (Days | Subject)",
                                 SLEEP.assign(Days=SLEEP["Days"].astype(float))).fit())
    np.testing.assert_allclose(mean(fit.predict(SLEEP)), fit.fitted(), rtol=1e-12)


def test_new_design_does_not_modify_the_callers_frame():
    fit = quiet(lambda: hl.Model("Reaction ~ k + (1 | Subject)",
                                 SLEEP.assign(k=np.where(SLEEP["Days"] < 5, "a", "b"))).fit())
    new = SLEEP.assign(k=np.where(SLEEP["Days"] < 5, "a", "b"))
    kept = copy.deepcopy(new)
    fit.model.new_design(new)
    pd.testing.assert_frame_equal(new, kept)
