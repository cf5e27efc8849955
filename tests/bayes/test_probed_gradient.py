"""NUTS with the probed log-determinant gradient samples the same posterior as with the exact one.

The probed gradient (``ScalarFactorLikelihood(..., probed=True)``) is a fixed function of
position, so the leapfrog map stays volume-preserving and reversible and NUTS, which
accepts by the exact density, stays exact. Checked on a crossed design with a 150-level
rest factor (probed) and a 6-level one (exact trace): two samplers, independent seeds,
same model; posterior means and SDs of the fixed effects, sigma and the three SDs agree
within ``|difference| / MCSE < 4.5`` (as ``test_marginal_agreement``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

import hierlm as hl
from hierlm.bayes.build import build_model
from hierlm.bayes.crossed_kernel import ScalarFactorLikelihood
from hierlm.bayes.kernel_model import kernel_layout, nutpie_model_of_layout
from hierlm.bayes.sample import stored_variables
from tests.bayes.test_agreement import mean_z_scores, sd_z_scores


def _crossed() -> hl.Model:
    rng = np.random.default_rng(5)
    n = 3000
    lecturer = rng.integers(0, 150, n)
    student = rng.integers(0, 300, n)
    data = pd.DataFrame({"student": [f"s{k}" for k in student],
                         "lecturer": [f"d{k}" for k in lecturer],
                         "dept": [f"g{k % 6}" for k in lecturer],
                         "x": rng.standard_normal(n)})
    effects = (0.4 * rng.standard_normal(300)[student] + 0.5 * rng.standard_normal(150)[lecturer]
               + 0.3 * rng.standard_normal(6)[lecturer % 6])
    data["y"] = 3.0 + 0.2 * data["x"] + effects + rng.standard_normal(n)
    return hl.Model("y ~ x + (1 | student) + (1 | lecturer) + (1 | dept)", data)


def _sample(built, probed: bool, seed: int) -> np.ndarray:
    import nutpie

    layout = kernel_layout(built)
    likelihood = ScalarFactorLikelihood(built.design, probed=probed)
    assert likelihood.probed == probed
    names = stored_variables(built)
    compiled = nutpie_model_of_layout(built, layout,
                                      likelihood.logp(layout.prior_code, layout.prior_par), names)
    with threadpool_limits(limits=1, user_api="blas"):
        trace = nutpie.sample(compiled, draws=400, tune=200, chains=2, cores=2, seed=seed,
                              progress_bar=False)
    post = trace.posterior
    return np.concatenate([post[name].values.reshape(2, 400, -1) for name in names], axis=2)


@pytest.mark.slow
def test_probed_and_exact_gradients_sample_one_posterior():
    built = build_model(_crossed(), formulation="marginal")
    exact, probed = _sample(built, False, 3), _sample(built, True, 4)
    assert np.all(mean_z_scores(exact, probed) < 4.5), mean_z_scores(exact, probed)
    assert np.all(sd_z_scores(exact, probed) < 4.5), sd_z_scores(exact, probed)
