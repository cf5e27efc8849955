"""Designs of the lme4 reference models: X columns, Z columns and levels per group equal lme4's."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.cards import find_data_file
from hierlm.design.spec import build_spec
from hierlm.errors import DataError
from hierlm.formula import parse_formula

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"
MODEL_FILES = sorted(p for p in FIXTURES.glob("*.json") if not p.name.startswith("lrt_"))
def _pigs_path() -> Path:
    try:
        return find_data_file("pigs.csv")
    except DataError:
        return Path("pigs.csv")  # absent: the pig fixture is skipped below


PIGS = _pigs_path()


def load_data(name: str) -> pd.DataFrame:
    if name == "pigs":
        if not PIGS.exists():
            pytest.skip(f"pig data not found at {PIGS}")
        return pd.read_csv(PIGS)
    return hl.datasets.load(name)


def group_key(group: str) -> str:
    """Grouping factor names are compared exactly: hierlm names nested groups as lme4 does."""
    return group


def lme4_name(name: str) -> str:
    return "Intercept" if name == "(Intercept)" else name


def test_fixture_set_is_complete():
    assert len(MODEL_FILES) >= 13
    assert {json.loads(p.read_text())["dataset"] for p in MODEL_FILES} >= {
        "sleepstudy", "Dyestuff", "Pastes", "Penicillin", "cake", "Machines", "InstEval", "pigs",
    }


@pytest.fixture(scope="module", params=MODEL_FILES, ids=[p.stem for p in MODEL_FILES])
def case(request):
    ref = json.loads(request.param.read_text())
    data = load_data(ref["dataset"])
    spec, design = build_spec(parse_formula(ref["formula"]), data)
    return ref, spec, design


def test_nobs(case):
    ref, _, design = case
    assert design.n == ref["nobs"]


def test_fixed_columns(case):
    ref, _, design = case
    assert design.p == ref["X_ncol"]
    assert list(design.fixed_names) == [lme4_name(c) for c in ref["X_colnames"]]


def test_z_columns(case):
    ref, _, design = case
    assert design.sparse_z().shape == (ref["nobs"], ref["Z_ncol"])


def test_levels_per_group(case):
    ref, _, design = case
    ours = {group_key(b.group): b.n_levels for b in design.blocks}
    assert ours == {group_key(g): n for g, n in ref["ngrps"].items()}


def test_terms_in_lme4_order(case):
    ref, _, design = case
    assert len(design.blocks) == len(ref["re_terms"])
    start = 0
    for block, term in zip(design.blocks, ref["re_terms"], strict=True):
        assert group_key(block.group) == group_key(term["group"])
        assert list(block.columns) == [lme4_name(c) for c in term["columns"]]
        assert block.n_levels == term["n_levels"]
        assert (start, start + block.n_levels * block.q) == (term["z_start"], term["z_end"])
        start += block.n_levels * block.q


def test_level_labels(case):
    ref, _, design = case
    for block, term in zip(design.blocks, ref["re_terms"], strict=True):
        if not term.get("levels"):
            continue
        # same labels in the same order, interactions included ("a:A" for cask a of batch A)
        assert list(block.levels) == term["levels"]


def test_rows_of_z_sum_as_lme4s_would(case):
    # an intercept-only term puts exactly one 1 in each row of its columns
    ref, _, design = case
    z = design.sparse_z().tocsc()
    for term in ref["re_terms"]:
        if term["columns"] == ["(Intercept)"]:
            part = z[:, term["z_start"]:term["z_end"]]
            np.testing.assert_allclose(np.asarray(part.sum(axis=1)).ravel(), 1.0)


def test_factor_level_order_matches_r(case):
    ref, _, design = case
    data = load_data(ref["dataset"])
    for column, levels in ref["factor_levels"].items():
        values = data[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            assert [str(c) for c in values.cat.categories] == levels
