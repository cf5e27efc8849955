"""The common currency of post-fit quantities: parameters as draws.

Every fit, Bayesian or frequentist, can express its parameters as ``S`` draws:
``S`` posterior draws for NUTS, ``S = 1`` (the estimate) for ML/REML/MAP. The
functions in ``hierlm.results`` (ICC, R², shrinkage, predictions, ...) are
written once over :class:`FitDraws` and so work on both kinds of fit; a
Bayesian fit gets a posterior, a frequentist fit its point value.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    beta: np.ndarray
    sigma: np.ndarray
    covariances: tuple[np.ndarray, ...]
    effects: tuple[np.ndarray, ...]
    design: Design
    point: bool
    n_chains: int = 1

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
        for block, cov, eff in zip(self.design.blocks, self.covariances, self.effects, strict=True):
            if cov.shape != (draws, block.q, block.q):
                raise ValueError(f"covariance of {block.term} must be ({draws}, {block.q}, {block.q})")
            if eff.shape != (draws, block.n_levels, block.q):
                raise ValueError(
                    f"effects of {block.term} must be ({draws}, {block.n_levels}, {block.q})")

    @property
    def n_draws(self) -> int:
        """Number of draws S."""
        return int(self.beta.shape[0])

    def linear_predictor(self, design: Design | None = None, include_random: bool = True) -> np.ndarray:
        """Mean of the response for each draw and row: X beta (+ Z b), shape (S, n).

        Rows whose grouping level is unknown (code -1 in a new design) get no
        group effect from that block (the population prediction).
        """
        target = self.design if design is None else design
        mean = self.beta @ target.X.T
        if include_random:
            for block, effects in zip(target.blocks, self.effects, strict=True):
                known = block.codes >= 0
                codes = np.where(known, block.codes, 0)
                contribution = np.einsum("snq,nq->sn", effects[:, codes, :], block.z)
                mean += contribution * known[None, :]
        return np.asarray(mean)
