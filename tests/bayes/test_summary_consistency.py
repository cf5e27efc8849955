import numpy as np

from hierlm.results.summary import summarize
from hierlm.results.tables import posterior_table


def test_engine_tables_and_results_tables_use_one_definition_of_ess_and_rhat():
    rng = np.random.default_rng(11)
    # autocorrelated, chain-shifted draws so ESS and R-hat are far from their ideal values
    draws = np.cumsum(rng.normal(size=(4, 400, 3)), axis=1) * 0.1 + rng.normal(size=(4, 400, 3))
    draws += np.arange(4)[:, None, None] * 0.3
    flat = draws.reshape(-1, 3)
    engine = posterior_table(flat, chains=4)  # what fixef/varcorr/ranef of a NUTS fit show
    results = summarize(flat, chains=4)
    np.testing.assert_allclose(engine["estimate"], results["mean"], rtol=1e-12)
    np.testing.assert_allclose(engine["std_error"], results["sd"], rtol=1e-12)
    for column in ("ess_bulk", "ess_tail", "r_hat", "mcse_mean"):
        np.testing.assert_allclose(engine[column], results[column], rtol=1e-12, err_msg=column)
    assert (engine["r_hat"] > 1.01).all()
