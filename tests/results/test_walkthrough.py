"""The sleepstudy walkthrough runs end to end (quick sampling settings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sleepstudy_walkthrough.py"


@pytest.mark.slow
def test_walkthrough_runs(monkeypatch, capsys):
    monkeypatch.setenv("HIERLM_EXAMPLE_QUICK", "1")
    spec = importlib.util.spec_from_file_location("sleepstudy_walkthrough", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main()
    printed = capsys.readouterr().out
    for heading in ("Intraclass correlation", "Shrinkage", "LOO and WAIC", "Posterior vs REML vs GEE"):
        assert heading in printed
    table = out["table"]
    assert set(table["kind"]) == {"fixed", "sd", "cor", "sigma", "icc"}
    # the posterior of the Days effect sits near the REML estimate even with short chains
    days = table[(table["kind"] == "fixed") & (table["term1"] == "Days")].iloc[0]
    assert abs(days["post_mean"] - days["estimate"]) < 3 * days["std_error"]
    assert out["loo_group"].n_points == 18
