"""MkDocs hook: put the measured benchmark tables of ``bench/results/*.md`` into the Benchmarks page.

The page holds the marker ``<!-- bench-tables -->``; at build time it is
replaced by every table file found (with a note naming it), so
the site always shows the numbers of the last benchmark run and never a copy
that could drift. Headings inside a table file move two levels down; links to
files of the repository (which the site does not contain) become plain text,
and a backslash-escaped pipe in a code span of a table row (GitHub needs the
escape) becomes a plain pipe, which Python-Markdown keeps inside the cell.
Without any table file the marker becomes a sentence saying so.
"""

from __future__ import annotations

import re
from pathlib import Path

MARKER = "<!-- bench-tables -->"
_CODE = re.compile(r"`[^`]*`")
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((?!https?://)[^)]+\)")


def table_files(root: Path) -> list[Path]:
    """The benchmark result files, in name order."""
    return sorted((root / "bench" / "results").glob("*.md"))


def render(path: Path, root: Path) -> str:
    """One result file as a section of the page, with a note of where it comes from."""
    where = path.relative_to(root).as_posix()
    note = f"*Copied at build time from `{where}`.*"
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            lines.append("##" + line)
            if note:
                lines += ["", note]
                note = ""
            continue
        if line.lstrip().startswith("|"):
            line = _CODE.sub(lambda m: m.group(0).replace("\\|", "|"), line)
        lines.append(_LINK.sub(r"\1", line))
    if note:
        lines.insert(0, f"### `{where}`\n\n{note}\n")
    return "\n".join(lines).strip() + "\n"


def bench_section(root: Path) -> str:
    """The text that replaces the marker."""
    files = table_files(root)
    if not files:
        return ("No measured tables yet: the benchmark scripts in `bench/` write them to "
                "`bench/results/` when run.\n")
    return "\n".join(render(path, root) for path in files)


def on_page_markdown(markdown: str, page, config, files):
    """Replace the marker on the page that has it."""
    if MARKER not in markdown:
        return markdown
    root = Path(config["config_file_path"]).resolve().parent
    return markdown.replace(MARKER, bench_section(root))
