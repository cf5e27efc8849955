"""hierlm.design.spec: X and Z blocks from formula + data, checked against matrices built by hand."""

import warnings

import numpy as np
import pandas as pd
import pytest

from hierlm.design.spec import _lme4_order, build_spec, lme4_names
from hierlm.errors import ColumnNotFoundError, DataError
from hierlm.formula import parse_formula

G_LEVELS = ["g1", "g2", "g3"]
F_LEVELS = ["a", "b", "c"]


def frame(seed: int = 0) -> pd.DataFrame:
    """12 rows: g (3 levels, not in sorted order), f (3 levels), h (2 levels), numbers x, z, w, y."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "y": rng.normal(size=12),
        "x": rng.normal(size=12),
        "z": rng.normal(size=12),
        "w": rng.uniform(1.0, 5.0, size=12),
        "g": np.repeat(["g2", "g1", "g3"], 4),
        "f": np.tile(["b", "a", "c"], 4),
        "h": np.tile(["h1", "h2"], 6),
    })


def design(formula: str, data: pd.DataFrame, **kwargs):
    return build_spec(parse_formula(formula), data, **kwargs)


def dummy(values, level) -> np.ndarray:
    return (np.asarray(values) == level).astype(float)


def dense_z(data: pd.DataFrame, group: str, levels: list[str], columns: list[np.ndarray]) -> np.ndarray:
    """Level-major dense Z of one block: level 1's columns, then level 2's, ..."""
    out = []
    for level in levels:
        in_level = dummy(data[group], level)
        out.extend(in_level * column for column in columns)
    return np.column_stack(out)


# ---------------------------------------------------------------- fixed part


def test_numeric_main_effects():
    df = frame()
    _, d = design("y ~ x + z", df)
    assert d.fixed_names == ("Intercept", "x", "z")
    np.testing.assert_allclose(d.X, np.column_stack([np.ones(12), df.x, df.z]))
    np.testing.assert_allclose(d.y, df.y)


def test_star_expands_to_main_effects_and_interaction_with_treatment_contrasts():
    df = frame()
    _, d = design("y ~ x * f", df)
    assert d.fixed_names == ("Intercept", "x", "fb", "fc", "x:fb", "x:fc")
    fb, fc = dummy(df.f, "b"), dummy(df.f, "c")
    np.testing.assert_allclose(d.X, np.column_stack([np.ones(12), df.x, fb, fc, df.x * fb, df.x * fc]))


def test_two_factor_interaction_names_are_lme4_style():
    df = frame()
    _, d = design("y ~ f * h", df)
    assert d.fixed_names == ("Intercept", "fb", "fc", "hh2", "fb:hh2", "fc:hh2")
    fb, fc, h2 = dummy(df.f, "b"), dummy(df.f, "c"), dummy(df.h, "h2")
    np.testing.assert_allclose(d.X, np.column_stack([np.ones(12), fb, fc, h2, fb * h2, fc * h2]))


def test_colon_is_the_product_only():
    df = frame()
    _, d = design("y ~ x:z", df)
    assert d.fixed_names == ("Intercept", "x:z")
    np.testing.assert_allclose(d.X, np.column_stack([np.ones(12), df.x * df.z]))


def test_minus_term_removes_it():
    df = frame()
    _, d = design("y ~ x * z - x:z", df)
    assert d.fixed_names == ("Intercept", "x", "z")


@pytest.mark.parametrize("formula", ["y ~ 0 + x + z", "y ~ x + z - 1", "y ~ -1 + x + z"])
def test_no_intercept(formula):
    df = frame()
    _, d = design(formula, df)
    assert d.fixed_names == ("x", "z")
    np.testing.assert_allclose(d.X, np.column_stack([df.x, df.z]))


def test_no_intercept_gives_a_factor_all_its_levels():
    df = frame()
    _, d = design("y ~ 0 + f", df)
    assert d.fixed_names == ("fa", "fb", "fc")
    np.testing.assert_allclose(d.X, np.column_stack([dummy(df.f, lvl) for lvl in F_LEVELS]))


def test_intercept_only():
    df = frame()
    _, d = design("y ~ 1 + (1 | g)", df)
    assert d.fixed_names == ("Intercept",)
    np.testing.assert_allclose(d.X, np.ones((12, 1)))


def test_identity_and_numpy_transforms():
    df = frame()
    _, d = design("y ~ I(x**2) + np.log(w)", df)
    assert d.fixed_names == ("Intercept", "I(x ** 2)", "np.log(w)")
    np.testing.assert_allclose(d.X, np.column_stack([np.ones(12), df.x.to_numpy() ** 2, np.log(df.w)]))


def test_center_and_scale_use_r_conventions():
    df = frame()
    x = df.x.to_numpy()
    _, d = design("y ~ center(x)", df)
    np.testing.assert_allclose(d.X[:, 1], x - x.mean())
    _, d = design("y ~ scale(x)", df)
    np.testing.assert_allclose(d.X[:, 1], (x - x.mean()) / x.std(ddof=1))  # R's scale(): sd with n - 1


def test_reference_is_the_first_level_of_a_categorical_in_its_own_order():
    df = frame().assign(f=lambda d: pd.Categorical(d.f, categories=["c", "a", "b"]))
    _, d = design("y ~ f", df)
    assert d.fixed_names == ("Intercept", "fa", "fb")
    np.testing.assert_allclose(d.X[:, 1:], np.column_stack([dummy(df.f, "a"), dummy(df.f, "b")]))


def test_reference_of_text_is_the_sorted_first_level():
    df = frame().assign(f=lambda d: d.f.map({"a": "zebra", "b": "ant", "c": "mole"}))
    _, d = design("y ~ f", df)
    assert d.fixed_names == ("Intercept", "fmole", "fzebra")


def test_reference_argument_picks_another_level():
    df = frame()
    _, d = design("y ~ f", df, reference={"f": "b"})
    assert d.fixed_names == ("Intercept", "fa", "fc")
    np.testing.assert_allclose(d.X[:, 1:], np.column_stack([dummy(df.f, "a"), dummy(df.f, "c")]))


def test_reference_argument_keeps_the_other_levels_in_their_order():
    df = frame().assign(f=lambda d: pd.Categorical(d.f, categories=["c", "a", "b"]))
    _, d = design("y ~ f", df, reference={"f": "a"})
    assert d.fixed_names == ("Intercept", "fc", "fb")


def test_reference_may_be_given_as_text_for_numeric_levels():
    df = frame().assign(t=np.tile(pd.Categorical([175, 185, 195]), 4))
    _, by_number = design("y ~ t", df, reference={"t": 185})
    _, by_text = design("y ~ t", df, reference={"t": "185"})
    assert by_number.fixed_names == by_text.fixed_names == ("Intercept", "t175", "t195")
    np.testing.assert_allclose(by_text.X[:, 1], dummy(df.t.astype(int), 175))


def test_unused_categories_are_dropped_before_choosing_the_reference():
    # lme4's model frame drops unused levels; an empty first category is not the reference
    df = frame().assign(f=lambda d: pd.Categorical(d.f, categories=["zz", "a", "b", "c"]))
    _, d = design("y ~ f", df)
    assert d.fixed_names == ("Intercept", "fb", "fc")


def test_levels_left_unused_by_dropped_rows_are_dropped_too():
    df = frame().assign(f=lambda d: pd.Categorical(d.f), x=lambda d: d.x.where(d.f != "a"))
    with pytest.warns(Warning, match="missing"):
        _, d = design("y ~ x + f", df)
    assert d.n == 8
    assert d.fixed_names == ("Intercept", "x", "fc")


def test_lme4_names():
    assert lme4_names(["Intercept", "f[T.b]", "x:f[T.b]", "np.log(x)"]) == (
        "Intercept", "fb", "x:fb", "np.log(x)",
    )
    assert lme4_names(["f[a]", "f[b]"]) == ("fa", "fb")
    assert lme4_names(["Intercept", "recipe[T.B]", "recipe[T.B]:temperature[T.185]"]) == (
        "Intercept", "recipeB", "recipeB:temperature185",
    )
    # a rename that would collide keeps formulaic's names
    assert lme4_names(["f[T.b]", "fb"]) == ("f[T.b]", "fb")


# ---------------------------------------------------------------- random part


def test_random_intercept_block():
    df = frame()
    _, d = design("y ~ x + (1 | g)", df)
    (block,) = d.blocks
    assert (block.group, block.columns, block.correlated) == ("g", ("Intercept",), False)
    assert block.levels == tuple(G_LEVELS)
    np.testing.assert_array_equal(block.codes, [G_LEVELS.index(v) for v in df.g])
    np.testing.assert_allclose(block.z, np.ones((12, 1)))


def test_correlated_slope_is_one_block():
    df = frame()
    _, d = design("y ~ x + (x | g)", df)
    (block,) = d.blocks
    assert block.columns == ("Intercept", "x")
    assert block.correlated is True
    np.testing.assert_allclose(block.z, np.column_stack([np.ones(12), df.x]))


def test_slope_without_intercept():
    df = frame()
    _, d = design("y ~ x + (0 + x | g)", df)
    (block,) = d.blocks
    assert block.columns == ("x",)
    assert block.correlated is False
    np.testing.assert_allclose(block.z[:, 0], df.x)


def test_three_correlated_columns():
    df = frame()
    _, d = design("y ~ x + (1 + x + z | g)", df)
    (block,) = d.blocks
    assert block.columns == ("Intercept", "x", "z")
    assert block.correlated is True
    np.testing.assert_allclose(block.z, np.column_stack([np.ones(12), df.x, df.z]))


@pytest.mark.parametrize("formula", ["y ~ x + (x || g)", "y ~ x + (1 | g) + (0 + x | g)"])
def test_double_bar_equals_two_independent_blocks(formula):
    df = frame()
    _, d = design(formula, df)
    assert [(b.group, b.columns, b.correlated) for b in d.blocks] == [
        ("g", ("Intercept",), False), ("g", ("x",), False),
    ]
    np.testing.assert_allclose(d.blocks[1].z[:, 0], df.x)
    codes = [G_LEVELS.index(v) for v in df.g]
    for block in d.blocks:
        np.testing.assert_array_equal(block.codes, codes)


def test_categorical_term_in_a_bar():
    df = frame()
    _, d = design("y ~ f + (f | g)", df)
    (block,) = d.blocks
    assert block.columns == ("Intercept", "fb", "fc")
    assert block.correlated is True
    np.testing.assert_allclose(block.z, np.column_stack([np.ones(12), dummy(df.f, "b"), dummy(df.f, "c")]))


def test_nested_groups_expand_to_interaction_and_outer():
    df = frame()
    _, d = design("y ~ 1 + (1 | g/h)", df)
    # lme4's naming: the inner factor first ("h:g"), levels sorted as lme4 sorts them
    assert [(b.group, b.n_levels) for b in d.blocks] == [("h:g", 6), ("g", 3)]
    combos = [f"{h}:{g}" for h in ["h1", "h2"] for g in G_LEVELS]
    assert d.blocks[0].levels == tuple(combos)
    pairs = zip(df.g, df.h, strict=True)
    np.testing.assert_array_equal(d.blocks[0].codes, [combos.index(f"{h}:{g}") for g, h in pairs])
    np.testing.assert_array_equal(d.blocks[1].codes, [G_LEVELS.index(v) for v in df.g])


def test_interaction_group_keeps_only_observed_combinations():
    df = frame()
    _, d = design("y ~ 1 + (1 | g:f)", df)
    (block,) = d.blocks
    observed = sorted({(G_LEVELS.index(g), F_LEVELS.index(f)) for g, f in zip(df.g, df.f, strict=True)})
    assert block.group == "g:f"
    assert block.levels == tuple(f"{G_LEVELS[i]}:{F_LEVELS[j]}" for i, j in observed)


def test_crossed_groups():
    df = frame()
    _, d = design("y ~ 1 + (1 | g) + (1 | f)", df)
    assert [(b.group, b.n_levels) for b in d.blocks] == [("g", 3), ("f", 3)]
    np.testing.assert_array_equal(d.blocks[1].codes, [F_LEVELS.index(v) for v in df.f])


def test_numeric_grouping_levels_sort_numerically():
    df = frame().assign(g=np.repeat([10, 9, 100], 4))
    _, d = design("y ~ 1 + (1 | g)", df)
    assert d.blocks[0].levels == ("9", "10", "100")
    np.testing.assert_array_equal(d.blocks[0].codes, np.repeat([1, 0, 2], 4))


def test_unused_grouping_categories_are_not_levels():
    df = frame().assign(g=lambda d: pd.Categorical(d.g, categories=["g0", *G_LEVELS]))
    _, d = design("y ~ 1 + (1 | g)", df)
    assert d.blocks[0].levels == tuple(G_LEVELS)


@pytest.mark.parametrize(
    ("n_levels", "order"),
    [
        ([3, 5, 3, 7], [3, 1, 2, 0]),  # some later term grows: reversed stable ascending order
        ([5, 10, 5], [1, 2, 0]),
        ([10, 5, 5], [0, 1, 2]),  # already non-increasing: untouched
        ([4, 4], [0, 1]),
        ([2], [0]),
    ],
)
def test_lme4_term_order(n_levels, order):
    assert _lme4_order(n_levels) == order


def test_terms_are_reordered_as_lme4_does():
    n = 40
    df = pd.DataFrame({
        "y": np.arange(n, dtype=float),
        "a": np.arange(n) % 5,
        "b": np.arange(n) % 10,
        "c": (np.arange(n) // 8) % 5,
    })
    _, d = design("y ~ 1 + (1 | a) + (1 | b) + (1 | c)", df)
    assert [b.group for b in d.blocks] == ["b", "c", "a"]
    _, d = design("y ~ 1 + (1 | b) + (1 | a)", df)
    assert [b.group for b in d.blocks] == ["b", "a"]
    _, d = design("y ~ 1 + (1 | a) + (1 | c)", df)
    assert [b.group for b in d.blocks] == ["a", "c"]


# ---------------------------------------------------------------- frozen spec, new data


def test_training_data_through_the_spec_gives_the_same_design():
    df = frame()
    spec, d = design("y ~ center(x) * f + (1 + x | g) + (1 | h)", df)
    again, new_levels = spec.design_for(df, with_response=True)
    assert new_levels == {}
    assert again.fixed_names == d.fixed_names
    np.testing.assert_allclose(again.X, d.X)
    np.testing.assert_allclose(again.y, d.y)
    for new, old in zip(again.blocks, d.blocks, strict=True):
        assert (new.group, new.columns, new.levels) == (old.group, old.columns, old.levels)
        np.testing.assert_array_equal(new.codes, old.codes)
        np.testing.assert_allclose(new.z, old.z)
    assert (again.sparse_z() != d.sparse_z()).nnz == 0


def test_center_and_scale_on_new_rows_use_the_training_state():
    df = frame()
    x = df.x.to_numpy()
    new = df.iloc[:4]
    spec, _ = design("y ~ center(x) + scale(z)", df)
    out, _ = spec.design_for(new)
    np.testing.assert_allclose(out.X[:, 1], x[:4] - x.mean())
    z = df.z.to_numpy()
    np.testing.assert_allclose(out.X[:, 2], (z[:4] - z.mean()) / z.std(ddof=1))
    # the check has teeth: centring the subset on its own mean would differ
    assert not np.allclose(out.X[:, 1], x[:4] - x[:4].mean())
    assert np.isnan(out.y).all()


def test_centring_inside_a_bar_is_frozen_too():
    df = frame()
    x = df.x.to_numpy()
    spec, _ = design("y ~ 1 + (center(x) | g)", df)
    out, _ = spec.design_for(df.iloc[5:9])
    np.testing.assert_allclose(out.blocks[0].z[:, 1], x[5:9] - x.mean())


def test_new_data_with_some_levels_keeps_every_column():
    df = frame()
    spec, d = design("y ~ f + (1 | g)", df)
    only_c = df[df.f == "c"]
    out, _ = spec.design_for(only_c)
    assert out.fixed_names == ("Intercept", "fb", "fc")
    np.testing.assert_allclose(out.X, np.column_stack([np.ones(len(only_c)), np.zeros(len(only_c)),
                                                       np.ones(len(only_c))]))


def test_new_data_of_another_dtype_is_coded_with_the_training_levels():
    df = frame().assign(f=lambda d: pd.Categorical(d.f, categories=["c", "a", "b"]))
    spec, d = design("y ~ f", df)
    out, _ = spec.design_for(frame().iloc[:6])  # f as plain text now
    assert out.fixed_names == ("Intercept", "fa", "fb")
    np.testing.assert_allclose(out.X, d.X[:6])


def test_new_data_without_the_chosen_reference_level():
    df = frame()
    spec, d = design("y ~ f", df, reference={"f": "b"})
    rows = df.f != "b"
    out, _ = spec.design_for(df[rows])
    assert out.fixed_names == ("Intercept", "fa", "fc")
    np.testing.assert_allclose(out.X, d.X[rows.to_numpy()])


def test_new_level_of_a_fixed_factor_is_an_error_naming_it():
    df = frame()
    spec, _ = design("y ~ f + (1 | g)", df)
    new = df.iloc[:3].assign(f=["a", "q", "b"])
    with pytest.raises(DataError, match=r"'q'.*'f'"):
        spec.design_for(new)


def test_new_level_of_a_factor_in_a_bar_is_an_error_naming_it():
    df = frame()
    spec, _ = design("y ~ 1 + (f | g)", df)
    new = df.iloc[:3].assign(f=["a", "q", "b"])
    with pytest.raises(DataError, match=r"'q'.*'f'.*\(f \| g\)"):
        spec.design_for(new)


def test_new_grouping_levels_get_code_minus_one_and_are_reported_per_factor():
    df = frame()
    spec, _ = design("y ~ x + (1 | g) + (1 | h)", df)
    new = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4], "g": ["g3", "new1", "g1", "new2"],
                        "h": ["h2", "h2", "hX", "h1"]})
    out, new_levels = spec.design_for(new)
    assert new_levels == {"g": ["new1", "new2"], "h": ["hX"]}
    by_group = {b.group: b for b in out.blocks}
    np.testing.assert_array_equal(by_group["g"].codes, [2, -1, 0, -1])
    np.testing.assert_array_equal(by_group["h"].codes, [1, 1, -1, 0])
    assert by_group["g"].levels == tuple(G_LEVELS)  # the training levels


def test_new_interaction_levels():
    df = frame()
    spec, _ = design("y ~ 1 + (1 | g/h)", df)
    new = pd.DataFrame({"g": ["g1", "g9"], "h": ["h2", "h1"]})
    out, new_levels = spec.design_for(new)
    assert new_levels == {"h:g": ["h1:g9"], "g": ["g9"]}
    np.testing.assert_array_equal(out.blocks[0].codes, [3, -1])  # h2:g1 is level 3


def test_new_data_needs_the_predictors_but_not_the_response():
    df = frame()
    spec, _ = design("y ~ x + (1 | g)", df)
    spec.design_for(df.drop(columns="y"))
    with pytest.raises(ColumnNotFoundError, match="'x'"):
        spec.design_for(df.drop(columns="x"))
    with pytest.raises(ColumnNotFoundError, match="'y'"):
        spec.design_for(df.drop(columns="y"), with_response=True)


def test_new_data_with_missing_values_is_refused():
    df = frame()
    spec, _ = design("y ~ x + (1 | g)", df)
    with pytest.raises(DataError, match=r"missing.*'x'"):
        spec.design_for(df.assign(x=df.x.where(df.index != 2)))


def test_new_design_does_not_touch_training_state():
    df = frame()
    spec, _ = design("y ~ center(x) + (1 | g)", df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first, _ = spec.design_for(df.assign(x=df.x + 100.0))
    second, _ = spec.design_for(df)
    np.testing.assert_allclose(first.X[:, 1] - second.X[:, 1], 100.0)
