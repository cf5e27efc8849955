"""hierlm.model.Model: random_terms, new_design and the checks a Model runs on construction."""

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import FitError, HierlmWarning, NewLevelError


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return hl.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def machines() -> pd.DataFrame:
    return hl.datasets.load("Machines")


def terms(model: hl.Model) -> list[tuple[str, list[str], bool, int]]:
    return [(t.group, t.columns, t.correlated, t.n_levels) for t in model.random_terms]


def test_random_slope_is_one_correlated_term(sleep):
    m = hl.Model("Reaction ~ Days + (Days | Subject)", sleep)
    assert terms(m) == [("Subject", ["Intercept", "Days"], True, 18)]
    assert isinstance(m.random_terms[0], hl.RandomTerm)


def test_double_bar_is_two_uncorrelated_terms(sleep):
    m = hl.Model("Reaction ~ Days + (Days || Subject)", sleep)
    assert terms(m) == [("Subject", ["Intercept"], False, 18), ("Subject", ["Days"], False, 18)]


def test_separate_bars_are_two_independent_terms(sleep):
    m = hl.Model("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep)
    assert terms(m) == [("Subject", ["Intercept"], False, 18), ("Subject", ["Days"], False, 18)]


def test_categorical_bar(machines):
    m = hl.Model("score ~ Machine + (Machine | Worker)", machines)
    assert terms(m) == [("Worker", ["Intercept", "MachineB", "MachineC"], True, 6)]
    assert m.fixed_names == ["Intercept", "MachineB", "MachineC"]


def test_categorical_double_bar_keeps_the_factor_as_one_block(machines):
    # lme4: (Machine || Worker) -> (1 | Worker) + (0 + Machine | Worker), the latter full dummy coding
    m = hl.Model("score ~ Machine + (Machine || Worker)", machines)
    assert terms(m) == [
        ("Worker", ["Intercept"], False, 6),
        ("Worker", ["MachineA", "MachineB", "MachineC"], True, 6),
    ]


def test_nested_terms(machines):
    m = hl.Model("score ~ Machine + (1 | Worker/Machine)", machines)
    # named as lme4 names it: Machine:Worker (inner factor first)
    assert terms(m) == [("Machine:Worker", ["Intercept"], False, 18), ("Worker", ["Intercept"], False, 6)]


def test_crossed_terms_are_reordered_by_levels():
    data = hl.datasets.load("Penicillin")
    m = hl.Model("diameter ~ 1 + (1 | sample) + (1 | plate)", data)
    assert [(t.group, t.n_levels) for t in m.random_terms] == [("plate", 24), ("sample", 6)]


def test_reference_argument(machines):
    m = hl.Model("score ~ Machine + (1 | Worker)", machines, reference={"Machine": "B"})
    assert m.fixed_names == ["Intercept", "MachineA", "MachineC"]
    expected = np.column_stack([np.ones(54), machines.Machine == "A", machines.Machine == "C"])
    np.testing.assert_allclose(m.design.X, expected.astype(float))


def test_cake_names():
    m = hl.Model("angle ~ recipe * temperature + (1 | recipe:replicate)", hl.datasets.load("cake"))
    assert m.fixed_names[:4] == ["Intercept", "recipeB", "recipeC", "temperature185"]
    assert "recipeB:temperature185" in m.fixed_names
    assert terms(m) == [("recipe:replicate", ["Intercept"], False, 45)]


def test_nobs_and_data_after_dropping_rows(sleep):
    data = sleep.astype({"Days": float})
    data.loc[[4, 50], "Days"] = np.nan
    with pytest.warns(hl.errors.MissingDataWarning):
        m = hl.Model("Reaction ~ Days + (1 | Subject)", data)
    assert m.nobs == 178
    assert list(m.data.index) == [i for i in data.index if i not in (4, 50)]


def test_data_keeps_its_rows_with_duplicate_index_labels(sleep):
    data = sleep.copy()
    data.index = np.r_[np.arange(90), np.arange(90)]  # e.g. two frames concatenated
    m = hl.Model("Reaction ~ Days + (1 | Subject)", data)
    assert len(m.data) == m.nobs == 180
    np.testing.assert_allclose(m.data.Reaction, m.design.y)


def test_repr_mentions_formula_and_terms(sleep):
    text = repr(hl.Model("Reaction ~ Days + (Days | Subject)", sleep))
    assert "Reaction ~ Days + (Days | Subject)" in text and "(Intercept + Days | Subject)" in text


def test_unknown_fit_method(sleep):
    m = hl.Model("Reaction ~ Days + (1 | Subject)", sleep)
    with pytest.raises(FitError, match="'bogus'"):
        m.fit("bogus")


# ---------------------------------------------------------------- new_design


def test_new_design_reproduces_training_design(sleep):
    m = hl.Model("Reaction ~ center(Days) + (Days | Subject)", sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = m.new_design(sleep, with_response=True)
    np.testing.assert_allclose(d.X, m.design.X)
    np.testing.assert_allclose(d.y, m.design.y)
    assert (d.sparse_z() != m.design.sparse_z()).nnz == 0


def test_new_design_center_uses_training_mean(sleep):
    m = hl.Model("Reaction ~ center(Days) + (1 | Subject)", sleep)
    late = sleep[sleep.Days >= 7]
    d = m.new_design(late)
    np.testing.assert_allclose(d.X[:, 1], late.Days - sleep.Days.mean())


def test_new_levels_warn_per_factor_and_get_code_minus_one():
    data = hl.datasets.load("Penicillin")
    m = hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    new = pd.DataFrame({"plate": ["a", "zz", "b"], "sample": ["A", "B", "Q"]})
    with pytest.warns(HierlmWarning) as record:
        d = m.new_design(new)
    message = str(record[0].message)
    assert "plate: zz (1 new)" in message and "sample: Q (1 new)" in message
    codes = {b.group: list(b.codes) for b in d.blocks}
    assert codes == {"plate": [0, -1, 1], "sample": [0, 1, -1]}


def test_new_levels_can_be_refused():
    data = hl.datasets.load("Penicillin")
    m = hl.Model("diameter ~ 1 + (1 | plate)", data)
    new = pd.DataFrame({"plate": ["a", "zz", "yy"]})
    with pytest.raises(NewLevelError, match=r"plate: zz, yy|plate: yy, zz") as info:
        m.new_design(new, allow_new_levels=False)
    assert isinstance(info.value, ValueError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.new_design(new.iloc[:1], allow_new_levels=False)  # known levels only: fine, silent


def test_new_design_with_reference_and_a_subset_of_levels(machines):
    m = hl.Model("score ~ Machine + (1 | Worker)", machines, reference={"Machine": "B"})
    only_a = machines[machines.Machine == "A"]
    d = m.new_design(only_a)
    np.testing.assert_allclose(d.X, np.column_stack([np.ones(len(only_a)), np.ones(len(only_a)),
                                                     np.zeros(len(only_a))]))
