"""Checks of fit options shared by the engines: names, booleans, seeds, finite arrays.

Every engine refuses an option it does not use (``draws`` for MAP or REML)
instead of ignoring it, and every value is checked before any work starts,
with a :class:`~hierlm.errors.FitError` naming the option and what it takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hierlm.errors import FitError

__all__ = ["SEED_LIMIT", "check_options", "require_bool", "require_seed", "require_finite_start"]

SEED_LIMIT = 2**64
"""Seeds are integers in ``[0, 2**64)`` (nutpie takes an unsigned 64-bit seed)."""


def check_options(engine: Callable[..., Any], method: str, options: Mapping[str, Any],
                  exclude: tuple[str, ...] = ()) -> None:
    """Raise FitError naming the options ``engine`` does not take (e.g. ``draws`` for MAP).

    Parameters
    ----------
    engine : callable
        The function the options go to; its keyword parameters are the valid names.
    method : str
        The fit method, for the message.
    options : mapping
        The options given.
    exclude : tuple of str
        Parameters of ``engine`` that are not user options (``model``, ``design``).
    """
    if not options:  # nothing to check (and inspect.signature costs ~100 us a call)
        return
    valid = [name for name, parameter in inspect.signature(engine).parameters.items()
             if name not in exclude and parameter.kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = [name for name in options if name not in valid]
    if unknown:
        raise FitError(
            f"Unknown option(s) {', '.join(repr(u) for u in unknown)} for method={method!r}; "
            f"it takes {', '.join(valid) if valid else 'no options'}."
        )


def require_bool(value: object, name: str, allow_none: bool = False) -> bool | None:
    """Return ``value`` if it is True or False (or None when allowed), else raise.

    ``warn="no"`` is truthy; a flag must be a real boolean so that such a
    value is refused rather than read as True.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        allowed = "True, False or None" if allow_none else "True or False"
        raise FitError(f"{name} must be {allowed}, got {value!r}.")
    return bool(value)


def require_seed(value: object, name: str = "random_seed") -> int | None:
    """Return a seed as int (None passes), or raise unless it is an integer in ``[0, 2**64)``."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise FitError(f"{name} must be an integer or None, got {value!r}.")
    seed = int(value)
    if not 0 <= seed < SEED_LIMIT:
        raise FitError(f"{name} must be an integer in [0, 2**64), got {seed}.")
    return seed


def require_finite_start(start: object, size: int, name: str = "start") -> np.ndarray:
    """Return a start vector as a float array of ``size`` finite values, else raise FitError."""
    try:
        values = np.array(start, dtype=float).ravel()
    except (TypeError, ValueError):
        raise FitError(f"{name} must be an array of theta values, got {start!r}.") from None
    if values.size != size:
        raise FitError(f"{name} must have {size} theta entries, got {values.size}.")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise FitError(f"{name} has non-finite value(s) {values[bad].tolist()} at position(s) "
                       f"{bad.tolist()}; give finite theta values (or omit {name}).")
    return values
