"""The common currency of post-fit quantities: parameters as draws.

Every fit, Bayesian or frequentist, can express its parameters as ``S`` draws:
``S`` posterior draws for NUTS, ``S = 1`` (the estimate) for ML/REML/MAP. The
functions in ``hierlm.results`` (ICC, R², shrinkage, predictions, ...) are
written once over :class:`FitDraws` and so work on both kinds of fit; a
Bayesian fit gets a posterior, a frequentist fit its point value.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.design.blocks import Design

__all__ = ["FitDraws"]


@dataclass(frozen=True, eq=False)
class FitDraws:
    """Parameters of a fitted linear mixed model, as S draws.

    Attributes
    ----------
    beta : numpy.ndarray
        Fixed effects, shape (S, p), columns in ``design.fixed_names`` order.
    sigma : numpy.ndarray
        Residual standard deviation, shape (S,).
    covariances : tuple of numpy.ndarray
        One per random-effect block (``design.blocks`` order): the covariance
        matrix G_k of the block's coefficients, shape (S, q_k, q_k), on the
        response scale (not relative to sigma).
    effects : tuple of numpy.ndarray
        One per block: group effects b, shape (S, n_levels_k, q_k) (posterior
        draws, or conditional modes for ML/REML).
    design : Design
        The design the fit was made on.
    point : bool
        True when S = 1 holds point estimates (ML/REML/MAP), False for posterior draws.
    n_chains : int
        Number of chains the draws came from; draws are stored chain-major
        (all of chain 0, then chain 1, ...). 1 for point fits.
    family : Family or None
        The response family (:mod:`hierlm.families`); None for a Gaussian
        model. Families without a dispersion parameter have ``sigma`` = 1
        (lme4's ``sigma()`` of a binomial or Poisson fit).
    dispersion : numpy.ndarray or None
        Draws (S,) of a non-Gaussian family's dispersion (the negative
        binomial's ``theta``); None otherwise.
    effect_summary : EffectSummary or None
        Set when the fit keeps Rao-Blackwellised summaries of the group
        effects instead of their draws (:mod:`hierlm.bayes.effect_summary`):
        ``effects`` then makes each block's exact draws on first use, and
        ``ranef``/``coef`` and means of predictions use the summaries.
    """

    beta: np.ndarray
    sigma: np.ndarray
    covariances: tuple[np.ndarray, ...]
    effects: Sequence[np.ndarray]
    design: Design
    point: bool
    n_chains: int = 1
    family: Any = None
    dispersion: np.ndarray | None = None
    effect_summary: Any = None

    def __post_init__(self) -> None:
        draws = self.beta.shape[0]
        if self.n_chains < 1 or draws % self.n_chains:
            raise ValueError(f"{draws} draws cannot come from {self.n_chains} equal chains")
        if self.beta.ndim != 2 or self.beta.shape[1] != self.design.p:
            raise ValueError(f"beta must have shape (S, {self.design.p}), got {self.beta.shape}")
        if self.sigma.shape != (draws,):
            raise ValueError(f"sigma must have shape ({draws},), got {self.sigma.shape}")
        if len(self.covariances) != len(self.design.blocks) or len(self.effects) != len(self.design.blocks):
            raise ValueError("covariances and effects need one entry per random-effect block")
        for block, cov in zip(self.design.blocks, self.covariances, strict=True):
            if cov.shape != (draws, block.q, block.q):
                raise ValueError(f"covariance of {block.term} must be ({draws}, {block.q}, {block.q})")
        if self.effect_summary is not None:  # draws made on demand: not formed to be checked
            return
        for block, eff in zip(self.design.blocks, self.effects, strict=True):
            if eff.shape != (draws, block.n_levels, block.q):
                raise ValueError(
                    f"effects of {block.term} must be ({draws}, {block.n_levels}, {block.q})")

    @property
    def is_gaussian(self) -> bool:
        """True for a Gaussian model (``family`` None or Gaussian)."""
        return self.family is None or getattr(self.family, "name", "gaussian") == "gaussian"

    @property
    def n_draws(self) -> int:
        """Number of draws S."""
        return int(self.beta.shape[0])

    def effect_means(self) -> tuple[np.ndarray, ...]:
        """Per block, the group effects' means over draws (levels, q) (the summaries' if kept)."""
        summary = self.effect_summary
        if summary is not None:
            return tuple(np.asarray(summary.mean[:, summary.block_columns(k)])
                         for k in range(len(self.design.blocks)))
        return tuple(np.asarray(e).mean(axis=0) for e in self.effects)

    def linear_predictor(self, design: Design | None = None, include_random: bool = True) -> np.ndarray:
        """Mean of the response for each draw and row: X beta (+ Z b), shape (S, n).

        Rows whose grouping level is unknown (code -1 in a new design) get no
        group effect from that block (the population prediction).
        """
        return _linear_predictor(self.beta, self.effects, self.design if design is None else design,
                                 include_random)

    def mean_linear_predictor(self, design: Design | None = None,
                              include_random: bool = True) -> np.ndarray:
        """The mean over draws of :meth:`linear_predictor`, shape (n,), without forming (S, n).

        The linear predictor is linear in (beta, b), so its mean over draws is
        the linear predictor at the mean parameters.
        """
        beta = self.beta.mean(axis=0, keepdims=True)
        effects = tuple(e[None] for e in self.effect_means())
        target = self.design if design is None else design
        return _linear_predictor(beta, effects, target, include_random)[0]

    def __repr__(self) -> str:
        kind = "point estimates" if self.point else f"{self.n_draws} draws from {self.n_chains} chain(s)"
        return (f"<FitDraws: {kind}; {self.design.p} fixed effects, "
                f"{len(self.design.blocks)} random-effect block(s), {self.design.n} rows>")

    def _repr_html_(self) -> str:
        """A one-line HTML description (the arrays are the attributes)."""
        return f"<p><code>{html.escape(repr(self))}</code></p>"


def _linear_predictor(beta: np.ndarray, effects: Sequence[np.ndarray], design: Design,
                      include_random: bool) -> np.ndarray:
    """X beta (+ Z b) per draw for (S, p) ``beta`` and per-block (S, levels, q) ``effects``."""
    mean = beta @ np.asarray(design.X, dtype=float).T
    offset = getattr(design, "offset", None)
    if offset is not None and np.size(offset) == design.n:
        mean = mean + np.asarray(offset, dtype=float)[None, :]
    if include_random:
        for block, block_effects in zip(design.blocks, effects, strict=True):
            known = block.codes >= 0
            codes = np.where(known, block.codes, 0)
            contribution = np.einsum("snq,nq->sn", block_effects[:, codes, :], block.z)
            mean += contribution * known[None, :]
    return np.asarray(mean)
