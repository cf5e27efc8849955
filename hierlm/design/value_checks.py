"""Checks of per-row numbers and of the response: row arrays, weights, offsets, counts, scale.

Each refuses input the engines cannot use with a DataError (or FitError) that
names the argument and the fix; the names are re-exported by
:mod:`hierlm.design.checks`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import dgels

from hierlm.errors import DataError, FitError, InputTypeError

__all__ = [
    "RESPONSE_SCALE_LIMIT",
    "check_response",
    "require_counts",
    "require_offset",
    "require_row_array",
    "require_varying_response",
    "require_weights",
]

# Largest |response| (and smallest spread) the engines can square and raise to the 4th power.
RESPONSE_SCALE_LIMIT = 1e50


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
        coef, residual = _least_squares(matrix, values)
        centred = values - values.mean()
        if residual <= 1e-10 * math.sqrt(float(centred @ centred)):
            raise FitError(
                f"The fixed effects reproduce the response {name!r} exactly (no residual "
                "variation): the residual SD would be 0. Remove the predictor that is a copy or "
                "a function of the response."
            )
    return coef


def _least_squares(matrix: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares coefficients of ``values`` on ``matrix`` and the norm of the residual.

    By Householder QR (LAPACK ``dgels``), whose residual norm comes with the solve;
    numpy's SVD solver where the columns are (nearly) dependent or there are no more
    rows than columns.
    """
    n, p = matrix.shape
    if n > p:
        factor, solved, info = dgels(matrix, values)
        diagonal = np.abs(np.diagonal(factor)[:p])
        # (R's diagonal spread past 1e8: nearly dependent or wildly scaled columns, where the
        # QR solution's coefficients lose digits; the SVD solver's minimum-norm answer instead)
        if info == 0 and diagonal.min() > 1e-8 * diagonal.max():
            tail = solved[p:]
            return solved[:p].copy(), math.sqrt(float(tail @ tail))
    coef = np.linalg.lstsq(matrix, values, rcond=None)[0]
    residual = values - matrix @ coef
    return coef, math.sqrt(float(residual @ residual))
