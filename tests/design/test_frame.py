"""The model frame's fast paths (hierlm.design.frame) against pandas' own answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierlm.design.checks import incomplete_rows
from hierlm.design.frame import _as_float, group_labels
from hierlm.design.spec import _has_unused_categories


def test_categorical_group_labels_drop_unused_categories_as_pandas():
    column = pd.Series(pd.Categorical(["b", "a", None, "d", "b"], categories=list("abcde")))
    codes, labels = group_labels(column)
    dropped = column.cat.remove_unused_categories()
    np.testing.assert_array_equal(codes, dropped.cat.codes.to_numpy())
    assert labels == tuple(dropped.cat.categories) == ("a", "b", "d")
    assert _has_unused_categories(column)
    assert not _has_unused_categories(dropped)
    assert not _has_unused_categories(pd.Series([1.0, 2.0]))


def test_incomplete_rows_equal_pandas_for_every_kind_of_column():
    frame = pd.DataFrame({
        "float": [1.0, np.nan, 2.0, 3.0, 4.0], "int": [1, 2, 3, 4, 5],
        "factor": pd.Categorical(["b", "a", None, "d", "b"]), "text": ["x", None, "y", "z", "w"],
        "nullable": pd.array([1, None, 2, 3, None], dtype="Int64"),
        "bool": [True, False, True, True, False]})
    for names in (list(frame.columns), ["int", "bool"], ["nullable"], ["factor", "float"]):
        np.testing.assert_array_equal(incomplete_rows(frame, names),
                                      frame[names].isna().any(axis=1).to_numpy())


def test_as_float_keeps_values_and_index():
    index = pd.Index([10, 11, 12])
    for column in (pd.Series([1, 2, 3], index=index, name="a"),
                   pd.Series([1.5, np.nan, 3.0], index=index, name="a"),
                   pd.Series(np.array([1, 2, 3], dtype=np.int8), index=index, name="a"),
                   pd.Series(pd.array([1, None, 3], dtype="Int64"), index=index, name="a")):
        converted = _as_float(column)
        assert converted.dtype == np.float64 and converted.name == "a"
        pd.testing.assert_index_equal(converted.index, index)
        np.testing.assert_array_equal(converted.to_numpy(),
                                      pd.to_numeric(column).to_numpy(dtype=float, na_value=np.nan))
