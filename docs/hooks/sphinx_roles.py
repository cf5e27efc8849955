"""MkDocs hook: show Sphinx cross-reference roles of docstrings as plain code.

hierlm's docstrings are numpydoc and use roles such as
``:class:`~hierlm.errors.NewLevelError```, which mkdocstrings leaves as text
(``:class:`` followed by a code span). Here the role prefix is dropped and a
leading ``~`` shortens the name to its last component, as Sphinx would show it.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(~?)([^<]+)</code>")


def _plain(match: re.Match[str]) -> str:
    name = match.group(2)
    if match.group(1):
        name = name.rsplit(".", 1)[-1]
    return f"<code>{name}</code>"


def on_page_content(html: str, page, config, files):
    """Rewrite the roles in the page's HTML."""
    return _ROLE.sub(_plain, html)
