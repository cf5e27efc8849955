"""The data-source seam: what a model needs from data held outside pandas.

A :class:`DataSource` answers small aggregate SQL queries over its rows (the
rows themselves never come to Python) and runs second passes (fitted values,
residuals) where the data live; :mod:`hierlm.sources.registry` picks one per
kind of data.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

__all__ = ["DataSource", "Progress", "COLUMN_KINDS"]

#: Kinds of column a source reports in its schema.
COLUMN_KINDS = ("float", "integer", "string", "bool", "other")


class DataSource(Protocol):
    """Rows held by an engine, seen through aggregate queries.

    The SQL a source runs names the rows ``data``; queries use a portable
    subset (``CASE WHEN``, ``SUM``, ``COUNT``, ``MIN``, ``MAX``, ``LN``,
    ``EXP``, ``SQRT``, ``POWER``, ``GROUP BY``, ``DISTINCT``).
    """

    #: Name of the kind of data, e.g. ``"duckdb"``, for messages.
    kind: str
    #: True when ``query`` returns one partial result per partition, to be combined.
    partitioned: bool

    def schema(self) -> dict[str, str]:
        """Column name -> kind (one of :data:`COLUMN_KINDS`)."""
        ...

    def missing(self, column: str, kind: str) -> str:
        """SQL condition true where ``column`` is missing (NULL, or NaN for floats)."""
        ...

    def query(self, sql: str) -> pd.DataFrame:
        """Run an aggregate query over ``data``; a small result as a pandas frame."""
        ...

    def second_pass(self, select: str, effects: dict[str, pd.DataFrame]) -> Any:
        """Evaluate ``select`` (SQL over ``data`` joined to the effect tables) row by row.

        Returns the engine's lazy result (a DuckDB relation, a polars
        LazyFrame, a dask DataFrame): the rows stay where they are.
        """
        ...


@dataclass
class Progress:
    """One stderr line per stage of a pass, with the elapsed time (silent when off)."""

    enabled: bool = True
    kind: str = ""

    @contextmanager
    def stage(self, what: str) -> Iterator[None]:
        """Time a stage and report it when it ends."""
        start = time.perf_counter()
        if self.enabled:
            print(f"[hierlm {self.kind}] {what} ...", file=sys.stderr, flush=True)
        yield
        if self.enabled:
            print(f"[hierlm {self.kind}] {what}: {time.perf_counter() - start:.1f} s",
                  file=sys.stderr, flush=True)
