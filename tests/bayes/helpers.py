"""Helpers shared by the Bayesian engine's tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import hierlm as hl
from hierlm.cards import find_data_file

ROOT = Path(__file__).resolve().parents[2]


def fixture_model(fx: dict) -> hl.Model:
    """hierlm Model of an lme4 fixture (bundled data, or the shared pig weights)."""
    if fx["dataset"] == "pigs":
        path = find_data_file("pigs.csv")
        data = pd.read_csv(path)
    else:
        data = hl.datasets.load(fx["dataset"])
    return hl.Model(fx["formula"], data)
