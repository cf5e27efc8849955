"""Optional dependencies of the ``scale`` extra, imported on first use."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from hierlm.errors import InputTypeError

__all__ = ["require_extra"]


def require_extra(module: str) -> Any:
    """Import an optional dependency of the ``scale`` extra, or say how to install it."""
    try:
        return import_module(module)
    except ImportError:
        raise InputTypeError(
            f"This kind of data needs the optional package {module!r}: "
            "pip install hierlm[scale]") from None
