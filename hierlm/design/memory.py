"""Memory guard of the ML/REML engine's dense block: refuse, before allocating, what cannot fit.

The names are re-exported by :mod:`hierlm.design.checks`.
"""

from __future__ import annotations

import os

from hierlm.errors import DataError

__all__ = ["DENSE_BYTES_PER_CELL", "available_memory", "require_dense_memory"]


# Bytes per cell of the dense part, times the copies the ML/REML kernel holds at
# once (the cross-products, K~, the scaled Schur complement and its factor, and
# for the gradient the inverse, its transpose and the scaled K~): 7 doubles.
DENSE_BYTES_PER_CELL = 7 * 8


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _size(n_bytes: float) -> str:
    """Bytes as GB, MB, kB or bytes, one decimal."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes:.0f} bytes"


def require_dense_memory(width: int, what: str) -> None:
    """Refuse, before allocating, a dense ``width x width`` problem that does not fit in memory.

    Parameters
    ----------
    width : int
        Width of the dense part (the Schur complement of the first factor).
    what : str
        What the dense part is made of, for the message.

    Raises
    ------
    DataError
        With the memory needed, the memory available and the alternatives.
    """
    needed = DENSE_BYTES_PER_CELL * float(width) ** 2
    available = available_memory()
    if available is None or needed <= available:
        return
    raise DataError(
        f"{what} form a dense block {width:,} columns wide; the ML/REML engine would need about "
        f"{_size(needed)} of memory for it ({DENSE_BYTES_PER_CELL // 8} copies of "
        f"{width:,} x {width:,} doubles), and {_size(available)} are available. "
        "Alternatives: method='map' with priors='flat' gives the ML estimate (or the REML "
        "estimate with reml=True and flat priors) through a sparse factorisation; method='nuts' "
        "with formulation='full' samples without the dense block; or use a grouping factor "
        "with fewer levels."
    )
