"""Per-observation LOO/WAIC of NUTS fits on engine data, streamed in batches of rows.

Reference: :func:`hierlm.results.ic.loo` / ``waic`` of the same posterior draws on the
in-memory design of the same rows (the whole (draws, rows) array at once): elpd, p
and SE rel 1e-12, and the pointwise values as a set (the engine's row order is its own).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
import hierlm.results.ic_engine as ie
from hierlm.errors import FitError
from hierlm.results.ic import loo, waic

duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")
dd = pytest.importorskip("dask.dataframe")

FORMULA = "y ~ x + (x | g)"


def simulate(n: int, groups: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    y = 1 + x + rng.normal(size=groups)[g] + 0.3 * rng.normal(size=groups)[g] * x \
        + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def _fit(data: object, draws: int = 100, tune: int = 100) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return hl.Model(FORMULA, data, progress=False).fit(
            method="nuts", chains=2, draws=draws, tune=tune, random_seed=5, progressbar=False)


def _assert_same(got: object, want: object) -> None:
    for name in ("elpd", "p", "se"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-12), name
    for column in want.pointwise.columns:
        np.testing.assert_allclose(np.sort(got.pointwise[column]), np.sort(want.pointwise[column]),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["duckdb"] + [pytest.param(k, marks=pytest.mark.slow)
                                                for k in ("polars", "dask")])
def test_batched_loo_and_waic_equal_the_whole_array(kind: str, monkeypatch) -> None:
    df = simulate(450, 9, seed=3)
    data = {"duckdb": lambda: duckdb.from_df(df), "polars": lambda: pl.from_pandas(df).lazy(),
            "dask": lambda: dd.from_pandas(df, npartitions=3)}[kind]()
    fit = _fit(data)
    monkeypatch.setattr(ie, "BATCH_ELEMENTS", 200 * 97)  # 97 rows per batch: 5 batches
    reference = dataclasses.replace(fit.draws(), design=hl.Model(FORMULA, df).design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        _assert_same(fit.loo(), loo(reference))
        _assert_same(fit.waic(), waic(reference))


def test_too_many_log_densities_are_refused(monkeypatch) -> None:
    fit = _fit(duckdb.from_df(simulate(300, 6, seed=4)), draws=50)
    monkeypatch.setattr(ie, "ENGINE_ELPD_MAX", 1000)
    with pytest.raises(FitError, match="100 draws x 300 rows .* use level='group'"):
        fit.loo()
