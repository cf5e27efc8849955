"""The marginal and full formulations give one posterior on a crossed and a nested design.

Penicillin ``(1 | plate) + (1 | sample)`` (crossed) and Pastes ``(1 | batch / cask)``
(nested): the marginal form (compiled crossed kernel, effects drawn exactly per
draw) against the full form (the compiled full kernel, ``hierlm.bayes.glmm_kernel``:
Penicillin's blocks centred, Pastes' non-centred), same priors, independent seeds. Posterior
means and SDs of the fixed effect, sigma, every SD and a few group effects agree
within Monte Carlo error: ``|difference| / MCSE < 4.5`` (MCSE of each run combined,
ArviZ's estimator; 4.5 keeps the family-wise false alarm rate negligible over the
columns compared).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm as hl
from hierlm.bayes import fit_bayes
from hierlm.errors import SamplingWarning
from tests.bayes.test_agreement import mean_z_scores, sd_z_scores

CASES = {
    "crossed": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", ("plate", "sample")),
    "nested": ("Pastes", "strength ~ 1 + (1 | batch / cask)", ("cask:batch", "batch")),
}


def _columns(fit, groups):
    post = fit.idata["posterior"]
    names = ["fixef", "sigma", *[f"sd_{g}" for g in groups]]
    parts = [post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
             for name in names]
    for g in groups:  # the first three levels' effects
        effects = post[f"ranef_{g}"].values
        parts.append(effects.reshape(post.sizes["chain"], post.sizes["draw"], -1)[..., :3])
    return np.concatenate(parts, axis=2)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_marginal_and_full_posteriors_agree(case):
    data, formula, groups = CASES[case]
    model = hl.Model(formula, hl.datasets.load(data))
    settings = {"progressbar": False, "chains": 4, "draws": 1000, "tune": 1000}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        marginal = fit_bayes(model, formulation="marginal", random_seed=11, **settings)
        full = fit_bayes(model, formulation="full", random_seed=12, **settings)
    assert marginal.formulation == "marginal" and full.formulation == "full"
    assert full.idata["posterior"].attrs["backend"] == "kernel"  # the compiled full kernel
    a, b = _columns(marginal, groups), _columns(full, groups)
    assert np.all(mean_z_scores(a, b) < 4.5), mean_z_scores(a, b)
    assert np.all(sd_z_scores(a, b) < 4.5), sd_z_scores(a, b)
