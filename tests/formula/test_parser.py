"""hierlm.formula.parser: splitting lme4 formulas, and syntax errors that point at the culprit."""

import dataclasses

import pytest
from formulaic import Formula
from formulaic.errors import FormulaicError

from hierlm.errors import FormulaError, HierlmError
from hierlm.formula import parse_formula
from hierlm.formula.parser import describe_formulaic_error


def caret_column(message: str, text: str) -> int:
    """Index into ``text`` of the caret on the line under ``text`` in ``message``."""
    lines = message.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() == text.strip() and "^" in lines[i + 1]:
            return lines[i + 1].index("^") - (len(line) - len(line.lstrip()))
    raise AssertionError(f"no caret line under {text!r} in:\n{message}")


# ---------------------------------------------------------------- splitting


@pytest.mark.parametrize(
    ("formula", "response", "fixed"),
    [
        ("y ~ x", "y", "x"),
        ("y ~ x + z + (1 | g)", "y", "x + z"),
        ("y ~ (1 | g)", "y", "1"),
        ("y ~ 0 + x + (1 | g)", "y", "0 + x"),
        ("y ~ x - 1 + (1 | g)", "y", "x - 1"),
        ("y ~ x*z - x:z + (x | g)", "y", "x*z - x:z"),
        ("y ~ I(x - 1) + np.log(z) + (1 | g)", "y", "I(x - 1) + np.log(z)"),
        ("y~x+(1|g)", "y", "x"),
    ],
)
def test_fixed_part_is_everything_outside_the_bars(formula, response, fixed):
    parsed = parse_formula(formula)
    assert parsed.response == response
    assert parsed.fixed == fixed
    assert parsed.text == formula


def test_leading_minus_one_keeps_its_sign():
    parsed = parse_formula("y ~ -1 + x + (1 | g)")
    # formulaic must see an intercept removal, whatever the exact spelling
    columns = [str(t) for t in Formula(parsed.fixed)]
    assert columns == ["x"]


def test_bars_in_written_order_with_sides_and_kind():
    parsed = parse_formula("y ~ x + (1 + x | g) + (0 + z || h) + (1 | a/b:c) + (1 | (k))")
    assert [(b.expr, b.group, b.double) for b in parsed.bars] == [
        ("1 + x", (("g",),), False),
        ("0 + z", (("h",),), True),
        ("1", (("a",), ("b", "c")), False),
        ("1", (("k",),), False),
    ]
    assert parsed.bars[1].text == "(0 + z || h)"


def test_parentheses_inside_a_bar_do_not_split_it():
    parsed = parse_formula("y ~ np.log(x + 1) + (I(x - 1) + np.log(x) | g)")
    assert parsed.fixed == "np.log(x + 1)"
    assert [b.expr for b in parsed.bars] == ["I(x - 1) + np.log(x)"]


# ---------------------------------------------------------------- syntax errors


@pytest.mark.parametrize(
    ("formula", "pointer", "words"),
    [
        ("y ~ x + (1 | g",
         "        ^", "Unclosed"),
        ("y ~ np.log(x + (1 | g)",  # the log's parenthesis, not the bar's
         "          ^", "Unclosed"),
        ("y ~ x + (1 | g))",
         "               ^", "Unmatched"),
        ("y ~ x + 1 | g)",
         "             ^", "Unmatched"),
        ("y ~ x + ( | g)",
         "          ^", "nothing on the left"),
        ("y ~ x + (1 | )",  # where the factor should be
         "            ^", "no grouping factor"),
        ("y ~ x + (1 | g) + (1 | h) -",
         "                          ^", "Empty term"),
        ("y ~ x + (1 | g) - (1 | h)",
         "                ^", "cannot be subtracted"),
        ("y ~ x ~ z",
         "      ^", "exactly one '~'"),
        ("~ x + (1 | g)",
         "^", "no response"),
    ],
)
def test_syntax_errors_point_at_the_culprit(formula, pointer, words):
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    message = str(info.value)
    assert words in message
    assert caret_column(message, formula) == pointer.index("^")
    assert isinstance(info.value, ValueError) and isinstance(info.value, HierlmError)


def test_missing_tilde_is_reported():
    with pytest.raises(FormulaError, match="exactly one '~'") as info:
        parse_formula("y x + (1 | g)")
    caret_column(str(info.value), "y x + (1 | g)")  # a caret line is shown


def test_bar_outside_parentheses_is_named():
    with pytest.raises(FormulaError, match=r"parenthesised bar"):
        parse_formula("y ~ x + 1 | g")


@pytest.mark.parametrize("group", ["g + h", "1", "g:", "a//b", "x^2"])
def test_grouping_side_must_be_column_names(group):
    with pytest.raises(FormulaError, match="is not a column name"):
        parse_formula(f"y ~ x + (1 | {group})")


def test_empty_right_side():
    with pytest.raises(FormulaError, match="nothing on the right"):
        parse_formula("y ~   ")


@pytest.mark.parametrize("bad", [None, 3, ["y ~ x"]])
def test_formula_must_be_text(bad):
    with pytest.raises(FormulaError, match=type(bad).__name__):
        parse_formula(bad)


# ---------------------------------------------------------------- formulaic's errors


def test_formulaic_marker_becomes_a_caret_line():
    with pytest.raises(FormulaicError) as info:
        Formula("x + * z")
    text = describe_formulaic_error(info.value)
    assert "⧛" not in text and "\x1b" not in text
    assert caret_column(text, "x + * z") == 2
    assert text.count("^") == len("+ *")


def test_python_syntax_error_becomes_a_caret_line():
    try:
        compile("I(x**)", "<formula>", "eval")
    except SyntaxError as error:
        text = describe_formulaic_error(error)
    assert "invalid syntax" in text
    assert caret_column(text, "I(x**)") == 5


# ---------------------------------------------------------------- parsed once per text


def test_a_formula_text_is_parsed_once_and_its_errors_every_time():
    first = parse_formula("Reaction ~ Days + (Days | Subject)")
    again = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert again is first  # cached: the parse (and its security check) runs once per text
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.fixed = "1"  # type: ignore[misc]  # immutable, so sharing it is safe
    for _ in range(2):  # an error is not cached away
        with pytest.raises(FormulaError, match="allowed transform"):
            parse_formula("y ~ eval('1') + (1 | g)")


class _Text(str):
    """A str subclass (the cache keys on the plain text)."""


def test_a_str_subclass_parses_as_its_text():
    assert parse_formula(_Text("y ~ x + (1 | g)")) == parse_formula("y ~ x + (1 | g)")
