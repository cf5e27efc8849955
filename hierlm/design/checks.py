"""Early checks of the data a model is built on, with messages that say how to fix things.

Everything here runs before any matrix is built, so a user sees "column 'Dayz'
not found; did you mean 'Days'?" rather than a traceback from deep inside a
numerical library.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from hierlm.errors import (
    ColumnNotFoundError,
    DataError,
    FitError,
    HierlmWarning,
    InputTypeError,
    MissingDataWarning,
    RankDeficientError,
    RankDeficientWarning,
)

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

# Largest |response| (and smallest spread) the engines can square and raise to the 4th power.
RESPONSE_SCALE_LIMIT = 1e50


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
        if (pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
                and not pd.api.types.is_complex_dtype(column)):
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


def check_rank(matrix: np.ndarray, names: tuple[str, ...], drop_aliased: bool = True) -> list[int]:
    """Drop (with a warning) or refuse aliased columns; warn about nearly aliased ones.

    Parameters
    ----------
    matrix : numpy.ndarray
        The fixed-effect model matrix.
    names : tuple of str
        Its column names.
    drop_aliased : bool
        True: drop the aliased columns with a :class:`~hierlm.errors.RankDeficientWarning`,
        as lme4 does ("fixed-effect model matrix is rank deficient so dropping
        k columns / coefficients"); False: raise :class:`~hierlm.errors.RankDeficientError`.

    Returns
    -------
    list of int
        Indices of the columns kept, in order.
    """
    ratios = _relative_residuals(matrix)
    aliased = [j for j in range(len(names)) if ratios[j] <= 1e-7]
    if aliased:
        listed = ", ".join(repr(names[j]) for j in aliased)
        if not drop_aliased:
            raise RankDeficientError(
                f"The fixed-effect model matrix is rank deficient: column(s) {listed} are linear "
                "combinations of the others (aliased). Remove the term(s) or combine levels that "
                "never occur together, or pass drop_aliased=True to drop them as lme4 does."
            )
        if len(aliased) == len(names):
            raise RankDeficientError(f"Every fixed-effect column ({listed}) is zero; the fixed part "
                                     "has nothing to estimate. Write '0 +' to omit it.")
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(aliased)} column(s) / "
            f"coefficient(s): {listed}. They are linear combinations of the earlier columns (for "
            "example cells of a factorial design without rows); pass drop_aliased=False to raise "
            "instead.",
            RankDeficientWarning,
            stacklevel=4,
        )
    nearly = [j for j in range(len(names)) if 1e-7 < ratios[j] < NEARLY_ALIASED]
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
    return [j for j in range(len(names)) if ratios[j] > 1e-7]


def require_finite_matrix(matrix: np.ndarray, names: tuple[str, ...], where: str,
                          index: pd.Index | np.ndarray) -> None:
    """Raise a DataError naming the model-matrix columns with NaN or infinite entries.

    The raw columns are checked before any matrix is built; this catches what
    a transform makes of them (``log(Days)`` with ``Days = 0``, ``sqrt`` of a
    negative number), which would otherwise turn the whole fit into NaN.

    Parameters
    ----------
    matrix : numpy.ndarray
        The built matrix (X, or one bar's Z), shape (n, k).
    names : tuple of str
        Its column names.
    where : str
        ``"the fixed part"`` or ``"the bar (1 | g)"``, for the message.
    index : array-like
        Row labels of the data, to name the first bad row.
    """
    bad = ~np.isfinite(matrix)
    if not bad.any():
        return
    rows = bad.any(axis=1)
    columns = [names[j] for j in np.flatnonzero(bad.any(axis=0))]
    detail = ", ".join(f"{name!r} ({int(bad[:, names.index(name)].sum())} row(s))" for name in columns)
    first = np.asarray(index)[int(np.argmax(rows))]
    first = first.item() if isinstance(first, np.generic) else first
    raise DataError(
        f"The term(s) {detail} of {where} are NaN or infinite in {int(rows.sum())} row(s), first at "
        f"row {first!r}, although the data columns are finite: a transform is applied outside its "
        "domain (e.g. log of 0 or of a negative value). Change the transform (e.g. log(x + 1)) or "
        "remove those rows."
    )


def require_row_array(values: object, n: int, name: str) -> np.ndarray:
    """A float array of one value per row of the data, or a DataError naming ``name``."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a column name or numbers, one per row of the data; "
                             f"got {type(values).__name__}.") from None
    if array.ndim != 1 or array.size != n:
        raise DataError(f"{name} has {array.size} value(s) (shape {array.shape}); the data have "
                        f"{n} rows: give one value per row, or name a column.")
    return array


def require_weights(weights: np.ndarray, name: str) -> np.ndarray:
    """Prior weights: finite and not negative (a DataError naming ``name`` and the first bad row)."""
    values = np.asarray(weights, dtype=float)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{name} must be finite and not negative; {int(bad.sum())} value(s) are "
                        f"not (first at position {i}: {values[i]!r}).")
    return values


