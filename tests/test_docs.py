"""The documentation's code runs, prints what the pages show, and the site builds.

Every ```python block of ``docs/*.md`` is executed, page by page, in one
namespace per page (later blocks may use names of earlier ones), from the
repository root. A ```text block that follows a python block directly (only
blank lines between) is that block's expected output: its stdout must match
it, numbers within a small tolerance (they come from a real run, written by
``--update`` below) and everything else exactly up to whitespace.

A block preceded by the line ``<!-- docs-test: bayes -->`` samples a posterior
(or uses one). Such blocks run only in the slow test of their page, with the
sampling arguments shrunk (``draws=``/``tune=`` to 100, ``chains=`` to 2) so
that the code path is exercised in seconds; their printed numbers then
differ from the page's, so their output is not compared. The fast test runs
the other blocks of the page alone, so they must not depend on Bayesian ones.

A Bayesian block whose output is meant to be checked carries a Monte Carlo
tolerance, ``<!-- docs-test: bayes tolerance=0.05 -->``. The slow test runs
it with the page's own sampling settings (not shrunk) and compares its
output with that *relative* tolerance: a printed number may differ from the
shown one by ``tolerance`` times the scale of its line, the largest absolute
decimal number (a token with a decimal point) on that line of the shown
output, and never by less than ``tolerance`` times the number itself. The
line's scale keeps numbers near zero (a correlation of 0.08, an interval
bound close to 0) from needing a far tighter tolerance than their row;
integers such as level labels (``308``) do not set the scale. Keep such
blocks small (e.g. 2 chains x 300 draws) and seeded: with a fixed
``random_seed`` the output is the same on one machine, so the tolerance only
has to absorb differences between machines and library versions. Print
estimates, standard errors and intervals, not ESS (which varies by far more
than a few per cent). The page must say so in the text just before the
block, giving the tolerance as a percentage ("numbers vary with Monte Carlo
error, within about 5 %"); the test checks that ``5 %`` appears there.
``<!-- docs-test: skip -->`` excludes a block (none is meant to need it).

Regenerating the shown output after an intended change (full sampling
settings for Bayesian blocks, so the pages show real runs)::

    .venv/bin/python tests/test_docs.py --update docs/formulas.md

(``--no-sampling`` leaves the Bayesian blocks and their output alone.)

The last test builds the site with ``mkdocs build --strict`` into a
temporary directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARKER = re.compile(r"<!--\s*docs-test:\s*(\w+)(?:\s+tolerance=(\d*\.?\d+))?\s*-->\s*$")
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_SAMPLING = (
    (re.compile(r"\bdraws=\d+"), "draws=100"),
    (re.compile(r"\btune=\d+"), "tune=100"),
    (re.compile(r"\bchains=\d+"), "chains=2"),
)
# Sampling code: a block that samples must carry the marker (MAP fits are quick and deterministic,
# so they run, and have their output compared, in the fast tests).
_BAYES_WORDS = re.compile(r"""["']nuts["']|fit_bayes""")
RTOL = 2e-3


@dataclass
class Block:
    """One python block of a page, with its expected output if the page shows one."""

    page: Path
    line: int
    code: str
    marker: str
    expected: str | None
    expected_span: tuple[int, int] | None
    tolerance: float | None = None
    preceding: str = ""

    @property
    def compared(self) -> bool:
        """Whether the block's output is checked (always, except Bayesian blocks without a tolerance)."""
        return self.expected is not None and (not self.bayes or self.tolerance is not None)

    @property
    def bayes(self) -> bool:
        return self.marker == "bayes"

    @property
    def label(self) -> str:
        return f"{self.page.name}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """Python blocks of a page in order, each with the text block that follows it."""
    text = page.read_text()
    fences = list(_FENCE.finditer(text))
    blocks = []
    for k, fence in enumerate(fences):
        if fence.group(1) != "python":
            continue
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        found = _MARKER.search(before)
        marker = found.group(1) if found else ""
        tolerance = float(found.group(2)) if found and found.group(2) else None
        expected, span = None, None
        if k + 1 < len(fences):
            following = fences[k + 1]
            if following.group(1) == "text" and not text[fence.end(): following.start()].strip():
                expected, span = following.group(2), following.span(2)
        line = text.count("\n", 0, fence.start()) + 1
        preceding = text[max(0, fence.start() - 800): fence.start()]
        blocks.append(Block(page, line, fence.group(2), marker, expected, span, tolerance, preceding))
    return blocks


def shrink_sampling(code: str) -> str:
    """Replace draws/tune/chains arguments by tiny values."""
    for pattern, value in _SAMPLING:
        code = pattern.sub(value, code)
    return code


def run_block(block: Block, namespace: dict, tiny: bool) -> str:
    """Execute one block in ``namespace`` from the repository root; return its stdout."""
    shrink = tiny and block.bayes and block.tolerance is None
    code = shrink_sampling(block.code) if shrink else block.code
    compiled = compile(code, block.label, "exec")
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compiled, namespace)  # noqa: S102 - running the documentation is the point
    finally:
        os.chdir(cwd)
    return out.getvalue()


def _tolerance(shown: str) -> float:
    """Half a unit in the last printed place of a number as shown."""
    mantissa = shown.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(shown.lower().split("e")[1]) if "e" in shown.lower() else 0
    return 0.5 * 10.0 ** (exponent - decimals)


_DECIMAL_TOKEN = re.compile(r"(?<!\S)[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?(?!\S)")


def _line_scales(text: str) -> list[float]:
    """For every number of ``text``, the largest absolute decimal number on its line (0 if none)."""
    scales = []
    for line in text.splitlines():
        decimals = [abs(float(x)) for x in _DECIMAL_TOKEN.findall(line)]
        scales += [max(decimals, default=0.0)] * len(_NUMBER.findall(line))
    return scales


def outputs_match(expected: str, actual: str, mc_tolerance: float | None = None) -> tuple[bool, str]:
    """Compare printed text: words exactly (whitespace-insensitive), numbers with a tolerance.

    Numbers may differ by ``RTOL`` relative or their last printed digit; with
    ``mc_tolerance`` (Bayesian blocks) by that fraction of their line's scale.
    """
    words_expected = "".join(_NUMBER.sub("#", expected).split())
    words_actual = "".join(_NUMBER.sub("#", actual).split())
    if words_expected != words_actual:
        return False, f"text differs:\n--- shown\n{expected}\n--- printed\n{actual}"
    scales = _line_scales(expected)
    numbers = zip(_NUMBER.findall(expected), _NUMBER.findall(actual), scales, strict=True)
    for shown, printed, scale in numbers:
        a, b = float(shown), float(printed)
        slack = max(RTOL * abs(a), 2 * _tolerance(shown), 2 * _tolerance(printed))
        if mc_tolerance is not None:
            slack = max(slack, mc_tolerance * max(abs(a), scale))
        if not (math.isclose(a, b, abs_tol=slack) or a == b):
            return False, (f"number {printed} printed where the page shows {shown}:\n"
                           f"--- shown\n{expected}\n--- printed\n{actual}")
    return True, ""


def _check_markers(blocks: list[Block]) -> None:
    for block in blocks:
        if _BAYES_WORDS.search(block.code) and not block.bayes and block.marker != "skip":
            pytest.fail(f"{block.label} uses the Bayesian engine; put "
                        "'<!-- docs-test: bayes -->' on the line before its fence.")
        if block.tolerance is not None:
            percent = f"{100 * block.tolerance:g} %"
            if not block.bayes:
                pytest.fail(f"{block.label}: a tolerance belongs to Bayesian blocks only.")
            if percent not in block.preceding:
                pytest.fail(f"{block.label}: its output is compared within {percent}; say so in the "
                            f"text before the block (\"within about {percent}\").")


def fresh_namespace() -> dict:
    """A new namespace for a page, with pandas' display options back at their defaults."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.reset_option("all")
    return {"__name__": "__docs__"}


def _run_page(page: Path, include_bayes: bool) -> None:
    blocks = read_blocks(page)
    _check_markers(blocks)
    namespace = fresh_namespace()
    for block in blocks:
        if block.marker == "skip" or (block.bayes and not include_bayes):
            continue
        try:
            printed = run_block(block, namespace, tiny=True)
        except Exception as error:  # pragma: no cover - reported as a failure
            pytest.fail(f"{block.label} raised {type(error).__name__}: {error}\n{block.code}")
        if block.compared:
            ok, why = outputs_match(block.expected, printed, mc_tolerance=block.tolerance)
            assert ok, f"{block.label}: {why}"


def _has_code(page: Path, bayes: bool) -> bool:
    return any(b.bayes == bayes and b.marker != "skip" for b in read_blocks(page))


def _page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


@pytest.mark.parametrize("page", [p for p in PAGES if _has_code(p, bayes=False)], ids=_page_id)
def test_page_examples(page: Path) -> None:
    """ML/REML and other non-sampling examples run and print what the page shows."""
    _run_page(page, include_bayes=False)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if _has_code(p, bayes=True)], ids=_page_id)
