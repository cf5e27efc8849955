"""Exact forward draws from the priors of the Bayesian engine (NumPy, no PyMC).

Used by :func:`hierlm.bayes.prior_predictive.sample_prior_predictive` and as
the ``random`` function of the LKJ variable of the PyMC model, so that
``pymc.sample_prior_predictive`` works on the full formulation too.

LKJ draws use the C-vine construction of Lewandowski, Kurowicka and Joe
(2009, section 3.2): for a ``q x q`` correlation matrix with density
proportional to ``det(R)^(eta - 1)``, the canonical partial correlation of
variables ``i`` and ``j`` (``j < i``, 0-based) given variables ``0..j-1`` is
independent of the others, with ``(cpc + 1) / 2 ~ Beta(b_j, b_j)`` and
``b_j = eta + (q - 2 - j) / 2``. The Cholesky factor of ``R`` follows from the
partial correlations by the same map the sampler uses
(:func:`hierlm.bayes.parameters.lkj_corr_cholesky`); the sampler's free
variable is ``arctanh(cpc)``. Each single correlation is then marginally
``(r + 1) / 2 ~ Beta(eta - 1 + q / 2, eta - 1 + q / 2)``, which the tests check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hierlm.bayes.priors import Prior
from hierlm.core.correlation import cholesky_from_raw, lkj_pair_positions
from hierlm.errors import PriorError

__all__ = ["draw_prior", "draw_priors", "draw_lkj_raw", "cholesky_from_raw", "lkj_pair_positions"]


def draw_prior(prior: Prior, size: int, rng: np.random.Generator, parameter: str = "") -> np.ndarray:
    """Draw ``size`` values from one proper prior.

    Parameters
    ----------
    prior : Prior
        Any family except ``"flat"`` and ``"lkj"``.
    size : int
        Number of draws.
    rng : numpy.random.Generator
        Source of randomness.
    parameter : str
        Name of the parameter, for the error message.

    Returns
    -------
    ndarray
        Shape (size,).

    Raises
    ------
    PriorError
        For a flat prior (it has no draws) or an LKJ prior (use :func:`draw_lkj_raw`).
    """
    family, kw = prior.family, prior.kwargs
    if family == "normal":
        return rng.normal(kw["mu"], kw["sigma"], size)
    if family == "student_t":
        return kw["mu"] + kw["sigma"] * rng.standard_t(kw["nu"], size)
    if family == "half_normal":
        return np.abs(rng.normal(0.0, kw["sigma"], size))
    if family == "half_student_t":
        return kw["sigma"] * np.abs(rng.standard_t(kw["nu"], size))
    if family == "half_cauchy":
        return kw["sigma"] * np.abs(rng.standard_cauchy(size))
    if family == "exponential":
        return rng.exponential(1.0 / kw["lam"], size)
    if family == "flat":
        raise PriorError(
            f"{parameter or 'a parameter'} has a flat (improper) prior, which has no draws; "
            "give it a proper prior through Model(..., priors={...})"
        )
    raise PriorError(f"prior {prior} of {parameter or 'a parameter'} cannot be drawn elementwise")


def draw_priors(
    priors: Sequence[Prior], size: int, rng: np.random.Generator, parameters: Sequence[str]
) -> np.ndarray:
    """Draw a vector parameter whose elements have their own priors: shape (size, k)."""
    columns = [draw_prior(p, size, rng, name) for p, name in zip(priors, parameters, strict=True)]
    return np.stack(columns, axis=1) if columns else np.empty((size, 0))


def draw_lkj_raw(eta: float, q: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw the sampler's free LKJ variables ``arctanh(cpc)``: shape (size, q (q - 1) / 2).

    Parameters
    ----------
    eta : float
        LKJ shape (> 0).
    q : int
        Dimension of the correlation matrix.
    size : int
        Number of draws.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    ndarray
        Unconstrained values; :func:`cholesky_from_raw` maps them to Cholesky factors.
    """
    positions = lkj_pair_positions(q)
    out = np.empty((size, len(positions)))
    for k, (_, j) in enumerate(positions):
        shape = eta + (q - 2 - j) / 2.0
        cpc = 2.0 * rng.beta(shape, shape, size) - 1.0
        # beta draws can round to exactly 0 or 1; keep the map finite
        out[:, k] = np.arctanh(np.clip(cpc, -1 + 1e-15, 1 - 1e-15))
    return out
