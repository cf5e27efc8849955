"""Hypotheses about linear combinations of fixed effects, as brms's ``hypothesis``.

``fit.hypothesis("Days > 5")`` or ``fit.hypothesis("MachineC - MachineB = 0")``:
the expression is parsed with Python's :mod:`ast` (never evaluated). Names
must be fixed-effect names of the model (names that are not Python
identifiers, such as ``age:SexMale``, may be written as they are or in
backticks); the only operations are ``+``, ``-``, multiplication and division
by numbers, and numbers; exactly one comparison (``<``, ``<=``, ``>``,
``>=``, ``=`` or ``==``). The hypothesis ``lhs op rhs`` becomes the linear
combination ``h = lhs - rhs`` of the fixed effects, like brms:

* Bayesian fits (NUTS): the posterior of ``h`` (mean, SD, equal-tailed
  interval) and ``prob``, the posterior probability that the hypothesis
  holds (``P(h > 0)`` for ``>``); ``evid_ratio`` = ``prob / (1 - prob)``,
  brms's evidence ratio of a one-sided hypothesis. A point hypothesis
  (``=``) has no posterior probability (NaN), as brms without prior draws.
* MAP fits: the same from the normal (Laplace) approximation.
* ML/REML fits: estimate, standard error, Satterthwaite (or Kenward-Roger)
  df and the t interval, with the one-sided p-value of the hypothesis's
  negation (``>``: of ``h <= 0``) or the two-sided p-value of ``h = 0``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import HypothesisError, InputTypeError
from hierlm.results.linear import LinearFunction, estimate_linear, interval_table

__all__ = ["parse_hypothesis", "hypothesis"]

_OPS = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "="}
_BACKTICK = re.compile(r"`([^`]*)`")


def _substitute(text: str, names: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Replace backticked names and non-identifier coefficient names by placeholders."""
    mapping: dict[str, str] = {}

    def placeholder(name: str) -> str:
        for key, value in mapping.items():
            if value == name:
                return key
        key = f"__coef{len(mapping)}__"
        mapping[key] = name
        return key

    text = _BACKTICK.sub(lambda m: placeholder(m.group(1)), text)
    for name in sorted((n for n in names if not n.isidentifier()), key=len, reverse=True):
        pattern = re.compile(r"(?<![A-Za-z0-9_.])" + re.escape(name) + r"(?![A-Za-z0-9_.])")
        text = pattern.sub(placeholder(name), text)
    return text, mapping


def _linear(node: ast.AST, names: Sequence[str], mapping: dict[str, str],
            source: str) -> tuple[np.ndarray, float]:
    """(weights over the fixed effects, constant) of a linear expression node."""
    p = len(names)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return np.zeros(p), float(node.value)
    if isinstance(node, ast.Name):
        name = mapping.get(node.id, node.id)
        if name not in names:
            raise HypothesisError(f"{name!r} in hypothesis {source!r} is not a coefficient of the "
                                  f"model; its fixed effects are {list(names)}.")
        vector = np.zeros(p)
        vector[list(names).index(name)] = 1.0
        return vector, 0.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        vector, constant = _linear(node.operand, names, mapping, source)
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        return sign * vector, sign * constant
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        left = _linear(node.left, names, mapping, source)
        right = _linear(node.right, names, mapping, source)
        if isinstance(node.op, ast.Add):
            return left[0] + right[0], left[1] + right[1]
        if isinstance(node.op, ast.Sub):
            return left[0] - right[0], left[1] - right[1]
        if isinstance(node.op, ast.Mult):
            if not left[0].any():
                return left[1] * right[0], left[1] * right[1]
            if not right[0].any():
                return right[1] * left[0], right[1] * left[1]
            raise HypothesisError(f"Hypothesis {source!r} multiplies two coefficients; only linear "
                                  "combinations (numbers times coefficients) can be tested.")
        if right[0].any() or right[1] == 0.0:
            raise HypothesisError(f"Hypothesis {source!r} divides by a coefficient or by zero; "
                                  "divide by non-zero numbers only.")
        return left[0] / right[1], left[1] / right[1]
    raise HypothesisError(f"Hypothesis {source!r} contains {ast.dump(node)[:60]!r}; only coefficient "
                          "names, numbers, + - * / and one comparison are allowed.")


