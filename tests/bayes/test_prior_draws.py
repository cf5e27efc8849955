"""Exact prior draws: each family against SciPy's distribution, LKJ against its known marginals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hierlm import Prior
from hierlm.bayes.prior_draws import cholesky_from_raw, draw_lkj_raw, draw_prior, draw_priors
from hierlm.errors import PriorError

N = 4000
# a correct sampler fails a KS test at this level once in 10,000 runs; seeds are fixed anyway
P_MIN = 1e-4

FAMILY_CASES = [
    (Prior("normal", mu=3.0, sigma=2.0), stats.norm(3.0, 2.0).cdf),
    (Prior("student_t", nu=4.0, mu=-1.0, sigma=0.5), stats.t(4.0, -1.0, 0.5).cdf),
    (Prior("half_normal", sigma=7.0), stats.halfnorm(scale=7.0).cdf),
    (Prior("half_student_t", nu=3.0, sigma=2.0), lambda x: 2 * stats.t(3.0, scale=2.0).cdf(x) - 1),
    (Prior("half_cauchy", sigma=1.5), stats.halfcauchy(scale=1.5).cdf),
    (Prior("exponential", lam=4.0), stats.expon(scale=0.25).cdf),
]


@pytest.mark.parametrize(("prior", "cdf"), FAMILY_CASES, ids=[c[0].family for c in FAMILY_CASES])
def test_family_draws_follow_the_distribution(prior, cdf):
    draws = draw_prior(prior, N, np.random.default_rng(5))
    assert draws.shape == (N,)
    assert stats.kstest(draws, cdf).pvalue > P_MIN


def test_a_wrong_scale_is_detected():
    """The KS check above has power: a 15% scale error is rejected."""
    draws = draw_prior(Prior("normal", mu=0.0, sigma=1.15), N, np.random.default_rng(5))
    assert stats.kstest(draws, stats.norm(0.0, 1.0).cdf).pvalue < P_MIN


def test_vector_of_priors_keeps_each_element_own_prior():
    priors = [Prior("normal", mu=100.0, sigma=1.0), Prior("half_normal", sigma=0.01)]
    draws = draw_priors(priors, 500, np.random.default_rng(1), ["a", "b"])
    assert draws.shape == (500, 2)
    assert abs(draws[:, 0].mean() - 100.0) < 0.3
    assert (draws[:, 1] >= 0).all() and draws[:, 1].max() < 0.06


def test_flat_and_lkj_priors_cannot_be_drawn_elementwise():
    with pytest.raises(PriorError, match=r"fixef\[Days\] has a flat \(improper\) prior"):
        draw_prior(Prior.flat(), 10, np.random.default_rng(0), "fixef[Days]")
    with pytest.raises(PriorError, match="cannot be drawn elementwise"):
        draw_prior(Prior("lkj", eta=2.0), 10, np.random.default_rng(0), "cor_g")


@pytest.mark.parametrize("q", [2, 3, 4])
@pytest.mark.parametrize("eta", [1.0, 2.5])
def test_lkj_correlations_have_the_beta_marginal(q, eta):
    """Every correlation r of an LKJ(eta) matrix of size q has (r + 1) / 2 ~ Beta(eta - 1 + q/2)."""
    raw = draw_lkj_raw(eta, q, N, np.random.default_rng(q * 10 + int(eta * 2)))
    chol = cholesky_from_raw(raw, q)
    corr = chol @ np.swapaxes(chol, 1, 2)
    np.testing.assert_allclose(np.diagonal(corr, axis1=1, axis2=2), 1.0, atol=1e-12)
    assert (np.linalg.eigvalsh(corr) > -1e-12).all()
    shape = eta - 1 + q / 2
    marginal = stats.beta(shape, shape, loc=-1.0, scale=2.0).cdf
    for i in range(q):
        for j in range(i):
            assert stats.kstest(corr[:, i, j], marginal).pvalue > P_MIN, (i, j)


def test_lkj_density_matches_the_determinant_power():
    """Joint check for q = 3: E[det R] under LKJ(eta) from the C-vine factorisation.

    For LKJ(eta), det(R) ~ product of (1 - cpc^2) over the C-vine, so
    E[det R] = prod_j E[1 - cpc_j^2] with cpc_j ~ 2 Beta(b_j, b_j) - 1, i.e.
    E[1 - cpc^2] = 4 E[B (1 - B)] = 2 b / (2 b + 1) for B ~ Beta(b, b).
    """
    q, eta = 3, 2.0
    raw = draw_lkj_raw(eta, q, 40_000, np.random.default_rng(9))
    chol = cholesky_from_raw(raw, q)
    det = np.prod(np.diagonal(chol, axis1=1, axis2=2), axis=1) ** 2
    expected = 1.0
    for j in range(q - 1):
        b = eta + (q - 2 - j) / 2
        expected *= (2 * b / (2 * b + 1)) ** (q - 1 - j)
    assert abs(det.mean() - expected) < 4 * det.std() / np.sqrt(det.size)
