"""The marginal likelihoods, tested on their own at fixed parameters against dense formulas and lme4."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.linalg import block_diag
from scipy.stats import multivariate_normal

import hierlm as hl
from hierlm.bayes.conditional import SparseConditional, draw_group_effects, group_loglik
from hierlm.bayes.groupstats import group_stats, shared_group
from hierlm.bayes.map import MarginalDensity
from hierlm.bayes.marginal import marginal_loglik
from hierlm.design.blocks import Design, RandomBlock
from hierlm.design.covariance import Unstructured

from .helpers import fixture_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"


def one_factor_design(
    widths: tuple[int, ...], seed: int = 0, n_levels: int = 7, per_level: int = 6
) -> Design:
    """Blocks of the given widths, all on one factor, with unbalanced level sizes."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(n_levels), per_level)[: n_levels * per_level - 3]
    n = codes.size
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    columns = np.column_stack([np.ones(n), rng.normal(size=(n, sum(widths)))])
    blocks, start = [], 0
    for width in widths:
        z = columns[:, start : start + width]
        names = tuple(f"c{start + k}" for k in range(width))
        blocks.append(RandomBlock("g", names, Unstructured(width),
                                  tuple(f"L{k}" for k in range(n_levels)), codes, z))
        start += width
    y = X @ np.array([1.0, -0.5, 0.3]) + rng.normal(size=n)
    return Design(y, X, ("Intercept", "x1", "x2"), tuple(blocks), "y", np.arange(n))


def dense_covariance(design: Design, chol: np.ndarray, sigma: float) -> np.ndarray:
    """V = sigma^2 I + Z G Z' for a block-diagonal per-level factor ``chol``."""
    z = design.sparse_z().toarray()
    g_level = chol @ chol.T
    parts, start = [], 0
    for block in design.blocks:
        parts.append(
            np.kron(np.eye(block.n_levels), g_level[start : start + block.q, start : start + block.q])
        )
        start += block.q
    return sigma**2 * np.eye(design.n) + z @ block_diag(*parts) @ z.T


