"""hierlm.design.transforms: within/between decomposition, stateful across new data."""

import numpy as np
import pandas as pd
import pytest

from hierlm.design.spec import build_spec
from hierlm.design.transforms import between, group_means, within
from hierlm.formula import parse_formula


def data() -> pd.DataFrame:
    return pd.DataFrame({
        "y": [1.0, 2.0, 0.5, 4.0, 3.0, 2.5, 1.5, 0.0, 2.0],
        "x": [1.0, 2.0, 6.0, 10.0, 14.0, 3.0, 5.0, 7.0, 9.0],
        "g": ["a", "a", "a", "b", "b", "c", "c", "c", "c"],
    })


def hand_means(x, g) -> np.ndarray:
    x, g = np.asarray(x, dtype=float), np.asarray(g)
    return np.array([x[g == level].mean() for level in g])


def test_group_means():
    df = data()
    assert group_means(df.x, df.g) == pytest.approx({"a": 3.0, "b": 12.0, "c": 6.0})


def test_between_and_within_by_hand():
    df = data()
    means = hand_means(df.x, df.g)
    np.testing.assert_allclose(between(df.x, df.g), means)
    np.testing.assert_allclose(within(df.x, df.g), df.x - means)


def test_inside_a_formula():
    df = data()
    _, d = build_spec(parse_formula("y ~ within(x, g) + between(x, g) + (1 | g)"), df)
    assert d.fixed_names == ("Intercept", "within(x, g)", "between(x, g)")
    means = hand_means(df.x, df.g)
    np.testing.assert_allclose(d.X, np.column_stack([np.ones(9), df.x - means, means]))


def test_within_in_a_bar():
    df = data()
    _, d = build_spec(parse_formula("y ~ 1 + (within(x, g) | g)"), df)
    np.testing.assert_allclose(d.blocks[0].z[:, 1], df.x - hand_means(df.x, df.g))


def test_new_data_reuses_the_training_group_means():
    df = data()
    spec, _ = build_spec(parse_formula("y ~ within(x, g) + between(x, g) + (1 | g)"), df)
    new = pd.DataFrame({"x": [100.0, 0.0, 7.0], "g": ["b", "a", "b"]})
    out, _ = spec.design_for(new)
    trained = {"a": 3.0, "b": 12.0}
    means = np.array([trained[v] for v in new.g])
    np.testing.assert_allclose(out.X[:, 2], means)
    np.testing.assert_allclose(out.X[:, 1], new.x - means)
    # teeth: the new rows' own means would give something else
    assert not np.allclose(out.X[:, 2], hand_means(new.x, new.g))


def test_unseen_group_takes_its_mean_from_the_new_data():
    df = data()
    spec, _ = build_spec(parse_formula("y ~ within(x, g) + (1 | g)"), df)
    new = pd.DataFrame({"x": [4.0, 8.0, 1.0], "g": ["z", "z", "a"]})
    out, new_levels = spec.design_for(new)
    assert new_levels == {"g": ["z"]}
    np.testing.assert_allclose(out.X[:, 1], [-2.0, 2.0, 1.0 - 3.0])


def test_group_keys_match_across_numeric_types():
    df = data().assign(g=lambda d: d.g.map({"a": 1, "b": 2, "c": 3}))
    spec, _ = build_spec(parse_formula("y ~ between(x, g) + (1 | g)"), df)
    new = pd.DataFrame({"x": [0.0], "g": pd.Categorical([2])})
    out, _ = spec.design_for(new)
    assert out.X[0, 1] == pytest.approx(12.0)
