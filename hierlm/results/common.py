"""Small helpers shared by the modules of ``hierlm.results``.

They turn what a user passes (a fit or a :class:`~hierlm.results.draws.FitDraws`)
into draws, label the random-effect blocks the way lme4 labels them, and
compute the variance pieces that ICC and R² are made of:

* the variance of the fixed part, ``var(X beta)`` over the rows of the design,
  per draw, with divisor ``n - 1`` (R's ``var``, which Nakagawa & Schielzeth
  2013 and the ``performance`` package use);
* the variance a random-effect block adds to one row, ``z_i' G z_i``, and its
  mean over the rows of the design, ``mean_i z_i' G z_i`` (Johnson 2014;
  Nakagawa, Johnson & Schielzeth 2017). For a random intercept ``z_i = 1`` and
  this is just the intercept variance ``tau^2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hierlm.design.blocks import Design, RandomBlock
from hierlm.errors import ColumnNotFoundError, InputTypeError
from hierlm.results.draws import FitDraws

__all__ = [
    "as_draws",
    "chains_of",
    "block_labels",
    "fixed_variance",
    "row_random_variance",
    "mean_random_variance",
    "random_variance_at",
    "residual_variance",
    "observation_level_blocks",
]


def as_draws(fit: Any) -> FitDraws:
    """Return the :class:`FitDraws` of a fit, or ``fit`` itself if it already is one.

    Parameters
    ----------
    fit : FitDraws or fit result
        Draws, or a fit result with a ``draws()`` method.

    Returns
    -------
    FitDraws

    Raises
    ------
    InputTypeError
        If ``fit`` is neither.
    """
    if isinstance(fit, FitDraws):
        return fit
    method = getattr(fit, "draws", None)
    if callable(method):
        draws = method()
        if isinstance(draws, FitDraws):
            return draws
    raise InputTypeError(
        f"Expected a hierlm fit or FitDraws, got {type(fit).__name__}; fit a model first "
        "(Model(...).fit()) and pass the result."
    )


def chains_of(draws: FitDraws) -> int:
    """Number of chains the draws came from (1 for point fits or when unknown)."""
    chains = int(getattr(draws, "n_chains", 1) or 1)
    return chains if chains >= 1 and draws.n_draws % chains == 0 else 1


def block_labels(design: Design) -> list[str]:
    """Label every block like lme4's ``VarCorr`` does; see :meth:`Design.block_labels`."""
    return design.block_labels()


def fixed_variance(draws: FitDraws, design: Design | None = None) -> np.ndarray:
    """Variance of the fixed part ``X beta`` over the rows, per draw (divisor n - 1).

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.
    design : Design, optional
        Rows to average over; the fit's own design when None.

    Returns
    -------
    numpy.ndarray
        Shape (S,).
    """
    target = draws.design if design is None else design
    X = np.asarray(target.X, dtype=float)
    if target.summary is not None:  # row-less: X'X of the square-root rows and the column sums
        n = target.n
        if n < 2:
            return np.zeros(draws.n_draws)
        mean = np.asarray(target.summary.x_sums, dtype=float) / n
        covariance = (X.T @ X - n * np.outer(mean, mean)) / (n - 1)
        return np.asarray(np.einsum("sp,pq,sq->s", draws.beta, covariance, draws.beta))
    if X.shape[0] < 2:
        return np.zeros(draws.n_draws)
    # centre the columns first: a constant column then contributes exactly 0
    centred = (X - X.mean(axis=0)) @ draws.beta.T
    return np.asarray((centred**2).sum(axis=0) / (X.shape[0] - 1))


