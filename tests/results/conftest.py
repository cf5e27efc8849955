"""Fixtures for tests of hierlm.results: point FitDraws built from lme4's numbers.

Until the result classes grow ``.draws()``, the tests build a FitDraws by hand:
the design comes from hierlm's own Model on the bundled data, the parameters
(fixef, VarCorr, sigma, conditional modes) from the lme4 fixture files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hierlm as hl
from hierlm.results.draws import FitDraws

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"

# model_id -> (dataset, formula in hierlm syntax)
MODELS = {
    "sleep_int_reml": ("sleepstudy", "Reaction ~ Days + (1 | Subject)"),
    "sleep_slope_reml": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "sleep_slope_ml": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "sleep_uncorr_reml": ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    "dyestuff_reml": ("Dyestuff", "Yield ~ 1 + (1 | Batch)"),
    "pastes_nested_reml": ("Pastes", "strength ~ 1 + (1 | batch/cask)"),
    "penicillin_crossed_reml": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    "machines_corr_reml": ("Machines", "score ~ Machine + (Machine | Worker)"),
}


def load_fixture(model_id: str) -> dict:
    return json.loads((FIXTURES / f"{model_id}.json").read_text())


def _plain(name: str) -> str:
    return "Intercept" if name == "(Intercept)" else name


def _same_factor(lme4_group: str, group: str) -> bool:
    base = lme4_group.split(".")[0] if lme4_group not in ("Residual",) else lme4_group
    return sorted(base.split(":")) == sorted(group.split(":"))


def _relabel(level: str, lme4_group: str, group: str) -> str:
    """Map an lme4 level label to hierlm's for the same factors in any order ('a:A' for cask:batch)."""
    order = lme4_group.split(":")
    parts = dict(zip(order, level.split(":"), strict=True))
    return ":".join(parts[f] for f in group.split(":"))


def fixture_draws(model_id: str) -> tuple[FitDraws, dict, hl.Model]:
    """Point FitDraws with lme4's estimates for one fixture model."""
    dataset, formula = MODELS[model_id]
    fix = load_fixture(model_id)
    model = hl.Model(formula, hl.datasets.load(dataset))
    design = model.design
    fixef = {_plain(row["term"]): row["estimate"] for row in fix["fixef"]}
    beta = np.array([[fixef[name] for name in design.fixed_names]])
    sigma = np.array([fix["sigma"]])
    labels = []
    seen: dict[str, int] = {}
    for block in design.blocks:
        count = seen.get(block.group, 0)
        seen[block.group] = count + 1
        labels.append((block, count))
    covariances = []
    effects = []
    for block, count in labels:
        # VarCorr rows of this block: lme4 group label with the same factors and repeat index
        rows = [r for r in fix["varcorr"] if r["grp"] != "Residual"
                and _same_factor(r["grp"], block.group)
                and (int(r["grp"].split(".")[1]) if "." in r["grp"] else 0) == count]
        cov = np.zeros((block.q, block.q))
        index = {c: i for i, c in enumerate(block.columns)}
        for r in rows:
            a = index[_plain(r["var1"])]
            b = a if r["var2"] is None else index[_plain(r["var2"])]
            cov[a, b] = cov[b, a] = r["vcov"]
        covariances.append(cov[None])
        ranef = next(r for r in fix["ranef"] if _same_factor(r["group"], block.group))
        terms = [_plain(t) for t in ranef["terms"]]
        modes = np.asarray(ranef["modes"])
        by_level = {_relabel(level, ranef["group"], block.group): i
                    for i, level in enumerate(ranef["levels"])}
        eff = np.empty((block.n_levels, block.q))
        for j, level in enumerate(block.levels):
            for c, column in enumerate(block.columns):
                eff[j, c] = modes[by_level[level], terms.index(column)]
        effects.append(eff[None])
    draws = FitDraws(beta=beta, sigma=sigma, covariances=tuple(covariances), effects=tuple(effects),
                     design=design, point=True)
    return draws, fix, model


@pytest.fixture(scope="session")
def lme4_draws():
    cache: dict[str, tuple[FitDraws, dict, hl.Model]] = {}

    def get(model_id: str) -> tuple[FitDraws, dict, hl.Model]:
        if model_id not in cache:
            cache[model_id] = fixture_draws(model_id)
        return cache[model_id]

    return get
