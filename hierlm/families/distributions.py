"""The response families: Gaussian, Binomial, Poisson and NegativeBinomial (NB2).

Conventions (lme4's): a binomial response is stored as a proportion with the
trials as prior weights (``cbind(s, f)`` gives ``y = s / (s + f)``, weights
``s + f``; a 0/1 response has unit weights). Poisson and NB2 weights multiply
the log-likelihood; Gaussian weights divide the residual variance
(``Var(y_i) = sigma^2 / w_i``). NB2 has ``Var(y) = mu + mu^2 / theta``.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special

from hierlm.errors import DataError, FamilyError, HierlmWarning
from hierlm.families.base import LATENT_METHODS, Family, PriorScales

__all__ = ["Gaussian", "Binomial", "Poisson", "NegativeBinomial"]

_EPS = float(np.finfo(float).eps)


def _first_bad(bad: np.ndarray) -> int:
    return int(np.argmax(bad))


def _weights_or_ones(y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    return np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)


def _require_counts(y: np.ndarray, family: str, name: str) -> None:
    negative = y < 0
    if negative.any():
        i = _first_bad(negative)
        raise DataError(f"{name} must be a count (0, 1, 2, ...) for a {family} model; it is "
                        f"negative in {int(negative.sum())} row(s) (first at position {i}: {y[i]:g}).")
    fractional = np.abs(y - np.round(y)) > 1e-8 * np.maximum(1.0, np.abs(y))
    if fractional.any():
        i = _first_bad(fractional)
        raise DataError(
            f"{name} must be whole counts for a {family} model; it has non-integer values in "
            f"{int(fractional.sum())} row(s) (first at position {i}: {y[i]:g}). Round it, or use "
            "family='gaussian' for a continuous response.")


def _check_latent_method(method: str) -> None:
    if method not in LATENT_METHODS:
        raise FamilyError(f"Unknown latent-variance method {method!r}; choose one of "
                          f"{', '.join(LATENT_METHODS)}.")


class Gaussian(Family):
    """Normal response; ``sigma`` is the residual SD at unit weight."""

    name = "gaussian"
    allowed_links = ("identity",)
    default_link = "identity"
    has_dispersion = True
    dispersion_name = "sigma"
    default_prior_scales = PriorScales(response_scaled=True)
    supports_reml = True

    def variance(self, mu: np.ndarray, dispersion: float | None = None) -> np.ndarray:
        """Variance function ``V(mu)``."""
        return np.ones_like(np.asarray(mu, dtype=float))

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray,
                      dispersion: float | None = None) -> np.ndarray:
        """Unit deviance ``d(y, mu)``."""
        return (np.asarray(y, dtype=float) - mu) ** 2

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None,
                       dispersion: float | None = None) -> np.ndarray:
        """Exact pointwise log-likelihood (see :meth:`Family.log_likelihood`)."""
        if dispersion is None:
            raise FamilyError("The Gaussian log-likelihood needs sigma (dispersion=).")
        y = np.asarray(y, dtype=float)
        w = _weights_or_ones(y, weights)
        s2 = float(dispersion) ** 2
        return 0.5 * (np.log(w) - np.log(2.0 * np.pi * s2)) - 0.5 * w * (y - mu) ** 2 / s2

    def check_response(self, y: np.ndarray, weights: np.ndarray | None = None,
                       name: str = "the response") -> tuple[np.ndarray, np.ndarray]:
        """Check the response for this family; return ``(y, weights)``."""
        y = np.asarray(y, dtype=float)
        w = _weights_or_ones(y, weights)
        if (w <= 0).any():
            i = _first_bad(w <= 0)
            raise DataError(f"Gaussian weights must be positive; {int((w <= 0).sum())} are not "
                            f"(first at position {i}: {w[i]:g}). Drop those rows instead.")
        return y, w

    def latent_variance(self, mu: float | np.ndarray, dispersion: float | None = None,
                        method: str = "lognormal") -> float | np.ndarray:
        """Distribution-specific latent variance (Nakagawa et al. 2017)."""
        if dispersion is None:
            raise FamilyError("The Gaussian residual variance needs sigma (dispersion=).")
        return float(dispersion) ** 2


class Binomial(Family):
    """Binary or binomial response: a proportion with trials as weights (logit, probit, cloglog)."""

    name = "binomial"
    allowed_links = ("logit", "probit", "cloglog")
    default_link = "logit"

    def variance(self, mu: np.ndarray, dispersion: float | None = None) -> np.ndarray:
        """Variance function ``V(mu)``."""
        mu = np.asarray(mu, dtype=float)
        return np.maximum(mu * (1.0 - mu), _EPS)

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray,
                      dispersion: float | None = None) -> np.ndarray:
        """Unit deviance ``d(y, mu)``."""
        y = np.asarray(y, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = special.xlogy(y, y / mu) + special.xlogy(1.0 - y, (1.0 - y) / (1.0 - mu))
        return 2.0 * out

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None,
                       dispersion: float | None = None) -> np.ndarray:
        """Exact pointwise log-likelihood (see :meth:`Family.log_likelihood`)."""
        y = np.asarray(y, dtype=float)
        n = _weights_or_ones(y, weights)
        k = np.round(n * y)
        size = np.round(n)
        return (special.gammaln(size + 1.0) - special.gammaln(k + 1.0)
                - special.gammaln(size - k + 1.0) + special.xlogy(k, mu)
                + special.xlog1py(size - k, -mu))

    def check_response(self, y: np.ndarray, weights: np.ndarray | None = None,
                       name: str = "the response") -> tuple[np.ndarray, np.ndarray]:
        """Check the response for this family; return ``(y, weights)``."""
        y = np.asarray(y, dtype=float)
        outside = (y < 0) | (y > 1)
        if outside.any():
            i = _first_bad(outside)
            raise DataError(
                f"{name} must lie in [0, 1] for a binomial model (0/1 outcomes or proportions); "
                f"{int(outside.sum())} row(s) are outside (first at position {i}: {y[i]:g}). For "
                "counts of successes write 'cbind(successes, failures) ~ ...'.")
        if weights is None:
            fractional = (y != 0) & (y != 1)
            if fractional.any():
                i = _first_bad(fractional)
                raise DataError(
                    f"{name} holds proportions (first at position {i}: {y[i]:g}) but no trials: "
                    "pass weights= the number of trials, or write 'cbind(successes, failures) ~ ...'.")
            return y, np.ones_like(y)
        w = np.asarray(weights, dtype=float)
        successes = w * y
        if (np.abs(successes - np.round(successes)) > 1e-7 * np.maximum(1.0, w)).any():
            warnings.warn(f"{name} times the weights (trials) is not a whole number of successes "
                          "in some rows; the binomial likelihood rounds them, as glmer does.",
                          HierlmWarning, stacklevel=3)
        return y, w

    def latent_variance(self, mu: float | np.ndarray, dispersion: float | None = None,
                        method: str = "lognormal") -> float | np.ndarray:
        """Distribution-specific latent variance (Nakagawa et al. 2017)."""
        value = self.link.latent_variance
        assert value is not None  # every binomial link has one
        return value

    def initial_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Starting means (R's ``initialize``)."""
        return (weights * y + 0.5) / (weights + 1.0)

    def mu_valid(self, mu: np.ndarray) -> bool:
        """Whether every mean lies in the family's range."""
        return bool(np.all(np.isfinite(mu) & (mu > 0) & (mu < 1)))


