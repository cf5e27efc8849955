"""Design columns as SQL (hierlm.sources.sqlexpr): translation table and refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

from hierlm.errors import FormulaError
from hierlm.sources.sqlexpr import literal, matrix_sql, numeric_sql, quote

duckdb = pytest.importorskip("duckdb")

COLUMNS = {"x": "float", "k": "integer", "f": "string", "odd name": "float"}


@pytest.mark.parametrize(("expr", "sql"), [
    ("x", 'CAST("x" AS DOUBLE)'),
    ("log(x)", 'LN(CAST("x" AS DOUBLE))'),
    ("I(x ** 2)", 'POWER(CAST("x" AS DOUBLE), CAST(2.0 AS DOUBLE))'),
    ("I(x - 2 * k)", '(CAST("x" AS DOUBLE) - (CAST(2.0 AS DOUBLE) * CAST("k" AS DOUBLE)))'),
    ("`odd name`", 'CAST("odd name" AS DOUBLE)'),
])
def test_numeric_translation(expr: str, sql: str) -> None:
    assert numeric_sql(expr, COLUMNS) == sql


@pytest.mark.parametrize(("expr", "culprit"), [
    ("np.sin(x)", "sin"), ("I(x % 2)", "Mod"), ("f", "not numeric"), ("zz", "'zz' is not a column"),
])
def test_refusals_name_the_culprit(expr: str, culprit: str) -> None:
    with pytest.raises(FormulaError, match=culprit):
        numeric_sql(expr, COLUMNS)


def test_quoting() -> None:
    assert quote('a"b') == '"a""b"'
    assert literal("it's") == "'it''s'"
    assert literal(True) == "TRUE"


def test_matrix_columns_equal_formulaic() -> None:
    """Every column's SQL, evaluated by DuckDB, equals formulaic's matrix (abs 1e-12)."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.uniform(1, 2, 50), "k": rng.integers(1, 4, 50),
                       "f": pd.Categorical(rng.choice(["a", "b", "c"], 50))})
    matrix = model_matrix("1 + x + f + x:f + log(x) + I(x ** 2) + k", df)
    sql = matrix_sql(matrix.model_spec, COLUMNS)
    assert len(sql) == matrix.shape[1]
    frame = df.assign(f=df["f"].astype(str))
    rel = duckdb.from_df(frame)
    got = rel.query("data", "SELECT " + ", ".join(f"{e} AS c{i}" for i, e in enumerate(sql))
                    + " FROM data").df().to_numpy()
    np.testing.assert_allclose(got, np.asarray(matrix), rtol=0, atol=1e-12)
