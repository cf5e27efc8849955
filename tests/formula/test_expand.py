"""hierlm.formula.expand: ``||`` and ``/`` expanded as lme4's expandDoubleVerts and findbars do."""

import pytest

from hierlm.errors import FormulaError
from hierlm.formula import expand_bars, parse_formula
from hierlm.formula.expand import bar_term_parts


def expanded(formula: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(t.expr, t.factors) for t in expand_bars(parse_formula(formula).bars)]


def test_single_bar_is_one_term():
    assert expanded("y ~ (x | g)") == [("x", ("g",))]
    assert expanded("y ~ (1 + x + z | g)") == [("1 + x + z", ("g",))]
    assert expanded("y ~ (0 + x | g)") == [("0 + x", ("g",))]


def test_double_bar_is_intercept_plus_one_term_per_predictor():
    # lme4: (x || g) -> (1 | g) + (0 + x | g)
    assert expanded("y ~ (x || g)") == [("1", ("g",)), ("0 + x", ("g",))]
    assert expanded("y ~ (1 + x + z || g)") == [("1", ("g",)), ("0 + x", ("g",)), ("0 + z", ("g",))]


def test_double_bar_without_intercept_has_no_intercept_term():
    assert expanded("y ~ (0 + x + z || g)") == [("0 + x", ("g",)), ("0 + z", ("g",))]


def test_double_bar_keeps_an_interaction_as_one_term():
    terms = expanded("y ~ (x * z || g)")
    assert terms == [("1", ("g",)), ("0 + x", ("g",)), ("0 + z", ("g",)), ("0 + x:z", ("g",))]


def test_nesting_slash_is_innermost_first():
    # lme4: (1 | a/b) -> (1 | b:a) + (1 | a), the interaction named inner factor first
    assert expanded("y ~ (1 | a/b)") == [("1", ("b", "a")), ("1", ("a",))]
    assert expanded("y ~ (1 | a/b/c)") == [("1", ("c", "b", "a")), ("1", ("b", "a")), ("1", ("a",))]
    # a ":" the user wrote keeps its order inside the nesting
    assert expanded("y ~ (1 | a:b/c)") == [("1", ("c", "a", "b")), ("1", ("a", "b"))]


def test_interaction_group_is_one_term():
    terms = expand_bars(parse_formula("y ~ (1 | a:b)").bars)
    assert [(t.expr, t.factors, t.group) for t in terms] == [("1", ("a", "b"), "a:b")]


def test_double_bar_and_slash_combine_per_term():
    assert expanded("y ~ (x || a/b)") == [
        ("1", ("b", "a")), ("1", ("a",)), ("0 + x", ("b", "a")), ("0 + x", ("a",)),
    ]


def test_several_bars_keep_written_order_and_source():
    terms = expand_bars(parse_formula("y ~ (1 | h) + (x || g)").bars)
    assert [(t.group, t.source) for t in terms] == [("h", "(1 | h)"), ("g", "(x || g)"), ("g", "(x || g)")]


def test_double_bar_with_no_terms_is_an_error():
    with pytest.raises(FormulaError, match=r"\(0 \|\| g\)"):
        expand_bars(parse_formula("y ~ (0 || g)").bars)


def test_bar_term_parts():
    assert bar_term_parts("1 + x + z", "(1 + x + z | g)") == (True, ["x", "z"])
    assert bar_term_parts("0 + x", "(0 + x | g)") == (False, ["x"])


def test_unparseable_left_side_names_the_bar_and_points_at_it():
    with pytest.raises(FormulaError) as info:
        expand_bars(parse_formula("y ~ (x +* z || g)").bars)
    message = str(info.value)
    assert "(x +* z || g)" in message
    lines = message.splitlines()
    row = next(i for i, line in enumerate(lines) if line.strip() == "x +* z")
    assert lines[row + 1].index("^") - lines[row].index("x") == 2