def require_offset(offset: object, n: int, name: str) -> np.ndarray:
    """An offset: one finite number per row (a DataError naming ``name``)."""
    values = require_row_array(offset, n, name)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{name} has {int(bad.sum())} value(s) that are NaN or infinite (first at "
                        f"position {i}: {values[i]!r}); an offset must be finite in every row "
                        "(e.g. log(exposure) needs exposure > 0).")
    return values


def require_counts(values: np.ndarray, name: str) -> np.ndarray:
    """Whole, non-negative counts (cbind's successes and failures), or a DataError naming ``name``."""
    values = np.asarray(values, dtype=float)
    bad = (values < 0) | (np.abs(values - np.round(values)) > 1e-8 * np.maximum(1.0, np.abs(values)))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"The counts {name} must be whole numbers >= 0; {int(bad.sum())} value(s) "
                        f"are not (first at position {i}: {values[i]:g}).")
    return values


def check_response(y: np.ndarray, name: str) -> None:
    """Refuse a response whose scale double precision cannot square.

    The likelihood works with sums of squares and the standard errors with
    ``sigma**4``: beyond about 1e50 (or varying by less than 1e-50) they
    overflow (underflow), and every method would return inf, NaN or a
    traceback.

    Raises
    ------
    DataError
        For a response beyond :data:`RESPONSE_SCALE_LIMIT`, naming its scale and the fix.
    """
    values = np.asarray(y, dtype=float)
    if not values.size:
        return
    largest = float(np.max(np.abs(values)))
    if largest > RESPONSE_SCALE_LIMIT:
        raise DataError(
            f"The response {name!r} reaches {largest:.3g}: squares and products of values that "
            f"large overflow double precision (limit {RESPONSE_SCALE_LIMIT:.0e}). Rescale it, e.g. "
            f"'I({name} / 1e{int(np.floor(np.log10(largest)))}) ~ ...', and scale the estimates back."
        )
    spread = float(np.max(values) - np.min(values))
    if 0.0 < spread < 1.0 / RESPONSE_SCALE_LIMIT:
        raise DataError(
            f"The response {name!r} varies by only {spread:.3g}: squares of differences that small "
            f"underflow double precision (limit {1.0 / RESPONSE_SCALE_LIMIT:.0e}). Rescale it, e.g. "
            f"'I({name} * 1e{int(-np.floor(np.log10(spread)))}) ~ ...', and scale the estimates back."
        )