def parse_hypothesis(text: str, names: Sequence[str]) -> tuple[np.ndarray, float, str]:
    """Turn ``"lhs op rhs"`` into ``(L, c, op)`` with ``h = L' beta - c`` and ``op`` the comparison.

    Parameters
    ----------
    text : str
        The hypothesis, e.g. ``"Days > 5"`` or ``"2 * b = a + c"``.
    names : sequence of str
        The model's fixed-effect names.

    Raises
    ------
    HypothesisError
        For syntax errors, unknown names, non-linear terms, or not exactly one comparison.
    """
    if not isinstance(text, str):
        raise InputTypeError(f"A hypothesis is a string such as 'Days > 5', not {type(text).__name__}.")
    source = text.strip()
    prepared, mapping = _substitute(source, names)
    prepared = re.sub(r"(?<![<>=!])=(?!=)", "==", prepared)
    try:
        tree = ast.parse(prepared, mode="eval")
    except SyntaxError as error:
        raise HypothesisError(f"Cannot read hypothesis {source!r}: {error.msg}; write e.g. "
                              "'Days > 5' or 'MachineC - MachineB = 0'.") from None
    body = tree.body
    if not isinstance(body, ast.Compare) or len(body.ops) != 1 or type(body.ops[0]) not in _OPS:
        raise HypothesisError(f"Hypothesis {source!r} needs exactly one comparison (<, <=, >, >=, =).")
    left = _linear(body.left, names, mapping, source)
    right = _linear(body.comparators[0], names, mapping, source)
    vector = left[0] - right[0]
    if not vector.any():
        raise HypothesisError(f"Hypothesis {source!r} involves no coefficient.")
    return vector, right[1] - left[1], _OPS[type(body.ops[0])]


def hypothesis(fit: Any, hypotheses: str | Sequence[str], ddf: str = "satterthwaite",
               prob: float | None = None) -> pd.DataFrame:
    """Test hypotheses about linear combinations of fixed effects (see the module docstring).

    Parameters
    ----------
    fit : fit result
        Any hierlm fit.
    hypotheses : str or list of str
        One hypothesis or several.
    ddf : {"satterthwaite", "kenward-roger"}
        Denominator df of ML/REML fits.
    prob : float, optional
        Interval probability.

    Returns
    -------
    pandas.DataFrame
        Indexed by hypothesis: ``estimate`` (of ``lhs - rhs``), ``std_error``,
        (``df``,) ``lower``, ``upper``, then ``prob`` and ``evid_ratio``
        (Bayesian and MAP fits) or ``t_value`` and ``p_value`` (ML/REML).
    """
    texts = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    names = list(fit.design.fixed_names)
    parsed = [parse_hypothesis(t, names) for t in texts]
    function = LinearFunction(np.vstack([v for v, _, _ in parsed]))
    est = estimate_linear(fit, function, ddf)
    constants = np.array([c for _, c, _ in parsed])
    ops = [op for _, _, op in parsed]
    shifted = type(est)(estimate=est.estimate - constants, std_error=est.std_error, df=est.df,
                        draws=None if est.draws is None else est.draws - constants[None, :],
                        n_chains=est.n_chains, bayesian=est.bayesian)
    table = interval_table(shifted, prob)
    table.index = pd.Index([t.strip() for t in texts], name="hypothesis")
    greater = _prob_greater(fit, shifted)
    if shifted.bayesian:
        holds = np.array([greater[i] if op in (">", ">=") else 1.0 - greater[i] if op in ("<", "<=")
                          else np.nan for i, op in enumerate(ops)])
        table["prob"] = holds
        with np.errstate(divide="ignore", invalid="ignore"):
            table["evid_ratio"] = holds / (1.0 - holds)
        return table
    from scipy import stats

    with np.errstate(divide="ignore", invalid="ignore"):
        t_value = shifted.estimate / shifted.std_error
    upper_tail = stats.t.sf(t_value, shifted.df)
    table["t_value"] = t_value
    table["p_value"] = [float(upper_tail[i]) if op in (">", ">=") else float(1.0 - upper_tail[i])
                        if op in ("<", "<=") else float(2.0 * stats.t.sf(abs(t_value[i]), shifted.df[i]))
                        for i, op in enumerate(ops)]
    return table


def _prob_greater(fit: Any, est: Any) -> np.ndarray:
    """P(h > 0): share of draws, or the normal approximation of a point fit."""
    if not est.point:
        return np.asarray(np.mean(est.draws > 0, axis=0))
    from scipy import stats

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(stats.norm.sf(-est.estimate / est.std_error))