class _Counts(Family):
    """Shared checks and starting values of the count families."""

    allowed_links = ("log",)
    default_link = "log"

    def check_response(self, y: np.ndarray, weights: np.ndarray | None = None,
                       name: str = "the response") -> tuple[np.ndarray, np.ndarray]:
        """Check the response for this family; return ``(y, weights)``."""
        y = np.asarray(y, dtype=float)
        _require_counts(y, self.name.replace("_", " "), name)
        return y, _weights_or_ones(y, weights)

    def initial_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Starting means (R's ``initialize``)."""
        return np.asarray(y, dtype=float) + 0.1

    def mu_valid(self, mu: np.ndarray) -> bool:
        """Whether every mean lies in the family's range."""
        return bool(np.all(np.isfinite(mu) & (mu > 0)))


class Poisson(_Counts):
    """Counts with ``Var(y) = mu`` (log link)."""

    name = "poisson"

    def variance(self, mu: np.ndarray, dispersion: float | None = None) -> np.ndarray:
        """Variance function ``V(mu)``."""
        return np.asarray(mu, dtype=float)

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray,
                      dispersion: float | None = None) -> np.ndarray:
        """Unit deviance ``d(y, mu)``."""
        y = np.asarray(y, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2.0 * (special.xlogy(y, y / mu) - (y - mu))

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None,
                       dispersion: float | None = None) -> np.ndarray:
        """Exact pointwise log-likelihood (see :meth:`Family.log_likelihood`)."""
        y = np.asarray(y, dtype=float)
        w = _weights_or_ones(y, weights)
        return w * (special.xlogy(y, mu) - mu - special.gammaln(y + 1.0))

    def latent_variance(self, mu: float | np.ndarray, dispersion: float | None = None,
                        method: str = "lognormal") -> float | np.ndarray:
        """Distribution-specific latent variance (Nakagawa et al. 2017)."""
        _check_latent_method(method)
        mu = np.asarray(mu, dtype=float)
        if method == "lognormal":
            return np.log1p(1.0 / mu)
        if method == "delta":
            return 1.0 / mu
        return special.polygamma(1, mu)


