"""polars LazyFrames and Dask DataFrames as sources (hierlm.sources.frames)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import HierlmWarning

dd = pytest.importorskip("dask.dataframe")
pl = pytest.importorskip("polars")


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(6)
    g = rng.integers(0, 10, 300)
    return pd.DataFrame({"y": rng.normal(size=10)[g] + rng.normal(size=300), "g": g,
                         "x": rng.normal(size=300)})


def test_dask_without_client_computes_locally_with_a_note() -> None:
    with pytest.warns(HierlmWarning, match="No distributed.Client is active"):
        model = hl.Model("y ~ x + (1 | g)", dd.from_pandas(frame(), npartitions=2),
                         progress=False)
    assert model.fit().criterion == pytest.approx(
        hl.Model("y ~ x + (1 | g)", frame()).fit().criterion, rel=1e-7)


def test_polars_categorical_and_nan_as_in_pandas() -> None:
    """A Categorical column is a factor, a NaN is missing (as pandas' NaN)."""
    df = frame()
    df["f"] = np.where(df["x"] > 0, "up", "down")
    df.loc[[1, 2], "x"] = np.nan
    with pytest.warns(hl.errors.MissingDataWarning, match="Dropped 2 of 300"):
        want = hl.Model("y ~ x + f + (1 | g)", df).fit()
    lazy = pl.from_pandas(df).lazy().with_columns(pl.col("f").cast(pl.Categorical))
    with pytest.warns(hl.errors.MissingDataWarning, match="Dropped 2 of 300"):
        got = hl.Model("y ~ x + f + (1 | g)", lazy, progress=False).fit()
    assert got.criterion == pytest.approx(want.criterion, rel=1e-7)
    assert list(got.model.fixed_names) == list(want.model.fixed_names)


def test_core_imports_no_engine() -> None:
    """import hierlm and a pandas fit import none of the optional engines (pandas may load pyarrow)."""
    code = ("import sys, hierlm as hl\n"
            "hl.Model('Reaction ~ Days + (1 | Subject)', hl.datasets.load('sleepstudy'))\n"
            "print([m for m in ('duckdb', 'polars', 'dask', 'distributed') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
