"""formulaic, run with hierlm's transforms and lme4's column names.

The fixed part's X (numeric columns and the intercept directly,
:mod:`hierlm.design.lean`; anything else by formulaic), any other right-hand
side (a bar's Z, a response or offset expression) through :func:`_materialize`,
which turns formulaic's errors into :class:`~hierlm.errors.FormulaError`, and
the renaming of formulaic's columns to lme4's (:func:`lme4_names`). Used by
:mod:`hierlm.design.spec` and :mod:`hierlm.sources.learn`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError
from formulaic.model_spec import ModelSpec as FormulaicSpec

from hierlm.design.frame import ModelFrame
from hierlm.design.lean import lean_fixed
from hierlm.design.transforms import FORMULA_CONTEXT
from hierlm.errors import FormulaError
from hierlm.formula.parser import describe_formulaic_error

__all__ = ["_fixed_part", "_materialize", "_parsed", "lme4_names"]

_TREATMENT = re.compile(r"^([^\W\d][\w.]*)\[(?:T\.)?(.+)\]$")
_INTEGRAL_FLOAT = re.compile(r"^(-?\d+)\.0$")
_INTEGRAL_LEVEL = re.compile(r"\[((?:[A-Za-z]+\.)?)(-?\d+)\.0\]$")


def lme4_names(names: list[str]) -> tuple[str, ...]:
    """Rename formulaic columns as lme4 does: ``f[T.b]`` -> ``fb``, ``x:f[T.b]`` -> ``x:fb``.

    A level that is an integral number prints as R prints it (``C(k)[T.2.0]``
    -> ``C(k)2``; numeric columns reach formulaic as float64). Names of other
    shapes are kept. If renaming would make two names equal, formulaic's names
    are kept for all columns.
    """
    renamed = []
    for name in names:
        parts = []
        for part in name.split(":"):
            match = _TREATMENT.match(part)
            if match:
                level = _INTEGRAL_FLOAT.sub(r"\1", match.group(2))
                parts.append(match.group(1) + level)
            else:
                parts.append(_INTEGRAL_LEVEL.sub(r"[\1\2]", part))
        renamed.append(":".join(parts))
    if len(set(renamed)) != len(renamed):
        return tuple(names)
    return tuple(renamed)


def _plain(error: BaseException) -> str:
    """Error text without formulaic's colour codes, with a caret line under the culprit."""
    return describe_formulaic_error(error)


def _materialize(formula: str, data: pd.DataFrame, where: str) -> Any:
    """Run formulaic on ``formula`` with hierlm's transforms, translating its errors.

    numpy's warnings about a transform outside its domain (log of 0) are
    silenced: the matrices are checked afterwards and such values raise a
    DataError naming the term (:func:`hierlm.design.checks.require_finite_matrix`).
    """
    try:
        parsed = _parsed(formula) if "." not in formula else formula
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return model_matrix(parsed, data, context=FORMULA_CONTEXT, na_action="ignore")
    except (FormulaicError, SyntaxError) as error:
        raise FormulaError(f"Cannot build {where} from {formula!r}: {_plain(error)}") from None


def _fixed_part(text: str, frame: pd.DataFrame | ModelFrame, kinds: Mapping[str, str]
                ) -> tuple[FormulaicSpec, list[str], np.ndarray]:
    """The fixed part's formulaic spec, column names and X.

    An intercept and numeric columns are built directly (:mod:`hierlm.design.lean`)
    from the model frame's columns, anything else by formulaic (which builds a
    :class:`~hierlm.design.frame.ModelFrame`'s frame).
    """
    if "." not in text:
        try:
            if isinstance(frame, ModelFrame):
                lean = lean_fixed(_parsed(text), frame.columns, kinds, n_rows=frame.n_rows)
            else:
                lean = lean_fixed(_parsed(text), frame, kinds)
        except (FormulaicError, SyntaxError):
            lean = None  # formulaic's path below reports it
        if lean is not None:
            return lean
    data = frame.frame if isinstance(frame, ModelFrame) else frame
    fixed = _materialize(text, data, "the fixed-effect matrix")
    return fixed.model_spec, list(fixed.columns), np.asarray(fixed, dtype=float)


@functools.lru_cache(maxsize=256)
def _parsed(formula: str) -> Formula:
    """Parse a right-hand side with formulaic, once per text.

    Only for text without a ``.``: formulaic reads the data's columns while
    parsing for its ``.`` operator (all other columns), and nowhere else, so
    any other text parses the same for every data frame. formulaic never
    modifies a parsed formula.
    """
    return Formula(formula)
