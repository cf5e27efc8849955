"""Parse lme4 model formulas into a response, a fixed part and random-effect bars.

The fixed part is kept as text and handed to formulaic, which implements the
Wilkinson operators (``+ - * : 0 + I() np.log()``). The random part, the
parenthesised ``(expr | group)`` and ``(expr || group)`` terms, is what this
module understands itself. The parser knows no data: it never looks at columns.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from hierlm.errors import FormulaError
from hierlm.formula.safety import check_formula_text
from hierlm.formula.structures import HETEROGENEOUS_CAPABLE, STRUCTURES

__all__ = ["Bar", "ParsedFormula", "parse_formula", "split_cbind", "syntax_error",
           "describe_formulaic_error"]

_IDENTIFIER = re.compile(r"^[^\W\d][\w.]*$")  # R-style names: letters (any script), digits, _ and .


@dataclass(frozen=True)
class Bar:
    """One random-effect term as written, before expansion.

    Attributes
    ----------
    expr : str
        The left side of the bar, e.g. ``"1 + Days"`` or ``"0 + x"``.
    group : tuple of tuple of str
        The grouping expression as a ``/``-separated sequence of ``:``-joined
        factor names: ``a/b:c`` is ``(("a",), ("b", "c"))``.
    double : bool
        True for ``||`` (uncorrelated terms).
    text : str
        The bar as written, for messages.
    structure : str
        Covariance structure of the bar's terms (:data:`~hierlm.formula.structures.STRUCTURES`):
        ``"us"`` for a plain bar, or the name of a wrapper such as ``cs(0 + f | g)``.
    homogeneous : bool
        ``hom =`` option of ``cs``/``ar1``/``toep``: one variance for every term.
    """

    expr: str
    group: tuple[tuple[str, ...], ...]
    double: bool
    text: str
    structure: str = "us"
    homogeneous: bool = True


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into its parts.

    Attributes
    ----------
    text : str
        The formula as written.
    response : str or None
        Left side of ``~`` (None for a one-sided formula).
    fixed : str
        The fixed part as a formulaic right-hand side, e.g. ``"1 + Days"``.
    bars : tuple of Bar
        Random-effect bars in the order written.
    offsets : tuple of str
        The expressions inside ``offset(...)`` terms, e.g. ``("log(exposure)",)``;
        they add to the linear predictor with coefficient 1.
    """

    text: str
    response: str | None
    fixed: str
    bars: tuple[Bar, ...]
    offsets: tuple[str, ...] = ()


def syntax_error(text: str, position: int, problem: str, fix: str = "") -> FormulaError:
    """Build a FormulaError that points at ``position`` in ``text`` with a caret."""
    pointer = " " * position + "^"
    message = f"{problem}\n    {text}\n    {pointer}"
    if fix:
        message += f"\n{fix}"
    return FormulaError(message)


def describe_formulaic_error(error: BaseException) -> str:
    """Text of an error from formulaic (or Python's parser), with a caret line under the culprit.

    formulaic marks the offending span as ``⧛span⧚`` (and colours it); a Python
    ``SyntaxError`` from a term such as ``I(x**)`` carries its text and offset.
    Both become the expression on one line and ``^`` marks under the span.
    """
    if isinstance(error, SyntaxError) and error.text:
        line = error.text.rstrip("\n")
        column = max((error.offset or 1) - 1, 0)
        return f"{error.msg}\n    {line}\n    {' ' * column}^"
    text = str(error).replace("\x1b[1;31m", "").replace("\x1b[0m", "")
    lines = []
    for line in text.splitlines():
        start, end = line.find("⧛"), line.find("⧚")
        if 0 <= start < end:
            plain = line.replace("⧛", "").replace("⧚", "")
            lines.append(f"    {plain}\n    {' ' * start}{'^' * max(end - start - 1, 1)}")
        elif line.strip():
            lines.append(line)
    return "\n".join(lines).strip()


