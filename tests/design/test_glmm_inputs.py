"""cbind responses, offsets and prior weights: how the design carries them, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import DataError, FamilyError, FitError, FormulaError, MissingDataWarning


@pytest.fixture
def counts() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 60
    return pd.DataFrame({
        "s": rng.integers(0, 5, n).astype(float), "f": rng.integers(0, 5, n).astype(float),
        "x": rng.normal(size=n), "g": np.repeat([f"g{i}" for i in range(12)], 5),
        "e": rng.uniform(0.5, 3.0, n), "k": rng.poisson(3.0, n).astype(float),
    })


def test_cbind_gives_proportion_and_trials(counts: pd.DataFrame) -> None:
    m = hl.Model("cbind(s, f) ~ x + (1 | g)", counts, family="binomial")
    trials = (counts.s + counts.f).to_numpy()
    np.testing.assert_allclose(m.design.weights, trials)
    expected = np.where(trials > 0, counts.s / np.where(trials > 0, trials, 1), 0.0)
    np.testing.assert_allclose(m.design.y, expected)


def test_cbind_expression_and_offsets_add(counts: pd.DataFrame) -> None:
    data = counts.assign(n=counts.s + counts.f)
    m = hl.Model("cbind(s, n - s) ~ x + (1 | g)", data, family="binomial")
    np.testing.assert_allclose(m.design.weights, data.n)
    p = hl.Model("k ~ x + offset(log(e)) + offset(x) + (1 | g)", counts, family="poisson",
                 offset=np.full(len(counts), 0.5))
    np.testing.assert_allclose(p.design.offset, np.log(counts.e) + counts.x + 0.5)
    new = p.new_design(counts.iloc[:4], offset=np.zeros(4))
    np.testing.assert_allclose(new.offset, np.log(counts.e[:4]) + counts.x[:4])


def test_offset_column_and_weights_follow_dropped_rows(counts: pd.DataFrame) -> None:
    data = counts.copy()
    data.loc[3, "x"] = np.nan
    weights = np.arange(1.0, len(data) + 1)
    with pytest.warns(MissingDataWarning):
        m = hl.Model("k ~ x + (1 | g)", data, family="poisson", offset="e", weights=weights)
    keep = np.arange(len(data)) != 3
    np.testing.assert_allclose(m.design.offset, data.e[keep])
    np.testing.assert_allclose(m.design.weights, weights[keep])


def test_proportion_with_trials_as_weights(counts: pd.DataFrame) -> None:
    data = counts.assign(n=counts.s + counts.f + 1)
    data["p"] = data.s / data.n
    m = hl.Model("p ~ x + (1 | g)", data, family="binomial", weights="n")
    np.testing.assert_allclose(m.design.weights, data.n)


@pytest.mark.parametrize(("formula", "options", "error", "pattern"), [
    ("cbind(s, f) ~ x + (1 | g)", {"family": "poisson"}, FormulaError, "family='binomial'"),
    ("cbind(s, x) ~ 1 + (1 | g)", {"family": "binomial"}, DataError, r"'x' in 'cbind\(s, x\)'"),
    ("x ~ 1 + (1 | g)", {"family": "binomial"}, DataError, r"'x'.*\[0, 1\]"),
    ("e ~ 1 + (1 | g)", {"family": "poisson"}, DataError, "'e' must be whole counts"),
    ("k ~ offset(log(x)) + (1 | g)", {"family": "poisson"}, DataError, r"offset 'log\(x\)' is not finite"),
    ("k ~ 1 + (1 | g)", {"family": "poisson", "offset": np.zeros(5)}, DataError, "offset= has 5"),
    ("k ~ 1 + (1 | g)", {"family": "poisson", "weights": -np.ones(60)}, DataError,
     "weights= must be finite and not negative"),
    ("k ~ 1 + (1 | g)", {"family": "poisson", "link": "logit"}, FamilyError, "choose one of log"),
    ("x ~ 1 + (1 | g)", {"weights": np.zeros(60)}, DataError, "Gaussian weights must be positive"),
    ("x ~ cbind(s, f) + (1 | g)", {}, FormulaError, "whole response|not an allowed transform"),
])
def test_bad_input_names_the_culprit(counts, formula, options, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        hl.Model(formula, counts, **options)


def test_reml_is_gaussian_only(counts: pd.DataFrame) -> None:
    m = hl.Model("k ~ x + (1 | g)", counts, family="poisson")
    with pytest.raises(FitError, match="REML is defined for Gaussian models only; use method='ml'"):
        m.fit("reml")


def test_binary_factor_response_reads_as_glmer(counts: pd.DataFrame) -> None:
    data = counts.assign(r=pd.Categorical(np.where(counts.s > 2, "Y", "N"), categories=["N", "Y"]))
    m = hl.Model("r ~ x + (1 | g)", data, family="binomial")
    np.testing.assert_array_equal(m.design.y, (counts.s > 2).astype(float))
    three = np.array(["a", "b", "c"])[np.arange(len(data)) % 3]
    with pytest.raises(DataError, match=r"'r' is a factor with 3 levels \(a, b, c\)"):
        hl.Model("r ~ x + (1 | g)", data.assign(r=three), family="binomial")
