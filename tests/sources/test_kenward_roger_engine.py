"""Kenward-Roger on data held by an engine equals the pandas fit's (issue 15).

Reference: the in-memory fit of the same rows, whose Kenward-Roger tables are
checked against lmerTest/pbkrtest in tests/lmm/test_kenward_roger.py. Tolerance:
rel 1e-7 (the issue's engine-vs-pandas tolerance; the estimates themselves agree
to it, and the df and adjusted covariance are smooth functions of them).
One grouping factor takes the per-group route (hierlm.lmm.kr_grouped); crossed
factors and patterned blocks take the dense route over the square-root rows,
whose complement in each cell is corrected for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl

duckdb = pytest.importorskip("duckdb")

REL = 1e-7


def _simulate(n: int, groups: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    f = rng.choice(np.array(["a", "b", "c"]), n)
    b0, b1 = rng.normal(size=groups), 0.5 * rng.normal(size=groups)
    y = 1 + 2 * x + 0.3 * (f == "b") + b0[g] + b1[g] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "f": f})


def _compare(formula: str, frame: pd.DataFrame, relation: object) -> None:
    reference = hl.Model(formula, frame).fit()
    fit = hl.Model(formula, relation, progress=False).fit()
    assert fit.design.rowless
    ours, want = fit.fixef(ddf="kenward-roger"), reference.fixef(ddf="kenward-roger")
    for column in ("std_error", "df", "t_value"):
        np.testing.assert_allclose(ours[column], want[column], rtol=REL, err_msg=column)
    np.testing.assert_allclose(fit.kenward_roger.vcov_adjusted, reference.kenward_roger.vcov_adjusted,
                               rtol=REL, atol=REL * np.abs(reference.kenward_roger.vcov_adjusted).max())
    contrast = {name: 1.0 for name in fit.fixef().index[1:3]}
    got = fit.contrast(contrast, ddf="kenward-roger")
    expected = reference.contrast(contrast, ddf="kenward-roger")
    for key in ("std_error", "df", "t_value"):
        assert got[key] == pytest.approx(expected[key], rel=REL), key


def test_one_factor_matches_pandas() -> None:
    frame = _simulate(20_000, 150, seed=2)  # above the dense route's row limit
    _compare("y ~ x + f + (x | g)", frame, duckdb.from_df(frame))


def test_crossed_factors_match_pandas() -> None:
    rng = np.random.default_rng(8)
    n = 1200  # 96 cells of about 12 rows: 5 square-root rows each
    frame = pd.DataFrame({"a": rng.integers(0, 12, n), "b": rng.choice(list("pqrstuvw"), n),
                          "x": rng.normal(size=n)})
    frame["y"] = (frame["x"] + rng.normal(size=12)[frame["a"]]
                  + pd.Series(rng.normal(size=8), index=list("pqrstuvw"))[frame["b"]].to_numpy()
                  + rng.normal(size=n))
    relation = duckdb.from_df(frame)
    assert hl.Model("y ~ x + (1 | a) + (1 | b)", relation, progress=False).design.X.shape[0] < n / 2
    _compare("y ~ x + (1 | a) + (1 | b)", frame, relation)


def test_patterned_block_matches_pandas() -> None:
    """A compound-symmetry block: the dense route with second derivatives, over 160 square-root rows."""
    frame = _simulate(700, 20, seed=5)
    relation = duckdb.from_df(frame)
    assert hl.Model("y ~ x + f + cs(0 + f | g)", relation, progress=False).design.X.shape[0] < 200
    _compare("y ~ x + f + cs(0 + f | g)", frame, relation)


@pytest.mark.slow
def test_one_million_rows_through_parquet(tmp_path: object) -> None:
    frame = _simulate(1_000_000, 2000, seed=4)
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), 4)):
        frame.iloc[rows].to_parquet(f"{tmp_path}/part{k}.parquet")
    _compare("y ~ x + f + (x | g)", frame, duckdb.read_parquet(f"{tmp_path}/*.parquet"))
