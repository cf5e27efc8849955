"""The compiled crossed/nested likelihood is a twin of the one Gaussian likelihood.

* value, gradients in beta, theta and sigma equal ``GaussianLikelihood.evaluate``
  at random points (rel 1e-9) on crossed, nested, three-factor and weighted designs;
* its log posterior equals ``likelihood_logp`` over the same unconstrained vector
  (rel 1e-9);
* its group-effect draws: with sigma = 0 they are the conditional means of
  ``SparseConditional`` (1e-10); their covariance over 4000 draws matches the dense
  conditional covariance ``sigma^2 Lambda M^-1 Lambda`` within 6 Monte Carlo SEs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.bayes.build import build_model, dense_width
from hierlm.bayes.conditional import SparseConditional
from hierlm.bayes.crossed_kernel import (
    PROBED_GRADIENT_WIDTH,
    ScalarFactorLikelihood,
    scalar_terms_only,
)
from hierlm.bayes.kernel_model import kernel_layout
from hierlm.bayes.likelihood_model import likelihood_logp
from hierlm.lmm.likelihood import GaussianLikelihood


def _three_factor():
    rng = np.random.default_rng(3)
    data = hl.datasets.load("Penicillin").copy()
    data["day"] = rng.integers(0, 5, len(data)).astype(str)
    return hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample) + (1 | day)", data)


MODELS = {
    "penicillin": lambda: hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)",
                                   hl.datasets.load("Penicillin")),
    "pastes_nested": lambda: hl.Model("strength ~ 1 + (1 | batch / cask)",
                                      hl.datasets.load("Pastes")),
    "three_factors": _three_factor,
    "weighted": lambda: hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)",
                                 hl.datasets.load("Penicillin"),
                                 weights=np.linspace(0.5, 2.0, 144)),
}


@pytest.mark.parametrize("case", sorted(MODELS))
def test_twin_of_the_one_likelihood(case):
    design = MODELS[case]().design
    assert scalar_terms_only(design)
    assert design.has_weights == (case == "weighted")
    python, compiled = GaussianLikelihood(design), ScalarFactorLikelihood(design)
    rng = np.random.default_rng(0)
    for _ in range(4):
        theta = rng.uniform(0.05, 3.0, python.n_phi) * rng.choice([-1.0, 1.0], python.n_phi)
        beta = np.mean(design.y) + rng.normal(0, 1, design.p)
        sigma = float(rng.uniform(0.3, 2.0))
        ref, got = python.evaluate(beta, theta, sigma), compiled.evaluate(beta, theta, sigma)
        assert got.value == pytest.approx(ref.value, rel=1e-10)
        assert got.d_sigma == pytest.approx(ref.d_sigma, rel=1e-9)
        np.testing.assert_allclose(got.d_beta, ref.d_beta, rtol=1e-9)
        np.testing.assert_allclose(got.d_phi, ref.d_phi, rtol=1e-9)


@pytest.mark.parametrize("case", ["penicillin", "pastes_nested"])
def test_log_posterior_twin(case):
    built = build_model(MODELS[case](), formulation="marginal")
    layout = kernel_layout(built)
    python = likelihood_logp(GaussianLikelihood(built.design), layout)
    compiled = ScalarFactorLikelihood(built.design).logp(layout.prior_code, layout.prior_par)
    rng = np.random.default_rng(1)
    centre = np.array([float(np.mean(built.design.y)), 0.0, 0.0, 0.5])
    for _ in range(4):
        x = centre + rng.normal(0, 0.5, centre.size)
        v_p, g_p = python(x)
        v_c, g_c = compiled(x)
        assert v_c == pytest.approx(v_p, rel=1e-10)
        np.testing.assert_allclose(g_c, g_p, rtol=1e-9, atol=1e-9 * np.max(np.abs(g_p)))


def test_draws_are_the_exact_conditional():
    design = MODELS["pastes_nested"]().design
    compiled, sparse = ScalarFactorLikelihood(design), SparseConditional(design)
    theta, beta, sigma = np.array([2.9, 1.3]), np.array([60.0]), 0.8
    means = compiled.draws(theta[None], beta[None], np.zeros(1), np.random.default_rng(0))
    for got, ref in zip(means, sparse.mean(theta, beta), strict=True):
        np.testing.assert_allclose(got[0], ref, rtol=0, atol=1e-10 * np.max(np.abs(ref)))
    n_draws = 4000
    draws = compiled.draws(np.tile(theta, (n_draws, 1)), np.tile(beta, (n_draws, 1)),
                           np.full(n_draws, sigma), np.random.default_rng(1))
    flat = np.concatenate([d[:, :, 0] for d in draws], axis=1)
    lam = sparse.lambda_matrix(theta).toarray()
    m = lam.T @ sparse.ztz.toarray() @ lam + np.eye(lam.shape[0])
    exact = sigma**2 * lam @ np.linalg.solve(m, lam.T)
    variance = flat.var(axis=0, ddof=1)
    se = np.sqrt(2.0 / (n_draws - 1)) * np.diag(exact)
    assert np.all(np.abs(variance - np.diag(exact)) < 6 * se)
    mean_se = np.sqrt(np.diag(exact) / n_draws)
    centre = np.concatenate([r.ravel() for r in sparse.mean(theta, beta)])
    assert np.all(np.abs(flat.mean(axis=0) - centre) < 6 * mean_se)


def _wide_crossed() -> hl.Model:
    """Three crossed/nested scalar factors whose dense part (460 + 8 columns) is probed."""
    rng = np.random.default_rng(11)
    n = 6000
    lecturer = rng.integers(0, 460, n)
    data = pd.DataFrame({
        "student": [f"s{k}" for k in rng.integers(0, 700, n)],
        "lecturer": [f"d{k}" for k in lecturer],
        "dept": [f"g{k % 8}" for k in lecturer],  # lecturers nested in departments
        "x": rng.standard_normal(n),
    })
    data["y"] = 3.0 + 0.2 * data["x"] + rng.standard_normal(n)
    return hl.Model("y ~ x + (1 | student) + (1 | lecturer) + (1 | dept)", data)


def test_probed_gradient_is_close_and_deterministic_and_the_value_exact():
    """Past PROBED_GRADIENT_WIDTH the sampler's log posterior keeps the exact value; its
    gradient differs from the exact one only in the log-determinant's probed traces:
    the 8-level factor exactly (rel 1e-9), the others within a tenth of
    sqrt(2 n_k) (the gradient's scale at one posterior SD of log theta_k, n_k levels).
    """
    built = build_model(_wide_crossed(), formulation="marginal")
    compiled = ScalarFactorLikelihood(built.design)
    assert dense_width(built.design) == 468 > PROBED_GRADIENT_WIDTH and compiled.probed
    layout = kernel_layout(built)
    probed = compiled.logp(layout.prior_code, layout.prior_par)
    python = likelihood_logp(GaussianLikelihood(built.design), layout)
    levels = {b.group: b.n_levels for b in built.design.blocks}
    rows = {name: built.design.p + 1 + k for k, name in enumerate(b.group for b in built.design.blocks)}
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = np.array([3.0, 0.2, 0.0, -1.0, -1.2, -1.5]) + rng.normal(0, 0.3, 6)
        v_p, g_p = probed(x)
        v_e, g_e = python(x)
        assert v_p == pytest.approx(v_e, rel=1e-10)
        np.testing.assert_allclose(g_p[:2], g_e[:2], rtol=1e-9)  # fixed effects: exact
        assert g_p[rows["dept"]] == pytest.approx(g_e[rows["dept"]], rel=1e-9)
        for name in ("student", "lecturer"):
            assert abs(g_p[rows[name]] - g_e[rows[name]]) < 0.1 * np.sqrt(2 * levels[name])
        # sigma's gradient carries minus the sum over the SDs' log-determinant parts
        assert abs(g_p[2] - g_e[2]) < 0.1 * np.sqrt(2 * (levels["student"] + levels["lecturer"]))
        again = probed(x)
        assert again[0] == v_p and np.array_equal(again[1], g_p)
