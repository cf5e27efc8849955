"""Helpers shared by the Bayesian engine's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

import hierlm as hl

ROOT = Path(__file__).resolve().parents[2]


def fixture_model(fx: dict) -> hl.Model:
    """hierlm Model of an lme4 fixture (bundled data, or the shared pig weights)."""
    if fx["dataset"] == "pigs":
        path = Path(os.environ.get("HIERLM_PIGS_CSV", ROOT.parent / "shared" / "data" / "pigs.csv"))
        data = pd.read_csv(path)
    else:
        data = hl.datasets.load(fx["dataset"])
    return hl.Model(fx["formula"], data)
