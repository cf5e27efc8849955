"""Bad input on DuckDB relations and Parquet files: clear errors naming the culprit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import ColumnNotFoundError, DataError, FamilyError, FitError, FormulaError

duckdb = pytest.importorskip("duckdb")


def frame(n: int = 400, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 12, n)
    x = rng.normal(size=n)
    return pd.DataFrame({"y": x + rng.normal(size=12)[g] + rng.normal(size=n), "x": x, "g": g,
                         "label": rng.choice(["u", "v"], n)})


def test_missing_column_is_named() -> None:
    with pytest.raises(ColumnNotFoundError, match="'z'"):
        hl.Model("y ~ z + (1 | g)", duckdb.from_df(frame()), progress=False)


def test_non_numeric_response() -> None:
    with pytest.raises(DataError, match="response 'label' is not numeric.*cast"):
        hl.Model("label ~ x + (1 | g)", duckdb.from_df(frame()), progress=False)


def test_float_grouping_column() -> None:
    df = frame()
    df["g"] = df["g"] + 0.5
    with pytest.raises(DataError, match="grouping column 'g' holds floating-point"):
        hl.Model("y ~ x + (1 | g)", duckdb.from_df(df), progress=False)


@pytest.mark.parametrize(("formula", "culprit"), [
    ("y ~ np.sin(x) + (1 | g)", "sin"),
    ("y ~ poly(x, 2) + (1 | g)", "poly"),
    ("y ~ x + (1 | g)", None),
])
def test_untranslatable_transform(formula: str, culprit: str | None) -> None:
    if culprit is None:  # the plain formula is accepted: the check is specific
        hl.Model(formula, duckdb.from_df(frame()), progress=False)
        return
    with pytest.raises(FormulaError, match=f"{culprit}.*compute the column in the data first"):
        hl.Model(formula, duckdb.from_df(frame()), progress=False)


def test_parquet_files_with_different_schemas(tmp_path: object) -> None:
    df = frame()
    df.iloc[:200].to_parquet(f"{tmp_path}/a.parquet")
    other = df.iloc[200:].copy()
    other["g"] = other["g"].astype(str)
    other.to_parquet(f"{tmp_path}/b.parquet")
    with pytest.raises(DataError, match="different schemas: column 'g' is int64 in .*a.parquet"):
        hl.Model("y ~ x + (1 | g)", f"{tmp_path}/*.parquet", progress=False)
    other.drop(columns="label").to_parquet(f"{tmp_path}/b.parquet")
    with pytest.raises(DataError, match="column 'label' is in"):
        hl.Model("y ~ x + (1 | g)", f"{tmp_path}/*.parquet", progress=False)


def test_no_parquet_file(tmp_path: object) -> None:
    with pytest.raises(DataError, match="No Parquet file matches"):
        hl.Model("y ~ x + (1 | g)", f"{tmp_path}/*.parquet", progress=False)


def test_a_path_that_is_not_parquet(tmp_path: object) -> None:
    frame().to_csv(f"{tmp_path}/data.csv")
    with pytest.raises(DataError, match="data.csv' is not a readable Parquet file"):
        hl.Model("y ~ x + (1 | g)", f"{tmp_path}/data.csv", progress=False)


def test_directory_of_parquet_files(tmp_path: object) -> None:
    df = frame()
    df.to_parquet(f"{tmp_path}/all.parquet")
    fit = hl.Model("y ~ x + (1 | g)", str(tmp_path), progress=False).fit()
    assert fit.criterion == pytest.approx(hl.Model("y ~ x + (1 | g)", df).fit().criterion,
                                          rel=1e-7)


def test_refusals() -> None:
    rel = duckdb.from_df(frame())
    with pytest.raises(FamilyError, match="only Gaussian"):
        from hierlm.formula import parse_formula
        from hierlm.sources import source_design, source_for

        source_design(parse_formula("y ~ x + (1 | g)"), source_for(rel), family="poisson")
    with pytest.raises(FormulaError, match="residual= is not available for duckdb data"):
        hl.Model("y ~ x + (1 | g)", rel, residual="ar1(x | g)", progress=False)
    with pytest.raises(FormulaError, match="no random-effect term"):
        hl.Model("y ~ x", rel, progress=False)
    fit = hl.Model("y ~ x + (1 | g)", rel, progress=False).fit()
    with pytest.raises(FitError, match="need posterior draws"):
        fit.waic()
    with pytest.raises(FitError, match="needs the rows of the data"):
        fit.confint(method="boot")
