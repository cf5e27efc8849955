"""Early checks of the data a model is built on, with messages that say how to fix things.

Everything here runs before any matrix is built, so a user sees "column 'Dayz'
not found; did you mean 'Days'?" rather than a traceback from deep inside a
numerical library.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from hierlm.errors import (
    ColumnNotFoundError,
    DataError,
    HierlmWarning,
    InputTypeError,
    MissingDataWarning,
    RankDeficientError,
)

__all__ = [
    "require_frame",
    "require_columns",
    "drop_missing",
    "require_finite",
    "require_numeric_response",
    "apply_reference_levels",
    "aliased_columns",
    "check_rank",
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
    duplicated = data.columns[data.columns.duplicated()]
    if len(duplicated):
        raise DataError(f"data has duplicate column names {sorted({str(c) for c in duplicated})}; "
                        "rename them so that each column has one name.")
    return data


def require_columns(data: pd.DataFrame, names: Iterable[str], where: str) -> None:
    """Raise ColumnNotFoundError for the first name that is not a column of ``data``."""
    columns = [str(column) for column in data.columns]
    for name in names:
        if name not in data.columns:
            close = difflib.get_close_matches(name, columns, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            shown = ", ".join(repr(c) for c in columns[:12]) + (" ..." if len(columns) > 12 else "")
            raise ColumnNotFoundError(
                f"Column {name!r} used in {where} is not in the data.{hint} "
                f"Available columns: {shown}."
            )


def drop_missing(data: pd.DataFrame, names: list[str], na_action: str) -> pd.DataFrame:
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
    """
    if na_action not in ("omit", "raise"):
        raise InputTypeError(f"na_action must be 'omit' or 'raise', not {na_action!r}.")
    missing = data[names].isna()
    per_column = missing.sum()
    incomplete = missing.any(axis=1)
    n_dropped = int(incomplete.sum())
    if n_dropped == 0:
        return data
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


def require_finite(data: pd.DataFrame, names: list[str]) -> None:
    """Raise a DataError naming the first numeric column with an infinite value."""
    for name in names:
        column = data[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(dtype=float)
            bad = ~np.isfinite(values)
            if bad.any():
                first = data.index[np.argmax(bad)]
                raise DataError(
                    f"Column {name!r} has {int(bad.sum())} non-finite value(s) (inf), "
                    f"first at row {first!r}. Replace or remove them."
                )


def require_numeric_response(data: pd.DataFrame, response: str) -> np.ndarray:
    """Return the response as float, or raise if it is not numeric."""
    column = data[response]
    if pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=float)
    if not pd.api.types.is_numeric_dtype(column):
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


# A column whose residual after projection on the earlier columns is below this
# fraction of its norm (variance inflation above 1e8) is nearly aliased: the fit
# goes through, but its estimate and standard error lose about 8 digits.
NEARLY_ALIASED = 1e-4


def _relative_residuals(matrix: np.ndarray) -> np.ndarray:
    """Norm of each column's residual on the earlier kept columns, relative to its own norm.

    Columns are taken in order, as R's ``qr`` (LINPACK ``dqrdc2``) and lme4 do;
    a column with a relative residual at most ``1e-7`` is aliased and not kept.
    """
    out = np.zeros(matrix.shape[1])
    basis = np.empty((matrix.shape[0], 0))
    for j in range(matrix.shape[1]):
        column = matrix[:, j].astype(float)
        norm = float(np.linalg.norm(column))
        residual = column
        for _ in range(2):  # project twice: classical Gram-Schmidt with re-orthogonalisation
            residual = residual - basis @ (basis.T @ residual)
        size = float(np.linalg.norm(residual))
        out[j] = size / norm if norm > 0.0 else 0.0
        if out[j] > 1e-7:
            basis = np.column_stack([basis, residual / size])
    return out


def aliased_columns(matrix: np.ndarray, names: tuple[str, ...]) -> list[str]:
    """Names of columns that are linear combinations of earlier columns.

    Columns are taken in order, as R's ``qr`` (LINPACK ``dqrdc2``) and lme4 do:
    a column is aliased when its residual after projection on the earlier
    kept columns is below ``1e-7`` of its own norm, so in ``x + 2*x`` it is
    the second column that is named.
    """
    ratios = _relative_residuals(matrix)
    return [names[j] for j in range(len(names)) if ratios[j] <= 1e-7]


def check_rank(matrix: np.ndarray, names: tuple[str, ...]) -> None:
    """Raise RankDeficientError naming aliased columns; warn about nearly aliased ones."""
    ratios = _relative_residuals(matrix)
    aliased = [names[j] for j in range(len(names)) if ratios[j] <= 1e-7]
    if aliased:
        raise RankDeficientError(
            f"The fixed-effect model matrix is rank deficient: column(s) "
            f"{', '.join(repr(a) for a in aliased)} are linear combinations of the others "
            "(aliased). Remove the term(s) or combine levels that never occur together."
        )
    nearly = [j for j in range(len(names)) if ratios[j] < NEARLY_ALIASED]
    if nearly:
        detail = ", ".join(f"{names[j]!r} (relative residual {ratios[j]:.1e})" for j in nearly)
        warnings.warn(
            f"The fixed-effect model matrix is nearly rank deficient: column(s) {detail} are "
            "almost linear combinations of the earlier columns, so their estimates and standard "
            "errors are numerically unstable. Centre or rescale predictors (e.g. x - mean(x)), or "
            "drop one of the nearly collinear terms.",
            HierlmWarning,
            stacklevel=4,
        )


def check_grouping(group: str, n_levels: int, n_columns: int, n_obs: int, source: str) -> None:
    """Apply lme4's identifiability checks to one random-effect block."""
    if n_levels < 2:
        raise DataError(
            f"Grouping factor {group!r} in {source} has only {n_levels} level; a random effect "
            "needs at least two. Drop the bar or use a factor with more levels."
        )
    if n_levels >= n_obs:
        raise DataError(
            f"Grouping factor {group!r} in {source} has {n_levels} levels for {n_obs} "
            "observations: each level must have more than one observation on average "
            "(number of levels must be < number of observations). "
            "The random effect would be confounded with the residual."
        )
    if n_levels * n_columns >= n_obs:
        raise DataError(
            f"The bar {source} has {n_levels * n_columns} random effects for {n_obs} "
            "observations; the variance parameters would be unidentifiable. "
            "Use fewer random-effect terms or more data."
        )


def warn_continuous_grouping(data: pd.DataFrame, name: str, source: str) -> None:
    """Warn when a grouping column looks like a continuous measurement."""
    column = data[name]
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return
    values = column.to_numpy(dtype=float)
    n_distinct = len(np.unique(values))
    fractional = bool(np.any(values != np.round(values)))
    if (fractional and n_distinct > 20) or n_distinct >= max(1000, 0.5 * len(values)):
        warnings.warn(
            f"Grouping variable {name!r} in {source} looks continuous ({n_distinct} distinct "
            "numeric values). Each value becomes its own level; if that is not intended, "
            "use a categorical column.",
            HierlmWarning,
            stacklevel=4,
        )
