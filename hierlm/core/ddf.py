"""The denominator-df methods of t and F tests on ML/REML fits, and the check of a ``ddf`` option.

The methods themselves are in :mod:`hierlm.lmm.satterthwaite` and
:mod:`hierlm.lmm.kenward_roger`; the option is also read by tables of
:mod:`hierlm.results` that take ``ddf=`` for any fit, so its check lives here.
"""

from __future__ import annotations

from hierlm.errors import FitError

__all__ = ["DDF_METHODS", "check_ddf"]

DDF_METHODS = ("satterthwaite", "kenward-roger")


def check_ddf(ddf: object) -> str:
    """Normalise a ``ddf`` option (``"Kenward-Roger"``, ``"kr"``, ...) or raise naming the choices."""
    key = str(ddf).lower().replace("_", "-").replace(" ", "-") if isinstance(ddf, str) else ""
    key = {"kr": "kenward-roger", "kenwardroger": "kenward-roger", "satt": "satterthwaite"}.get(key, key)
    if key not in DDF_METHODS:
        raise FitError(f"ddf={ddf!r}: choose 'satterthwaite' or 'kenward-roger'.")
    return key