def test_page_examples_with_sampling(page: Path) -> None:
    """Every example of the page; Bayesian ones with tiny draw counts, or in full when compared."""
    _run_page(page, include_bayes=True)


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    missing = [_page_id(p) for p in PAGES if _page_id(p) not in config]
    assert not missing, f"pages missing from mkdocs.yml nav: {missing}"


def test_output_comparison_catches_changed_numbers() -> None:
    shown = "Days   10.47   1.546\nsigma 25.59"
    assert outputs_match(shown, "Days 10.47 1.546\nsigma   25.59")[0]
    assert outputs_match(shown, "Days 10.4701 1.5461\nsigma 25.59")[0]
    assert outputs_match("[253.66366837 430.65999056]", "[253.66367015 430.6599919 ]")[0]
    assert not outputs_match(shown, "Days 10.57 1.546\nsigma 25.59")[0]
    assert not outputs_match(shown, "Days 10.47 1.546\ntau 25.59")[0]


def test_monte_carlo_tolerance_is_relative_to_the_line() -> None:
    shown = "Subject Intercept Days 0.082 0.319 -0.498 0.612\nSubject 308 Intercept 2.76 11.86"
    # 5 % of the line's largest decimal (0.612): 0.082 -> 0.11 passes, -> 0.15 does not
    assert outputs_match(shown, shown.replace("0.082", "0.11"), mc_tolerance=0.05)[0]
    assert not outputs_match(shown, shown.replace("0.082", "0.15"), mc_tolerance=0.05)[0]
    assert not outputs_match(shown, shown.replace("0.082", "0.11"))[0]
    # the level label 308 does not widen its line's scale (11.86): 2.76 -> 3.5 fails
    assert outputs_match(shown, shown.replace("2.76", "3.3"), mc_tolerance=0.05)[0]
    assert not outputs_match(shown, shown.replace("2.76", "3.5"), mc_tolerance=0.05)[0]