def require_varying_response(y: np.ndarray, X: np.ndarray, name: str) -> np.ndarray | None:
    """Refuse, before any fit, a constant response or one the fixed effects reproduce exactly.

    Then there is no residual variation: REML's penalised system is singular,
    and MAP or NUTS would chase a residual SD of zero. Every engine calls this
    first, so all of them refuse with the same message.

    Returns
    -------
    numpy.ndarray or None
        The least-squares coefficients of ``y`` on ``X`` it computed (for the
        caller to reuse); None without rows or columns.

    Raises
    ------
    FitError
        Naming the response.
    """
    values = np.asarray(y, dtype=float)
    if values.size and float(np.max(values) - np.min(values)) == 0.0:
        raise FitError(
            f"The response {name!r} is constant ({values[0]:.6g} in every row): there is no "
            "variation for a mixed model to explain. Check that the right column is the response."
        )
    matrix = np.asarray(X, dtype=float)
    coef = None
    if values.size and matrix.shape[1]:
        coef, *_ = np.linalg.lstsq(matrix, values, rcond=None)
        residual = float(np.linalg.norm(values - matrix @ coef))
        if residual <= 1e-10 * float(np.linalg.norm(values - np.mean(values))):
            raise FitError(
                f"The fixed effects reproduce the response {name!r} exactly (no residual "
                "variation): the residual SD would be 0. Remove the predictor that is a copy or "
                "a function of the response."
            )
    return coef


def warn_repeated_terms(blocks: Iterable[tuple[str, tuple[str, ...], str]]) -> None:
    """Warn when two bars give the same grouping factor the same coefficient.

    ``(1 | g) + (1 | g)`` (or ``(1 | g) + (1 + x | g)``) adds two variances of
    the same random intercept: the likelihood depends on their sum only, so
    how it is split between the two is unidentifiable.

    Parameters
    ----------
    blocks : iterable of (group, columns, source)
        One entry per random-effect block.
    """
    seen: dict[tuple[str, str], str] = {}
    repeated: list[str] = []
    for group, columns, source in blocks:
        for column in columns:
            key = (group, column)
            if key in seen and seen[key] != source:
                repeated.append(f"{column!r} of {group!r} in {seen[key]} and {source}")
            elif key in seen:
                repeated.append(f"{column!r} of {group!r} twice in {source}")
            seen.setdefault(key, source)
    if repeated:
        warnings.warn(
            "The same random effect appears in more than one bar (" + "; ".join(repeated) + "): "
            "only the sum of their variances is identified, so how it is split between the bars "
            "is arbitrary. Write each random effect once, e.g. '(1 + x | g)' instead of "
            "'(1 | g) + (1 + x | g)'.",
            HierlmWarning,
            stacklevel=4,
        )


# Bytes per cell of the dense part, times the copies the ML/REML kernel holds at
# once (the cross-products, K~, the scaled Schur complement and its factor, and
# for the gradient the inverse, its transpose and the scaled K~): 7 doubles.
DENSE_BYTES_PER_CELL = 7 * 8


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _size(n_bytes: float) -> str:
    """Bytes as GB, MB, kB or bytes, one decimal."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes:.0f} bytes"


def require_dense_memory(width: int, what: str) -> None:
    """Refuse, before allocating, a dense ``width x width`` problem that does not fit in memory.

    Parameters
    ----------
    width : int
        Width of the dense part (the Schur complement of the first factor).
    what : str
        What the dense part is made of, for the message.

    Raises
    ------
    DataError
        With the memory needed, the memory available and the alternatives.
    """
    needed = DENSE_BYTES_PER_CELL * float(width) ** 2
    available = available_memory()
    if available is None or needed <= available:
        return
    raise DataError(
        f"{what} form a dense block {width:,} columns wide; the ML/REML engine would need about "
        f"{_size(needed)} of memory for it ({DENSE_BYTES_PER_CELL // 8} copies of "
        f"{width:,} x {width:,} doubles), and {_size(available)} are available. "
        "Alternatives: method='map' with priors='flat' gives the ML estimate (or the REML "
        "estimate with reml=True and flat priors) through a sparse factorisation; method='nuts' "
        "with formulation='full' samples without the dense block; or use a grouping factor "
        "with fewer levels."
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
