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
import pytest

from hierlm.bayes.build import build_model
from hierlm.bayes.crossed_kernel import ScalarFactorLikelihood
from hierlm.bayes.kernel_model import kernel_layout, nutpie_model_of_layout
from hierlm.bayes.sample import stored_variables
from tests.bayes.helpers import crossed_model, nutpie_draws
from tests.bayes.test_agreement import mean_z_scores, sd_z_scores


def _sample(built, probed: bool, seed: int) -> np.ndarray:
    layout = kernel_layout(built)
    likelihood = ScalarFactorLikelihood(built.design, probed=probed)
    assert likelihood.probed == probed
    names = stored_variables(built)
    compiled = nutpie_model_of_layout(built, layout,
                                      likelihood.logp(layout.prior_code, layout.prior_par), names)
    return nutpie_draws(compiled, names, tune=200, seed=seed)


@pytest.mark.slow
def test_probed_and_exact_gradients_sample_one_posterior():
    built = build_model(crossed_model(), formulation="marginal")
    exact, probed = _sample(built, False, 3), _sample(built, True, 4)
    assert np.all(mean_z_scores(exact, probed) < 4.5), mean_z_scores(exact, probed)
    assert np.all(sd_z_scores(exact, probed) < 4.5), sd_z_scores(exact, probed)