def _top_level_split(text: str, offset: int, full: str) -> list[tuple[str, str, int]]:
    """Split ``text`` on ``+``/``-`` outside parentheses: (sign, chunk, start) triples."""
    chunks: list[tuple[str, str, int]] = []
    opened: list[int] = []  # positions of the parentheses not closed yet
    depth = 0
    sign = "+"
    start = 0
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
            opened.append(i)
        elif char in ")]":
            depth -= 1
            if opened:
                opened.pop()
            if depth < 0:
                raise syntax_error(full, offset + i, "Unmatched ')' in formula.",
                                   "Remove it or add the matching '('.")
        elif char in "+-" and depth == 0:
            # a sign that follows an operator (``x * -1``) or exponent is not a term break
            before = text[:i].rstrip()
            if before and before[-1] in "*/:^(~+-":
                continue
            chunks.append((sign, text[start:i], offset + start))
            sign = char
            start = i + 1
    if depth > 0:
        position = offset + opened[-1]
        raise syntax_error(full, position, "Unclosed '(' in formula.", "Add the missing ')'.")
    chunks.append((sign, text[start:], offset + start))
    return chunks


def _top_level_index(text: str, target: str) -> int:
    """Index of the first ``target`` character outside parentheses and brackets; -1 if none."""
    depth = 0
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == target and depth == 0:
            return i
    return -1


def _bar_split(inner: str) -> tuple[str, str, bool] | None:
    """Split the inside of ``( ... )`` at a depth-0 ``|`` or ``||``; None if there is none."""
    i = _top_level_index(inner, "|")
    if i < 0:
        return None
    if inner[i + 1 : i + 2] == "|":
        return inner[:i], inner[i + 2 :], True
    return inner[:i], inner[i + 1 :], False


def _parse_group(text: str, full: str, position: int) -> tuple[tuple[str, ...], ...]:
    """Parse ``a``, ``a:b``, ``a/b``, ``a/b:c`` into nested factor-name tuples."""
    stripped = text.strip()
    if stripped.startswith("(") and stripped.endswith(")"):
        stripped = stripped[1:-1].strip()
    if not stripped:
        raise syntax_error(full, position, "A bar has no grouping factor after '|'.",
                           "Write e.g. '(1 | Subject)'.")
    levels: list[tuple[str, ...]] = []
    for part in stripped.split("/"):
        written = [name.strip() for name in part.split(":")]
        # a backticked name (`my group`) may hold any characters, as in R
        names = tuple(w[1:-1] if len(w) > 2 and w[0] == w[-1] == "`" else w for w in written)
        for given, name in zip(written, names, strict=True):
            if given == name and not _IDENTIFIER.match(name):
                raise syntax_error(
                    full, position,
                    f"Grouping factor {name!r} is not a column name.",
                    "The right side of '|' must be column names joined by ':' or '/', "
                    "e.g. '(1 | school/class)' or '(1 | rater:target)'.",
                )
        levels.append(names)
    return tuple(levels)


def parse_formula(text: str) -> ParsedFormula:
    """Split an lme4 formula into response, fixed part and bars.

    Parameters
    ----------
    text : str
        A formula such as ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula
        The response name, the fixed part as formulaic text and the bars.

    Raises
    ------
    FormulaError
        On syntax errors, with a caret under the offending position.
    """
    if not isinstance(text, str):
        raise FormulaError(f"A formula must be a string, not {type(text).__name__}.")
    return _parse_text(str(text))  # (str(): a str subclass is parsed, and cached, as its text)


