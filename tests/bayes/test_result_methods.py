import numpy as np
import pandas as pd
import pytest

import hierlm as hl


@pytest.fixture(scope="module")
def fit():
    model = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))
    return model.fit(method="nuts", draws=150, tune=150, chains=2, random_seed=7, progressbar=False)


def test_draws_know_their_chains(fit):
    draws = fit.draws()
    assert draws.n_chains == 2 and draws.n_draws == 300


def test_coef_adds_fixed_to_group_effects_per_draw(fit):
    posterior = fit.idata.posterior
    beta = posterior["fixef"].values  # (chain, draw, term)
    effects = posterior["ranef_Subject"].values  # (chain, draw, term, level)
    expected = (effects[:, :, 0, :] + beta[..., None, 0]).mean(axis=(0, 1))
    coef = fit.coef()
    intercepts = coef[coef.term == "Intercept"]["mean"].to_numpy()
    np.testing.assert_allclose(intercepts, expected, rtol=1e-12)


def test_predict_known_level_is_posterior_mean_of_its_line(fit):
    draws = fit.draws()
    level = list(fit.design.blocks[0].levels).index("308")
    intercept = draws.beta[:, 0] + draws.effects[0][:, level, 0]
    slope = draws.beta[:, 1] + draws.effects[0][:, level, 1]
    line = intercept + 5 * slope
    table = fit.predict(pd.DataFrame({"Days": [5], "Subject": ["308"]}))
    assert table["mean"].iloc[0] == pytest.approx(line.mean(), rel=1e-12)


def test_predict_new_level_is_wider_than_known(fit):
    new = pd.DataFrame({"Days": [5, 5], "Subject": ["308", "new"]})
    with pytest.warns(hl.errors.HierlmWarning, match="never saw"):
        table = fit.predict(new, seed=3)
    assert table["sd"].iloc[1] > 2 * table["sd"].iloc[0]