class NegativeBinomial(_Counts):
    """NB2 counts: ``Var(y) = mu + mu^2 / theta`` (log link); ``theta`` is the dispersion."""

    name = "negative_binomial"
    has_dispersion = True
    dispersion_name = "theta"

    @staticmethod
    def _theta(dispersion: float | None) -> float:
        if dispersion is None or not dispersion > 0:
            raise FamilyError(f"The negative binomial needs theta > 0 (dispersion=); got {dispersion!r}.")
        return float(dispersion)

    def variance(self, mu: np.ndarray, dispersion: float | None = None) -> np.ndarray:
        """Variance function ``V(mu)``."""
        mu = np.asarray(mu, dtype=float)
        return mu + mu * mu / self._theta(dispersion)

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray,
                      dispersion: float | None = None) -> np.ndarray:
        """Unit deviance ``d(y, mu)``."""
        theta = self._theta(dispersion)
        y = np.asarray(y, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2.0 * (special.xlogy(y, y / mu)
                          - (y + theta) * np.log((y + theta) / (mu + theta)))

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None,
                       dispersion: float | None = None) -> np.ndarray:
        """Exact pointwise log-likelihood (see :meth:`Family.log_likelihood`)."""
        theta = self._theta(dispersion)
        y = np.asarray(y, dtype=float)
        w = _weights_or_ones(y, weights)
        return w * (special.gammaln(y + theta) - special.gammaln(theta) - special.gammaln(y + 1.0)
                    + theta * np.log(theta / (theta + mu)) + special.xlogy(y, mu / (theta + mu)))

    def laplace_weights(self, y: np.ndarray, eta: np.ndarray, weights: np.ndarray,
                        dispersion: float | None = None) -> np.ndarray:
        """The observed information ``w (y + theta) mu theta / (mu + theta)^2`` (log link).

        The log link is not canonical for NB2, so the exact Laplace
        approximation (glmmTMB's) uses the observed, not the expected, information.
        """
        theta = self._theta(dispersion)
        mu = self.link.inverse(eta)
        return weights * (np.asarray(y, dtype=float) + theta) * mu * theta / (mu + theta) ** 2

    def latent_variance(self, mu: float | np.ndarray, dispersion: float | None = None,
                        method: str = "lognormal") -> float | np.ndarray:
        """Distribution-specific latent variance (Nakagawa et al. 2017)."""
        _check_latent_method(method)
        theta = self._theta(dispersion)
        mu = np.asarray(mu, dtype=float)
        if method == "lognormal":
            return np.log1p(1.0 / mu + 1.0 / theta)
        if method == "delta":
            return 1.0 / mu + 1.0 / theta
        return special.polygamma(1, 1.0 / (1.0 / mu + 1.0 / theta))
