"""Load the R reference fits of tests/fixtures (glmer, glmmTMB) and fit the same model here."""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import hierlm as hl

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
_FAMILY = {"nbinom2": "negative_binomial"}


def fixture(name: str) -> dict[str, Any]:
    """The JSON fixture ``name`` (``glmer/cbpp_binomial_laplace`` and the like)."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def data_of(ref: dict[str, Any]) -> pd.DataFrame:
    """The data set of a fixture, its factors with R's level order."""
    path = ROOT / ref["data_file"]
    if path.parts[-3:-1] == ("datasets", "data"):
        data = hl.datasets.load(ref["dataset"])
    else:
        data = pd.read_csv(path)
    data = data.copy()
    levels_of = ref.get("factor_levels") or {}
    for column, levels in (levels_of.items() if isinstance(levels_of, dict) else ()):
        data[column] = pd.Categorical(data[column].astype(str), categories=[str(v) for v in levels])
    return data


@cache
def fitted(name: str) -> Any:
    """Fit the fixture's model by ML with its number of quadrature nodes (cached per session)."""
    ref = fixture(name)
    family = _FAMILY.get(ref["family"], ref["family"])
    weights = ref.get("weights")
    model = hl.Model(ref["formula"], data_of(ref), family=family, link=ref.get("link"),
                     weights=weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return model.fit("ml", nagq=int(ref.get("nAGQ") or 1))


def fixef_reference(ref: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Estimates and standard errors of the fixed effects, in the fixture's order."""
    return (np.array([row["estimate"] for row in ref["fixef"]]),
            np.array([row["std_error"] for row in ref["fixef"]]))


def sd_reference(ref: dict[str, Any]) -> np.ndarray:
    """The SD rows of ``varcorr`` (lme4's order)."""
    return np.array([row["sdcor"] for row in ref["varcorr"] if row["var2"] is None
                     and row["grp"] != "Residual"])


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest relative difference."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))
