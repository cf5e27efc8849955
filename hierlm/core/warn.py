"""Warnings that point at the user's line.

:func:`warn` issues a warning attributed to the first stack frame outside the
``hierlm`` package (``warnings.warn(..., skip_file_prefixes=...)``, Python
3.12), so the message names the user's own call however deep inside hierlm
it was raised, and Python's default filter shows it once per such line.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["warn", "PACKAGE_DIR"]

PACKAGE_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
"""The folder of the installed ``hierlm`` package (with a trailing separator); its frames are skipped."""


def warn(message: str, category: type[Warning]) -> None:
    """Issue ``message`` as ``category``, attributed to the first caller outside hierlm.

    Parameters
    ----------
    message : str
        The warning text.
    category : type of Warning
        Usually a subclass of :class:`hierlm.errors.HierlmWarning`.
    """
    warnings.warn(message, category, skip_file_prefixes=(PACKAGE_DIR,))