def random_chol(q: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chol = np.tril(rng.normal(size=(q, q)))
    chol[np.diag_indices(q)] = np.abs(chol[np.diag_indices(q)]) + 0.3
    return chol


def block_diagonal_chol(widths: tuple[int, ...], seed: int) -> np.ndarray:
    total = sum(widths)
    chol = np.zeros((total, total))
    start = 0
    for k, width in enumerate(widths):
        chol[start : start + width, start : start + width] = random_chol(width, seed + k)
        start += width
    return chol


@pytest.fixture(scope="module")
def compiled_loglik():
    cache = {}

    def get(design):
        stats = group_stats(design)
        beta, sigma, chol = pt.dvector("beta"), pt.dscalar("sigma"), pt.dmatrix("chol")
        outputs = [
            marginal_loglik(stats, beta, sigma, chol),
            marginal_loglik(stats, None, sigma, chol, reml=True),
        ]
        key = design  # the object, not id(): a freed design's id is reused by the next one
        if key not in cache:
            cache[key] = pytensor.function(
                [beta, sigma, chol], outputs, mode="FAST_COMPILE", on_unused_input="ignore"
            )
        return cache[key]

    return get


@pytest.mark.parametrize("widths", [(1,), (2,), (3,), (4,), (1, 1), (2, 1), (1, 2, 1)])
def test_marginal_loglik_matches_the_dense_gaussian(widths, compiled_loglik):
    design = one_factor_design(widths, seed=len(widths) + sum(widths))
    chol = block_diagonal_chol(widths, seed=5)
    beta, sigma = np.array([0.8, -0.2, 0.1]), 0.9
    ml, reml = compiled_loglik(design)(beta, sigma, chol)
    cov = dense_covariance(design, chol, sigma)
    expected = multivariate_normal(design.X @ beta, cov).logpdf(design.y)
    np.testing.assert_allclose(ml, expected, rtol=1e-10)
    # REML: beta integrated out under a flat prior
    inv = np.linalg.inv(cov)
    xvx = design.X.T @ inv @ design.X
    beta_hat = np.linalg.solve(xvx, design.X.T @ inv @ design.y)
    expected_reml = (
        multivariate_normal(design.X @ beta_hat, cov).logpdf(design.y)
        - 0.5 * np.linalg.slogdet(xvx)[1]
        + 0.5 * design.p * np.log(2 * np.pi)
    )
    np.testing.assert_allclose(reml, expected_reml, rtol=1e-10)


@pytest.mark.parametrize("widths", [(2,), (1, 2)])
def test_per_group_loglik_sums_to_the_marginal(widths):
    design = one_factor_design(widths, seed=3)
    stats = group_stats(design)
    chol = block_diagonal_chol(widths, seed=9)
    betas = np.array([[0.8, -0.2, 0.1], [1.1, 0.0, 0.4]])
    sigmas = np.array([0.9, 1.3])
    per_group = group_loglik(stats, betas, sigmas, np.stack([chol, 0.5 * chol]))
    for k, scale in enumerate([1.0, 0.5]):
        cov = dense_covariance(design, scale * chol, sigmas[k])
        expected = multivariate_normal(design.X @ betas[k], cov).logpdf(design.y)
        np.testing.assert_allclose(per_group[k].sum(), expected, rtol=1e-10)
        level = design.blocks[0].codes == 2
        sub = cov[np.ix_(level, level)]
        np.testing.assert_allclose(
            per_group[k, 2],
            multivariate_normal(design.X[level] @ betas[k], sub).logpdf(design.y[level]),
            rtol=1e-10,
        )


def test_zero_sd_is_allowed():
    design = one_factor_design((2,), seed=1)
    stats = group_stats(design)
    chol = np.array([[1.2, 0.0], [0.0, 0.0]])  # singular G
    value = group_loglik(stats, np.array([[1.0, 0.0, 0.0]]), np.array([1.0]), chol[None])
    cov = dense_covariance(design, chol, 1.0)
    np.testing.assert_allclose(
        value.sum(), multivariate_normal(design.X @ np.array([1.0, 0, 0]), cov).logpdf(design.y), rtol=1e-10
    )


def test_conditional_draws_have_the_exact_conditional_moments():
    design = one_factor_design((2,), seed=4, n_levels=3)
    stats = group_stats(design)
    chol = random_chol(2, 2) * 2
    beta, sigma = np.array([0.9, -0.4, 0.2]), 0.7
    n_draws = 40_000
    draws = draw_group_effects(
        stats,
        np.tile(beta, (n_draws, 1)),
        np.full(n_draws, sigma),
        np.tile(chol, (n_draws, 1, 1)),
        np.random.default_rng(0),
    )
    # dense conditional: b | y ~ N(G Z' V^-1 r, G - G Z' V^-1 Z G)
    z = design.sparse_z().toarray()
    g = np.kron(np.eye(3), chol @ chol.T)
    v = sigma**2 * np.eye(design.n) + z @ g @ z.T
    gain = g @ z.T @ np.linalg.inv(v)
    mean = gain @ (design.y - design.X @ beta)
    cov = g - gain @ z @ g
    flat = draws.reshape(n_draws, -1)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(flat.mean(axis=0) - mean) < 5 * sd / np.sqrt(n_draws))
    np.testing.assert_allclose(np.cov(flat.T), cov, atol=0.03 * sd.max() ** 2)


