"""Which data source reads which kind of data: a registry keyed on the type of ``data``.

One entry per kind (as formulaic registers a materializer per data type); a
pandas frame has no source and takes the in-memory path unchanged. Types are
recognised without importing their libraries: data of a library that is not
imported yet cannot be of its type.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from hierlm.sources.base import DataSource
from hierlm.sources.replay import ReplaySource

__all__ = ["register_source", "source_for"]


# (type predicate, factory) pairs; the first predicate that accepts the data wins.
_REGISTRY: list[tuple[Callable[[object], bool], Callable[..., DataSource]]] = []


def register_source(accepts: Callable[[object], bool], factory: Callable[..., DataSource]) -> None:
    """Register a kind of data: ``accepts(data)`` says whether ``factory(data)`` can read it."""
    _REGISTRY.append((accepts, factory))


def _module_type(data: object, module: str, names: tuple[str, ...]) -> bool:
    """True when ``data`` is an instance of a class of an already-imported module."""
    mod = sys.modules.get(module)
    if mod is None:
        return False
    for name in names:
        target: Any = mod
        for part in name.split("."):
            target = getattr(target, part, None)
            if target is None:
                break
        if isinstance(target, type) and isinstance(data, target):
            return True
    return False


def _is_path(data: object) -> bool:
    return isinstance(data, (str, Path))


def _is_duckdb(data: object) -> bool:
    return _module_type(data, "duckdb", ("DuckDBPyRelation",))


def _is_polars(data: object) -> bool:
    return _module_type(data, "polars", ("LazyFrame",))


def _is_dask(data: object) -> bool:
    return _module_type(data, "dask.dataframe", ("DataFrame",))


def _duckdb_source(data: object, **kwargs: Any) -> DataSource:
    from hierlm.sources.duck import DuckDBSource

    return DuckDBSource(data, **kwargs)


def _parquet_source(data: object, **kwargs: Any) -> DataSource:
    from hierlm.sources.duck import parquet_source

    return parquet_source(data, **kwargs)  # type: ignore[arg-type]


def _polars_source(data: object, **kwargs: Any) -> DataSource:
    from hierlm.sources.frames import PolarsSource

    return PolarsSource(data, **kwargs)


def _dask_source(data: object, **kwargs: Any) -> DataSource:
    from hierlm.sources.frames import DaskSource

    return DaskSource(data, **kwargs)


register_source(_is_duckdb, _duckdb_source)
register_source(_is_path, _parquet_source)
register_source(_is_polars, _polars_source)
register_source(_is_dask, _dask_source)


def _replayed(data: object, **kwargs: Any) -> DataSource:
    """A loaded fit's saved answers (:func:`hierlm.io.load_fit`)."""
    assert isinstance(data, ReplaySource)
    return data


register_source(lambda data: isinstance(data, ReplaySource), _replayed)


def source_for(data: object, **kwargs: Any) -> DataSource | None:
    """The registered source for ``data``, or None for a pandas frame (the in-memory path)."""
    if isinstance(data, pd.DataFrame):
        return None
    for accepts, factory in _REGISTRY:
        if accepts(data):
            return factory(data, **kwargs)
    return None
