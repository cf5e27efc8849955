"""Second passes over data held by an engine: fitted values and residuals, row by row, there.

The engine joins its rows to small tables of the estimated group effects (one
row per level) and evaluates ``X beta + Z b`` with the model's SQL; the result
stays in the engine, lazy: a DuckDB relation, a polars LazyFrame or a dask
DataFrame with every column of the data (the rows the model used) plus
``fitted`` and, for residuals, ``residual``. Levels are matched on the raw
grouping values; row order is the engine's.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pandas as pd

from hierlm.sources.sqlexpr import literal, quote

__all__ = ["second_pass_select"]


def _term(value: float, sql: str) -> str:
    return f"({literal(float(value))} * {sql})"


def second_pass_select(plan: Any, beta: np.ndarray, effects: list[np.ndarray], what: str,
                       sigma: float | None = None,
                       column: str = "fitted") -> tuple[str, dict[str, pd.DataFrame]]:
    """SQL of the fitted values (and residuals) and the effect tables it joins.

    Parameters
    ----------
    plan : SourceRows
        The model's SQL (:class:`hierlm.sources.learn.SourceRows`).
    beta : numpy.ndarray
        Fixed effects, in the order of ``plan.x_sql``.
    effects : list of numpy.ndarray
        Per block, the group effects ``(n_levels, q)``.
    what : {"fitted", "residuals", "scaled"}
        Columns to add: ``fitted``; and ``residual`` (divided by ``sigma`` for "scaled").
    sigma : float, optional
        Residual SD for scaled residuals.
    column : str
        Name of the fitted-value column (``estimate`` for predictions).
    """
    tag = uuid.uuid4().hex[:8]
    tables: dict[str, pd.DataFrame] = {}
    joins, parts = [], [_term(b, x) for b, x in zip(beta, plan.x_sql, strict=True)] or ["0"]
    for k, (keys, values, z_sql) in enumerate(zip(plan.keys, effects, plan.z_sql, strict=True)):
        name, alias = f"__hl_eff{k}_{tag}", f"__hl_e{k}"
        table = keys.set_axis([f"__hl_k{j}" for j in range(keys.shape[1])], axis=1).copy()
        for i in range(values.shape[1]):
            table[f"__hl_b{i}"] = values[:, i]
        tables[name] = table
        on = " AND ".join(f"data.{quote(col)} = {alias}.__hl_k{j}"
                          for j, col in enumerate(plan.factors[k]))
        joins.append(f"LEFT JOIN {name} AS {alias} ON {on}")
        product = " + ".join(f"({alias}.__hl_b{i} * {z})" for i, z in enumerate(z_sql))
        parts.append(f"COALESCE({product}, CAST(0 AS DOUBLE))")
    fitted = " + ".join(parts)
    columns = [f"({fitted}) AS {quote(column)}"]
    if what in ("residuals", "scaled"):
        scale = f" / {literal(float(sigma))}" if what == "scaled" and sigma else ""
        columns.append(f"(({plan.y_sql}) - ({fitted})){scale} AS residual")
    sql = (f"SELECT data.*, {', '.join(columns)} FROM data {' '.join(joins)} "
           f"WHERE {plan.complete}")
    return sql, tables
