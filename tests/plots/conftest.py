"""Fixtures for the figure tests: REML fits and cheap posterior-shaped draws.

Most figure tests only need draws of the right shapes, not a converged
posterior, so they use ``helpers.pseudo_posterior``; the tests marked slow
use real NUTS fits.
"""

from __future__ import annotations

import warnings

import matplotlib
import pandas as pd
import pytest

import hierlm as hl
from hierlm.cards import find_data_file
from hierlm.errors import SamplingWarning

from .helpers import pseudo_posterior

matplotlib.use("Agg")

PIGS = find_data_file("pigs.csv")


@pytest.fixture(scope="session")
def sleep_model():
    return hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))


@pytest.fixture(scope="session")
def sleep_reml(sleep_model):
    return sleep_model.fit(method="reml")


@pytest.fixture(scope="session")
def sleep_posterior(sleep_reml):
    return pseudo_posterior(sleep_reml)


@pytest.fixture(scope="session")
def pigs_data():
    if not PIGS.is_file():
        pytest.skip(f"shared pigs data not found at {PIGS}")
    frame = pd.read_csv(PIGS)
    frame["id"] = pd.Categorical(frame["id"], categories=sorted(frame["id"].unique()))
    return frame


@pytest.fixture(scope="session")
def pigs_reml(pigs_data):
    return hl.Model("weight ~ week + (week | id)", pigs_data).fit(method="reml")


@pytest.fixture(scope="session")
def penicillin_reml():
    return hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)",
                    hl.datasets.load("Penicillin")).fit(method="reml")


@pytest.fixture(scope="session")
def penicillin_posterior(penicillin_reml):
    return pseudo_posterior(penicillin_reml)


@pytest.fixture(scope="session")
def sleep_nuts(sleep_model):
    """A short NUTS fit (slow tests only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # short chains on purpose
        return sleep_model.fit(method="nuts", chains=2, draws=100, tune=100, random_seed=1)
