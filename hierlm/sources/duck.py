"""DuckDB relations and Parquet files (read through DuckDB) as data sources."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from hierlm.errors import DataError, InputTypeError
from hierlm.sources.extras import require_extra

__all__ = ["DuckDBSource", "parquet_source", "duckdb_kind"]

_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT", "INT1", "INT2", "INT4", "INT8")
_FLOAT = ("DOUBLE", "FLOAT", "REAL", "DECIMAL")


def duckdb_kind(type_name: str) -> str:
    """Kind (:data:`hierlm.sources.base.COLUMN_KINDS`) of a DuckDB column type."""
    name = type_name.upper()
    if name.startswith(_FLOAT):
        return "float"
    if name in _INTEGER:
        return "integer"
    if name.startswith(("VARCHAR", "ENUM")):
        return "string"
    if name == "BOOLEAN":
        return "bool"
    return "other"


class DuckDBSource:
    """Rows of a DuckDB relation (``duckdb.sql(...)``, ``duckdb.read_parquet(...)``).

    Aggregate queries run as SQL over the relation; second passes return a
    lazy DuckDB relation.
    """

    kind = "duckdb"
    partitioned = False

    def __init__(self, relation: Any, files: list[str] | None = None) -> None:
        self.duckdb = require_extra("duckdb")
        self.relation = relation
        self.files = files

    def schema(self) -> dict[str, str]:
        """Column name -> kind."""
        return {name: duckdb_kind(str(t))
                for name, t in zip(self.relation.columns, self.relation.types, strict=True)}

    def missing(self, column: str, kind: str) -> str:
        """NULL, or NaN for floating-point columns."""
        return f"({column} IS NULL OR isnan({column}))" if kind == "float" else f"{column} IS NULL"

    def query(self, sql: str) -> pd.DataFrame:
        """Run SQL over the relation (named ``data``)."""
        try:
            return self.relation.query("data", sql).df()
        except self.duckdb.Error as error:
            raise DataError(f"DuckDB could not run a query of the model: {error}") from None

    def second_pass(self, select: str, effects: dict[str, pd.DataFrame]) -> Any:
        """A lazy relation: every column of the data plus the ``select`` columns.

        The effect tables are registered on DuckDB's default connection, where
        ``duckdb.sql``, ``duckdb.from_df`` and ``duckdb.read_parquet`` create relations.
        """
        default = self.duckdb.default_connection
        con = default() if callable(default) else default
        for name, frame in effects.items():
            con.register(name, frame)
        try:
            return self.relation.query("data", select)
        except self.duckdb.CatalogException:
            raise DataError("fitted()/residuals() on a DuckDB relation of another connection: "
                            "create the relation on duckdb's default connection (duckdb.sql, "
                            "duckdb.read_parquet) to run the second pass.") from None


    def batches(self, rows: Any, size: int) -> Iterator[pd.DataFrame]:
        """The rows of a second pass, streamed in pandas frames of at most ``size`` rows."""
        reader = rows.to_arrow_reader(size)
        for batch in reader:
            yield batch.to_pandas()

    def quantiles(self, rows: Any, column: str, probs: list[float]) -> Any:
        """Exact quantiles (linear interpolation, R's type 7) of a column of a second pass."""
        values = ", ".join(repr(float(p)) for p in probs)
        return rows.query("r", f"SELECT quantile_cont({column}, [{values}]) AS q FROM r") \
            .fetchall()[0][0]


def _files_of(path: str | Path) -> list[str]:
    """Parquet files of a path, a directory or a glob, sorted."""
    text = str(path)
    if Path(text).is_dir():
        text = str(Path(text) / "*.parquet")
    files = sorted(glob.glob(text)) if any(ch in text for ch in "*?[") else [text]
    files = [f for f in files if Path(f).is_file()]
    if not files:
        raise DataError(f"No Parquet file matches {str(path)!r}; give a file, a directory or a "
                        "glob such as 'ratings/*.parquet'.")
    return files


def parquet_source(path: str | Path) -> DuckDBSource:
    """A DuckDB source over Parquet files, after checking that they share one schema."""
    if not isinstance(path, (str, Path)):
        raise InputTypeError(f"A Parquet source is a path or glob, not {type(path).__name__}.")
    files = _files_of(path)
    pq = require_extra("pyarrow.parquet")

    def read_schema(file: str) -> Any:
        try:
            return pq.read_schema(file)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
            raise DataError(f"{file!r} is not a readable Parquet file ({error}); a path given "
                            "as data must name Parquet files (read a CSV with pandas or "
                            "duckdb.read_csv).") from None

    first = read_schema(files[0])
    for other in files[1:]:
        schema = read_schema(other)
        if schema.equals(first, check_metadata=False):
            continue
        names, others = set(first.names), set(schema.names)
        if names != others:
            column = sorted(names ^ others)[0]
            where = files[0] if column in names else other
            raise DataError(
                f"The Parquet files have different schemas: column {column!r} is in {where!r} "
                f"but not in {(other if where == files[0] else files[0])!r}. Give files with "
                "one schema (or select a common set of columns in DuckDB yourself).")
        column = next(n for n in first.names
                      if not first.field(n).type.equals(schema.field(n).type))
        raise DataError(
            f"The Parquet files have different schemas: column {column!r} is "
            f"{first.field(column).type} in {files[0]!r} but {schema.field(column).type} in "
            f"{other!r}. Cast it to one type when writing the files.")
    duckdb = require_extra("duckdb")
    relation = duckdb.read_parquet(files)
    return DuckDBSource(relation, files=files)
