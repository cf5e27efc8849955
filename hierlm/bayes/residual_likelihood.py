"""The marginal Gaussian likelihood with a residual structure, in the Bayesian engine's terms.

The Bayesian parameterisation of a residual structure
(:class:`hierlm.bayes.structures.ResidualParameterisation`) gives, at each
point, the structure's relative covariance over the distinct times ``S``
(``T x T``, correlation times the per-time SD ratios) and the ``variance=``
SD ratio of each level. With ``M_i`` the diagonal of row ratios of group
``i`` and ``T_b = L_b / sigma`` the relative factor of each random-effect
block (one level per group), the marginal covariance of group ``i`` is
``sigma^2 W_i``,

    W_i = sum_b Z_ib T_b T_b' Z_ib' + M_i S[t_i, t_i] M_i,

and ``log p(y) = -1/2 sum_i [m_i log(2 pi sigma^2) + log|W_i| + r_i' W_i^-1 r_i / sigma^2]``
with ``r_i = y_i - X_i beta``. This is the likelihood of
:meth:`hierlm.lmm.grouped.GroupedObjective.at_beta` written on ``(S, ratios,
T_b)`` instead of the ML/REML engine's free reals, so that the chain rule
from ``S`` to the sampler's coordinates is PyTensor's (tested equal to
:class:`hierlm.lmm.likelihood.GaussianLikelihood`). With
``G_i = dL/dW_i = -(W_i^-1 - a_i a_i' / sigma^2) / 2`` and ``a_i = W_i^-1 r_i``:

* ``dL/dS[s, t] = sum over rows j, k of slot s, t of m_j m_k G_i[j, k]``;
* ``dL/dm_j = 2 sum_k G_i[j, k] S_i[j, k] m_k`` (then summed by level);
* ``dL/dT_b = 2 sum_i Z_ib' G_i Z_ib T_b``;
* ``dL/dbeta = sum_i X_i' a_i / sigma^2``, ``dL/dsigma = -n / sigma + sum_i r_i'a_i / sigma^3``.

Groups are batched by size; without random effects and ``variance=``, groups
with the same times share one ``W`` and the batch keeps only summed
cross-products (pigs: one ``9 x 9`` factorisation per evaluation for 48 pigs).
The evaluation runs in the compiled kernels of :mod:`hierlm.bayes.residual_kernel`.
The same object gives each group's log density (per-subject LOO) and exact
draws of the group effects from their conditional given the structured
residual covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.bayes.residual_kernel import general_batch, shared_batch
from hierlm.design.blocks import Design
from hierlm.errors import DataError, FitError
from hierlm.lmm.grouped_batches import make_batches, one_level_per_group

__all__ = ["ResidualValue", "ResidualLikelihood"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class ResidualValue:
    """The log-likelihood at one point and its gradient in every input."""

    value: float
    d_beta: np.ndarray
    d_sigma: float
    d_templates: list[np.ndarray]
    d_s: np.ndarray
    d_levels: np.ndarray


@dataclass(frozen=True, eq=False)
class _Batch:
    """Groups with ``m`` rows each (``shared``: one ``W`` for all, summed cross-products)."""

    rows: np.ndarray  # (k, m) row indices, sorted by time within each group
    groups: np.ndarray  # (k,) group codes
    x: np.ndarray  # (k, m, p)
    y: np.ndarray  # (k, m)
    slots: np.ndarray  # (k, m)
    z: list[np.ndarray]  # per block (k, m, q)
    levels: np.ndarray | None  # (k, m) variance= level codes
    codes: np.ndarray  # (k, m) variance= level codes (0 without)
    z_all: np.ndarray  # (k, m, Q) every block's columns side by side
    shared: bool
    cxx: np.ndarray | None = None  # (m, m, p, p)
    cxy: np.ndarray | None = None  # (m, m, p)
    cyy: np.ndarray | None = None  # (m, m)


def _make_batches(design: Design) -> list[_Batch]:
    """The ML/REML engine's batches, with the arrays the compiled kernels read.

    :func:`~hierlm.lmm.grouped_batches.make_batches`'s groups and cross-products,
    contiguous, with every block's columns side by side (``z_all``) and the
    ``variance=`` level codes (0 without).
    """
    residual = design.residual
    assert residual is not None
    out = []
    for batch in make_batches(design, residual):
        levels = None if batch.variance is None else np.asarray(batch.variance, dtype=np.int64)
        z = [np.ascontiguousarray(zb, dtype=float) for zb in batch.z]
        z_all = (np.ascontiguousarray(np.concatenate(z, axis=2)) if z
                 else np.zeros(batch.rows.shape + (0,)))
        codes = np.zeros(batch.rows.shape, dtype=np.int64) if levels is None else levels
        out.append(_Batch(batch.rows, batch.groups, np.ascontiguousarray(batch.x, dtype=float),
                          np.ascontiguousarray(batch.y, dtype=float),
                          np.asarray(batch.slots, dtype=np.int64), z, levels, codes, z_all,
                          batch.shared, cxx=batch.cxx, cxy=batch.cxy, cyy=batch.cyy))
    return out


class ResidualLikelihood:
    """``log p(y | beta, sigma, T_b, S, ratios)`` of a design with a residual structure.

    Parameters
    ----------
    design : Design
        A Gaussian design with ``design.residual`` set; every random-effect
        block has one level per residual group.
    """

    def __init__(self, design: Design) -> None:
        residual = design.residual
        if residual is None:
            raise FitError("ResidualLikelihood needs a design with a residual structure.")
        for block in design.blocks:
            if not one_level_per_group(block.codes, residual.group_codes):
                raise DataError(
                    f"The random-effect term ({block.term}) is not grouped by the residual group "
                    f"{residual.spec.group!r}; with residual={residual.spec.text!r}, random "
                    f"effects must be per {residual.spec.group} (e.g. '(1 | {residual.spec.group})').")
        self.design = design
        self.n, self.p = design.n, design.p
        self.n_times = residual.structure.n_times
        self.n_levels = (max(len(residual.variance_labels), 1) if residual.variance_codes is not None
                         else 1)
        self.n_groups = len(residual.group_labels)
        self.batches = _make_batches(design)

    # ------------------------------------------------------------ one batch
    def _w(self, batch: _Batch, templates: list[np.ndarray], s: np.ndarray,
           levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``W`` (k, m, m) or (1, m, m) if shared, ``S_i`` and the row ratios (k, m)."""
        slots = batch.slots[:1] if batch.shared else batch.slots
        s_i = s[slots[:, :, None], slots[:, None, :]]
        ratios = None
        if batch.levels is not None:
            ratios = levels[batch.levels]
            w = s_i * ratios[:, :, None] * ratios[:, None, :]
        else:
            w = s_i.copy()
        for z, t in zip(batch.z, templates, strict=True):
            zt = z @ t
            w += zt @ np.swapaxes(zt, 1, 2)
        return w, s_i, ratios

    def evaluate(self, beta: np.ndarray, sigma: float, templates: list[np.ndarray],
                 s: np.ndarray, levels: np.ndarray | None = None) -> ResidualValue:
        """The log-likelihood and its exact gradient (see the module docstring).

        Parameters
        ----------
        beta : numpy.ndarray
            Fixed effects (p,).
        sigma : float
            Residual SD (the scale of every covariance).
        templates : list of numpy.ndarray
            ``T_b = L_b / sigma`` of each random-effect block (q, q).
        s : numpy.ndarray
            Relative residual covariance over the distinct times (T, T).
        levels : numpy.ndarray, optional
            ``variance=`` SD ratio of each level (the first is 1).

        Raises
        ------
        FitError
            When a group's covariance is not positive definite.
        """
        beta = np.ascontiguousarray(beta, dtype=float)
        s = np.ascontiguousarray(s, dtype=float)
        levels = (np.ones(self.n_levels) if levels is None
                  else np.ascontiguousarray(levels, dtype=float))
        var = float(sigma) ** 2
        q_sizes = [t.shape[0] for t in templates]
        bounds = np.concatenate(([0], np.cumsum(q_sizes))).astype(int)
        t_all = np.zeros((bounds[-1], bounds[-1]))
        for b, t in enumerate(templates):
            t_all[bounds[b]:bounds[b + 1], bounds[b]:bounds[b + 1]] = t
        d_beta = np.zeros(self.p)
        d_s = np.zeros((self.n_times, self.n_times))
        d_levels = np.zeros(self.n_levels)
        d_tall = np.zeros_like(t_all)
        logdet, quad = 0.0, 0.0
        try:
            for batch in self.batches:
                if batch.shared:
                    assert batch.cxx is not None and batch.cxy is not None and batch.cyy is not None
                    part = shared_batch(beta, var, s, batch.slots[0], batch.rows.shape[0],
                                        batch.cxx, batch.cxy, batch.cyy, True, d_beta, d_s)
                else:
                    part = general_batch(beta, var, s, levels, t_all, batch.x, batch.y,
                                         batch.slots, batch.codes, batch.z_all, True, d_beta,
                                         d_s, d_levels, d_tall)
                logdet += part[0]
                quad += part[1]
        except np.linalg.LinAlgError:
            raise FitError("A group's covariance matrix is not positive definite at these "
                           "parameters.") from None
        value = -0.5 * (logdet + self.n * (_LOG_2PI + np.log(var)) + quad / var)
        d_sigma = -self.n / float(sigma) + quad / (var * float(sigma))
        d_templates = [d_tall[bounds[b]:bounds[b + 1], bounds[b]:bounds[b + 1]].copy()
                       for b in range(len(templates))]
        return ResidualValue(float(value), d_beta, float(d_sigma), d_templates, d_s, d_levels)

    # ------------------------------------------------ per draw (after sampling)
    def group_logdensity(self, beta: np.ndarray, sigma: float, templates: list[np.ndarray],
                         s: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """The joint log density of each residual group's observations (effects integrated out).

        One value per group, in the order of ``design.residual.group_labels``.
        """
        levels = np.ones(self.n_levels) if levels is None else np.asarray(levels, dtype=float)
        out = np.zeros(self.n_groups)
        var = float(sigma) ** 2
        for batch in self.batches:
            w, _, _ = self._w(batch, templates, np.asarray(s, dtype=float), levels)
            chol = np.linalg.cholesky(w)
            logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
            resid = batch.y - batch.x @ np.asarray(beta, dtype=float)
            solved = np.linalg.solve(np.broadcast_to(chol, (resid.shape[0],) + chol.shape[1:]),
                                     resid[:, :, None])[:, :, 0]
            m = batch.rows.shape[1]
            out[batch.groups] = -0.5 * (m * (_LOG_2PI + np.log(var)) + logdet
                                        + np.sum(solved ** 2, axis=1) / var)
        return out

    def effect_moments(self, beta: np.ndarray, sigma: float, templates: list[np.ndarray],
                       s: np.ndarray, levels: np.ndarray | None = None
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Conditional mean and covariance of every group's effects given y, per batch.

        ``b_i | y ~ N(G Z_i' W_i^-1 r_i, sigma^2 (G - G Z_i' W_i^-1 Z_i G))`` with all
        blocks stacked (``G = T T'`` relative). Returns, per batch, the means (k, Q)
        and covariances (k, Q, Q) of its groups (``Q`` all blocks' columns).
        """
        levels = np.ones(self.n_levels) if levels is None else np.asarray(levels, dtype=float)
        q_sizes = [t.shape[0] for t in templates]
        bounds = np.concatenate(([0], np.cumsum(q_sizes))).astype(int)
        t_all = np.zeros((bounds[-1], bounds[-1]))
        for b, t in enumerate(templates):
            t_all[bounds[b]:bounds[b + 1], bounds[b]:bounds[b + 1]] = t
        g_rel = t_all @ t_all.T
        out = []
        for batch in self.batches:
            w, _, _ = self._w(batch, templates, np.asarray(s, dtype=float), levels)
            z = np.concatenate(batch.z, axis=2)  # (k, m, Q)
            zg = z @ g_rel
            resid = batch.y - batch.x @ np.asarray(beta, dtype=float)
            solved = np.linalg.solve(w, np.concatenate([resid[:, :, None], zg], axis=2))
            mean = np.einsum("kmq,km->kq", zg, solved[:, :, 0])
            cov = float(sigma) ** 2 * (g_rel[None] - np.swapaxes(zg, 1, 2) @ solved[:, :, 1:])
            out.append((mean, 0.5 * (cov + np.swapaxes(cov, 1, 2))))
        return out

    def _by_block(self, batch_values: list[np.ndarray], trailing: int) -> list[np.ndarray]:
        """Per-batch stacked values (k, Q, ...) scattered to each block's levels."""
        design = self.design
        bounds = np.concatenate(([0], np.cumsum([b.q for b in design.blocks]))).astype(int)
        out = [np.zeros((b.n_levels,) + (b.q,) * trailing) for b in design.blocks]
        for batch, values in zip(self.batches, batch_values, strict=True):
            for b, block in enumerate(design.blocks):
                codes = block.codes[batch.rows[:, 0]]
                part = values[:, bounds[b]:bounds[b + 1]]
                out[b][codes] = part if trailing == 1 else part[:, :, bounds[b]:bounds[b + 1]]
        return out

    def effect_means(self, beta: np.ndarray, sigma: float, templates: list[np.ndarray],
                     s: np.ndarray, levels: np.ndarray | None = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Conditional means (levels, q) and covariances (levels, q, q) of each block's effects."""
        if not self.design.blocks:
            return [], []
        moments = self.effect_moments(beta, sigma, templates, s, levels)
        return (self._by_block([m for m, _ in moments], 1),
                self._by_block([c for _, c in moments], 2))

    def draw_effects(self, beta: np.ndarray, sigma: float, templates: list[np.ndarray],
                     s: np.ndarray, levels: np.ndarray | None, rng: np.random.Generator
                     ) -> list[np.ndarray]:
        """One exact draw of every block's group effects from their conditional given y.

        The moments are those of :meth:`effect_moments`. Returns per block (levels, q).
        """
        if not self.design.blocks:
            return []
        draws = []
        for mean, cov in self.effect_moments(beta, sigma, templates, s, levels):
            root = _psd_root(cov)
            draws.append(mean + np.einsum("kqr,kr->kq", root, rng.standard_normal(mean.shape)))
        return self._by_block(draws, 1)


def _psd_root(cov: np.ndarray) -> np.ndarray:
    """A square root ``R R' = cov`` of positive semi-definite matrices (k, q, q)."""
    values, vectors = np.linalg.eigh(cov)
    return vectors * np.sqrt(np.clip(values, 0.0, None))[:, None, :]
