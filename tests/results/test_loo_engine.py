"""LOO on real posterior samples (slow: needs the Bayesian engine).

* The marginal and the full formulation sample the same posterior, so LOO
  computed from their draws must agree within its standard error, for
  observations and for whole subjects.
* Group-level PSIS-LOO must match leave-one-group-out by exact refits: for
  every group j, refit without it and average p(y_j | theta) over the refit's
  draws, with the group's effect integrated out.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp

import hierlm as hl
import hierlm.bayes
from hierlm.errors import HierlmWarning
from hierlm.results.common import as_draws
from hierlm.results.draws import FitDraws
from hierlm.results.grouped import group_loglik
from hierlm.results.ic import loo

pytestmark = [pytest.mark.slow]


def nuts(model, **options):
    settings = {"draws": 1000, "tune": 1000, "chains": 2, "random_seed": 7, **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return as_draws(model.fit(method="nuts", **settings))


def test_marginal_and_full_formulations_give_the_same_loo():
    model = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))
    marginal = nuts(model, formulation="marginal")
    full = nuts(model, formulation="full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        for level in ("observation", "group"):
            a, b = loo(marginal, level=level), loo(full, level=level)
            assert abs(a.elpd - b.elpd) < min(a.se, b.se), level


def small_example():
    rng = np.random.default_rng(21)
    groups, per_group = 6, 5
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    y = 2.0 + 0.8 * x + 1.0 * rng.normal(size=groups)[g] + 0.6 * rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{v}" for v in g]})


def test_group_loo_matches_exact_leave_one_group_out():
    frame = small_example()
    formula = "y ~ x + (1 | g)"
    model = hl.Model(formula, frame)
    draws = nuts(model, draws=2000, chains=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        psis = loo(draws, level="group")
    levels = list(model.design.blocks[0].levels)
    exact = 0.0
    for j, level in enumerate(levels):
        refit = nuts(hl.Model(formula, frame[frame["g"] != level]), draws=2000, chains=4)
        s = refit.n_draws
        on_full = FitDraws(beta=refit.beta, sigma=refit.sigma, covariances=refit.covariances,
                           effects=(np.zeros((s, len(levels), 1)),), design=model.design, point=False)
        held_out = group_loglik(on_full, "g")[:, j]
        exact += float(logsumexp(held_out) - np.log(s))
    assert abs(psis.elpd - exact) < psis.se


def test_log_likelihoods_agree_with_the_ones_the_engine_stores():
    """Two routes: the engine's per-level cross-products vs hierlm.results' row-wise Woodbury."""
    from hierlm.results.ic import pointwise_loglik

    model = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        fit = model.fit(method="nuts", draws=100, tune=200, chains=2, random_seed=4)
    draws = fit.draws()
    stored_group = np.asarray(fit.idata["log_likelihood_group"]["Reaction"].values).reshape(draws.n_draws, -1)
    np.testing.assert_allclose(group_loglik(draws, "Subject"), stored_group, rtol=1e-8)
    stored_points = np.asarray(fit.idata["log_likelihood"]["Reaction"].values).reshape(draws.n_draws, -1)
    np.testing.assert_allclose(pointwise_loglik(draws), stored_points, rtol=1e-8)
