"""Which data columns a model reads: response, fixed part, bars, offsets, residual structure.

Parsing only (formulaic's ``required_variables``, no data): the lists that
:func:`hierlm.design.spec.build_spec` checks against the data, and which part of
the formula reads each column first, for messages. Used by
:mod:`hierlm.design.spec` and :mod:`hierlm.sources.learn`.
"""

from __future__ import annotations

import re

from hierlm.design.frame import label_arguments, required_columns
from hierlm.design.residual import ResidualSpec
from hierlm.design.transforms import FORMULA_CONTEXT
from hierlm.formula import BarTerm, ParsedFormula
from hierlm.formula.parser import split_cbind

__all__ = ["_column_uses", "_residual_columns", "_response_variables", "_variables"]

_IDENTIFIER = re.compile(r"^[^\W\d][\w.]*$")


def _response_variables(response: str) -> list[str]:
    """Data columns the response reads: itself, those of an expression like ``log(y)``, or of ``cbind``."""
    parts = split_cbind(response)
    if parts is not None:
        return list(dict.fromkeys(name for part in parts for name in _response_variables(part)))
    if _IDENTIFIER.match(response):
        return [response]
    return required_columns(f"0 + I({response})", FORMULA_CONTEXT, f"the response {response!r}")


def _formula_columns(formula: ParsedFormula, terms: list[BarTerm],
                     with_response: bool = True) -> list[str]:
    """Data columns formulaic reads (response, fixed part, bars' left sides), without duplicates."""
    found: list[str] = (list(_response_variables(formula.response))
                        if formula.response and with_response else [])
    for text in [formula.fixed] + [term.expr for term in terms] + list(formula.offsets):
        found.extend(required_columns(text, FORMULA_CONTEXT, f"the formula {formula.text!r}"))
    return list(dict.fromkeys(found))


def _column_uses(formula: ParsedFormula, terms: list[BarTerm]) -> dict[str, str]:
    """Columns the model frame converts, each with the part of the formula that reads it first.

    The group argument of ``within(x, g)`` / ``between(x, g)`` is a set of
    labels, left as the user gave it (:func:`hierlm.design.frame.label_arguments`).
    """
    parts = ([("the fixed part", formula.fixed)] + [(f"the bar {t.source}", t.expr) for t in terms]
             + [(f"the offset {o!r}", o) for o in formula.offsets])
    labels = label_arguments(text for _, text in parts)
    uses = {name: "the response" for name in _response_variables(str(formula.response))}
    for where, text in parts:
        for name in required_columns(text, FORMULA_CONTEXT, f"the formula {formula.text!r}"):
            if name not in labels:
                uses.setdefault(name, where)
    return uses


def _variables(formula: ParsedFormula, terms: list[BarTerm], with_response: bool = True) -> list[str]:
    """Every data column a formula reads, response first, without duplicates."""
    context = set(FORMULA_CONTEXT)
    found = _formula_columns(formula, terms, with_response)
    for term in terms:
        found.extend(term.factors)
    unique: list[str] = []
    for name in found:
        if name not in context and name not in unique:
            unique.append(name)
    return unique


def _residual_columns(residual: ResidualSpec | None, variance: str | None) -> list[str]:
    columns = [] if residual is None else [c for c in (residual.time, residual.group) if c]
    return columns + ([variance] if variance and variance not in columns else [])
