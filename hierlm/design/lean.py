"""The fixed-effect matrix of an intercept and numeric columns, built without formulaic's materializer.

Most longitudinal models (``weight ~ week``, ``y ~ x1 + x2``) have a fixed part
of plain numeric columns and an intercept. For those, formulaic's model matrix
is the columns themselves next to a column of ones, and its learnt spec holds no
state from the data (no levels, no transform state): only the terms, their
column names and that each variable was numerical. :func:`lean_fixed` builds
that matrix with numpy, reading each column of the model frame once, and the
:class:`formulaic.model_spec.ModelSpec` formulaic would have learnt (the
same object: equal field by field, so that new data, reference grids and SQL
builders use it exactly as formulaic's own). Anything else (factors,
transforms, interactions, ``.``, a structured formula) returns None and takes
formulaic's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from formulaic.formula import SimpleFormula
from formulaic.materializers.base import EncodedTermStructure
from formulaic.materializers.types import EvaluatedFactor, ScopedFactor, ScopedTerm
from formulaic.model_spec import ModelSpec as FormulaicSpec
from formulaic.model_spec import NAAction
from formulaic.parser.types import Factor
from formulaic.utils.variables import Variable

from hierlm.design.frame import NUMERIC

__all__ = ["lean_fixed"]


def _data_variable(name: str) -> Variable:
    """The variable formulaic records for a column looked up in the data (its value)."""
    return Variable(name, roles=["value"], source="data")


def lean_fixed(parsed: Any, frame: pd.DataFrame | Mapping[str, pd.Series], kinds: Mapping[str, str],
               n_rows: int | None = None) -> tuple[FormulaicSpec, list[str], np.ndarray] | None:
    """X, its column names and formulaic's spec for an intercept and numeric columns, or None.

    Parameters
    ----------
    parsed : formulaic Formula
        The fixed part, parsed (``hierlm.design.spec._parsed``).
    frame : pandas.DataFrame or dict
        The model frame (:func:`hierlm.design.frame.learn_frame`): numeric
        columns as float64; or its columns (:attr:`hierlm.design.frame.ModelFrame.columns`).
    kinds : dict
        Column -> kind (:func:`hierlm.design.frame.column_kinds`).
    n_rows : int, optional
        The number of rows; needed when ``frame`` is a dict of columns.

    Returns
    -------
    (spec, columns, X) or None
        ``spec`` equal to the ``model_spec`` formulaic's ``model_matrix`` returns
        (``na_action="ignore"``), ``columns`` its column names (``"Intercept"``,
        then the column names), ``X`` the ``(n, p)`` float matrix; None when a
        term is not the intercept or a numeric column of ``frame``.
    """
    if type(parsed) is not SimpleFormula:
        return None
    terms = list(parsed)
    names: list[str] = []
    values: dict[str, np.ndarray] = {}  # each numeric column, read from the frame once
    intercept = [_is_intercept(term) for term in terms]
    for term, constant in zip(terms, intercept, strict=True):
        if constant:
            names.append("Intercept")
            continue
        if len(term.factors) != 1:
            return None
        factor = term.factors[0]
        name = factor.expr
        if (factor.eval_method is not Factor.EvalMethod.LOOKUP or kinds.get(name) != NUMERIC
                or name not in frame):  # (a frame's columns, a dict's keys)
            return None
        column = frame[name]
        if column.dtype != np.float64:
            return None
        names.append(name)
        values[name] = column.to_numpy()
    if len(set(names)) != len(names):
        return None
    n = len(frame) if n_rows is None else n_rows
    X = np.empty((n, len(names)))
    for j, name in enumerate(names):
        X[:, j] = 1.0 if intercept[j] else values[name]
    # formulaic's record of each term: its scoped factors (none for the intercept, the column
    # unreduced otherwise), without values, and its columns; the encoder state of numbers
    structure = [
        EncodedTermStructure(term, [ScopedTerm([] if constant else [
            ScopedFactor(EvaluatedFactor(term.factors[0], None, {_data_variable(name)}),
                         reduced=False)])], [name])
        for term, name, constant in zip(terms, names, intercept, strict=True)
    ]
    encoder_state: dict[str, Any] = {
        name: (Factor.Kind.NUMERICAL, {})
        for name, constant in zip(names, intercept, strict=True) if not constant}
    spec = FormulaicSpec(formula=parsed, materializer="pandas", materializer_params={},
                         ensure_full_rank=True, na_action=NAAction.IGNORE, output="pandas",
                         structure=structure, transform_state={}, encoder_state=encoder_state)
    return spec, names, X


def _is_intercept(term: Any) -> bool:
    """True for formulaic's intercept term (one literal factor ``1``)."""
    return bool(len(term.factors) == 1 and term.factors[0].eval_method is Factor.EvalMethod.LITERAL
                and term.factors[0].expr == "1")
