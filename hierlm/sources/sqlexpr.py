"""Design-matrix columns of a frozen spec written as SQL expressions.

Each column of formulaic's model matrix is a product of its term's factors:
a numeric expression (``x``, ``log(x)``, ``I(x ** 2)``) or one level of a
categorical factor (a ``CASE WHEN`` dummy). The expressions are built from
the spec's structure and levels, never by evaluating text: numeric factors
are parsed with :mod:`ast` and only a fixed table of operators and functions
is translated. Anything else raises, naming the term and suggesting to
precompute the column.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from formulaic.model_spec import ModelSpec as FormulaicSpec

from hierlm.errors import FormulaError

__all__ = ["quote", "literal", "numeric_sql", "matrix_sql", "scaling_key", "SCALING",
           "UNTRANSLATABLE_HINT"]

UNTRANSLATABLE_HINT = ("compute the column in the data first (e.g. a column in the Parquet "
                       "files or a SELECT in DuckDB) and use its name in the formula")

#: Functions of one argument the engines evaluate: name -> SQL template.
_FUNCTIONS = {
    "log": "LN({})",
    "exp": "EXP({})",
    "sqrt": "SQRT({})",
    "abs": "ABS({})",
    "log1p": "LN(CAST(1 AS DOUBLE) + {})",
    "expm1": "(EXP({}) - CAST(1 AS DOUBLE))",
    "log10": "(LN({}) / LN(CAST(10 AS DOUBLE)))",
    "log2": "(LN({}) / LN(CAST(2 AS DOUBLE)))",
    "I": "{}",
}
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_CATEGORICAL = re.compile(r"^C\((?P<name>[^,()]+?)\s*(?:,.*)?\)$")


def quote(name: str) -> str:
    """SQL identifier for a column name."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    """SQL literal for a level or a number."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return f"CAST({float(value)!r} AS DOUBLE)"
    return "'" + str(value).replace("'", "''") + "'"


def _untranslatable(expr: str, what: str) -> FormulaError:
    return FormulaError(f"The term {expr!r} cannot be evaluated in the data engine ({what}); "
                        f"{UNTRANSLATABLE_HINT}.")


#: Stateful transforms translated with their learned state (centre and scale constants).
SCALING = ("center", "scale", "standardize")


def scaling_key(text: str) -> str | None:
    """Canonical text of a ``center``/``scale``/``standardize`` call (None for anything else)."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SCALING:
        return ast.unparse(node)
    return None


def _scaled(inner: str, state: Mapping[str, Any]) -> str:
    """SQL of ``(inner - center) / scale`` with the state's constants (either may be absent)."""
    out = inner
    if state.get("center") is not None:
        out = f"({out} - {literal(float(state['center']))})"
    if state.get("scale") is not None:
        out = f"({out} / {literal(float(state['scale']))})"
    return out


