"""Aliased fixed-effect columns: dropped with lme4's message by default, refused on request.

lme4 says "fixed-effect model matrix is rank deficient so dropping k columns
/ coefficients" and fits the rest; factorial designs with empty cells need
exactly that. The frozen spec remembers which columns were dropped, so new
data lose the same columns.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import InputTypeError, RankDeficientError, RankDeficientWarning


def factorial_with_empty_cells(seed: int = 4) -> pd.DataFrame:
    """a (3 levels) x b (3 levels) with the cells a3:b2 and a3:b3 empty, 8 groups."""
    rng = np.random.default_rng(seed)
    cells = [(a, b) for a in ("a1", "a2", "a3") for b in ("b1", "b2", "b3")
             if not (a == "a3" and b in ("b2", "b3"))]
    rows = []
    for g in range(8):
        shift = rng.normal(0, 1)
        for a, b in cells:
            for _ in range(2):
                rows.append({"a": a, "b": b, "g": f"g{g}",
                             "y": 10 + {"a1": 0, "a2": 1, "a3": 2}[a] + {"b1": 0, "b2": 0.5, "b3": -1}[b]
                             + shift + rng.normal(0, 0.5)})
    return pd.DataFrame(rows)


DATA = factorial_with_empty_cells()
FORMULA = "y ~ a * b + (1 | g)"


def model(**kw):
    with pytest.warns(RankDeficientWarning) as record:
        m = hl.Model(FORMULA, DATA, **kw)
    return m, str(record[0].message)


def test_aliased_columns_are_dropped_with_lme4s_message_naming_them():
    m, message = model()
    assert "rank deficient so dropping 2 column(s) / coefficient(s)" in message
    assert "'aa3:bb2', 'aa3:bb3'" in message and "drop_aliased=False" in message
    assert m.fixed_names == ["Intercept", "aa2", "aa3", "bb2", "bb3", "aa2:bb2", "aa2:bb3"]
    assert np.linalg.matrix_rank(m.design.X) == m.design.p == 7


def test_the_fit_equals_the_fit_of_the_full_rank_reparametrisation():
    m, _ = model()
    fit = m.fit()
    # the same column space written without the empty cells: one factor of the 7 observed cells
    cell = DATA["a"] + ":" + DATA["b"]
    reference = hl.Model("y ~ cell + (1 | g)", DATA.assign(cell=cell)).fit()
    assert fit.criterion == pytest.approx(reference.criterion, abs=1e-8)
    assert fit.sigma == pytest.approx(reference.sigma, rel=1e-8)
    np.testing.assert_allclose(fit.fitted(), reference.fitted(), rtol=1e-9)


def test_predict_on_new_data_drops_the_same_columns():
    m, _ = model()
    fit = m.fit()
    spec_before = pickle.dumps(m.spec)
    new = DATA.iloc[::5]
    design = m.new_design(new)
    assert design.fixed_names == m.design.fixed_names
    np.testing.assert_array_equal(design.X, m.design.X[::5])
    prediction = fit.predict(new, include_random=False)
    values = np.asarray(prediction["estimate"] if isinstance(prediction, pd.DataFrame) else prediction)
    np.testing.assert_allclose(values, m.design.X[::5] @ fit.beta, rtol=1e-12)
    assert pickle.dumps(m.spec) == spec_before


def test_f_tests_run_on_the_kept_columns():
    m, _ = model()
    fit = m.fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        table = fit.anova(type=1).table
    assert list(table.index) == ["a", "b", "a:b"]
    assert list(table["NumDF"]) == [2, 2, 2]  # a:b keeps 2 of its 4 columns
    assert np.all(np.isfinite(table["F value"]))


def test_refusing_stays_available():
    with pytest.raises(RankDeficientError, match="'aa3:bb2', 'aa3:bb3'"):
        hl.Model(FORMULA, DATA, drop_aliased=False)


def test_drop_aliased_must_be_a_bool():
    with pytest.raises(InputTypeError, match="drop_aliased"):
        hl.Model(FORMULA, DATA, drop_aliased="yes")


def test_bayesian_fits_use_the_kept_columns():
    m, _ = model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        fit = m.fit("map", priors="flat")
    assert list(fit.fixef().index) == m.fixed_names
