"""Build hierlm Models for the lme4 fixtures and compare names across the two."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import hierlm.datasets as datasets
from hierlm.cards import find_data_file
from hierlm.model import Model

ROOT = Path(__file__).resolve().parents[2]


def load_data(fx: dict) -> pd.DataFrame:
    """The data a fixture was made from (bundled data sets, or the shared pig weights)."""
    if fx["dataset"] == "pigs":
        path = find_data_file("pigs.csv")
        return pd.read_csv(path)
    return datasets.load(fx["dataset"])


def model_for(fx: dict) -> Model:
    """hierlm's Model of a fixture's formula and data."""
    return Model(fx["formula"], load_data(fx))


def fixed_name(lme4_name: str) -> str:
    """lme4 coefficient name -> hierlm's (``(Intercept)`` -> ``Intercept``)."""
    return "Intercept" if lme4_name == "(Intercept)" else lme4_name


def group_key(group: str) -> frozenset[str] | str:
    """Interaction groups compared as sets of factor names (the names also match exactly since
    hierlm names nested groups as lme4 does; the set form also serves user-written ``a:b``)."""
    base, dot, suffix = group.partition(".")
    return (frozenset(base.split(":")), suffix) if ":" in base else group
