"""Bayesian emmeans, effect sizes and hypotheses agree with the REML ones where the priors are weak.

Simulated (seeded): 60 clusters of 10 rows, a between-cluster treatment and
a within-cluster covariate. The posterior mean of every quantity must lie
within 0.2 posterior SD of the REML value (4 chains x 500 draws).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import HierlmWarning

pytestmark = pytest.mark.slow


def clustered() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(60), 10)
    treat = (np.arange(60) % 2)[g]
    x = rng.normal(0.0, 1.0, g.size)
    y = 2.0 + 1.0 * treat + 0.5 * x + rng.normal(0.0, 1.0, 60)[g] + rng.normal(0.0, 1.0, g.size)
    return pd.DataFrame({"y": y, "x": x, "treat": pd.Categorical(np.where(treat == 1, "yes", "no")),
                         "g": pd.Categorical(g)})


@pytest.fixture(scope="module")
def fits():
    data = clustered()
    full, reduced = hl.Model("y ~ x + treat + (1 | g)", data), hl.Model("y ~ x + (1 | g)", data)
    settings = {"chains": 4, "draws": 500, "tune": 500, "progressbar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return {"reml": (full.fit(), reduced.fit()),
                "nuts": (full.fit(method="nuts", random_seed=1, **settings),
                         reduced.fit(method="nuts", random_seed=2, **settings))}


def _close(reml: pd.Series, posterior: pd.DataFrame) -> None:
    z = (posterior["estimate"] - reml) / posterior["std_error"]
    assert (z.abs() < 0.2).all(), z.abs().sort_values().tail(3).to_dict()


def test_effect_sizes_agree(fits):
    reml = hl.effect_sizes(*fits["reml"])
    posterior = hl.effect_sizes(*fits["nuts"])
    assert list(posterior.columns) == ["estimate", "std_error", "lower", "upper"]
    assert list(posterior.index) == list(reml.index)
    _close(reml["estimate"], posterior)
    assert (posterior["lower"] < posterior["estimate"]).all()


def test_emmeans_and_pairs_agree(fits):
    reml, bayes = fits["reml"][0], fits["nuts"][0]
    _close(reml.emmeans("treat").table["estimate"], bayes.emmeans("treat").table)
    pairs = bayes.emmeans("treat").pairs()
    assert list(pairs.columns) == ["contrast", "estimate", "std_error", "lower", "upper", "prob_direction"]
    _close(reml.emmeans("treat").pairs()["estimate"], pairs)
    assert pairs["prob_direction"].iloc[0] > 0.99
    _close(reml.slopes("x", by=True)["estimate"], bayes.slopes("x", by=True))
    _close(reml.variance_shares()["estimate"], bayes.variance_shares())


def test_hypothesis_is_the_share_of_draws(fits):
    bayes = fits["nuts"][0]
    table = bayes.hypothesis(["treatyes > 0.5", "x < 0.4", "x = 0.5"])
    beta = bayes.draws().beta
    names = list(bayes.design.fixed_names)
    treat = beta[:, names.index("treatyes")]
    assert table.loc["treatyes > 0.5", "prob"] == pytest.approx(np.mean(treat > 0.5))
    assert table.loc["treatyes > 0.5", "estimate"] == pytest.approx(treat.mean() - 0.5)
    assert table.loc["x < 0.4", "prob"] == pytest.approx(np.mean(beta[:, names.index("x")] < 0.4))
    assert np.isnan(table.loc["x = 0.5", "prob"])