def test_marker_with_tolerance(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Within about 5 % of the shown numbers.\n\n<!-- docs-test: bayes tolerance=0.05 -->\n"
                    "```python\nfit = m.fit('nuts', draws=300)\n```\n\n```text\n1.0\n```\n\n"
                    "<!-- docs-test: bayes -->\n```python\nprint(1)\n```\n\n```text\n1\n```\n")
    compared, shrunk = read_blocks(page)
    assert compared.bayes and compared.tolerance == 0.05 and compared.compared
    assert shrunk.bayes and shrunk.tolerance is None and not shrunk.compared
    assert "5 %" in compared.preceding


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_hook_inserts_result_files(tmp_path: Path) -> None:
    hook = _hook("bench_tables")
    config = {"config_file_path": str(tmp_path / "mkdocs.yml")}
    page = "# Benchmarks\n\n<!-- bench-tables -->\n"
    assert "No measured tables yet" in hook.on_page_markdown(page, None, config, None)
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "lmm.md").write_text(
        "# Fits\n\nBy [the script](../bench_lmm.py).\n\n| formula | s |\n| --- | ---: |\n"
        "| `y ~ x + (x \\| g)` | 0.027 |\n")
    text = hook.on_page_markdown(page, None, config, None)
    assert "### Fits" in text and "`bench/results/lmm.md`" in text
    assert "By the script." in text
    assert "| `y ~ x + (x | g)` | 0.027 |" in text


def test_role_hook_shows_plain_names() -> None:
    hook = _hook("sphinx_roles")
    html = "see :class:<code>~hierlm.errors.NewLevelError</code> and :func:<code>hierlm.results.icc</code>"
    assert hook.on_page_content(html, None, None, None) == (
        "see <code>NewLevelError</code> and <code>hierlm.results.icc</code>")


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The site builds without a single warning (``mkdocs build --strict``)."""
    needed = ["mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"]
    missing = [name for name in needed if importlib.util.find_spec(name.split(".")[0]) is None]
    if missing:
        pytest.skip(f"documentation tools not installed ({', '.join(missing)}); "
                    "install them with pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").exists()


def update(pages: list[Path], sampling: bool = True) -> None:
    """Rewrite the shown output of every python block that has a text block, from a real run.

    With ``sampling=False`` Bayesian blocks are skipped and keep their shown output.
    """
    for page in pages:
        blocks = read_blocks(page)
        namespace = fresh_namespace()
        replacements = []
        for block in blocks:
            if block.marker == "skip" or (block.bayes and not sampling):
                continue
            print(f"running {block.label}{' (sampling)' if block.bayes else ''}", file=sys.stderr)
            printed = run_block(block, namespace, tiny=False)
            if block.expected_span is not None:
                replacements.append((block.expected_span, printed if printed.endswith("\n") or not printed
                                     else printed + "\n"))
        text = page.read_text()
        for (start, end), new in sorted(replacements, reverse=True):
            text = text[:start] + new + text[end:]
        page.write_text(text)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--update"]:
        sampling = "--no-sampling" not in arguments
        names = [a for a in arguments[1:] if a != "--no-sampling"]
        update([Path(p).resolve() for p in names] or PAGES, sampling=sampling)
    else:
        print(__doc__)
