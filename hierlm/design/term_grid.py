"""The fixed terms' codings over a grid of the variables, for models whose rows are elsewhere.

Type III F-tests (:func:`hierlm.lmm.ftests.type3_contrasts`) express each
term's over-parameterised coding in the columns of X, ``pinv(X) @ full``. When
every coding column is an exact linear combination of X's columns (treatment
coding, no columns dropped as aliased), that combination is a property of the
formula and its frozen spec, not of the rows: it is the same over the data as
over a grid holding every factor level combination and a few values of each
numeric variable. A model on data held by an engine (:mod:`hierlm.sources`)
uses this grid in place of its rows; :func:`check_spanned` refuses the cases
where the combination would depend on the rows.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from hierlm.design.spec import ModelSpec
from hierlm.design.terms import FixedTerm, fixed_terms
from hierlm.design.transforms import FORMULA_CONTEXT
from hierlm.errors import FitError

__all__ = ["GRID_LIMIT", "check_spanned", "coding_grid"]

GRID_LIMIT = 100_000  # rows of the grid: factor level combinations x numeric values
_NUMERIC_VALUES = (1.0, 2.0, 3.5, 5.0)  # four distinct positive values: cubic terms are pinned down


def _grid_frame(spec: ModelSpec, full: bool) -> pd.DataFrame:
    """Every combination of the fixed part's factor levels and four values of each numeric variable.

    With ``full=False`` only the first combination (the terms' columns are
    then known, their codings not).
    """
    names = sorted({str(v) for v in spec.fixed_spec.required_variables} - set(FORMULA_CONTEXT))
    axes: list[tuple[object, ...]] = []
    for name in names:
        kind = spec.frame.kinds.get(name, "numeric")
        if name in spec.frame.levels:
            axes.append(tuple(spec.frame.levels[name]))
        elif kind == "logical":
            axes.append((False, True))
        else:
            axes.append(_NUMERIC_VALUES)
    if not full:
        axes = [axis[:1] for axis in axes]
    size = math.prod(len(axis) for axis in axes)
    if size > GRID_LIMIT:
        raise FitError(
            f"type III tests on engine data use a grid of the fixed part's variables "
            f"({', '.join(names)}), which would have {size} rows (limit {GRID_LIMIT}); use "
            "type=1 or type=2, or fit a sample of the rows as a pandas DataFrame.")
    frame = pd.DataFrame(list(itertools.product(*axes)), columns=names)
    for name in names:
        if name in spec.frame.levels:
            frame[name] = pd.Categorical(frame[name], categories=list(spec.frame.levels[name]))
    return frame


def coding_grid(spec: ModelSpec, full: bool = True) -> tuple[list[FixedTerm], int | None, np.ndarray]:
    """Fixed terms with their codings over the grid, and X over the same grid.

    Parameters
    ----------
    spec : ModelSpec
        The model's frozen spec.
    full : bool
        The whole grid (type III needs it); False: one row, enough for the
        terms' columns of X (types I and II).

    Returns
    -------
    terms : list of FixedTerm
        As :func:`hierlm.design.terms.fixed_terms` gives them, with
        ``overparameterised`` over the grid's rows.
    intercept : int or None
        Column of the intercept in X.
    X : numpy.ndarray
        The fixed-effect matrix of the grid (the model's columns).

    Raises
    ------
    FitError
        When the grid would exceed :data:`GRID_LIMIT` rows.
    """
    grid = _grid_frame(spec, full)
    terms, intercept = fixed_terms(spec, grid)
    X = spec.fixed_matrix(spec.model_frame(grid))
    return terms, intercept, np.asarray(X, dtype=float)


def check_spanned(X: np.ndarray, terms: list[FixedTerm], intercept: int | None) -> None:
    """Refuse type III on a grid unless every coding column is exactly in the span of X.

    Raises
    ------
    FitError
        When X is rank deficient on the grid or some coding column is not an
        exact combination of X's columns (columns dropped as aliased, or a
        coding whose projection on X depends on the rows).
    """
    blocks = [term.overparameterised for term in terms]
    if intercept is not None:
        blocks.insert(0, np.ones((X.shape[0], 1)))
    full = np.column_stack(blocks) if blocks else np.zeros((X.shape[0], 0))
    rank = np.linalg.matrix_rank(X)
    coef, *_ = np.linalg.lstsq(X, full, rcond=None)
    residual = float(np.max(np.abs(full - X @ coef))) if full.size else 0.0
    if rank < X.shape[1] or residual > 1e-9 * max(1.0, float(np.max(np.abs(full), initial=0.0))):
        raise FitError(
            "type III tests on engine data need every term's full coding to be an exact "
            "combination of the model's columns (treatment-coded factors, no columns dropped as "
            "aliased); here it is not, so the hypotheses would depend on the rows. Use type=1 or "
            "type=2, or fit the rows as a pandas DataFrame.")
