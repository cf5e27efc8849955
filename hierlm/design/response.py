"""The response and the offsets as numbers, read from a model frame.

A numeric column or a transform of numeric columns (``log(y)``), a binomial
``cbind(successes, failures)`` as proportion and trials, a two-level factor as
0/1 as glmer reads it, and the summed ``offset()`` terms. Used by
:mod:`hierlm.design.spec`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierlm.design import checks
from hierlm.design.dtypes import is_bool, is_numeric
from hierlm.design.materialize import _materialize
from hierlm.design.variables import _response_variables
from hierlm.errors import DataError
from hierlm.formula.parser import split_cbind

__all__ = ["_binary_factor_response", "_offset_values", "_response_and_trials", "_response_values"]


def _response_values(data: pd.DataFrame, response: str, what: str = "The response") -> np.ndarray:
    """The response as floats: a numeric column, or a transform of numeric columns."""
    if response in data.columns:
        return checks.require_numeric_response(data, response)
    for name in _response_variables(response):
        checks.require_numeric_response(data, name)
    with np.errstate(all="ignore"):
        matrix = _materialize(f"0 + I({response})", data, what.lower())
    values = np.asarray(matrix, dtype=float).ravel()
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"{what} {response!r} is not finite in {int(bad.sum())} row(s) "
                        f"(first at row {data.index[np.argmax(bad)]!r}); check the transform's domain.")
    return values


def _response_and_trials(data: pd.DataFrame, response: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The response, and for ``cbind(s, f)`` the proportion ``s / (s + f)`` with the trials ``s + f``."""
    parts = split_cbind(response)
    if parts is None:
        return _response_values(data, response), None
    successes, failures = (checks.require_counts(_response_values(data, part, "The cbind() count"),
                                                 f"{part!r} in {response!r}") for part in parts)
    trials = successes + failures
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(trials > 0, successes / np.where(trials > 0, trials, 1.0), 0.0)
    return y, trials


def _offset_values(data: pd.DataFrame, offsets: tuple[str, ...],
                   extra: np.ndarray | None = None) -> np.ndarray:
    """Sum of the ``offset()`` expressions (and the ``offset=`` column or array) per row."""
    total = np.zeros(len(data)) if extra is None else np.asarray(extra, dtype=float).copy()
    for expression in offsets:
        values = _response_values(data, expression, "The offset")
        total += values
    return total


def _binary_factor_response(data: pd.DataFrame, response: str) -> pd.DataFrame:
    """A two-level factor (or text, or logical) response as 0/1, as glmer reads it.

    The first level (R's order: the categories of a categorical, sorted text
    otherwise) is failure (0), the other success (1).
    """
    if response not in data.columns:
        return data
    column = data[response]
    if is_bool(column) or is_numeric(column):
        return data
    levels = (list(column.cat.categories) if isinstance(column.dtype, pd.CategoricalDtype)
              else sorted(column.dropna().unique(), key=str))
    if len(levels) != 2:
        raise DataError(f"The binomial response {response!r} is a factor with {len(levels)} "
                        f"levels ({', '.join(map(str, levels[:5]))}); a binary factor needs two "
                        "(the first is failure, as glmer reads it).")
    data = data.copy()
    data[response] = (column == levels[1]).astype(float)
    return data
