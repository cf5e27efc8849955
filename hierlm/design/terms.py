"""The terms of the fixed part of a model: their variables, columns and full indicator coding.

Used by the F-tests of :mod:`hierlm.lmm.ftests`, which need to know which
columns of X belong to which term, which terms contain which, and each term's
over-parameterised coding (indicator columns for every level of its factors,
as R's ``model.matrix(~ 0 + term)`` gives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import model_matrix

from hierlm.design.spec import ModelSpec
from hierlm.design.transforms import FORMULA_CONTEXT
from hierlm.errors import FitError

__all__ = ["FixedTerm", "contained_in", "fixed_terms"]


@dataclass(frozen=True)
class FixedTerm:
    """One term of the fixed part of a formula.

    Attributes
    ----------
    name : str
        The term as formulaic writes it (``"recipe:temperature"``).
    variables : tuple of str
        The variables (factor expressions) it multiplies.
    marginal : frozenset of str
        The variables whose margin is in the model: ``v`` such that the term
        without ``v`` is also a term (every variable of a main effect). These
        are the variables R's ``terms`` marks with 1 in its factor matrix (2
        means no contrasts, the margin being absent), and the ones lmerTest
        compares to decide containment.
    numeric : frozenset of str
        Those of ``marginal`` that are numeric (the rest are categorical).
    columns : tuple of int
        Its columns in the fixed-effect matrix X.
    overparameterised : numpy.ndarray
        Indicator columns for all levels of its categorical variables (times
        its numeric ones), shape (n, m).
    """

    name: str
    variables: tuple[str, ...]
    marginal: frozenset[str]
    numeric: frozenset[str]
    columns: tuple[int, ...]
    overparameterised: np.ndarray

    @property
    def order(self) -> int:
        """Number of variables in the term (1 for a main effect)."""
        return len(self.variables)


def contained_in(term: FixedTerm, other: FixedTerm) -> bool:
    """True when ``other`` contains ``term`` (lmerTest's rule for type III hypotheses).

    ``other``'s marginal variables include all of ``term``'s and more, and both
    have the same numeric ones. With ``recipe * temp`` (``temp`` numeric),
    ``temp`` is contained in ``recipe:temp`` but ``recipe`` is not; with
    ``temp + recipe:temp`` the interaction's only marginal variable is
    ``recipe``, so ``temp`` is not contained in it either.
    """
    return term.marginal < other.marginal and term.numeric == other.numeric


def fixed_terms(spec: ModelSpec, data: pd.DataFrame) -> tuple[list[FixedTerm], int | None]:
    """Describe every term of the fixed part except the intercept.

    Parameters
    ----------
    spec : ModelSpec
        The model's spec.
    data : pandas.DataFrame
        The rows the model was fitted to (``Model.data``).

    Returns
    -------
    terms : list of FixedTerm
        In formula order; a term whose columns were all dropped as aliased
        (see ``ModelSpec.kept_columns``) is left out.
    intercept : int or None
        Column of the intercept in X, if any.
    """
    fixed = spec.fixed_spec
    categorical = {str(factor.expr) for factor in fixed.factor_contrasts}
    data = spec.model_frame(data)  # the kinds and categories formulaic saw when fitting
    # formulaic's column j is column position[j] of X (None: dropped as aliased)
    n_columns = sum(s.stop - s.start for s in fixed.term_slices.values())
    kept = range(n_columns) if spec.kept_columns is None else spec.kept_columns
    position: dict[int, int] = {j: i for i, j in enumerate(kept)}
    terms, intercept = [], None
    present = {frozenset(str(factor.expr) for factor in term.factors) for term in fixed.term_slices}
    for term, columns in fixed.term_slices.items():
        indices = tuple(position[j] for j in range(columns.start, columns.stop) if j in position)
        variables = tuple(str(factor.expr) for factor in term.factors)
        if not indices:
            continue
        if variables == ("1",):
            intercept = indices[0]
            continue
        marginal = frozenset(
            v for v in variables if len(variables) == 1 or frozenset(variables) - {v} in present
        )
        try:
            block = model_matrix(f"0 + {term}", data, context=FORMULA_CONTEXT,
                                 ensure_full_rank=False, na_action="ignore")
        except Exception as error:  # formulaic raises several types; report the term
            raise FitError(f"cannot form the full coding of term '{term}': {error}") from None
        terms.append(FixedTerm(
            name=str(term),
            variables=variables,
            marginal=marginal,
            numeric=frozenset(v for v in marginal if v not in categorical),
            columns=indices,
            overparameterised=np.asarray(block, dtype=float),
        ))
    return terms, intercept
