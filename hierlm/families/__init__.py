"""Response families and links: one object per family, one per link (numpy/scipy only).

Interface (what the engines use; nothing else branches on a family's name)
-------------------------------------------------------------------------
``get_family(name_or_object, link=None) -> Family``
    ``"gaussian"`` (identity), ``"binomial"`` (logit default; probit, cloglog),
    ``"poisson"`` (log), ``"negative_binomial"`` (NB2, log). Unknown names and
    impossible pairs raise :class:`~hierlm.errors.FamilyError` listing the
    allowed ones. ``FAMILIES`` is the registry (name -> class).

``Link`` (``family.link``)
    ``name``; ``link(mu)``; ``inverse(eta)`` (bounded: probabilities in
    ``[eps, 1 - eps]``, log-link means at least ``eps``); ``mu_eta(eta)`` =
    d mu / d eta (at least ``eps``); ``latent_variance`` (logit ``pi^2/3``,
    probit 1, cloglog ``pi^2/6``; None for identity/log).

``Family``
    ``name``, ``link``, ``allowed_links``, ``default_link``,
    ``has_dispersion``, ``dispersion_name`` (``"sigma"`` Gaussian, ``"theta"``
    NB2 with ``Var = mu + mu^2/theta``; None otherwise), ``supports_reml``
    (Gaussian only);
    ``variance(mu, dispersion=None)``; ``unit_deviance(y, mu, dispersion=None)``;
    ``log_likelihood(y, mu, weights=None, dispersion=None)``: pointwise and
    exact, constants included, so its sum is R's ``logLik`` (binomial:
    ``dbinom(round(w y), w, mu)``; Poisson/NB2: the density times the weight;
    Gaussian: ``N(mu, sigma^2 / w)``);
    ``check_response(y, weights=None, name=...) -> (y, weights)`` (float arrays,
    weights filled with ones; raises :class:`~hierlm.errors.DataError`);
    ``latent_variance(mu, dispersion=None, method="lognormal")``: the
    distribution-specific variance of Nakagawa, Johnson & Schielzeth (2017):
    binomial the link's constant, Gaussian ``sigma^2``, Poisson
    ``log(1 + 1/mu)`` ("lognormal", the default), ``1/mu`` ("delta") or
    ``trigamma(mu)``; NB2 ``log(1 + 1/mu + 1/theta)``, ``1/mu + 1/theta`` or
    ``trigamma(1 / (1/mu + 1/theta))``; ``mu`` is the expected count;
    ``initial_mu(y, weights)`` (R's ``initialize``), ``mu_valid(mu)``,
    ``working_weights(eta, weights, dispersion)``, ``deviance_residuals``,
    ``pearson_residuals``;
    ``default_prior_scales`` (:class:`PriorScales`): ``Normal(0, 2.5)`` on the
    intercept and on coefficients of standardised predictors (``2.5 / sd(x)``),
    on the link scale, as rstanarm's defaults; ``Exponential(1)`` on group SDs
    and on the dispersion; Gaussian models multiply every scale by ``sd(y)``
    (``response_scaled``).

Data conventions (see :mod:`hierlm.design.blocks`)
    ``Design.y`` is the response as the family reads it: for binomial a
    proportion, with the trials in ``Design.weights`` (``cbind(s, f)`` gives
    ``y = s/(s+f)``, weights ``s+f``). ``Design.weights`` (prior weights, ones
    by default) and ``Design.offset`` (zeros by default) are float arrays of
    length n; the linear predictor is ``eta = offset + X beta + Z b``.
"""

from hierlm.families.base import LATENT_METHODS, Family, PriorScales
from hierlm.families.distributions import Binomial, Gaussian, NegativeBinomial, Poisson
from hierlm.families.links import LINKS, Cloglog, Identity, Link, Log, Logit, Probit, get_link
from hierlm.families.registry import FAMILIES, get_family

__all__ = [
    "Family", "PriorScales", "LATENT_METHODS", "Gaussian", "Binomial", "Poisson",
    "NegativeBinomial", "Link", "Identity", "Log", "Logit", "Probit", "Cloglog", "LINKS",
    "get_link", "FAMILIES", "get_family",
]
