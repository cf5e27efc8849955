"""hierlm.design.blocks: per-level storage of Z and the sparse Z built from it."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hierlm.design.blocks import Design, RandomBlock
from hierlm.design.covariance import Unstructured
from hierlm.design.spec import build_spec
from hierlm.formula import parse_formula


def small() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({
        "y": rng.normal(size=10),
        "x": np.arange(10, dtype=float) + 0.5,
        "g": ["b", "a", "c", "a", "b", "c", "c", "a", "b", "a"],
        "h": ["u", "v"] * 5,
        "f": ["p", "q", "r", "p", "q", "r", "p", "q", "r", "p"],
    })


def hand_z(data: pd.DataFrame, group: str, columns: list[np.ndarray]) -> np.ndarray:
    """Dense n x (levels * q) Z, level-major: lvl1:col1, lvl1:col2, lvl2:col1, ..."""
    n = len(data)
    levels = sorted(set(data[group]))
    out = np.zeros((n, len(levels) * len(columns)))
    for i in range(n):
        lvl = levels.index(data[group].iloc[i])
        for k, column in enumerate(columns):
            out[i, lvl * len(columns) + k] = column[i]
    return out


def test_sparse_z_matches_a_hand_built_dense_z():
    df = small()
    _, d = build_spec(parse_formula("y ~ x + (1 + x | g) + (1 | h)"), df)
    x = df.x.to_numpy()
    expected = np.hstack([hand_z(df, "g", [np.ones(10), x]), hand_z(df, "h", [np.ones(10)])])
    z = d.sparse_z()
    assert sp.issparse(z)
    assert z.shape == (10, 3 * 2 + 2)
    np.testing.assert_allclose(z.toarray(), expected)


def test_sparse_z_of_a_categorical_bar_and_a_double_bar():
    df = small()
    _, d = build_spec(parse_formula("y ~ 1 + (f | g) + (x || h)"), df)
    ones = np.ones(10)
    fq, fr = (df.f == "q").to_numpy(float), (df.f == "r").to_numpy(float)
    expected = np.hstack([
        hand_z(df, "g", [ones, fq, fr]),
        hand_z(df, "h", [ones]),
        hand_z(df, "h", [df.x.to_numpy()]),
    ])
    np.testing.assert_allclose(d.sparse_z().toarray(), expected)


def test_blocks_store_codes_and_raw_columns_not_a_dense_z():
    df = small()
    _, d = build_spec(parse_formula("y ~ x + (1 + x | g)"), df)
    (block,) = d.blocks
    assert block.codes.shape == (10,)
    assert block.codes.dtype.kind == "i"
    assert block.z.shape == (10, 2)  # n x q, not n x (levels * q)
    assert block.q == 2 and block.n_levels == 3
    for value in vars(block).values():
        if isinstance(value, np.ndarray):
            assert value.size <= 10 * 2
    for value in vars(d).values():
        if isinstance(value, np.ndarray) and value.ndim == 2:
            assert value.shape[1] < block.n_levels * block.q


def test_block_sparse_z_and_summary():
    block = RandomBlock(group="g", columns=("Intercept", "x"), structure=Unstructured(2),
                        levels=("a", "b"),
                        codes=np.array([1, 0, 1]), z=np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]]))
    expected = np.array([
        [0.0, 0.0, 1.0, 2.0],
        [1.0, 3.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 4.0],
    ])
    np.testing.assert_allclose(block.sparse_z().toarray(), expected)
    assert block.term == "1 + x | g"
    assert block.as_dict() == {"group": "g", "columns": ["Intercept", "x"], "correlated": True,
                               "structure": "us", "n_levels": 2}


def test_term_without_intercept():
    block = RandomBlock(group="g", columns=("x",), structure=Unstructured(1), levels=("a", "b"),
                        codes=np.array([0, 1]), z=np.array([[2.0], [3.0]]))
    assert block.term == "0 + x | g"


def test_design_without_blocks_has_an_empty_z():
    d = Design(y=np.zeros(4), X=np.ones((4, 1)), fixed_names=("Intercept",), blocks=(), response="y")
    assert d.sparse_z().shape == (4, 0)
    assert (d.n, d.p) == (4, 1)


@pytest.mark.parametrize("formula", ["y ~ 1 + (1 | g)", "y ~ x + (x | g) + (1 | h)"])
def test_z_times_ones_counts_per_row(formula):
    # every row has exactly one level per block: the intercept columns of Z sum to 1 per row
    df = small()
    _, d = build_spec(parse_formula(formula), df)
    for block in d.blocks:
        zb = block.sparse_z().toarray()
        intercept_columns = zb[:, [i * block.q for i in range(block.n_levels)]]
        np.testing.assert_allclose(intercept_columns.sum(axis=1), 1.0)


def test_block_labels_number_repeated_factors_as_lme4():
    import hierlm as hl

    sleep = hl.datasets.load("sleepstudy")
    design = hl.Model("Reaction ~ Days + (Days || Subject)", sleep).design
    assert design.block_labels() == ["Subject", "Subject.1"]
    pastes = hl.Model("strength ~ 1 + (1 | batch/cask)", hl.datasets.load("Pastes")).design
    assert pastes.block_labels() == ["cask:batch", "batch"]  # lme4's names
