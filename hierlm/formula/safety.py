"""Check that the Python pieces of a formula are transforms from an allow-list.

formulaic evaluates every Python term of a formula (``log(x)``, ``I(x ** 2)``,
``{x + 1}``) with ``eval``. A formula is user input and can come from a file
(a saved fit, a model card), so before anything is evaluated each Python piece
is parsed with :mod:`ast` and walked: only column names, literal constants,
arithmetic and comparisons, and calls of the transforms listed here are
allowed. Attribute access is allowed only as ``np.<function>`` and
``contr.<coding>`` with the names listed. Anything else (a call of an unknown
function, a subscript, a lambda, a dunder name) is refused with a
:class:`~hierlm.errors.FormulaError` naming the piece; nothing of it has been
run.
"""

from __future__ import annotations

import ast

from formulaic.errors import FormulaicError
from formulaic.parser.algos.tokenize import tokenize
from formulaic.parser.types import Token

from hierlm.errors import FormulaError

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ALLOWED_NUMPY",
    "ALLOWED_CONTRASTS",
    "check_expression",
    "check_formula_text",
]

#: Functions a formula may call by bare name (hierlm's and formulaic's transforms, R spellings).
ALLOWED_FUNCTIONS: frozenset[str] = frozenset({
    "within", "between",
    "log", "log2", "log10", "log1p", "exp", "exp2", "exp10", "expm1", "sqrt", "abs",
    "I", "C", "Q", "poly", "center", "scale", "standardize", "bs", "cc", "cr", "lag",
    "Treatment", "Sum", "Helmert", "Poly", "Diff",
})

#: NumPy functions a formula may call as ``np.<name>``.
ALLOWED_NUMPY: frozenset[str] = frozenset({
    "log", "log2", "log10", "log1p", "exp", "exp2", "expm1", "sqrt", "square", "abs",
    "absolute", "power", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "floor", "ceil", "round", "sign", "minimum", "maximum", "clip", "where",
    "isnan", "isfinite", "reciprocal", "cbrt", "pi", "e",
})

#: Contrast codings a formula may name as ``contr.<name>``.
ALLOWED_CONTRASTS: frozenset[str] = frozenset({"treatment", "sum", "helmert", "poly", "diff"})

_NAMESPACES = {"np": ALLOWED_NUMPY, "numpy": ALLOWED_NUMPY, "contr": ALLOWED_CONTRASTS}

_ALLOWED_NODES = (
    ast.Expression, ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp, ast.BoolOp,
    ast.Compare, ast.IfExp, ast.Call, ast.keyword, ast.Attribute, ast.List, ast.Tuple,
    ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)


def _refuse(expression: str, problem: str) -> FormulaError:
    return FormulaError(
        f"The formula term {expression!r} is not allowed: {problem}. Formulas may use column "
        "names, numbers, arithmetic, comparisons and these transforms: "
        f"{', '.join(sorted(ALLOWED_FUNCTIONS))}, np.<function> for "
        f"{', '.join(sorted(ALLOWED_NUMPY - {'pi', 'e'}))}. Compute anything else as a column "
        "of the data first."
    )


def _attribute_chain(node: ast.Attribute) -> tuple[str, str] | None:
    """``(namespace, name)`` for ``namespace.name``; None for deeper or non-name chains."""
    if isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    return None


def check_expression(expression: str) -> None:
    """Refuse a Python piece of a formula that is not built from allowed parts.

    Parameters
    ----------
    expression : str
        One Python term as formulaic would evaluate it, e.g. ``"log(Days + 1)"``.

    Raises
    ------
    FormulaError
        If the piece uses a function, attribute or construct outside the
        allow-list. Nothing is evaluated. A piece that is not valid Python is
        left to formulaic's own error message (it cannot be run either).
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        # Python cannot run what it cannot parse; formulaic reports it with a caret later.
        return
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise _refuse(expression, f"{type(node).__name__} expressions are not supported")
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise _refuse(expression, f"the name {node.id!r} is reserved")
        if isinstance(node, ast.Constant) and not isinstance(
                node.value, (int, float, complex, str, bool, type(None))):
            raise _refuse(expression, f"the constant {node.value!r} is not a number or text")
        if isinstance(node, ast.Attribute):
            chain = _attribute_chain(node)
            if node.attr.startswith("_"):
                raise _refuse(expression, f"the attribute {node.attr!r} is private")
            if chain is None:
                raise _refuse(expression, "attributes of computed values cannot be read")
            namespace, name = chain
            if namespace in _NAMESPACES and name not in _NAMESPACES[namespace]:
                raise _refuse(expression, f"{namespace}.{name} is not an allowed transform")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                if func.id not in ALLOWED_FUNCTIONS:
                    raise _refuse(expression, f"{func.id}() is not an allowed transform")
            elif isinstance(func, ast.Attribute):
                chain = _attribute_chain(func)
                if chain is None or chain[0] not in _NAMESPACES:
                    raise _refuse(expression, f"{ast.unparse(func)}() is not an allowed transform")
            else:
                raise _refuse(expression, "only named transforms can be called")


def _python_tokens(text: str) -> list[Token]:
    try:
        return [token for token in tokenize(text) if token.kind is Token.Kind.PYTHON]
    except (FormulaicError, SyntaxError) as error:
        raise FormulaError(f"Cannot read the formula {text!r}: {error}") from None


def check_formula_text(text: str) -> None:
    """Check every Python piece of a formula or formula fragment.

    Parameters
    ----------
    text : str
        A formula side (``"1 + log(Days)"``), a bar's left side or a response expression.

    Raises
    ------
    FormulaError
        On the first piece outside the allow-list (see :func:`check_expression`).
    """
    for token in _python_tokens(text):
        check_expression(token.token)