def test_same_seed_same_conditional_draws():
    design = one_factor_design((2,), seed=4)
    stats = group_stats(design)
    args = (np.ones((5, 3)), np.ones(5), np.tile(np.eye(2), (5, 1, 1)))
    a = draw_group_effects(stats, *args, np.random.default_rng(3))
    b = draw_group_effects(stats, *args, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_shared_group_detection(sleep_df, crossed_df):
    assert shared_group(hl.Model("Reaction ~ Days + (Days || Subject)", sleep_df).design) == "Subject"
    assert shared_group(hl.Model("y ~ x + (x | a) + (1 | b)", crossed_df).design) is None


def test_map_density_matches_dense_for_crossed_factors(crossed_df):
    design = hl.Model("y ~ x + (x | a) + (1 | b)", crossed_df).design
    density = MarginalDensity(design)
    theta = np.array([0.9, 0.2, 0.5, 0.6])
    sigma, beta = 0.8, np.array([1.1, 0.4])
    templates = density.templates(theta)
    z = design.sparse_z().toarray()
    lam = SparseConditional(design).lambda_matrix(theta).toarray()
    cov = sigma**2 * (np.eye(design.n) + z @ lam @ lam.T @ z.T)
    expected = multivariate_normal(design.X @ beta, cov).logpdf(design.y)
    value = -0.5 * density.minus_two_loglik(density.pieces(theta), sigma, beta, reml=False)
    np.testing.assert_allclose(value, expected, rtol=1e-10)
    assert templates[0].shape == (2, 2)


def test_the_sampler_and_map_likelihoods_agree(sleep_model, compiled_loglik):
    design = sleep_model.design
    density = MarginalDensity(design)
    theta = np.array([0.97, 0.015, 0.23])
    sigma, beta = 25.6, np.array([251.0, 10.5])
    template = density.templates(theta)[0]
    ml, reml = compiled_loglik(design)(beta, sigma, sigma * template)
    pieces = density.pieces(theta)
    np.testing.assert_allclose(
        ml, -0.5 * density.minus_two_loglik(pieces, sigma, beta, reml=False), rtol=1e-10
    )
    np.testing.assert_allclose(
        reml, -0.5 * density.minus_two_loglik(pieces, sigma, None, reml=True), rtol=1e-10
    )


@pytest.mark.parametrize(
    "fixture",
    [
        "sleep_slope_reml",
        "sleep_slope_ml",
        "pastes_nested_reml",
        "penicillin_crossed_reml",
        "machines_corr_reml",
        "dyestuff2_singular_reml",
    ],
)
def test_profiled_criterion_matches_lme4_devfun(fixture):
    fx = json.loads((FIXTURES / f"{fixture}.json").read_text())
    density = MarginalDensity(fixture_model(fx).design)
    for point in fx["devfun"]:
        value = density.profiled_criterion(np.array(point["theta"], dtype=float), fx["reml"])
        np.testing.assert_allclose(value, point["value"], rtol=1e-9, err_msg=point["label"])


def test_compiled_loop_matches_numpy(monkeypatch):
    import hierlm.bayes.conditional as conditional

    design = one_factor_design((2, 1), seed=8)
    stats = group_stats(design)
    rng = np.random.default_rng(1)
    n_draws = 7
    fixef = rng.normal(size=(n_draws, 3))
    sigma = rng.uniform(0.5, 1.5, size=n_draws)
    chol = np.stack([block_diagonal_chol((2, 1), seed=k) for k in range(n_draws)])
    numpy_effects, numpy_loglik = conditional.conditional_quantities(
        stats, fixef, sigma, chol, np.random.default_rng(5), want_loglik=True
    )
    monkeypatch.setattr(conditional, "_COMPILED_THRESHOLD", 0)
    compiled_effects, compiled_loglik = conditional.conditional_quantities(
        stats, fixef, sigma, chol, np.random.default_rng(5), want_loglik=True
    )
    np.testing.assert_allclose(compiled_effects, numpy_effects, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(compiled_loglik, numpy_loglik, rtol=1e-10)


@pytest.mark.parametrize("route", ["dense", "splu"])
def test_sparse_conditional_means_and_draws_are_exact(crossed_df, monkeypatch, route):
    """Crossed design: the conditional mean equals G Z'V^-1 (y - X beta) (dense, rel 1e-8), at
    beta_hat it equals the ML kernel's solution, and draws have that mean and covariance."""
    import hierlm.bayes.conditional as conditional_module

    if route == "splu":
        monkeypatch.setattr(conditional_module, "_DENSE_A", 0)
    design = hl.Model("y ~ x + (x | a) + (1 | b)", crossed_df).design
    theta = np.array([0.9, 0.2, 0.5, 0.6])
    sigma, beta = 0.8, np.array([1.1, 0.4])
    cond = SparseConditional(design)
    z = design.sparse_z().toarray()
    lam = cond.lambda_matrix(theta).toarray()
    g = sigma**2 * lam @ lam.T
    v = z @ g @ z.T + sigma**2 * np.eye(design.n)
    expected = g @ z.T @ np.linalg.solve(v, design.y - design.X @ beta)
    np.testing.assert_allclose(np.concatenate([m.ravel() for m in cond.mean(theta, beta)]),
                               expected, rtol=1e-8, atol=1e-10)
    density = MarginalDensity(design)
    beta_hat = density.pieces(theta).beta_hat
    kernel_modes = density.conditional_modes(theta, beta_hat)
    for ours, reference in zip(cond.mean(theta, beta_hat), kernel_modes, strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-8, atol=1e-10)
    # draws: mean and covariance g - g Z'V^-1 Z g within Monte Carlo error (4000 draws)
    rng = np.random.default_rng(5)
    many = np.array([np.concatenate([d.ravel() for d in cond.draw(theta, beta, sigma, rng)])
                     for _ in range(4000)])
    post_cov = g - g @ z.T @ np.linalg.solve(v, z @ g)
    sd = np.sqrt(np.diag(post_cov))
    assert np.max(np.abs(many.mean(axis=0) - expected) / sd) < 4.5 / np.sqrt(4000)
    np.testing.assert_allclose(many.std(axis=0), sd, rtol=0.06)
