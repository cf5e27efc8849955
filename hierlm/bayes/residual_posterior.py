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

import hashlib
import weakref
from typing import Any

import numpy as np

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.conditional import covariance_cholesky
from hierlm.bayes.naming import FIXEF, SIGMA
from hierlm.bayes.residual_likelihood import ResidualLikelihood
from hierlm.bayes.residual_marginal import residual_values_of_draws

_LOG_2PI = float(np.log(2.0 * np.pi))

__all__ = ["RESIDUAL_UNIT_DIM", "unit_note", "unit_note_of", "ResidualDraws", "residual_draws"]

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


_CACHE: weakref.WeakKeyDictionary[BuiltModel, tuple[bytes, ResidualDraws]] = (
    weakref.WeakKeyDictionary())


def residual_draws(built: BuiltModel, draws: dict[str, np.ndarray]) -> ResidualDraws:
    """:class:`ResidualDraws` of a model's draws, built once per sample (it is read three times)."""
    key = hashlib.sha1(np.ascontiguousarray(draws[SIGMA]).tobytes()).digest()
    cached = _CACHE.get(built)
    if cached is not None and cached[0] == key:
        return cached[1]
    made = ResidualDraws(built, draws)
    _CACHE[built] = (key, made)
    return made


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

    def _w(self, batch: Any, part: slice, residual_only: bool = False) -> np.ndarray:
        """``W`` of every draw in ``part`` and group of a batch: (S_part, k or 1, m, m)."""
        slots = batch.slots[:1] if batch.shared else batch.slots
        w = self.s[part][:, slots[:, :, None], slots[:, None, :]]
        if batch.levels is not None:
            ratio = self.levels[part][:, batch.levels]  # (S, k, m)
            w = w * ratio[:, :, :, None] * ratio[:, :, None, :]
        if not residual_only:
            for z, t in zip(batch.z, self.templates, strict=True):
                zt = np.einsum("kmq,sqr->skmr", z, t[part])
                w = w + zt @ np.swapaxes(zt, 2, 3)
        return np.asarray(w)

    def _parts(self) -> list[slice]:
        step = max(1, 2_000_000 // max(self.design.n * 16, 1))
        return [slice(a, min(a + step, self.n_draws)) for a in range(0, self.n_draws, step)]

    def group_logdensity(self) -> np.ndarray:
        """The joint log density of each residual group per draw: (S, groups)."""
        out = np.zeros((self.n_draws, self.likelihood.n_groups))
        for part in self._parts():
            sigma = self.sigma[part]
            for batch in self.likelihood.batches:
                chol = np.linalg.cholesky(self._w(batch, part))  # (S, k or 1, m, m)
                resid = batch.y[None] - np.einsum("kmp,sp->skm", batch.x, self.beta[part])
                chol = np.broadcast_to(chol, resid.shape + resid.shape[-1:])
                solved = np.linalg.solve(chol, resid[..., None])[..., 0]
                logdet = 2.0 * np.log(np.diagonal(chol, axis1=2, axis2=3)).sum(axis=2)
                m = batch.rows.shape[1]
                out[part, batch.groups] = -0.5 * (
                    m * (_LOG_2PI + 2.0 * np.log(sigma))[:, None] + logdet
                    + np.sum(solved ** 2, axis=2) / sigma[:, None] ** 2)
        return out

    def replicates(self, effects: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """One replicated response per draw (S, n): the draw's mean plus correlated residuals."""
        design = self.design
        x = np.asarray(design.X, dtype=float)
        out = self.beta @ x.T
        for block, values in zip(design.blocks, effects, strict=True):
            z = np.asarray(block.z, dtype=float)
            out += np.einsum("nq,snq->sn", z, values[:, block.codes, :])
        for part in self._parts():
            for batch in self.likelihood.batches:
                k_groups, m = batch.slots.shape
                root = np.linalg.cholesky(self._w(batch, part, residual_only=True))
                noise = rng.standard_normal((part.stop - part.start, k_groups, m))
                correlated = np.einsum("skmn,skn->skm", np.broadcast_to(
                    root, noise.shape + (m,)), noise)
                out[part][:, batch.rows] += self.sigma[part][:, None, None] * correlated
        return out
