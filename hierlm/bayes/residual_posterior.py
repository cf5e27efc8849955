"""Per-draw quantities of a fit with a residual structure: effects, replicates, group log densities.

Everything here is computed draw by draw from the stored parameters with
:class:`hierlm.bayes.residual_likelihood.ResidualLikelihood`:

* the group effects, drawn exactly from their conditional given the data and
  the structured residual covariance;
* the replicated responses ``y_rep = X beta + Z b + e`` with
  ``e_i ~ N(0, sigma^2 M_i S_i M_i)`` (correlated within a group);
* the joint log density of each residual group's observations, the group
  effects integrated out. With correlated residuals the observations of a
  group are not conditionally independent, so this per-group density is the
  fit's pointwise log-likelihood (LOO and WAIC leave out one group; the
  ``log_likelihood`` group's attribute ``unit`` says so).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.conditional import covariance_cholesky
from hierlm.bayes.naming import FIXEF, SIGMA
from hierlm.bayes.residual_likelihood import ResidualLikelihood
from hierlm.bayes.residual_marginal import residual_values_of_draws

__all__ = ["RESIDUAL_UNIT_DIM", "unit_note", "unit_note_of", "ResidualDraws"]

#: Dimension of the per-group log-likelihood (one value per residual group).
RESIDUAL_UNIT_DIM = "residual_group"


def unit_note(built: BuiltModel) -> str:
    """What one pointwise log-likelihood value is, for the DataTree and the LOO output."""
    residual = built.design.residual
    assert residual is not None
    return unit_note_of(residual)


def unit_note_of(residual: Any) -> str:
    """:func:`unit_note` of a residual design."""
    return (f"the joint log density of each {residual.spec.group}'s observations (group effects "
            f"integrated out): residual={residual.spec.text!r} correlates them, so LOO and WAIC "
            f"leave out one {residual.spec.group} at a time")


class ResidualDraws:
    """The parameters of every posterior draw in the likelihood's terms.

    Parameters
    ----------
    built : BuiltModel
        The sampled marginal model (with ``design.residual``).
    draws : dict of str to ndarray
        Stored variables with (chain, draw) leading axes.
    """

    def __init__(self, built: BuiltModel, draws: dict[str, np.ndarray]) -> None:
        design = built.design
        assert design.residual is not None
        self.likelihood = ResidualLikelihood(design)
        self.design = design
        fixef = np.asarray(draws[FIXEF])
        self.n_chains = fixef.shape[0]
        self.beta = fixef.reshape(-1, fixef.shape[-1])
        self.sigma = np.asarray(draws[SIGMA]).reshape(-1)
        n = self.sigma.size
        self.templates: list[np.ndarray] = []
        for bn in built.names:
            sd = np.asarray(draws[bn.sd]).reshape(n, -1)
            corr = (np.asarray(draws[bn.corr_chol]).reshape(n, bn.block.q, bn.block.q)
                    if bn.corr_chol in draws else None)
            self.templates.append(covariance_cholesky(sd, corr) / self.sigma[:, None, None])
        self.s, self.levels = residual_values_of_draws(design.residual, draws)

    @property
    def n_draws(self) -> int:
        """Number of pooled draws."""
        return int(self.sigma.size)

    def _templates(self, k: int) -> list[np.ndarray]:
        return [t[k] for t in self.templates]

    def effects(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Per block, the group effects of every draw: (S, levels, q)."""
        out = [np.zeros((self.n_draws, b.n_levels, b.q)) for b in self.design.blocks]
        for k in range(self.n_draws):
            drawn = self.likelihood.draw_effects(self.beta[k], float(self.sigma[k]),
                                                 self._templates(k), self.s[k], self.levels[k], rng)
            for b, values in enumerate(drawn):
                out[b][k] = values
        return out

    def group_logdensity(self) -> np.ndarray:
        """The joint log density of each residual group per draw: (S, groups)."""
        return np.array([self.likelihood.group_logdensity(self.beta[k], float(self.sigma[k]),
                                                          self._templates(k), self.s[k],
                                                          self.levels[k])
                         for k in range(self.n_draws)])

    def replicates(self, effects: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """One replicated response per draw (S, n): the draw's mean plus correlated residuals."""
        design = self.design
        x = np.asarray(design.X, dtype=float)
        out = self.beta @ x.T
        for block, values in zip(design.blocks, effects, strict=True):
            z = np.asarray(block.z, dtype=float)
            out += np.einsum("nq,snq->sn", z, values[:, block.codes, :])
        for batch in self.likelihood.batches:
            slots = batch.slots
            k_groups, m = slots.shape
            for k in range(self.n_draws):
                cov = self.s[k][slots[:, :, None], slots[:, None, :]]
                if batch.levels is not None:
                    ratio = self.levels[k][batch.levels]
                    cov = cov * ratio[:, :, None] * ratio[:, None, :]
                root = np.linalg.cholesky(cov)
                noise = np.einsum("kmn,kn->km", root, rng.standard_normal((k_groups, m)))
                out[k, batch.rows] += self.sigma[k] * noise
        return out
