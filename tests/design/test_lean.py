"""The lean fixed-effect path (hierlm.design.lean) against formulaic's.

For a fixed part of numeric columns and an intercept, ``lean_fixed`` must give
formulaic's spec (equal field by field), column names and matrix (bit for bit);
every other formula must return None (formulaic's path). A model built on the
lean path must build new data, predict and refit exactly as formulaic's spec does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

import hierlm as hl
from hierlm.design.frame import column_kinds, learn_frame
from hierlm.design.lean import lean_fixed
from hierlm.design.materialize import _parsed
from hierlm.design.transforms import FORMULA_CONTEXT


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 60
    return pd.DataFrame({
        "y": rng.normal(size=n),
        "x": rng.normal(size=n),
        "k": rng.integers(0, 5, size=n),  # int64: numeric, reaches formulaic as float64
        "z": rng.normal(size=n).astype(np.float32),
        "f": rng.choice(["a", "b", "c"], size=n),
        "flag": rng.random(n) > 0.5,
        "g": np.repeat(np.arange(12), 5),
    })


def _frame(data: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    kinds = column_kinds(data, columns, "test")
    return learn_frame(data, kinds), kinds


LEAN = ["x", "1 + x", "x + k", "0 + x", "x - 1", "x + k + z", "k + x", "1", "x + x", "z + 1 + k"]
GENERAL = ["f", "x + f", "x:k", "x * k", "log(k + 1)", "I(x ** 2)", "center(x)", "flag", "x + flag",
           "C(k)", "poly(x, 2)"]


@pytest.mark.parametrize("text", LEAN)
def test_lean_equals_formulaic(text):
    data = _data()
    frame, kinds = _frame(data, ["x", "k", "z", "f", "flag"])
    lean = lean_fixed(_parsed(text), frame, kinds)
    assert lean is not None
    spec, columns, X = lean
    reference = model_matrix(_parsed(text), frame, context=FORMULA_CONTEXT, na_action="ignore")
    assert columns == list(reference.columns)
    np.testing.assert_array_equal(X, np.asarray(reference, dtype=float))
    assert X.dtype == np.float64 and X.flags.c_contiguous
    for field in dataclasses.fields(spec):
        assert getattr(spec, field.name) == getattr(reference.model_spec, field.name), field.name
    assert spec == reference.model_spec
    # what the field comparison does not see: the variables each term reads (reference grids,
    # type III on engine data and emmeans read them through required_variables)
    assert spec.term_variables == reference.model_spec.term_variables
    assert spec.variables_by_source == reference.model_spec.variables_by_source
    assert spec.required_variables == reference.model_spec.required_variables
    for ours, theirs in zip(sorted(spec.variables, key=str),
                            sorted(reference.model_spec.variables, key=str), strict=True):
        assert (ours.roles, ours.source) == (theirs.roles, theirs.source)
    # the lean spec builds new data exactly as formulaic's own
    new = learn_frame(data.iloc[::7].reset_index(drop=True), kinds)
    np.testing.assert_array_equal(np.asarray(spec.get_model_matrix(new, context=FORMULA_CONTEXT)),
                                  np.asarray(reference.model_spec.get_model_matrix(
                                      new, context=FORMULA_CONTEXT)))


@pytest.mark.parametrize("text", GENERAL)
def test_other_formulas_take_formulaics_path(text):
    frame, kinds = _frame(_data(), ["x", "k", "z", "f", "flag"])
    assert lean_fixed(_parsed(text), frame, kinds) is None


def test_a_numeric_column_with_a_reference_level_is_not_lean():
    # a reference level makes a numeric column a factor of the frame
    data = _data()
    model = hl.Model("y ~ k + (1 | g)", data, reference={"k": 2})
    assert model.fixed_names == ["Intercept", "k0", "k1", "k3", "k4"]


@pytest.mark.parametrize("structure", ["cs(g)", "ar1(t | g)", "car1(t | g)"])
def test_a_lean_model_predicts_new_data(structure):
    data = _data().assign(t=np.tile(np.arange(5), 12))
    model = hl.Model("y ~ x + k", data, residual=structure)
    reference = model_matrix(_parsed("x + k"), learn_frame(data, column_kinds(data, ["x", "k"], "t")),
                             context=FORMULA_CONTEXT, na_action="ignore")
    assert model.spec.fixed_spec == reference.model_spec
    np.testing.assert_array_equal(model.design.X, np.asarray(reference, dtype=float))
    fit = model.fit(method="reml")
    new = data.iloc[[3, 10, 17]].assign(x=[0.5, -1.0, 2.0], k=[1, 4, 0])
    design = model.new_design(new)
    np.testing.assert_array_equal(design.X, np.column_stack([np.ones(3), new["x"], new["k"]]))
    beta = fit.fixef().iloc[:, 0].to_numpy()
    estimate = fit.predict(new, include_random=False)["estimate"].to_numpy()
    np.testing.assert_allclose(estimate, design.X @ beta, rtol=1e-12)
