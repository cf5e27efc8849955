"""Families and links against scipy's densities and the textbook formulas (table-driven)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

import hierlm.families as hf
from hierlm.errors import DataError, FamilyError

ETA = np.linspace(-6.0, 6.0, 25)

# (link, inverse written out independently)
LINKS = [
    ("identity", lambda e: e),
    ("log", np.exp),
    ("logit", special.expit),
    ("probit", stats.norm.cdf),
    ("cloglog", lambda e: 1.0 - np.exp(-np.exp(e))),
]


@pytest.mark.parametrize(("name", "inverse"), LINKS)
def test_link_inverse_and_derivative(name: str, inverse) -> None:
    link = hf.get_link(name)
    np.testing.assert_allclose(link.inverse(ETA), inverse(ETA), rtol=1e-12, atol=1e-15)
    inner = ETA[(ETA >= -4) & (ETA <= 3)]  # beyond, 1 - mu keeps too few digits for a round trip
    np.testing.assert_allclose(link.link(link.inverse(inner)), inner, rtol=1e-9, atol=1e-9)
    step = 1e-6  # central difference of the inverse
    numeric = (inverse(ETA + step) - inverse(ETA - step)) / (2 * step)
    # atol: the differences lose digits where mu is next to 1
    np.testing.assert_allclose(link.mu_eta(ETA), numeric, rtol=1e-6, atol=1e-9)


def test_links_stay_inside_the_mean_range() -> None:
    eps = np.finfo(float).eps
    for name in ("logit", "probit", "cloglog"):
        mu = hf.get_link(name).inverse(np.array([-800.0, 800.0]))
        assert eps <= mu[0] and mu[1] <= 1 - eps
        assert np.all(hf.get_link(name).mu_eta(np.array([-800.0, 800.0])) >= eps)


Y = np.array([0.0, 1.0, 2.0, 5.0, 11.0])
MU = np.array([0.7, 1.3, 2.5, 4.0, 9.0])


def _binomial_ll() -> tuple[np.ndarray, np.ndarray]:
    trials = np.array([3.0, 4.0, 1.0, 10.0, 6.0])
    successes = np.array([0.0, 4.0, 1.0, 3.0, 2.0])
    p = np.array([0.2, 0.6, 0.9, 0.35, 0.5])
    return (hf.Binomial().log_likelihood(successes / trials, p, trials),
            stats.binom.logpmf(successes, trials, p))


# (family, ours, scipy's)
LOGLIK = [
    ("poisson", lambda: hf.Poisson().log_likelihood(Y, MU), lambda: stats.poisson.logpmf(Y, MU)),
    ("nb2", lambda: hf.NegativeBinomial().log_likelihood(Y, MU, dispersion=2.5),
     lambda: stats.nbinom.logpmf(Y, 2.5, 2.5 / (2.5 + MU))),
    ("gaussian weighted", lambda: hf.Gaussian().log_likelihood(Y, MU, np.full(5, 4.0), 1.5),
     lambda: stats.norm.logpdf(Y, MU, 1.5 / 2.0)),
    ("binomial", lambda: _binomial_ll()[0], lambda: _binomial_ll()[1]),
]


@pytest.mark.parametrize(("name", "ours", "reference"), LOGLIK, ids=[row[0] for row in LOGLIK])
def test_log_likelihood_matches_scipy(name: str, ours, reference) -> None:
    np.testing.assert_allclose(ours(), reference(), rtol=1e-12)


@pytest.mark.parametrize("family", [hf.Poisson(), hf.NegativeBinomial(), hf.Binomial()])
def test_unit_deviance_is_twice_the_saturated_gap(family: hf.Family) -> None:
    """d(y, mu) = 2 (l(y; y) - l(y; mu)) for every family without a dispersion in the constant."""
    if family.name == "binomial":
        y, mu, w = np.array([0.0, 0.25, 1.0]), np.array([0.3, 0.4, 0.8]), np.array([2.0, 4.0, 5.0])
    else:
        y, mu, w = Y, MU, np.ones_like(Y)
    theta = 2.5 if family.has_dispersion else None
    saturated = family.log_likelihood(y, np.clip(y, 1e-300, None) if family.name != "binomial"
                                      else np.clip(y, 1e-300, 1 - 1e-16), w, theta)
    gap = 2.0 * (saturated - family.log_likelihood(y, mu, w, theta))
    np.testing.assert_allclose(w * family.unit_deviance(y, mu, theta), gap, rtol=1e-8, atol=1e-10)


def test_variance_functions() -> None:
    mu = np.array([0.2, 0.5])
    np.testing.assert_allclose(hf.Binomial().variance(mu), mu * (1 - mu))
    np.testing.assert_allclose(hf.Poisson().variance(MU), MU)
    np.testing.assert_allclose(hf.NegativeBinomial().variance(MU, 2.0), MU + MU ** 2 / 2.0)


def test_latent_variances() -> None:
    assert hf.get_family("binomial").latent_variance(0.3) == pytest.approx(np.pi ** 2 / 3)
    assert hf.get_family("binomial", "probit").latent_variance(0.3) == 1.0
    assert hf.get_family("binomial", "cloglog").latent_variance(0.3) == pytest.approx(np.pi ** 2 / 6)
    assert hf.Poisson().latent_variance(2.0) == pytest.approx(np.log(1.5))
    assert hf.Poisson().latent_variance(2.0, method="delta") == pytest.approx(0.5)
    assert hf.Poisson().latent_variance(2.0, method="trigamma") == pytest.approx(special.polygamma(1, 2.0))
    assert hf.NegativeBinomial().latent_variance(2.0, 4.0) == pytest.approx(np.log(1 + 0.5 + 0.25))
    with pytest.raises(FamilyError, match="lognormal"):
        hf.Poisson().latent_variance(2.0, method="exact")


def test_registry_and_bad_pairs() -> None:
    assert hf.get_family("binomial") == hf.Binomial("logit")
    assert hf.get_family(hf.Binomial(), "probit").link.name == "probit"
    with pytest.raises(FamilyError, match="logit, probit, cloglog"):
        hf.get_family("binomial", "log")
    with pytest.raises(FamilyError, match="log"):
        hf.get_family("poisson", "logit")
    with pytest.raises(FamilyError, match="gaussian, binomial, poisson, negative_binomial"):
        hf.get_family("gamma")


def test_response_checks_name_the_culprit() -> None:
    with pytest.raises(DataError, match=r"'y'.*\[0, 1\].*position 1: 1.5"):
        hf.Binomial().check_response(np.array([0.0, 1.5]), name="'y'")
    with pytest.raises(DataError, match="weights= the number of trials"):
        hf.Binomial().check_response(np.array([0.0, 0.5]), name="'y'")
    with pytest.raises(DataError, match="whole counts.*position 2: 2.5"):
        hf.Poisson().check_response(np.array([0.0, 1.0, 2.5]), name="'count'")
    with pytest.raises(DataError, match="negative"):
        hf.NegativeBinomial().check_response(np.array([0.0, -1.0]), name="'count'")
    with pytest.raises(DataError, match="positive"):
        hf.Gaussian().check_response(np.array([1.0, 2.0]), np.array([1.0, 0.0]))
    y, w = hf.Binomial().check_response(np.array([0.25, 1.0]), np.array([4.0, 2.0]))
    np.testing.assert_array_equal(w, [4.0, 2.0])


def test_default_prior_scales() -> None:
    assert hf.Binomial().default_prior_scales.coefficients == 2.5
    assert hf.Gaussian().default_prior_scales.response_scaled
    assert not hf.Poisson().default_prior_scales.response_scaled


def test_laplace_weights_are_the_observed_information() -> None:
    """-d^2 log p / d eta^2 by differences: NB2's differs from its Fisher weights, Poisson's not."""
    eta, step = np.log(MU), 1e-4
    for family, theta in ((hf.NegativeBinomial(), 2.5), (hf.Poisson(), None)):
        def ll(e: np.ndarray, family: hf.Family = family, theta: float | None = theta) -> np.ndarray:
            return family.log_likelihood(Y, np.exp(e), None, theta)

        observed = -(ll(eta + step) - 2 * ll(eta) + ll(eta - step)) / step ** 2
        np.testing.assert_allclose(family.laplace_weights(Y, eta, np.ones_like(Y), theta), observed,
                                   rtol=1e-5)
