"""The fast dtype predicates answer as pandas does."""

import numpy as np
import pandas as pd
import pytest

from hierlm.design import dtypes

NUMPY = ["int8", "int64", "uint16", "float32", "float64", "complex128", "bool", "object", "U3",
         "S2", "datetime64[ns]", "timedelta64[s]", "V8"]
EXTENSION = [pd.Int64Dtype(), pd.Float64Dtype(), pd.BooleanDtype(), pd.StringDtype(),
             pd.CategoricalDtype(["a", "b"]), pd.DatetimeTZDtype(tz="UTC"), pd.PeriodDtype("D"),
             pd.ArrowDtype(__import__("pyarrow").int32()), pd.ArrowDtype(__import__("pyarrow").bool_())]
PAIRS = [(dtypes.is_numeric, pd.api.types.is_numeric_dtype), (dtypes.is_bool, pd.api.types.is_bool_dtype),
         (dtypes.is_complex, pd.api.types.is_complex_dtype),
         (dtypes.is_timedelta, pd.api.types.is_timedelta64_dtype),
         (dtypes.is_datetime, pd.api.types.is_datetime64_any_dtype)]


@pytest.mark.parametrize("dtype", [np.dtype(d) for d in NUMPY] + EXTENSION, ids=str)
@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=lambda f: getattr(f, "__name__", ""))
def test_same_answer_as_pandas_for_a_dtype_and_a_series(ours, theirs, dtype):
    assert ours(dtype) is bool(theirs(dtype))
    if dtype.kind != "V":  # (pandas has no Series of a void dtype)
        series = pd.Series([], dtype=dtype)
        assert ours(series) is bool(theirs(series))