def row_random_variance(covariance: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Variance ``z_i' G z_i`` one block adds to each row, per draw.

    Parameters
    ----------
    covariance : numpy.ndarray
        The block's covariance draws, shape (S, q, q).
    z : numpy.ndarray
        The block's columns for the rows of interest, shape (n, q).

    Returns
    -------
    numpy.ndarray
        Shape (S, n).
    """
    return np.einsum("nq,sqr,nr->sn", z, covariance, z)


def mean_random_variance(draws: FitDraws, design: Design | None = None) -> np.ndarray:
    """Design-averaged variance of each block, ``mean_i z_i' G_k z_i``, per draw.

    Uses ``mean_i z_i' G z_i = trace(G Z'Z) / n``, so the cost does not grow with S * n.

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.
    design : Design, optional
        Rows to average over; the fit's own design when None.

    Returns
    -------
    numpy.ndarray
        Shape (S, K), one column per random-effect block.
    """
    target = draws.design if design is None else design
    columns = []
    for block, covariance in zip(target.blocks, draws.covariances, strict=True):
        z = np.asarray(block.z, dtype=float)
        moment = z.T @ z / target.n  # square-root rows of a row-less design: the same Z'Z
        columns.append(np.einsum("sqr,rq->s", covariance, moment))
    if not columns:
        return np.zeros((draws.n_draws, 0))
    return np.column_stack(columns)


def observation_level_blocks(draws: FitDraws) -> np.ndarray:
    """Which blocks are observation-level random effects of a non-Gaussian fit.

    A block whose factor has one level per observation and whose only column
    is the intercept models overdispersion (Nakagawa, Johnson & Schielzeth
    2017, and insight's ``get_variance``): its variance belongs to the residual
    (additive dispersion) side of the latent-scale decompositions, not to the
    group variances. Always all False for Gaussian fits.

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.

    Returns
    -------
    numpy.ndarray
        Boolean, one entry per block.
    """
    design = draws.design
    if draws.is_gaussian or getattr(design, "rowless", False):
        return np.zeros(len(design.blocks), dtype=bool)
    return np.array([block.columns == ("Intercept",) and block.n_levels == design.n
                     and np.unique(block.codes).size == design.n for block in design.blocks],
                    dtype=bool)


def residual_variance(draws: FitDraws, method: str = "lognormal",
                      expected_count: np.ndarray | None = None) -> np.ndarray:
    """The residual variance of the variance decompositions (ICC, Nakagawa R²), per draw.

    Gaussian models: ``sigma^2``. Other families: the distribution-specific
    variance on the latent (link) scale of Nakagawa, Johnson & Schielzeth
    (2017, J. R. Soc. Interface 14: 20170213), from the family's
    ``latent_variance``: ``pi^2 / 3`` (logit), 1 (probit), ``pi^2 / 6``
    (cloglog) for binomial models; for counts a function of the expected
    count ``lambda = exp(mean_i(offset_i + x_i'beta) + sum_k v_k / 2)`` (the
    mean of the log-normal latent mean at the average fixed part, ``v_k``
    the design-averaged variance of block ``k``): ``log(1 + 1/lambda)``
    (``method="lognormal"``, their recommendation), ``1/lambda``
    (``"delta"``) or ``trigamma(lambda)``; NB2 adds ``1/theta``. Both
    engines call this one function. ``expected_count`` replaces that
    ``lambda`` (performance 0.10.2 / insight 0.19 take ``exp`` of the
    intercept of the null model, the model refitted with fixed part 1). The
    variance of observation-level random effects (see
    :func:`observation_level_blocks`) is added: they model overdispersion.

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.
    method : {"lognormal", "delta", "trigamma"}
        Approximation for count families.
    expected_count : numpy.ndarray, optional
        The expected count ``lambda`` per draw, shape (S,), for count families.

    Returns
    -------
    numpy.ndarray
        Shape (S,).
    """
    if draws.is_gaussian:
        return np.asarray(draws.sigma, dtype=float) ** 2
    family = draws.family
    fixed = draws.beta @ np.asarray(draws.design.X, dtype=float).mean(axis=0)
    offset = getattr(draws.design, "offset", None)
    if offset is not None and np.size(offset) == draws.design.n:
        fixed = fixed + float(np.mean(offset))
    random = mean_random_variance(draws)
    lam = np.exp(fixed + 0.5 * random.sum(axis=1))
    dispersion_re = random[:, observation_level_blocks(draws)].sum(axis=1)
    if expected_count is not None:
        lam = np.broadcast_to(np.asarray(expected_count, dtype=float), lam.shape)
    dispersion = draws.dispersion
    out = np.empty(draws.n_draws)
    for s in range(draws.n_draws):
        value = family.latent_variance(lam[s], None if dispersion is None else float(dispersion[s]),
                                       method=method)
        out[s] = float(np.asarray(value))
    return out + dispersion_re


def _z_at(block: RandomBlock, values: Mapping[str, float]) -> np.ndarray:
    """The block's column vector at given covariate values (Intercept is 1)."""
    z = np.empty(block.q)
    for index, column in enumerate(block.columns):
        if column == "Intercept":
            z[index] = 1.0
        elif column in values:
            z[index] = float(values[column])
        else:
            raise ColumnNotFoundError(
                f"at= gives no value for the random-effect column {column!r} of ({block.term}); "
                f"pass at={{{column!r}: value, ...}}."
            )
    return z


def random_variance_at(draws: FitDraws, values: Mapping[str, float]) -> np.ndarray:
    """Variance ``z' G_k z`` of each block at given values of its columns, per draw.

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.
    values : mapping
        Random-effect column name -> value, e.g. ``{"Days": 0}``. ``Intercept``
        is always 1; every other column of every block must be given.

    Returns
    -------
    numpy.ndarray
        Shape (S, K).

    Raises
    ------
    ColumnNotFoundError
        If a block column has no value.
    InputTypeError
        If ``values`` is not a mapping.
    """
    if not isinstance(values, Mapping):
        raise InputTypeError(f"at= must be a dict of column -> value, not {type(values).__name__}.")
    known = {c for block in draws.design.blocks for c in block.columns}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ColumnNotFoundError(
            f"at= names {unknown}, which are not random-effect columns; known columns: {sorted(known)}."
        )
    columns = [
        row_random_variance(covariance, _z_at(block, values)[None, :])[:, 0]
        for block, covariance in zip(draws.design.blocks, draws.covariances, strict=True)
    ]
    if not columns:
        return np.zeros((draws.n_draws, 0))
    return np.column_stack(columns)
