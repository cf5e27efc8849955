"""Polars LazyFrames and Dask DataFrames as data sources.

A LazyFrame runs the model's SQL through polars' own lazy SQL engine
(``pl.SQLContext``, collected with the streaming engine), so the rows are
never materialised. A Dask DataFrame runs the same SQL on each partition
(with DuckDB, on the workers of the active ``distributed.Client``) and the
partial sums are combined; with no client Dask computes locally, with a note.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pandas as pd

from hierlm.core.warn import PACKAGE_DIR
from hierlm.errors import DataError, HierlmWarning
from hierlm.sources.extras import require_extra

__all__ = ["PolarsSource", "DaskSource", "pandas_kind"]


def pandas_kind(dtype: Any) -> str:
    """Kind (:data:`hierlm.sources.base.COLUMN_KINDS`) of a pandas dtype."""
    api = pd.api.types
    if api.is_bool_dtype(dtype):
        return "bool"
    if api.is_integer_dtype(dtype):
        return "integer"
    if api.is_float_dtype(dtype):
        return "float"
    if api.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype) \
            or api.is_object_dtype(dtype):
        return "string"
    return "other"


class PolarsSource:
    """Rows of a ``polars.LazyFrame``, queried by polars' lazy SQL engine."""

    kind = "polars"
    partitioned = False

    def __init__(self, frame: Any) -> None:
        self.pl = require_extra("polars")
        require_extra("pyarrow")
        pl = self.pl
        schema = frame.collect_schema()
        self._schema: dict[str, str] = {}
        casts = []
        for name, dtype in schema.items():
            if dtype.is_float():
                kind = "float"
                casts.append(pl.col(name).fill_nan(None))  # NaN counts as missing, as in pandas
            elif dtype.is_integer():
                kind = "integer"
            elif dtype == pl.Boolean:
                kind = "bool"
            elif dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
                kind = "string"
                if dtype != pl.String:
                    casts.append(pl.col(name).cast(pl.String))
            else:
                kind = "other"
            self._schema[name] = kind
        self.frame = frame.with_columns(casts) if casts else frame

    def schema(self) -> dict[str, str]:
        """Column name -> kind."""
        return dict(self._schema)

    def missing(self, column: str, kind: str) -> str:
        """NULL (NaN was turned into NULL when the source was made)."""
        return f"{column} IS NULL"

    def _context(self, effects: dict[str, pd.DataFrame] | None = None) -> Any:
        frames = {"data": self.frame}
        for name, frame in (effects or {}).items():
            frames[name] = self.pl.from_pandas(frame).lazy()
        return self.pl.SQLContext(frames=frames, eager=False)

    def query(self, sql: str) -> pd.DataFrame:
        """Run SQL over the LazyFrame (named ``data``), streaming."""
        try:
            result = self._context().execute(sql).collect(engine="streaming")
        except Exception as error:  # polars raises many exception types for SQL
            raise DataError(f"polars could not run a query of the model: {error}") from None
        return result.to_pandas()

    def second_pass(self, select: str, effects: dict[str, pd.DataFrame]) -> Any:
        """A LazyFrame: every column of the data plus the ``select`` columns."""
        return self._context(effects).execute(select)

    def batches(self, rows: Any, size: int) -> Iterator[pd.DataFrame]:
        """The rows of a second pass, streamed in pandas frames of at most ``size`` rows."""
        for batch in rows.collect_batches(chunk_size=size):
            for start in range(0, batch.height, size):
                yield batch.slice(start, size).to_pandas()

    def quantiles(self, rows: Any, column: str, probs: list[float]) -> Any:
        """Exact quantiles (linear interpolation, R's type 7) of a column of a second pass."""
        pl = self.pl
        frame = rows.select([pl.col(column).quantile(p, interpolation="linear").alias(f"q{i}")
                             for i, p in enumerate(probs)]).collect(engine="streaming")
        return [float(frame[f"q{i}"][0]) for i in range(len(probs))]


def _partition_query(part: pd.DataFrame, sql: str,
                     effects: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Run SQL over one partition with DuckDB (on a worker)."""
    import duckdb

    con = duckdb.connect()
    con.register("data", part)
    for name, frame in (effects or {}).items():
        con.register(name, frame)
    out = con.execute(sql).df()
    con.close()
    return out


class DaskSource:
    """Rows of a ``dask.dataframe.DataFrame``: per-partition SQL, partial sums combined."""

    kind = "dask"
    partitioned = True

    def __init__(self, frame: Any) -> None:
        self.dask = require_extra("dask")
        require_extra("duckdb")
        distributed = require_extra("distributed")
        try:
            self.client = distributed.get_client()
        except ValueError:
            self.client = None
            warnings.warn(
                "No distributed.Client is active: the Dask DataFrame's partitions are computed "
                "locally (dask's default scheduler). Start a client (distributed.Client(...)) "
                "to compute them on a cluster.", HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))
        self.frame = frame

    def schema(self) -> dict[str, str]:
        """Column name -> kind, from the frame's dtypes (no computation)."""
        return {str(name): pandas_kind(dtype) for name, dtype in self.frame.dtypes.items()}

    def missing(self, column: str, kind: str) -> str:
        """NULL, or NaN for floating-point columns."""
        return f"({column} IS NULL OR isnan({column}))" if kind == "float" else f"{column} IS NULL"

    def query(self, sql: str) -> pd.DataFrame:
        """Run SQL on every partition; the partial results, concatenated."""
        delayed = self.dask.delayed(_partition_query)
        tasks = [delayed(part, sql) for part in self.frame.to_delayed()]
        try:
            parts = self.dask.compute(*tasks)
        except Exception as error:  # a worker's DuckDB error comes back as its own type
            raise DataError(f"A Dask partition could not run a query of the model: {error}") \
                from None
        return pd.concat(parts, ignore_index=True)

    def second_pass(self, select: str, effects: dict[str, pd.DataFrame]) -> Any:
        """A dask DataFrame: every column of the data plus the ``select`` columns."""
        meta = _partition_query(self.frame._meta, select, effects)
        return self.frame.map_partitions(_partition_query, select, effects, meta=meta)

    def batches(self, rows: Any, size: int) -> Iterator[pd.DataFrame]:
        """The rows of a second pass, one partition computed at a time, in frames of at most ``size`` rows."""
        for k in range(rows.npartitions):
            part = rows.get_partition(k).compute()
            for start in range(0, len(part), size):
                yield part.iloc[start:start + size]

    def quantiles(self, rows: Any, column: str, probs: list[float]) -> Any:
        """None: exact quantiles need a global sort, which this source does not run."""
        return None
