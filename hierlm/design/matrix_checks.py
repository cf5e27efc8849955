"""Checks of built model matrices: aliased (or nearly aliased) columns and non-finite terms.

These run on X and the Z blocks once formulaic has built them, after the data
columns themselves passed :mod:`hierlm.design.checks`; the names are
re-exported there.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from hierlm.errors import DataError, HierlmWarning, RankDeficientError, RankDeficientWarning

__all__ = ["NEARLY_ALIASED", "aliased_columns", "check_rank", "require_finite_matrix"]


# A column whose residual after projection on the earlier columns is below this
# fraction of its norm (variance inflation above 1e8) is nearly aliased: the fit
# goes through, but its estimate and standard error lose about 8 digits.
NEARLY_ALIASED = 1e-4


def _relative_residuals(matrix: np.ndarray) -> np.ndarray:
    """Norm of each column's residual on the earlier kept columns, relative to its own norm.

    Columns are taken in order, as R's ``qr`` (LINPACK ``dqrdc2``) and lme4 do;
    a column with a relative residual at most ``1e-7`` is aliased and not kept.
    """
    columns = np.array(matrix, dtype=float).T  # (one row per column, each contiguous)
    out = np.zeros(columns.shape[0])
    basis = np.empty_like(columns)  # the kept columns' orthonormal directions, as rows
    kept = 0
    for j, column in enumerate(columns):
        norm = math.sqrt(float(column @ column))  # (numpy's norm of a vector, without its checks)
        residual = column
        if kept:  # (nothing to project out of the first kept column)
            directions = basis[:kept]
            for _ in range(2):  # project twice: classical Gram-Schmidt with re-orthogonalisation
                residual = residual - (directions @ residual) @ directions
        size = math.sqrt(float(residual @ residual))
        out[j] = size / norm if norm > 0.0 else 0.0
        if out[j] > 1e-7:
            basis[kept] = residual / size
            kept += 1
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
