"""Shared data and models for the Bayesian engine's tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl


@pytest.fixture(scope="session")
def sleep_df() -> pd.DataFrame:
    return hl.datasets.load("sleepstudy")


@pytest.fixture(scope="session")
def sleep_model(sleep_df) -> hl.Model:
    return hl.Model("Reaction ~ Days + (Days | Subject)", sleep_df)


def simulate_two_factor(seed: int, n_a: int = 8, n_b: int = 5, reps: int = 3) -> pd.DataFrame:
    """Crossed factors a and b with a random intercept each and a random slope on a."""
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(n_a), n_b * reps)
    b = np.tile(np.repeat(np.arange(n_b), reps), n_a)
    x = rng.normal(size=a.size)
    eff_a = rng.normal(scale=[1.0, 0.5], size=(n_a, 2))
    eff_b = rng.normal(scale=0.7, size=n_b)
    y = 1.0 + 0.5 * x + eff_a[a, 0] + eff_a[a, 1] * x + eff_b[b] + rng.normal(scale=0.8, size=a.size)
    return pd.DataFrame({"y": y, "x": x, "a": [f"a{v}" for v in a], "b": [f"b{v}" for v in b]})


@pytest.fixture(scope="session")
def crossed_df() -> pd.DataFrame:
    return simulate_two_factor(11)
