"""Early checks of the data a model is built on, with messages that say how to fix things.

Everything here runs before any matrix is built, so a user sees "column 'Dayz'
not found; did you mean 'Days'?" rather than a traceback from deep inside a
numerical library.

This module checks the data frame and its columns; the other checks live by
subject in :mod:`~hierlm.design.value_checks` (row arrays, weights, offsets,
the response's scale), :mod:`~hierlm.design.matrix_checks` (aliased and
non-finite model-matrix columns), :mod:`~hierlm.design.grouping_checks`
(grouping factors) and :mod:`~hierlm.design.memory` (the dense block's
memory), and are re-exported here, so ``checks.<name>`` reaches all of them.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from hierlm.design.dtypes import is_bool, is_complex, is_numeric
from hierlm.design.grouping_checks import check_grouping, warn_continuous_grouping, warn_repeated_terms
from hierlm.design.matrix_checks import aliased_columns, check_rank, require_finite_matrix
from hierlm.design.memory import DENSE_BYTES_PER_CELL, available_memory, require_dense_memory
from hierlm.design.value_checks import (
    RESPONSE_SCALE_LIMIT,
    check_response,
    require_counts,
    require_offset,
    require_row_array,
    require_varying_response,
    require_weights,
)
from hierlm.errors import ColumnNotFoundError, DataError, InputTypeError, MissingDataWarning

__all__ = [
    "require_frame",
    "require_columns",
    "drop_missing",
    "incomplete_rows",
    "read_columns",
    "column_of",
    "require_finite",
    "require_numeric_response",
    "require_counts",
    "require_weights",
    "require_offset",
    "require_row_array",
    "apply_reference_levels",
    "aliased_columns",
    "check_rank",
    "require_finite_matrix",
    "check_response",
    "require_varying_response",
    "RESPONSE_SCALE_LIMIT",
    "warn_repeated_terms",
    "DENSE_BYTES_PER_CELL",
    "available_memory",
    "require_dense_memory",
    "check_grouping",
    "warn_continuous_grouping",
]


def require_frame(data: object) -> pd.DataFrame:
    """Return ``data`` if it is a pandas DataFrame with rows, else raise."""
    if not isinstance(data, pd.DataFrame):
        raise InputTypeError(
            f"data must be a pandas DataFrame, not {type(data).__name__}. "
            "Wrap arrays or dicts with pandas.DataFrame(...) first."
        )
    if len(data) == 0:
        raise DataError("data has no rows.")
    if not data.columns.is_unique:  # (pandas keeps the answer on the immutable Index)
        duplicated = data.columns[data.columns.duplicated()]
        raise DataError(f"data has duplicate column names {sorted({str(c) for c in duplicated})}; "
                        "rename them so that each column has one name.")
    return data


def require_columns(data: pd.DataFrame, names: Iterable[str], where: str) -> None:
    """Raise ColumnNotFoundError for the first name that is not a column of ``data``."""
    for name in names:
        if name not in data.columns:
            columns = [str(column) for column in data.columns]
            close = difflib.get_close_matches(name, columns, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            shown = ", ".join(repr(c) for c in columns[:12]) + (" ..." if len(columns) > 12 else "")
            raise ColumnNotFoundError(
                f"Column {name!r} used in {where} is not in the data.{hint} "
                f"Available columns: {shown}."
            )


def read_columns(data: pd.DataFrame, names: Iterable[str]) -> dict[str, pd.Series]:
    """The columns ``names`` of ``data``, each read once (for the checks' ``columns=``)."""
    return {name: data[name] for name in dict.fromkeys(names)}


def column_of(data: pd.DataFrame, columns: Mapping[str, pd.Series] | None, name: str) -> pd.Series:
    """``data[name]``, from ``columns`` (those of ``data``, read before) when it has it."""
    if columns is not None and name in columns:
        return columns[name]
    return data[name]


def incomplete_rows(data: pd.DataFrame, names: Iterable[str],
                    columns: Mapping[str, pd.Series] | None = None) -> np.ndarray:
    """Boolean mask of the rows with a missing value in any of the columns ``names``.

    Column by column (as ``data[names].isna().any(axis=1)``, without building
    the sub-frame). ``columns``: those of ``data`` already read (:func:`read_columns`).
    """
    missing = np.zeros(len(data), dtype=bool)
    for name in dict.fromkeys(names):
        column = column_of(data, columns, name)
        dtype = column.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "iub":  # numpy ints and bools: none
            continue
        if isinstance(dtype, np.dtype) and dtype.kind == "f":
            missing |= np.isnan(column.to_numpy())
        elif isinstance(dtype, pd.CategoricalDtype):
            missing |= np.asarray(column.array.codes) < 0
        else:
            missing |= column.isna().to_numpy(dtype=bool)
    return missing


def drop_missing(data: pd.DataFrame, names: list[str], na_action: str,
                 columns: Mapping[str, pd.Series] | None = None) -> pd.DataFrame:
    """Drop rows with a missing value in any of ``names`` (warn), or raise if asked to.

    Parameters
    ----------
    data : DataFrame
        The user's data.
    names : list of str
        Columns the model uses.
    na_action : {"omit", "raise"}
        ``"omit"`` drops incomplete rows with a MissingDataWarning, as lme4's
        ``na.omit``; ``"raise"`` raises a DataError instead.
    columns : dict, optional
        Those of ``data`` already read (:func:`read_columns`).
    """
    if na_action not in ("omit", "raise"):
        raise InputTypeError(f"na_action must be 'omit' or 'raise', not {na_action!r}.")
    incomplete = incomplete_rows(data, names, columns)
    n_dropped = int(incomplete.sum())
    if n_dropped == 0:
        return data
    per_column = data[names].isna().sum()
    detail = ", ".join(f"{name!r}: {int(count)}" for name, count in per_column.items() if count)
    if na_action == "raise":
        raise DataError(
            f"{n_dropped} row(s) have missing values (by column: {detail}). "
            "Remove or impute them, or pass na_action='omit' to drop them."
        )
    kept = data.loc[~incomplete]
    if len(kept) == 0:
        raise DataError(
            f"No rows are left after dropping rows with missing values (by column: {detail})."
        )
    warnings.warn(
        f"Dropped {n_dropped} of {len(data)} row(s) with missing values (by column: {detail}).",
        MissingDataWarning,
        stacklevel=4,
    )
    return kept


def require_finite(data: pd.DataFrame, names: list[str],
                   columns: Mapping[str, pd.Series] | None = None) -> None:
    """Raise a DataError naming the first numeric column with an infinite value.

    ``columns``: those of ``data`` already read (:func:`read_columns`).
    """
    for name in names:
        column = column_of(data, columns, name)
        dtype = column.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "iub":  # numpy ints, bools: all finite
            continue
        if (is_numeric(column) and not is_bool(column)
                and not is_complex(column)):
            values = column.to_numpy(dtype=float)
            bad = ~np.isfinite(values)
            if bad.any():
                first = data.index[np.argmax(bad)]
                raise DataError(
                    f"Column {name!r} has {int(bad.sum())} non-finite value(s) (inf), "
                    f"first at row {first!r}. Replace or remove them."
                )


def require_numeric_response(data: pd.DataFrame, response: str,
                             columns: Mapping[str, pd.Series] | None = None) -> np.ndarray:
    """Return the response as float, or raise if it is not numeric.

    ``columns``: those of ``data`` already read (:func:`read_columns`).
    """
    column = column_of(data, columns, response)
    if is_bool(column):
        return column.to_numpy(dtype=float)
    if not is_numeric(column):
        raise DataError(
            f"The response {response!r} is not numeric (dtype {column.dtype}). "
            "hierlm fits Gaussian models of a numeric response; convert it with "
            "pandas.to_numeric or choose another column."
        )
    return column.to_numpy(dtype=float)


def apply_reference_levels(data: pd.DataFrame, reference: Mapping[str, object]) -> pd.DataFrame:
    """Make each named column categorical with the given level first (treatment reference)."""
    if not reference:
        return data
    data = data.copy()
    for name, level in reference.items():
        require_columns(data, [name], "reference=")
        column = data[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            levels = [c for c in column.cat.categories if column.eq(c).any()]
        else:
            levels = sorted(column.dropna().unique().tolist(), key=_sort_key)
        if level not in levels:  # accept the label as text, e.g. "185" for the level 185
            matches = [v for v in levels if str(v) == str(level)]
            level = matches[0] if len(matches) == 1 else level
        if level not in levels:
            shown = ", ".join(repr(v) for v in levels[:20])
            raise DataError(
                f"Reference level {level!r} is not a level of column {name!r}. Levels: {shown}."
            )
        ordered = [level] + [v for v in levels if v != level]
        data[name] = pd.Categorical(column, categories=ordered)
    return data


def _sort_key(value: object) -> tuple[int, object]:
    """Sort numbers numerically and everything else as text."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (0, float(value))
    return (1, str(value))