@functools.lru_cache(maxsize=256)
def _parse_text(text: str) -> ParsedFormula:
    """:func:`parse_formula` of a string, once per text (the result is immutable).

    Refitting a formula (bootstrap refits, ``compare_structures``, simulations)
    parses and security-checks it once; errors are raised every time (they are
    not cached).
    """
    if text.count("~") != 1:
        where = text.find("~", text.find("~") + 1) if text.count("~") > 1 else len(text)
        raise syntax_error(text, max(where, 0),
                           "A formula needs exactly one '~' between response and predictors.",
                           "Write it as 'response ~ predictors', e.g. 'y ~ x + (1 | g)'.")
    lhs, rhs = text.split("~")
    _refuse_unsupported(text, len(lhs))
    response = lhs.strip() or None
    if response is None:
        raise syntax_error(text, 0, "The formula has no response on the left of '~'.",
                           "Write it as 'response ~ predictors'.")
    offset = len(lhs) + 1
    if not rhs.strip():
        raise syntax_error(text, len(text), "The formula has nothing on the right of '~'.",
                           "Add predictors, or '1' for an intercept-only model.")
    fixed_parts: list[str] = []
    bars: list[Bar] = []
    offsets: list[str] = []
    for sign, chunk, start in _top_level_split(rhs, offset, text):
        stripped = chunk.strip()
        if not stripped:
            if sign == "+" and start == offset:  # a leading sign, as in '~ -1 + x'
                continue
            raise syntax_error(text, start - 1, "Empty term: two operators in a row, or a trailing '+'.",
                               "Remove the extra operator.")
        position = start + (len(chunk) - len(chunk.lstrip()))
        inner = _offset_inner(stripped)
        if inner is not None:
            if sign == "-" or not inner.strip():
                raise syntax_error(text, position, "An offset must be added: '+ offset(expr)'.",
                                   "Write e.g. '+ offset(log(exposure))'.")
            offsets.append(inner.strip())
            continue
        bar = _as_bar(stripped, text, position)
        if bar is None:
            fixed_parts.append(f"{sign} {stripped}" if fixed_parts or sign == "-" else stripped)
            continue
        if sign == "-":
            raise syntax_error(text, start - 1, "A random-effect bar cannot be subtracted.",
                               "Use '+ (expr | group)'.")
        bars.append(bar)
    fixed = " ".join(fixed_parts).strip()
    if not fixed:
        fixed = "1"
    elif fixed.startswith("-"):
        fixed = "1 " + fixed
    # Nothing of a formula is evaluated before every Python piece has passed the allow-list.
    parts = split_cbind(response)
    if parts is None and re.search(r"\bcbind\s*\(", response):
        raise syntax_error(text, lhs.find("cbind"), "cbind() must be the whole response.",
                           "Write 'cbind(successes, failures) ~ ...' (binomial models).")
    for piece in parts if parts is not None else (response,):
        check_formula_text(piece)
    check_formula_text(fixed)
    for bar in bars:
        check_formula_text(bar.expr)
    for expression in offsets:
        check_formula_text(expression)
    return ParsedFormula(text=text, response=response, fixed=fixed, bars=tuple(bars),
                         offsets=tuple(offsets))


_CALL = re.compile(r"^(offset|cbind)\s*\(", re.DOTALL)


def _call_inner(text: str, name: str) -> str | None:
    """The inside of ``name(...)`` when ``text`` is exactly that call; None otherwise."""
    match = _CALL.match(text)
    if match is None or match.group(1) != name:
        return None
    opening = match.end() - 1
    if _closing_paren(text[opening:]) != len(text) - 1 - opening:
        return None
    return text[opening + 1:-1]


def _offset_inner(chunk: str) -> str | None:
    return _call_inner(chunk, "offset")


def split_cbind(response: str) -> tuple[str, str] | None:
    """``(successes, failures)`` of a ``cbind(s, f)`` response; None for any other response.

    Raises
    ------
    FormulaError
        When ``cbind`` does not have exactly two arguments.
    """
    inner = _call_inner(response.strip(), "cbind")
    if inner is None:
        return None
    comma = _top_level_index(inner, ",")
    if comma < 0 or _top_level_index(inner[comma + 1:], ",") >= 0:
        raise FormulaError(f"cbind() takes two arguments, successes and failures: {response!r}.")
    successes, failures = inner[:comma].strip(), inner[comma + 1:].strip()
    if not successes or not failures:
        raise FormulaError(f"cbind() takes two arguments, successes and failures: {response!r}.")
    return successes, failures


_WRAPPER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)$", re.DOTALL)
_TRUE, _FALSE = ("TRUE", "True", "T", "true"), ("FALSE", "False", "F", "false")


def _structure_options(text: str, name: str, full: str, position: int) -> bool:
    """Parse ``hom = TRUE`` (the only option) and return ``homogeneous``."""
    homogeneous = True
    for option in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = (part.strip() for part in option.partition("="))
        if key != "hom" or value not in _TRUE + _FALSE:
            raise syntax_error(full, position, f"Unknown option {option!r} of {name}().",
                               f"{name}() takes 'hom = TRUE' (one variance for all terms) or "
                               "'hom = FALSE' (one variance per term).")
        if name not in HETEROGENEOUS_CAPABLE:
            raise syntax_error(full, position, f"{name}() takes no 'hom' option.",
                               f"'hom' applies to {', '.join(sorted(HETEROGENEOUS_CAPABLE))}.")
        homogeneous = value in _TRUE
    return homogeneous


