"""F tests (``anova(fit)``) of a model on data held by an engine equal the pandas fit's (issue 15).

Reference: the in-memory fit of the same rows, whose tables are checked against
lmerTest in tests/lmm/test_ftests.py. Tolerance: rel 1e-7 (the issue's
engine-vs-pandas tolerance) on every column (Sum Sq, Mean Sq, NumDF, DenDF,
F value, Pr(>F)) and on the tested contrasts. Types I/II use X'X from the
summary; type III takes the terms' codings over a grid of the variables
(hierlm.design.term_grid), which must give the same hypotheses as the rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import FitError, RankDeficientWarning

duckdb = pytest.importorskip("duckdb")

REL = 1e-7


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n, groups = 900, 30
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    f = rng.choice(np.array(["a", "b", "c"]), n)
    y = (1 + 2 * x + 0.4 * (f == "b") - 0.3 * (f == "c") * x + rng.normal(size=groups)[g]
         + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "g": g, "f": f})


@pytest.mark.parametrize("formula", ["y ~ x * f + (1 | g)", "y ~ f + x + (1 | g)"])
@pytest.mark.parametrize("kind", [1, 2, 3])
@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
def test_anova_matches_pandas(frame: pd.DataFrame, formula: str, kind: int, ddf: str) -> None:
    fit = hl.Model(formula, duckdb.from_df(frame), progress=False).fit()
    assert fit.design.rowless
    want = hl.Model(formula, frame).fit().anova(type=kind, ddf=ddf)
    got = fit.anova(type=kind, ddf=ddf)
    assert list(got.table.index) == list(want.table.index)
    assert list(got.table.columns) == list(want.table.columns)
    np.testing.assert_allclose(got.table.to_numpy(), want.table.to_numpy(), rtol=REL)
    for term, contrast in want.contrasts.items():
        np.testing.assert_allclose(got.contrasts[term], contrast, rtol=REL, atol=1e-10, err_msg=term)
    if kind == 3 and ddf == "satterthwaite":  # hl.anova(fit) is the same table
        np.testing.assert_allclose(hl.anova(fit).table.to_numpy(), want.table.to_numpy(), rtol=REL)


def test_type3_refused_when_columns_were_dropped(frame: pd.DataFrame) -> None:
    """An empty cell of f:h drops a column as aliased: the type III hypotheses would depend on the rows."""
    data = frame.assign(h=np.where(frame["x"] > 0, "p", "q"))
    data.loc[(data["f"] == "c") & (data["h"] == "q"), "h"] = "p"
    with pytest.warns(RankDeficientWarning, match="fc:hq"):  # dropped as on pandas (issue 15)
        fit = hl.Model("y ~ f * h + (1 | g)", duckdb.from_df(data), progress=False).fit()
    with pytest.warns(RankDeficientWarning, match="fc:hq"):
        reference = hl.Model("y ~ f * h + (1 | g)", data).fit()
    assert fit.design.fixed_names == reference.design.fixed_names
    np.testing.assert_allclose(fit.fixef()["estimate"], reference.fixef()["estimate"], rtol=REL)
    want = reference.anova(type=1)
    np.testing.assert_allclose(fit.anova(type=1).table.to_numpy(), want.table.to_numpy(), rtol=REL)
    with pytest.raises(FitError, match="type=1 or type=2"):
        fit.anova(type=3)