def numeric_sql(expr: str, columns: Mapping[str, str],
                states: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Translate a numeric factor (``x``, ``log(x)``, ``I(x ** 2)``, ``center(x)``) to SQL.

    Parameters
    ----------
    expr : str
        The factor's expression as formulaic writes it.
    columns : mapping
        Column name -> kind of the data.
    states : mapping, optional
        Learned states of ``center``/``scale``/``standardize`` calls, keyed by
        :func:`scaling_key` (formulaic's ``transform_state``, learned by the
        engine in :mod:`hierlm.sources.learn`).

    Raises
    ------
    FormulaError
        For a function, operator or name the engine cannot evaluate.
    """
    text = expr.strip()
    # formulaic quotes names that are not identifiers in backticks
    names: dict[str, str] = {}

    def _swap(match: re.Match[str]) -> str:
        key = f"__hl_col{len(names)}"
        names[key] = match.group(1)
        return key

    text = re.sub(r"`([^`]*)`", _swap, text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise _untranslatable(expr, "not an arithmetic expression") from None

    def walk(node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            name = names.get(node.id, node.id)
            if name not in columns:
                raise _untranslatable(expr, f"{name!r} is not a column of the data")
            if columns[name] not in ("float", "integer", "bool"):
                raise _untranslatable(expr, f"{name!r} is not numeric")
            return f"CAST({quote(name)} AS DOUBLE)"
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return literal(node.value)
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow):
                return f"POWER({left}, {right})"
            op = _BINARY.get(type(node.op))
            if op is None:
                raise _untranslatable(expr, f"operator {type(node.op).__name__}")
            return f"({left} {op} {right})"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = walk(node.operand)
            return f"(-{inner})" if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _FUNCTIONS and len(node.args) == 1 and not node.keywords:
            return _FUNCTIONS[node.func.id].format(walk(node.args[0]))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in SCALING and node.args:
            state = (states or {}).get(ast.unparse(node))
            if state is None:
                raise _untranslatable(expr, f"no learned state for {ast.unparse(node)}")
            return _scaled(walk(node.args[0]), state)
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            raise _untranslatable(expr, f"the function {func}() has no SQL translation here")
        raise _untranslatable(expr, f"{ast.unparse(node)!r} has no SQL translation")

    return walk(tree.body)


def _categorical_column(expr: str, columns: Mapping[str, str]) -> str:
    """Data column of a categorical factor: ``f``, ```f g```, ``C(f)``."""
    text = expr.strip()
    match = _CATEGORICAL.match(text)
    if match:
        text = match.group("name").strip()
    if text.startswith("`") and text.endswith("`"):
        text = text[1:-1]
    if text not in columns:
        raise _untranslatable(expr, "a categorical expression that is not a column")
    return text


def _dummy(column: str, kind: str, level: Any) -> str:
    """CASE WHEN dummy of one level of a categorical column."""
    value: object = level
    if kind == "bool":
        value = str(level) in ("True", "true", "1")
    elif kind in ("integer", "float"):
        value = float(level)
    return f"CASE WHEN {quote(column)} = {literal(value)} THEN CAST(1 AS DOUBLE) " \
           "ELSE CAST(0 AS DOUBLE) END"


def matrix_sql(spec: FormulaicSpec, columns: Mapping[str, str]) -> list[str]:
    """One SQL expression per column of formulaic's model matrix, in its column order.

    Parameters
    ----------
    spec : formulaic ModelSpec
        Spec of the fixed part or of one bar's left side.
    columns : mapping
        Column name -> kind of the data.

    Raises
    ------
    FormulaError
        For a term the engine cannot evaluate.
    """
    contrasts = {str(factor): state for factor, state in spec.factor_contrasts.items()}
    states = {key: state for key, state in ((scaling_key(str(k)), v)
                                            for k, v in spec.transform_state.items())
              if key is not None}
    out: list[str] = []
    for structure in spec.structure:
        factors = [str(f) for f in structure.term.factors]
        for name in structure.columns:
            if not factors or factors == ["1"]:
                out.append("CAST(1 AS DOUBLE)")
                continue
            parts, pos = [], 0
            for i, expr in enumerate(factors):
                if i:
                    if not name.startswith(":", pos):
                        raise _untranslatable(name, "its column name does not follow its term")
                    pos += 1
                if expr in contrasts:
                    column = _categorical_column(expr, columns)
                    for level in contrasts[expr].levels:
                        found = [c for c in (f"{expr}[T.{level}]", f"{expr}[{level}]")
                                 if name.startswith(c, pos)
                                 and (pos + len(c) == len(name) or name[pos + len(c)] == ":")]
                        if found:
                            parts.append(_dummy(column, columns[column], level))
                            pos += len(found[0])
                            break
                    else:
                        raise _untranslatable(name, f"its contrast coding of {expr!r} is not "
                                              "treatment or full dummy coding")
                else:
                    if not name.startswith(expr, pos):
                        raise _untranslatable(name, "its column name does not follow its term")
                    parts.append(numeric_sql(expr, columns, states))
                    pos += len(expr)
            out.append(" * ".join(parts))
    return out
