"""predict(X) for new rows held by an engine: computed there, equal to the in-memory predict.

Reference: the estimate of ``predict(new_data)`` on the pandas frame of the same
new rows (abs 1e-12 on a response of SD ~1.5), for known and unseen levels of
the grouping factor and with ``include_random=False``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import DataError, FitError

duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")
dd = pytest.importorskip("dask.dataframe")



def simulate(n: int, groups: int, seed: int) -> pd.DataFrame:
    """y ~ x + f + (x | g) with a three-level factor f."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    b0, b1 = rng.normal(size=groups), 0.5 * rng.normal(size=groups)
    f = rng.choice(np.array(["a", "b", "c"]), n)
    y = 1 + 2 * x + 0.3 * (f == "b") + b0[g] + b1[g] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "f": f})


def _table(out: object) -> pd.DataFrame:
    return (out.df() if hasattr(out, "df") else
            out.collect().to_pandas() if hasattr(out, "collect") else out.compute())  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def fitted() -> tuple[object, object, pd.DataFrame]:
    df = simulate(3000, 30, seed=21)
    formula = "y ~ x + f + (x | g)"
    new = simulate(400, 40, seed=22).drop(columns="y")  # levels 30-39 unseen
    new["id"] = np.arange(len(new))
    fit = hl.Model(formula, duckdb.from_df(df), progress=False).fit()
    reference = hl.Model(formula, df).fit()
    return fit, reference, new


@pytest.mark.parametrize("kind", ["duckdb", "polars", "dask", "parquet"])
def test_predict_into_the_engine_equals_pandas(fitted, kind: str, tmp_path: object) -> None:
    fit, reference, new = fitted
    data = {"duckdb": lambda: duckdb.from_df(new), "polars": lambda: pl.from_pandas(new).lazy(),
            "dask": lambda: dd.from_pandas(new, npartitions=2),
            "parquet": lambda: (new.to_parquet(f"{tmp_path}/new.parquet"),
                                f"{tmp_path}/new.parquet")[1]}[kind]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)  # dask: no client
        out = fit.predict(data)
    assert not isinstance(out, pd.DataFrame)  # lazy, in the engine
    table = _table(out).sort_values("id")
    want = reference.predict(new)["estimate"].to_numpy()
    np.testing.assert_allclose(table["estimate"].to_numpy(), want, rtol=0, atol=1e-12)
    assert {"x", "f", "g", "id"} <= set(table.columns)


def test_predict_without_group_effects(fitted) -> None:
    fit, reference, new = fitted
    table = _table(fit.predict(duckdb.from_df(new), include_random=False))
    want = reference.predict(new, include_random=False)["estimate"].to_numpy()
    np.testing.assert_allclose(table.sort_values("id")["estimate"], want, rtol=0, atol=1e-12)


def test_bad_new_data_is_named(fitted) -> None:
    fit, reference, new = fitted
    with pytest.raises(DataError, match="no column 'x'"):
        fit.predict(duckdb.from_df(new.drop(columns="x")))
    odd = new.copy()
    odd.loc[3, "f"] = "zz"
    with pytest.raises(DataError, match="column 'f' .* level 'zz'"):
        fit.predict(duckdb.from_df(odd))
    cast = new.assign(x=new["x"].astype(str))
    with pytest.raises(DataError, match="'x' is string in the new duckdb data"):
        fit.predict(duckdb.from_df(cast))
    with pytest.raises(FitError, match="estimate of the mean only"):
        fit.predict(duckdb.from_df(new), prob=0.9)
    with pytest.raises(FitError, match="needs a model fitted on engine data"):
        reference.predict(duckdb.from_df(new))