def _as_structured_bar(chunk: str, full: str, position: int) -> Bar | None:
    """Return the Bar of ``name(expr | group, options)``; None when ``chunk`` is no such wrapper."""
    match = _WRAPPER.match(chunk)
    if match is None or _closing_paren(chunk[match.start(2) - 1:]) != len(chunk) - match.start(2):
        return None
    name, inner = match.group(1), match.group(2)
    if name not in STRUCTURES:
        if _bar_split(inner) is None:
            return None
        raise syntax_error(full, position, f"Unknown covariance structure {name!r}.",
                           "Choose one of: " + "; ".join(f"{key}: {text}"
                                                          for key, text in STRUCTURES.items()) + ".")
    comma = _top_level_index(inner, ",")
    body, options = (inner, "") if comma < 0 else (inner[:comma], inner[comma + 1:])
    homogeneous = _structure_options(options, name, full, position)
    bar = _as_bar(f"({body.strip()})", full, position)
    if bar is None:
        raise syntax_error(full, position, f"{name}() needs a bar inside, e.g. '{name}(0 + f | g)'.")
    if bar.double:
        raise syntax_error(full, position, f"'||' cannot be used inside {name}().",
                           "Write diag(...) for independent terms, or a single '|'.")
    return Bar(expr=bar.expr, group=bar.group, double=False, text=chunk, structure=name,
               homogeneous=homogeneous)


def _as_bar(chunk: str, full: str, position: int) -> Bar | None:
    """Return the Bar when ``chunk`` is ``( expr | group )``, None when it holds no bar."""
    if "|" not in chunk:
        return None
    while (chunk.startswith("((") and _closing_paren(chunk) == len(chunk) - 1
           and _closing_paren(chunk[1:-1]) == len(chunk) - 3):
        chunk, position = chunk[1:-1], position + 1  # ((x | g)): redundant parentheses, as lme4 allows
    structured = _as_structured_bar(chunk, full, position)
    if structured is not None:
        return structured
    if not (chunk.startswith("(") and chunk.endswith(")")) or _closing_paren(chunk) != len(chunk) - 1:
        raise syntax_error(full, position,
                           f"'|' may only appear inside a parenthesised bar: {chunk!r}.",
                           "Write random effects as separate terms, e.g. 'y ~ x + (x | g)'.")
    split = _bar_split(chunk[1:-1])
    if split is None:
        return None
    expr, group_text, double = split
    if not expr.strip():
        raise syntax_error(full, position + chunk.find("|"), "A bar has nothing on the left of '|'.",
                           "Write '(1 | g)' for a random intercept.")
    group = _parse_group(group_text, full, position + chunk.find("|") + 1)
    return Bar(expr=expr.strip(), group=group, double=double, text=chunk)


# (pattern, only left of '~', problem, fix)
_UNSUPPORTED = (
    (re.compile(r"(?<![\w.`'\"])\.(?![\w.`'\"])"), False, "The '.' shorthand (every other column) "
     "is not supported.", "Write the predictors out, e.g. 'y ~ x1 + x2 + (1 | g)'."),
)
_QUOTED = re.compile(r"`[^`]*`|'[^']*'|\"[^\"]*\"")


def _refuse_unsupported(text: str, tilde: int) -> None:
    """Raise a FormulaError for lme4 syntax hierlm does not support (the ``.`` shorthand).

    A clear "not supported" beats the "column not found" it would otherwise
    get. Quoted text is ignored.
    """
    blanked = _QUOTED.sub(lambda match: " " * len(match.group(0)), text)
    for pattern, left_only, problem, fix in _UNSUPPORTED:
        match = pattern.search(blanked[:tilde] if left_only else blanked)
        if match is not None:
            raise syntax_error(text, match.start(), problem, fix)


def _closing_paren(chunk: str) -> int:
    """Index of the parenthesis that closes the one at position 0."""
    depth = 0
    for i, char in enumerate(chunk):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1
