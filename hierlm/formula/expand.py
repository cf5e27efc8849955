"""Expand bars as lme4 does: ``||`` into uncorrelated terms and ``/`` into nested factors.

``(x || g)`` becomes ``(1 | g) + (0 + x | g)``: one bar per term of the left
side, as ``lme4::expandDoubleVerts`` does (a categorical term stays one block).
``(1 | a/b)`` becomes ``(1 | b:a) + (1 | a)``, innermost first, as lme4's
``findbars`` lists them, and named as lme4 names them: inner factor first
(``"cask:batch"`` for ``batch/cask``, levels ``"a:A"``). An interaction the user
writes with ``:`` keeps the user's order.
"""

from __future__ import annotations

from dataclasses import dataclass

from formulaic import Formula
from formulaic.errors import FormulaicError

from hierlm.errors import FormulaError
from hierlm.formula.parser import Bar, describe_formulaic_error

__all__ = ["BarTerm", "expand_bars", "bar_term_parts"]


@dataclass(frozen=True)
class BarTerm:
    """One random-effect block after expansion.

    Attributes
    ----------
    expr : str
        formulaic right-hand side for the block's columns, e.g. ``"1 + Days"``.
    factors : tuple of str
        Names of the factors whose interaction is the grouping, e.g. ``("batch", "cask")``.
    source : str
        The bar as the user wrote it (for messages).
    structure : str
        Name of the block's covariance structure (``"us"``, ``"diag"``, ``"cs"``, ...).
    homogeneous : bool
        One variance for every term (``hom = TRUE``) of ``cs``/``ar1``/``toep``.
    """

    expr: str
    factors: tuple[str, ...]
    source: str
    structure: str = "us"
    homogeneous: bool = True

    @property
    def group(self) -> str:
        """The grouping factor's display name, e.g. ``"cask:batch"``."""
        return ":".join(self.factors)


def bar_term_parts(expr: str, source: str) -> tuple[bool, list[str]]:
    """Return (has_intercept, non-intercept term texts) of a bar's left side.

    Raises
    ------
    FormulaError
        If formulaic cannot parse the expression.
    """
    try:
        terms = list(Formula(expr))
    except (FormulaicError, SyntaxError) as error:
        raise FormulaError(
            f"Cannot parse the left side {expr!r} of the bar {source}: "
            f"{describe_formulaic_error(error)}"
        ) from None
    has_intercept = any(str(term) == "1" for term in terms)
    others = [str(term) for term in terms if str(term) != "1"]
    return has_intercept, others


def _nested_factor_sets(group: tuple[tuple[str, ...], ...]) -> list[tuple[str, ...]]:
    """``a/b/c`` -> [(c, b, a), (b, a), (a,)]; ``a:b`` -> [(a, b)]; ``a:b/c`` -> [(c, a, b), (a, b)].

    Inner factors come first, as lme4 names them (``cask:batch`` for ``batch/cask``);
    a ``:`` the user wrote keeps its order.
    """
    sets: list[tuple[str, ...]] = []
    for depth in range(1, len(group) + 1):
        sets.append(tuple(name for part in reversed(group[:depth]) for name in part))
    return list(reversed(sets))


def expand_bars(bars: tuple[Bar, ...] | list[Bar]) -> list[BarTerm]:
    """Expand ``||`` and ``/`` in the bars, in lme4's order.

    Parameters
    ----------
    bars : sequence of Bar
        Bars as parsed.

    Returns
    -------
    list of BarTerm
        One entry per random-effect block.
    """
    terms: list[BarTerm] = []
    for bar in bars:
        if bar.double:
            has_intercept, others = bar_term_parts(bar.expr, bar.text)
            exprs = (["1"] if has_intercept else []) + [f"0 + {term}" for term in others]
            if not exprs:
                raise FormulaError(f"The bar {bar.text} has no terms on its left side.")
        else:
            exprs = [bar.expr]
        for expr in exprs:
            for factors in _nested_factor_sets(bar.group):
                terms.append(BarTerm(expr=expr, factors=factors, source=bar.text,
                                     structure=bar.structure, homogeneous=bar.homogeneous))
    return terms
