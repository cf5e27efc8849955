"""Dtype predicates with pandas' answers, without pandas' dispatch for plain numpy dtypes.

``pandas.api.types.is_numeric_dtype`` and its siblings cost one to two
microseconds a call, mostly in dispatch on the kind of argument; model
building asks them about every column it reads, several times. For a numpy
dtype the answer is its ``kind`` letter; every other dtype (pandas'
extension dtypes: nullable integers, ``boolean``, Arrow, categorical) is
passed on to pandas. ``tests/design/test_dtypes.py`` checks that the answers
equal pandas' for every numpy kind and the common extension dtypes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["is_bool", "is_complex", "is_datetime", "is_numeric", "is_timedelta"]


def _dtype_of(value: Any) -> Any:
    """The dtype of a Series, an array or a dtype itself."""
    if isinstance(value, (np.dtype, pd.api.extensions.ExtensionDtype)):
        return value
    return getattr(value, "dtype", value)


def is_numeric(value: Any) -> bool:
    """``pandas.api.types.is_numeric_dtype`` (booleans and complex numbers count, timedeltas not)."""
    dtype = _dtype_of(value)
    if isinstance(dtype, np.dtype):
        return dtype.kind in "iufcb"
    return bool(pd.api.types.is_numeric_dtype(dtype))


def is_bool(value: Any) -> bool:
    """``pandas.api.types.is_bool_dtype``."""
    dtype = _dtype_of(value)
    if isinstance(dtype, np.dtype):
        return dtype.kind == "b"
    return bool(pd.api.types.is_bool_dtype(dtype))


def is_complex(value: Any) -> bool:
    """``pandas.api.types.is_complex_dtype``."""
    dtype = _dtype_of(value)
    if isinstance(dtype, np.dtype):
        return dtype.kind == "c"
    return bool(pd.api.types.is_complex_dtype(dtype))


def is_timedelta(value: Any) -> bool:
    """``pandas.api.types.is_timedelta64_dtype``."""
    dtype = _dtype_of(value)
    if isinstance(dtype, np.dtype):
        return dtype.kind == "m"
    return bool(pd.api.types.is_timedelta64_dtype(dtype))


def is_datetime(value: Any) -> bool:
    """``pandas.api.types.is_datetime64_any_dtype`` (with or without a time zone)."""
    dtype = _dtype_of(value)
    if isinstance(dtype, np.dtype):
        return dtype.kind == "M"
    return bool(pd.api.types.is_datetime64_any_dtype(dtype))
