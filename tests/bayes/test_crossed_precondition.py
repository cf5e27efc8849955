"""Sampling a crossed marginal posterior standardised at its mode (crossed_precondition).

The map ``x = m + L z`` is an exact change of variables: the wrapped density's value is the
original at ``m + L z`` and its gradient ``L' grad`` (checked against differences of the
wrapped value); ``m`` is the mode (gradient near zero) and ``L L'`` the inverse negative
Hessian there. Failures fall back to the identity. Sampled in ``z``, the posterior is the
same as sampled in ``x`` (slow test: means and SDs within 4.5 MCSE, as test_probed_gradient).
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
from hierlm.bayes.build import DEFAULT_TUNE, STANDARDISED_TUNE, build_model, default_tune
from hierlm.bayes.crossed_kernel import ScalarFactorLikelihood
from hierlm.bayes.crossed_precondition import (
    PRECONDITION_WIDTH,
    AffineMap,
    mode_map,
    precondition_applies,
)
from hierlm.bayes.kernel_model import _start, kernel_layout, nutpie_model_of_layout
from hierlm.bayes.likelihood_model import standardised_nutpie_model
from hierlm.bayes.sample import stored_variables
from tests.bayes.helpers import crossed_model, nutpie_draws
from tests.bayes.test_agreement import mean_z_scores, sd_z_scores


def _penicillin_logp():
    built = build_model(hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)",
                                 hl.datasets.load("Penicillin")), formulation="marginal")
    layout = kernel_layout(built)
    logp = ScalarFactorLikelihood(built.design).logp(layout.prior_code, layout.prior_par)
    return logp, _start(built, layout)


def test_map_is_centred_at_the_mode_with_the_inverse_curvature():
    logp, start = _penicillin_logp()
    affine = mode_map(logp, start)
    assert affine.at_mode
    assert np.linalg.norm(logp(affine.centre)[1]) < 1e-2
    assert logp(affine.centre)[0] > logp(start)[0]
    h = 1e-5
    hessian = np.column_stack([
        -(logp(affine.centre + h * e)[1] - logp(affine.centre - h * e)[1]) / (2 * h)
        for e in np.eye(start.size)])
    covariance = affine.factor @ affine.factor.T
    assert np.allclose(covariance @ hessian, np.eye(start.size), atol=1e-4)
    assert np.allclose(affine.factor, np.tril(affine.factor))


def test_wrapped_density_is_the_change_of_variables():
    logp, start = _penicillin_logp()
    affine = mode_map(logp, start)
    wrapped = affine.logp(logp)
    z = np.random.default_rng(1).uniform(-1, 1, start.size)
    value, grad = wrapped(z)
    assert value == logp(affine.to_x(z))[0]
    assert np.allclose(affine.to_x(z), affine.centre + affine.factor @ z, rtol=0, atol=1e-15)
    h = 1e-4  # central differences: O(h^2) error, cancellation about 1e-9
    numeric = [(wrapped(z + h * e)[0] - wrapped(z - h * e)[0]) / (2 * h) for e in np.eye(z.size)]
    assert np.allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_failures_give_the_identity_map():
    def nowhere(x):
        return -np.inf, np.zeros_like(x)

    def flat_direction(x):  # no curvature along x[1]: no standardisation
        return -0.5 * x[0] ** 2, np.array([-x[0], 0.0])

    start = np.array([0.3, -0.2])
    for logp in (nowhere, flat_direction):
        affine = mode_map(logp, start)
        assert not affine.at_mode
        assert np.array_equal(affine.centre, start) and np.array_equal(affine.factor, np.eye(2))
    assert AffineMap(start, np.eye(2), False).logp(nowhere)(np.zeros(2))[0] == -np.inf


def test_width_rule_and_default_tune():
    assert precondition_applies(PRECONDITION_WIDTH) and not precondition_applies(PRECONDITION_WIDTH - 1)
    inst = build_model(hl.Model("y ~ service + (1 | s) + (1 | d) + (1 | dept)",
                                hl.datasets.load("InstEval")))
    assert inst.formulation == "marginal"
    assert default_tune(inst) == STANDARDISED_TUNE
    small = build_model(hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)",
                                 hl.datasets.load("Penicillin")))
    assert default_tune(small) == DEFAULT_TUNE
    assert default_tune(build_model(crossed_model(), formulation="full")) == DEFAULT_TUNE


def _sample(built, standardised: bool, seed: int) -> np.ndarray:
    layout = kernel_layout(built)
    logp = ScalarFactorLikelihood(built.design).logp(layout.prior_code, layout.prior_par)
    names = stored_variables(built)
    compiled = (standardised_nutpie_model(built, layout, logp, names) if standardised
                else nutpie_model_of_layout(built, layout, logp, names))
    return nutpie_draws(compiled, names, tune=STANDARDISED_TUNE if standardised else 400, seed=seed)


@pytest.mark.slow
def test_standardised_and_plain_coordinates_sample_one_posterior():
    built = build_model(crossed_model(), formulation="marginal")
    plain, standardised = _sample(built, False, 3), _sample(built, True, 4)
    assert np.all(mean_z_scores(plain, standardised) < 4.5), mean_z_scores(plain, standardised)
    assert np.all(sd_z_scores(plain, standardised) < 4.5), sd_z_scores(plain, standardised)
