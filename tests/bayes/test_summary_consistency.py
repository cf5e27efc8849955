import numpy as np

from hierlm.bayes.result import summarize_draws
from hierlm.results.summary import summarize


def test_engine_tables_and_results_tables_use_one_definition_of_ess_and_rhat():
    rng = np.random.default_rng(11)
    # autocorrelated, chain-shifted draws so ESS and R-hat are far from their ideal values
    draws = np.cumsum(rng.normal(size=(4, 400, 3)), axis=1) * 0.1 + rng.normal(size=(4, 400, 3))
    draws += np.arange(4)[:, None, None] * 0.3
    engine = summarize_draws(draws)
    results = summarize(draws.reshape(-1, 3), chains=4)
    for column in ("mean", "sd", "median", "ess_bulk", "ess_tail", "r_hat"):
        np.testing.assert_allclose(engine[column], results[column], rtol=1e-12, err_msg=column)
    assert (engine["r_hat"] > 1.01).all()
