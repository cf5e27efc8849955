"""The allow-list of the Python pieces of a formula (hierlm.formula.safety)."""

from __future__ import annotations

import pytest

from hierlm.errors import FormulaError
from hierlm.formula import parse_formula
from hierlm.formula.safety import check_expression, check_formula_text


@pytest.mark.parametrize("expression", [
    "log(Days + 1)", "np.log1p(Days)", "I(Days ** 2)", "I(Days > 3)", "C(Subject)",
    "C(g, contr.treatment)", "C(g, Treatment('b'))", "poly(x, 2)", "scale(x)", "center(x)",
    "within(x, g)", "between(x, g)", "I(x if x else 0)", "I(-x)", "bs(x, df=4)",
    "np.where(x > 0, x, 0)", "I(np.pi * x)",
])
def test_allowed_expressions_pass(expression):
    check_expression(expression)


@pytest.mark.parametrize(("expression", "message"), [
    ("np.load('a.npy', allow_pickle=True)", r"np\.load is not an allowed transform"),
    ("__import__('os')", r"__import__\(\) is not an allowed transform"),
    ("eval('1')", r"eval\(\) is not an allowed transform"),
    ("getattr(x, 'y')", r"getattr\(\) is not an allowed transform"),
    ("x.__class__", "private"),
    ("x._data", "private"),
    ("x.real.imag", "computed values"),
    ("x[0]", "Subscript"),
    ("(lambda: 1)()", "only named transforms can be called"),
    ("I((lambda: 1))", "Lambda"),
    ("[i for i in x]", "ListComp"),
    ("f'{x}'", "JoinedStr"),
    ("x.sum()", r"x\.sum\(\) is not an allowed transform"),
    ("np.log(x).sum()", r"np\.log\(x\)\.sum\(\) is not an allowed transform"),
    ("np.lib.npyio.load('a')", r"np\.lib\.npyio\.load\(\) is not an allowed transform"),
    ("I(np.log(x).real)", "computed values"),
    ("contr.__class__", "private"),
    ("__builtins__", "reserved"),
    ("(x := 1)", "NamedExpr"),
])
def test_refused_expressions_name_the_problem(expression, message):
    with pytest.raises(FormulaError, match=message) as info:
        check_expression(expression)
    assert "not allowed" in str(info.value) and "Compute anything else as a column" in str(info.value)


def test_formula_text_checks_each_python_piece():
    check_formula_text("1 + Days + log(Days + 1) + x:z + `a b`")
    with pytest.raises(FormulaError, match="open"):
        check_formula_text("1 + Days + I(open('f'))")


@pytest.mark.parametrize("formula", [
    "np.load('x') ~ Days + (1 | g)",
    "y ~ Days + (I(eval('x')) | g)",
    "y ~ Days + (1 | g) + {__import__('os')}",
])
def test_parse_formula_refuses_before_any_evaluation(formula):
    with pytest.raises(FormulaError, match="not allowed"):
        parse_formula(formula)


def test_every_allowed_bare_transform_is_defined():
    """An allowed name must also evaluate: each is in hierlm's or formulaic's context."""
    from formulaic.transforms import TRANSFORMS

    from hierlm.design.transforms import FORMULA_CONTEXT
    from hierlm.formula.safety import ALLOWED_FUNCTIONS

    assert ALLOWED_FUNCTIONS <= set(FORMULA_CONTEXT) | set(TRANSFORMS)
