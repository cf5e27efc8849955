"""``fit.predict(X)`` for new data held by an engine: the predictions stay in the engine.

The new rows (a DuckDB relation, Parquet files, a polars LazyFrame or a Dask
DataFrame) get an ``estimate`` column, ``X beta + Z b`` with the fit's
estimates (NUTS: posterior means; b of known levels, 0 for levels the model
never saw, as the point estimate of an in-memory ``predict``), evaluated by the
engine with the model's SQL (:mod:`hierlm.sources.sqlexpr`) and returned
lazily: every column of the new data plus ``estimate``, in the engine's row
order (``.write_parquet(...)``/``.sink_parquet(...)``/``.to_parquet(...)``
write it out without loading it). A row with a missing predictor gets a NULL
estimate.

Checked first, by aggregate queries: every column the formula's right side
reads is there, of the kind the model was fitted on, and no categorical
predictor holds a level the model did not see (its dummy columns would be
silently 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import DataError, FitError
from hierlm.sources.base import DataSource
from hierlm.sources.passes import second_pass_select
from hierlm.sources.sqlexpr import _categorical_column, matrix_sql, quote

__all__ = ["predict_in_engine"]

_NUMERIC = ("float", "integer", "bool")


@dataclass(frozen=True, eq=False)
class _NewRows:
    """The model's SQL over the new rows (the attributes ``second_pass_select`` reads)."""

    complete: str
    x_sql: list[str]
    z_sql: list[list[str]]
    factors: list[tuple[str, ...]]
    keys: list[pd.DataFrame] = field(default_factory=list)
    y_sql: str = "NULL"


def _check_columns(source: DataSource, schema: dict[str, str], fitted: dict[str, str],
                   needed: list[str]) -> None:
    for column in needed:
        if column not in schema:
            raise DataError(f"predict(): the new {source.kind} data have no column {column!r}, "
                            "which the model reads; add it.")
        old, new = fitted.get(column), schema[column]
        if old is not None and (old in _NUMERIC) != (new in _NUMERIC):
            raise DataError(f"predict(): the column {column!r} is {new} in the new {source.kind} "
                            f"data but was {old} when the model was fitted; cast it.")


def _check_levels(source: DataSource, specs: list[Any], schema: dict[str, str]) -> None:
    """Refuse a level of a categorical predictor that the model never saw."""
    for spec in specs:
        for factor, state in spec.factor_contrasts.items():
            column = _categorical_column(str(factor), schema)
            known = {str(v) for v in state.levels}
            found = source.query(f"SELECT DISTINCT {quote(column)} AS v FROM data "
                                 f"WHERE {quote(column)} IS NOT NULL")["v"]
            unseen = sorted({str(v) for v in found} - known)
            if unseen:
                raise DataError(
                    f"predict(): the column {column!r} of the new {source.kind} data has the "
                    f"level {unseen[0]!r}, which the model was not fitted on (its levels: "
                    f"{sorted(known)[:6]}); drop those rows or map the level first.")


def predict_in_engine(fit: Any, source: DataSource, include_random: bool = True) -> Any:
    """Predictions for new rows held by an engine, as the engine's lazy result.

    Parameters
    ----------
    fit : fit result
        A fit of a model on engine data (its SQL and level keys are reused).
    source : DataSource
        The engine holding the new rows.
    include_random : bool
        Add the group effects of known levels (False: ``X beta`` only).

    Returns
    -------
    object
        DuckDB relation, polars LazyFrame or Dask DataFrame: the new rows plus ``estimate``.

    Raises
    ------
    FitError
        For a fit of in-memory data (predict a pandas frame instead).
    DataError
        For a missing column, a column of another kind or an unseen level.
    """
    summary = fit.design.summary
    if summary is None or summary.source is None:
        raise FitError("predict() into a data engine needs a model fitted on engine data (its "
                       "SQL is the model's); for a pandas fit, predict a pandas DataFrame.")
    plan = summary.source
    spec = fit.model.spec
    schema = source.schema()
    fitted_schema = plan.source.schema()
    needed = [c for c in spec.frame.kinds if c != spec.response and c in fitted_schema
              and c not in {f for fs in plan.factors for f in fs}]
    factors = [f for fs in plan.factors for f in fs] if include_random else []
    _check_columns(source, schema, fitted_schema, needed + factors)
    specs = [spec.fixed_spec] + ([g.formulaic_spec for g in spec.groupings] if include_random
                                 else [])
    _check_levels(source, specs, schema)
    x_all = matrix_sql(spec.fixed_spec, schema)
    kept = spec.kept_columns
    x_sql = [x_all[j] for j in kept] if kept is not None else x_all
    draws = fit.draws()
    beta = np.asarray(draws.beta, dtype=float).mean(axis=0)
    if include_random:
        rows = _NewRows(complete="TRUE", x_sql=x_sql,
                        z_sql=[matrix_sql(g.formulaic_spec, schema) for g in spec.groupings],
                        factors=list(plan.factors), keys=list(plan.keys))
        effects = list(draws.effect_means())
    else:
        rows = _NewRows(complete="TRUE", x_sql=x_sql, z_sql=[], factors=[], keys=[])
        effects = []
    sql, tables = second_pass_select(rows, beta, effects, "fitted", column="estimate")
    return source.second_pass(sql, tables)
