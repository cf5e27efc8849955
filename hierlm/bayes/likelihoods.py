"""Observed-data likelihoods of the full formulation: one registry entry per family.

The full (non-centred) formulation builds the linear predictor
``eta = offset + X beta + Z b`` once for every family; what differs is the
observed node. Each entry of :data:`LIKELIHOODS` (keyed by the family's name,
:mod:`hierlm.families`) gives

* ``observed``: the PyMC distribution of the response given ``eta`` (link
  scale), the family and its dispersion parameter;
* ``dispersion``: whether the family has a dispersion parameter (its name in
  the posterior is the family's ``dispersion_name``: ``sigma`` for the
  Gaussian SD, ``theta`` for the negative binomial's size);
* ``replicate``: posterior predictive draws on the response scale (integer
  counts for the count families, successes for the binomial).

The pointwise log-likelihood (``idata["log_likelihood"]``, LOO, WAIC) is the
family's own ``log_likelihood`` (:func:`pointwise_log_likelihood`), the one
definition both engines share. The PyTensor inverse links are the table
:data:`PT_INVERSE_LINKS`, keyed by the link's name. A new family is one new
entry here, not a branch in the model builder, the posterior assembly and the
predictions.

Conventions of the response (those of ``glmer`` and :mod:`hierlm.families`):
a binomial response is the proportion of successes ``y`` with the trials as
prior weights; the likelihood is written on the successes ``round(y * n)``.
Gaussian prior weights ``w`` make the residual variance ``sigma^2 / w``;
Poisson and negative binomial weights multiply the log-density. The binomial
and Poisson log-densities include their normalising constants, as ``dbinom``
/ ``dpois`` and brms's ``log_lik`` do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.design.blocks import Design
from hierlm.errors import FitError
from hierlm.families import Family, get_family
from hierlm.results.ic import family_loglik

__all__ = [
    "ObservedData",
    "Likelihood",
    "LIKELIHOODS",
    "PT_INVERSE_LINKS",
    "likelihood_of",
    "observed_data",
    "family_of",
    "family_name",
    "link_name",
    "dispersion_name",
    "pointwise_log_likelihood",
]


@dataclass(frozen=True, eq=False)
class ObservedData:
    """What the observed node needs from the data, besides the linear predictor.

    Attributes
    ----------
    y : numpy.ndarray
        The response as the design stores it (a proportion for the binomial).
    weights : numpy.ndarray
        Prior weights (binomial: trials); ones when the design has none.
    offset : numpy.ndarray or None
        Offset added to the linear predictor (None when all zero).
    """

    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray | None = None

    @property
    def unit_weights(self) -> bool:
        """True when every prior weight is 1."""
        return bool(np.all(self.weights == 1.0))

    @property
    def successes(self) -> np.ndarray:
        """Binomial successes ``round(y * trials)`` as integers."""
        return np.rint(self.y * self.weights).astype(np.int64)


@dataclass(frozen=True)
class Likelihood:
    """One family's observed node and its replicates (see the module docstring).

    Attributes
    ----------
    family : str
        The family's name.
    dispersion : bool
        Whether the family has a dispersion parameter.
    integer : bool
        Whether replicated responses are integer counts.
    observed : callable
        ``(name, eta, family, dispersion, data, dims) -> pymc variable``,
        called inside a model context.
    replicate : callable
        ``(rng, data, mu, dispersion) -> ndarray`` of replicated responses
        (S, n) on the scale of ``design.y`` times the trials for the binomial
        (successes), ``mu`` (S, n) on the response scale, ``dispersion`` (S,)
        or None.
    """

    family: str
    dispersion: bool
    integer: bool
    observed: Callable[..., Any]
    replicate: Callable[[np.random.Generator, ObservedData, np.ndarray, np.ndarray | None], np.ndarray]


def _probit_inverse(eta: Any) -> Any:
    import pytensor.tensor as pt

    return 0.5 * pt.erfc(-eta / np.sqrt(2.0))


def _cloglog_inverse(eta: Any) -> Any:
    import pytensor.tensor as pt

    return -pt.expm1(-pt.exp(eta))


def _exp(eta: Any) -> Any:
    import pytensor.tensor as pt

    return pt.exp(eta)


def _sigmoid(eta: Any) -> Any:
    import pytensor.tensor as pt

    return pt.sigmoid(eta)


#: PyTensor inverse links by link name (the NumPy ones are the families' ``link.inverse``).
PT_INVERSE_LINKS: dict[str, Callable[[Any], Any]] = {
    "identity": lambda eta: eta,
    "log": _exp,
    "logit": _sigmoid,
    "probit": _probit_inverse,
    "cloglog": _cloglog_inverse,
}


def _pt_inverse(family: Family) -> Callable[[Any], Any]:
    name = family.link.name
    if name not in PT_INVERSE_LINKS:
        raise FitError(f"link={name!r} has no inverse in the Bayesian engine; "
                       f"use one of {', '.join(PT_INVERSE_LINKS)}")
    return PT_INVERSE_LINKS[name]


# ------------------------------------------------------------------ Gaussian
def _gaussian_observed(name: str, eta: Any, family: Family, dispersion: Any, data: ObservedData,
                       dims: str) -> Any:
    import pymc as pm

    sigma = dispersion if data.unit_weights else dispersion / np.sqrt(data.weights)
    return pm.Normal(name, mu=_pt_inverse(family)(eta), sigma=sigma, observed=data.y, dims=dims)


def _gaussian_replicate(rng: np.random.Generator, data: ObservedData, mu: np.ndarray,
                        dispersion: np.ndarray | None) -> np.ndarray:
    assert dispersion is not None
    scale = dispersion[:, None] / np.sqrt(data.weights)[None, :]
    return np.asarray(mu + scale * rng.standard_normal(mu.shape))


# ------------------------------------------------------------------ binomial
def _binomial_observed(name: str, eta: Any, family: Family, dispersion: Any, data: ObservedData,
                       dims: str) -> Any:
    import pymc as pm
    import pytensor.tensor as pt

    successes = data.successes
    bernoulli = data.unit_weights
    trials = np.rint(data.weights).astype(np.int64)
    if family.link.name == "logit":
        if bernoulli:
            return pm.Bernoulli(name, logit_p=eta, observed=successes, dims=dims)
        return pm.Binomial(name, n=trials, logit_p=eta, observed=successes, dims=dims)
    # keep p inside (0, 1) where the inverse link rounds to 0 or 1
    p = pt.clip(_pt_inverse(family)(eta), 1e-15, 1 - 1e-15)
    if bernoulli:
        return pm.Bernoulli(name, p=p, observed=successes, dims=dims)
    return pm.Binomial(name, n=trials, p=p, observed=successes, dims=dims)


def _binomial_replicate(rng: np.random.Generator, data: ObservedData, mu: np.ndarray,
                        dispersion: np.ndarray | None) -> np.ndarray:
    trials = np.broadcast_to(np.rint(data.weights).astype(np.int64), mu.shape)
    return np.asarray(rng.binomial(trials, np.clip(mu, 0.0, 1.0)))


# ------------------------------------------------------------------- Poisson
# NumPy's Poisson sampler refuses rates above about 9.2e18; a draw that far out is capped there
_LARGEST_RATE = 1e18

def _poisson_observed(name: str, eta: Any, family: Family, dispersion: Any, data: ObservedData,
                      dims: str) -> Any:
    import pymc as pm

    counts = data.y.astype(np.int64)
    if data.unit_weights:
        return pm.Poisson(name, mu=_pt_inverse(family)(eta), observed=counts, dims=dims)
    logp = data.weights * pm.logp(pm.Poisson.dist(mu=_pt_inverse(family)(eta)), counts)
    return pm.Potential(f"{name}_weighted", logp)


def _poisson_replicate(rng: np.random.Generator, data: ObservedData, mu: np.ndarray,
                       dispersion: np.ndarray | None) -> np.ndarray:
    return np.asarray(rng.poisson(np.minimum(mu, _LARGEST_RATE)))


# ---------------------------------------------------- negative binomial (NB2)
def _nb_observed(name: str, eta: Any, family: Family, dispersion: Any, data: ObservedData,
                 dims: str) -> Any:
    import pymc as pm

    counts = data.y.astype(np.int64)
    mu = _pt_inverse(family)(eta)
    if data.unit_weights:
        return pm.NegativeBinomial(name, mu=mu, alpha=dispersion, observed=counts, dims=dims)
    logp = data.weights * pm.logp(pm.NegativeBinomial.dist(mu=mu, alpha=dispersion), counts)
    return pm.Potential(f"{name}_weighted", logp)


def _nb_replicate(rng: np.random.Generator, data: ObservedData, mu: np.ndarray,
                  dispersion: np.ndarray | None) -> np.ndarray:
    assert dispersion is not None
    theta = np.broadcast_to(dispersion[:, None], mu.shape)
    # NB2 as a gamma-Poisson mixture: lambda ~ Gamma(shape theta, scale mu / theta)
    return np.asarray(rng.poisson(np.minimum(rng.gamma(theta, mu / theta), _LARGEST_RATE)))


LIKELIHOODS: dict[str, Likelihood] = {
    "gaussian": Likelihood("gaussian", True, False, _gaussian_observed, _gaussian_replicate),
    "binomial": Likelihood("binomial", False, True, _binomial_observed, _binomial_replicate),
    "poisson": Likelihood("poisson", False, True, _poisson_observed, _poisson_replicate),
    "negative_binomial": Likelihood("negative_binomial", True, True, _nb_observed, _nb_replicate),
}


def family_of(family: Any) -> Family:
    """The Family object of a name or object (``"gaussian"`` when None)."""
    return get_family("gaussian" if family is None else family)


def family_name(family: Any) -> str:
    """The name of a family given as a string or a Family."""
    return family_of(family).name


def link_name(family: Any) -> str:
    """The name of a family's link."""
    return family_of(family).link.name


