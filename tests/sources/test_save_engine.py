"""save()/load_fit() of a fit on data held by an engine (issue 15).

The saved state is the engine's answers to the build's aggregate queries (the
summary: levels, counts, per-cell cross-products) plus the formula and the fit's
parameters; no rows. Loading replays those answers through the same builder, so
the loaded fit's tables equal the original's (rel 1e-12, the brief's tolerance;
they come out identical). Second passes over the rows are refused after loading.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import FitError, IncompatibleFileError
from hierlm.io import load_fit

duckdb = pytest.importorskip("duckdb")

REL = 1e-12


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(21)
    n, groups = 800, 25
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    f = rng.choice(np.array(["lo", "mid", "hi"]), n)
    b0, b1 = rng.normal(size=groups), 0.4 * rng.normal(size=groups)
    y = 2 + x + 0.5 * (f == "hi") + b0[g] + b1[g] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "f": f})


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_loaded_fit_answers_as_the_original(frame: pd.DataFrame, tmp_path: Path, method: str) -> None:
    fit = hl.Model("y ~ x + f + (x | g)", duckdb.from_df(frame), progress=False).fit(method=method)
    fit.save(tmp_path / "fit")
    saved = json.loads((tmp_path / "fit" / "hierlm.json").read_text())
    assert saved["data"][0]["name"] and len(saved["data"]) == 1  # the row index only, no columns
    loaded = load_fit(tmp_path / "fit")
    assert loaded.design.rowless and loaded.reml == fit.reml
    assert str(loaded.summary()) == str(fit.summary())
    for table in ("fixef", "varcorr", "ranef", "coef"):
        pd.testing.assert_frame_equal(getattr(loaded, table)(), getattr(fit, table)(),
                                      check_exact=False, rtol=REL, obj=table)
    new = frame.iloc[:40]
    np.testing.assert_allclose(loaded.predict(new), fit.predict(new), rtol=REL)
    np.testing.assert_allclose(loaded.anova().table.to_numpy(), fit.anova().table.to_numpy(), rtol=REL)
    with pytest.raises(FitError, match="loaded from a file"):
        loaded.fitted()
    with pytest.raises(FitError, match="loaded from a file"):
        loaded.residuals()


def test_changed_summary_file_is_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    fit = hl.Model("y ~ x + (1 | g)", duckdb.from_df(frame), progress=False).fit()
    fit.save(tmp_path / "fit")
    target = max((tmp_path / "fit").glob("engine_*.nc"), key=lambda p: p.stat().st_size)
    content = bytearray(target.read_bytes())
    content[-100] ^= 0xFF
    target.write_bytes(bytes(content))
    with pytest.raises(IncompatibleFileError, match="checksum"):
        load_fit(tmp_path / "fit")
