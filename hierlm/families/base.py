"""The Family base class and the default prior scales a family hands to the Bayesian engine.

A family is one object holding everything that depends on the response
distribution: its link, variance function, unit deviance, exact pointwise
log-likelihood, response checks, the latent-scale variance used by
Nakagawa-Schielzeth R² and ICC, and the default prior scales. Engines ask the
object; they never branch on the family's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.errors import FamilyError
from hierlm.families.links import Link, get_link

__all__ = ["Family", "PriorScales", "LATENT_METHODS"]

#: Approximations of the distribution-specific variance of count families (Nakagawa et al. 2017).
LATENT_METHODS = ("lognormal", "delta", "trigamma")


@dataclass(frozen=True)
class PriorScales:
    """Default weakly-informative prior scales of a family, in rstanarm's spirit.

    All scales are on the link scale. With ``response_scaled`` (Gaussian
    models) every scale is multiplied by the standard deviation of the
    response, as rstanarm's ``autoscale = TRUE`` does.

    Attributes
    ----------
    intercept : float
        ``Normal(0, intercept)`` on the intercept at centred predictors.
    coefficients : float
        ``Normal(0, coefficients / sd(x_j))`` on the slope of predictor ``x_j``
        (the scale of a standardised predictor is ``coefficients``).
    group_sd : float
        Scale of the prior on each random-effect standard deviation
        (rstanarm's ``decov(scale = 1)``; ``Exponential(1 / group_sd)``).
    dispersion : float
        ``Exponential(1 / dispersion)`` on the dispersion parameter
        (``sigma`` for Gaussian models, ``theta`` for NB2 as rstanarm's
        ``reciprocal_dispersion``); unused by families without one.
    response_scaled : bool
        Multiply all scales by ``sd(y)`` (Gaussian models only).
    """

    intercept: float = 2.5
    coefficients: float = 2.5
    group_sd: float = 1.0
    dispersion: float = 1.0
    response_scaled: bool = False


class Family:
    """A response distribution with a link: the one object engines consult about the likelihood.

    Parameters
    ----------
    link : str or Link, optional
        One of ``allowed_links``; ``default_link`` when omitted.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"binomial"``.
    link : Link
        The link object.
    allowed_links : tuple of str
        Links this family accepts.
    default_link : str
        The canonical (or customary) link.
    has_dispersion : bool
        Whether the family has a dispersion parameter to estimate.
    dispersion_name : str or None
        Its name in tables: ``"sigma"`` (Gaussian), ``"theta"`` (NB2).
    default_prior_scales : PriorScales
        Default prior scales for Bayesian fits (:class:`PriorScales`).
    supports_reml : bool
        REML is defined (Gaussian identity only).
    """

    name: str = ""
    allowed_links: tuple[str, ...] = ()
    default_link: str = ""
    has_dispersion: bool = False
    dispersion_name: str | None = None
    default_prior_scales: PriorScales = PriorScales()
    supports_reml: bool = False

    def __init__(self, link: str | Link | None = None) -> None:
        chosen = get_link(self.default_link if link is None else link)
        if chosen.name not in self.allowed_links:
            raise FamilyError(
                f"The {self.name} family has no {chosen.name!r} link; choose one of "
                f"{', '.join(self.allowed_links)}.")
        self.link: Link = chosen

    # --- the distribution -------------------------------------------------------------
    def variance(self, mu: np.ndarray, dispersion: float | None = None) -> np.ndarray:
        """Variance function ``V(mu)`` (Var(y) = phi V(mu) / weight; for NB2 it includes theta)."""
        raise NotImplementedError

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray,
                      dispersion: float | None = None) -> np.ndarray:
        """Unit deviance ``d(y, mu)`` per observation (weights not applied)."""
        raise NotImplementedError

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None,
                       dispersion: float | None = None) -> np.ndarray:
        """Pointwise log-likelihood with every normalising constant (sums to R's ``logLik``).

        Parameters
        ----------
        y : array
            Response as stored in the design (a proportion for binomial models).
        mu : array
            Mean on the response scale.
        weights : array, optional
            Prior weights (binomial: trials). Ones when omitted.
        dispersion : float, optional
            ``sigma`` (Gaussian) or ``theta`` (NB2).
        """
        raise NotImplementedError

    def check_response(self, y: np.ndarray, weights: np.ndarray | None = None,
                       name: str = "the response") -> tuple[np.ndarray, np.ndarray]:
        """Check the response (and weights) for this family; return float arrays ``(y, weights)``.

        Raises
        ------
        DataError
            Naming ``name`` and the first offending row position.
        """
        raise NotImplementedError

    def latent_variance(self, mu: float | np.ndarray, dispersion: float | None = None,
                        method: str = "lognormal") -> float | np.ndarray:
        """Distribution-specific variance on the latent (link) scale (Nakagawa et al. 2017).

        Parameters
        ----------
        mu : float or array
            Mean on the response scale (count families: the expected count,
            Nakagawa's lambda); ignored by binomial and Gaussian families.
        dispersion : float, optional
            ``sigma`` (Gaussian) or ``theta`` (NB2).
        method : {"lognormal", "delta", "trigamma"}
            Approximation for count families; binomial and Gaussian ignore it.
        """
        raise NotImplementedError

    def initial_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Starting means for iterative fitting (R's family ``initialize``)."""
        return np.asarray(y, dtype=float).copy()

    def mu_valid(self, mu: np.ndarray) -> bool:
        """Whether every mean lies in the family's range."""
        return bool(np.all(np.isfinite(mu)))

    # --- derived quantities every engine shares -----------------------------------------
    def working_weights(self, eta: np.ndarray, weights: np.ndarray,
                        dispersion: float | None = None) -> np.ndarray:
        """IRLS weights ``w (d mu / d eta)^2 / V(mu)``."""
        mu = self.link.inverse(eta)
        d = self.link.mu_eta(eta)
        return weights * d * d / self.variance(mu, dispersion)

    def laplace_weights(self, y: np.ndarray, eta: np.ndarray, weights: np.ndarray,
                        dispersion: float | None = None) -> np.ndarray:
        """Weights of the Laplace approximation's log-determinant ``log|A'WA + I|``.

        The Fisher (IRLS) weights by default, as lme4's glmer (equal to the
        observed information for canonical links: logit, Poisson log).
        """
        return self.working_weights(eta, weights, dispersion)

    def deviance_residuals(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray,
                           dispersion: float | None = None) -> np.ndarray:
        """``sign(y - mu) sqrt(w d(y, mu))``."""
        dev = np.maximum(weights * self.unit_deviance(y, mu, dispersion), 0.0)
        return np.sign(y - mu) * np.sqrt(dev)

    def pearson_residuals(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray,
                          dispersion: float | None = None) -> np.ndarray:
        """``(y - mu) sqrt(w / V(mu))``."""
        return (y - mu) * np.sqrt(weights / self.variance(mu, dispersion))

    # --- identity -----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Family) and other.name == self.name
                and other.link.name == self.link.name)

    def __hash__(self) -> int:
        return hash((self.name, self.link.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link.name!r})"

    def describe(self) -> str:
        """``"binomial (logit)"``, as summaries print it."""
        return f"{self.name} ({self.link.name})"