def dispersion_name(family: Any) -> str | None:
    """Posterior name of a family's dispersion parameter (``sigma``, ``theta``), None if it has none."""
    fam = family_of(family)
    return fam.dispersion_name if likelihood_of(fam).dispersion else None


def likelihood_of(family: Any) -> Likelihood:
    """The registry entry of a family (a name or a Family).

    Raises
    ------
    FitError
        For a family the Bayesian engine has no likelihood for.
    """
    name = family_name(family)
    if name not in LIKELIHOODS:
        raise FitError(f"family={name!r} has no likelihood in the Bayesian engine; "
                       f"available: {', '.join(LIKELIHOODS)}")
    return LIKELIHOODS[name]


def _optional(design: Design, name: str) -> np.ndarray | None:
    value = getattr(design, name, None)
    if value is None:
        return None
    array = np.asarray(value, dtype=float)
    return array if array.size == design.n else None


def observed_data(design: Design) -> ObservedData:
    """The response, prior weights and offset of a design.

    Parameters
    ----------
    design : Design
        The model's design (``y``, ``weights`` and ``offset`` when it has them).

    Returns
    -------
    ObservedData
    """
    y = np.asarray(design.y, dtype=float)
    weights = _optional(design, "weights")
    offset = _optional(design, "offset")
    if offset is not None and not np.any(offset):
        offset = None
    return ObservedData(y, np.ones_like(y) if weights is None else weights, offset)


def pointwise_log_likelihood(family: Family, data: ObservedData, mu: np.ndarray,
                             dispersion: np.ndarray | None) -> np.ndarray:
    """Log-density (S, n) of every observation for every draw: the family's ``log_likelihood``.

    Parameters
    ----------
    family : Family
        The response family.
    data : ObservedData
        Response and prior weights.
    mu : numpy.ndarray
        Means on the response scale, (S, n).
    dispersion : numpy.ndarray or None
        Dispersion draws (S,), None for families without one.

    Returns
    -------
    numpy.ndarray
        Shape (S, n); see :func:`hierlm.results.ic.family_loglik`.
    """
    return family_loglik(family, data.y, data.weights, mu, dispersion)
