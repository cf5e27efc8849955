"""Group effects of a NUTS fit kept as Rao-Blackwellised summaries instead of every draw.

With one grouping factor and the marginal formulation, the group effects of
level ``j`` given a posterior draw ``s`` of (beta, sigma, G) are exactly
Gaussian, ``b_j | s, y ~ N(m_j(s), V_j(s))`` (formulas in
:mod:`hierlm.bayes.conditional`). Storing one draw of every effect per
posterior draw costs ``draws x levels x terms`` numbers (4000 x 100,000 =
3.2 GB for 50,000 groups with a random slope). The summaries here cost
``levels x terms^2``:

* the posterior mean ``E[b_j] = mean_s m_j(s)``;
* the posterior covariance ``Cov(b_j) = mean_s V_j(s) + cov_s(m_j(s))``;
* the posterior covariance with the fixed effects ``Cov(beta, b_j) = cov_s(beta(s), m_j(s))``
  (``beta`` is fixed within each conditional), so that ``coef`` = beta + b has
  its exact posterior SD too.

These are Rao-Blackwellised: averages of exact conditional moments, with less
Monte Carlo error than the moments of one draw per posterior draw. Between-draw
parts use the ``S - 1`` denominator, as the posterior SDs of the tables do.

Exact draws are made on demand (:meth:`EffectSummary.draws`): level ``j``'s
innovations come from a generator seeded by the fit's seed and ``j``'s chunk of
:data:`LEVEL_CHUNK` levels, so the draws of any level are the same whichever
levels are asked for, and in every call. Interval bounds of ``ranef``/``coef``
are quantiles of these draws, computed chunk by chunk without keeping them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import xarray as xr

from hierlm.bayes.conditional import batched_cholesky, covariance_cholesky, stack_cholesky
from hierlm.bayes.conditional_kernel import conditional_loop, conditional_solve, level_system
from hierlm.bayes.groupstats import GroupStats
from hierlm.bayes.naming import FIXEF, FIXEF_DIM, SIGMA, BlockNames
from hierlm.errors import FitError

__all__ = ["GROUP_DRAWS_MAX_ELEMENTS", "LEVEL_CHUNK", "GROUP_EFFECTS_MODES", "SUMMARY_GROUP",
           "EffectSummary", "LazyEffects", "resolve_group_effects", "summary_dataset"]

#: ``group_effects="auto"`` keeps summaries instead of draws above this many numbers (400 MB).
GROUP_DRAWS_MAX_ELEMENTS = 50_000_000
#: Levels per innovation stream of the on-demand draws.
LEVEL_CHUNK = 1024
GROUP_EFFECTS_MODES = ("auto", "draws", "summary")
#: DataTree group holding the summaries.
SUMMARY_GROUP = "group_effects"
_LEVEL, _EFFECT, _EFFECT2 = "level", "effect", "effect_"


def resolve_group_effects(mode: str, formulation: str, stats: GroupStats | None,
                          n_samples: int) -> str:
    """``"draws"`` or ``"summary"`` for a fit's ``group_effects`` option.

    Raises
    ------
    FitError
        For an unknown mode, or ``"summary"`` where the conditional moments
        are not available (the full formulation, nested or crossed factors).
    """
    if mode not in GROUP_EFFECTS_MODES:
        raise FitError(f"group_effects={mode!r}; choose one of {', '.join(GROUP_EFFECTS_MODES)}")
    available = formulation == "marginal" and stats is not None
    if mode == "summary" and not available:
        why = ("the full formulation samples the effects themselves" if formulation == "full"
               else "with nested or crossed factors the levels' conditionals are not separate")
        raise FitError(f"group_effects='summary' needs the marginal formulation with one grouping "
                       f"factor ({why}); use group_effects='draws'.")
    if mode == "auto":
        size = n_samples * (stats.n_groups * stats.q_total if stats is not None else 0)
        return "summary" if available and size > GROUP_DRAWS_MAX_ELEMENTS else "draws"
    return mode


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _level_moments_2(ztz: np.ndarray, ztx: np.ndarray, zty: np.ndarray, j: int, fixef: np.ndarray,
                     sigma: np.ndarray, chol: np.ndarray, mean: np.ndarray, second: np.ndarray,
                     within: np.ndarray, cross: np.ndarray) -> None:  # pragma: no cover - compiled
    """:func:`_moment_loop`'s sums for one level with ``q = 2``, accumulated in scalars."""
    n_draws, p = fixef.shape
    s_l = np.empty((2, 2))
    r = np.empty((2, 2))
    resid = np.empty(2)
    w = np.empty(2)
    v = np.empty(2)
    u = np.empty(2)
    m = np.empty(2)
    zero = np.zeros(2)
    cross_sum = np.zeros((p, 2))
    ref0 = ref1 = 0.0
    d0_sum = d1_sum = e00 = e01 = e11 = v00 = v01 = v11 = 0.0
    for s in range(n_draws):
        lam = chol[s]
        var = sigma[s] * sigma[s]
        level_system(ztz, ztx, zty, j, fixef[s], lam, var, s_l, r, resid, w, v)
        conditional_solve(r, v, var, zero, lam, u, m)  # the conditional mean
        # A = R^-1 L' (lower R, lower L), V = A'A
        a00 = lam[0, 0] / r[0, 0]
        a01 = lam[1, 0] / r[0, 0]
        a11 = (lam[1, 1] - r[1, 0] * a01) / r[1, 1]
        a10 = -r[1, 0] * a00 / r[1, 1]
        if s == 0:
            ref0, ref1 = m[0], m[1]
        d0, d1 = m[0] - ref0, m[1] - ref1
        d0_sum += d0
        d1_sum += d1
        e00 += d0 * d0
        e01 += d0 * d1
        e11 += d1 * d1
        v00 += a00 * a00 + a10 * a10
        v01 += a00 * a01 + a10 * a11
        v11 += a01 * a01 + a11 * a11
        for k in range(p):
            cross_sum[k, 0] += fixef[s, k] * d0
            cross_sum[k, 1] += fixef[s, k] * d1
    mean[j, 0] += d0_sum
    mean[j, 1] += d1_sum
    mean[j, 2] = ref0
    mean[j, 3] = ref1
    second[j, 0, 0] += e00
    second[j, 0, 1] += e01
    second[j, 1, 0] += e01
    second[j, 1, 1] += e11
    within[j, 0, 0] += v00
    within[j, 0, 1] += v01
    within[j, 1, 0] += v01
    within[j, 1, 1] += v11
    for k in range(p):
        cross[j, k, 0] += cross_sum[k, 0]
        cross[j, k, 1] += cross_sum[k, 1]


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _moment_loop(ztz: np.ndarray, ztx: np.ndarray, zty: np.ndarray, fixef: np.ndarray,
                 sigma: np.ndarray, chol: np.ndarray, mean: np.ndarray, second: np.ndarray,
                 within: np.ndarray, cross: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per level: sums over draws of ``m - m(0)``, ``(m - m(0))(m - m(0))'``, ``V`` and ``beta (m - m(0))'``.

    ``m(0)`` (the first draw's mean) is returned in ``mean``'s second half so
    the caller can undo the shift that keeps the sums well conditioned.
    """
    n_draws, p = fixef.shape
    n_groups, q = zty.shape
    if q == 2:
        for j in numba.prange(n_groups):
            _level_moments_2(ztz, ztx, zty, j, fixef, sigma, chol, mean, second, within, cross)
        return
    for j in numba.prange(n_groups):
        s_l = np.empty((q, q))
        r = np.empty((q, q))
        a_mat = np.empty((q, q))
        resid = np.empty(q)
        w = np.empty(q)
        v = np.empty(q)
        u = np.empty(q)
        m = np.empty(q)
        zero = np.zeros(q)
        ref = np.zeros(q)
        for s in range(n_draws):
            lam = chol[s]
            var = sigma[s] * sigma[s]
            level_system(ztz, ztx, zty, j, fixef[s], lam, var, s_l, r, resid, w, v)
            conditional_solve(r, v, var, zero, lam, u, m)  # the conditional mean
            for c in range(q):  # A = R^-1 L' (column c of L' is row c of L); V = A'A
                for a in range(q):
                    acc = lam[c, a]
                    for k in range(a):
                        acc -= r[a, k] * a_mat[k, c]
                    a_mat[a, c] = acc / r[a, a]
            if s == 0:
                for a in range(q):
                    ref[a] = m[a]
            for a in range(q):
                d_a = m[a] - ref[a]
                mean[j, a] += d_a
                for b in range(q):
                    second[j, a, b] += d_a * (m[b] - ref[b])
                    acc = 0.0
                    for k in range(q):
                        acc += a_mat[k, a] * a_mat[k, b]
                    within[j, a, b] += acc
                for k in range(p):
                    cross[j, k, a] += fixef[s, k] * d_a
        for a in range(q):
            mean[j, q + a] = ref[a]


def _block_chol(names: Sequence[BlockNames], posterior: Any, slices: tuple[slice, ...]) -> np.ndarray:
    """Stacked ``L = diag(sd) C`` (S, Q, Q) of the blocks, from the stored SD and correlation draws."""
    chols = []
    for bn in names:
        sd = _flat(np.asarray(posterior[bn.sd].values, dtype=float))
        corr = None
        if bn.block.correlated and bn.block.q > 1:
            cor = _flat(np.asarray(posterior[bn.cor].values, dtype=float))
            matrix = np.broadcast_to(np.eye(bn.block.q), (sd.shape[0], bn.block.q, bn.block.q)).copy()
            for k, (i, j) in enumerate(bn.pairs):
                matrix[:, i, j] = matrix[:, j, i] = cor[:, k]
            corr = batched_cholesky(matrix)
        chols.append(covariance_cholesky(sd, corr))
    return stack_cholesky(chols, slices)


def _dataset(group: Any) -> xr.Dataset:
    """A DataTree node's dataset (a Dataset as it is)."""
    return group.to_dataset() if hasattr(group, "to_dataset") else group


def _flat(values: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])


def summary_dataset(stats: GroupStats, names: Sequence[BlockNames], posterior: xr.Dataset,
                    seed: int) -> xr.Dataset:
    """The ``group_effects`` group of a summarised fit: exact Rao-Blackwellised moments per level.

    Variables ``mean`` (level, effect), ``cov`` (level, effect, effect_) and
    ``cov_fixef`` (level, fixef, effect); an effect is labelled
    ``"<block>:<term>"``; ``attrs["seed"]`` seeds the on-demand draws.
    """
    fixef = _flat(np.asarray(posterior[FIXEF].values, dtype=float))
    sigma = _flat(np.asarray(posterior[SIGMA].values, dtype=float))
    chol = _block_chol(names, posterior, stats.block_slices)
    n_groups, q = stats.n_groups, stats.q_total
    p, n_draws = fixef.shape[1], fixef.shape[0]
    shifted = np.zeros((n_groups, 2 * q))
    second = np.zeros((n_groups, q, q))
    within = np.zeros((n_groups, q, q))
    cross = np.zeros((n_groups, p, q))
    _moment_loop(np.ascontiguousarray(stats.ztz), np.ascontiguousarray(stats.ztx),
                 np.ascontiguousarray(stats.zty), np.ascontiguousarray(fixef),
                 np.ascontiguousarray(sigma), np.ascontiguousarray(chol),
                 shifted, second, within, cross)
    delta = shifted[:, :q] / n_draws
    between = (second / n_draws - delta[:, :, None] * delta[:, None, :])
    between = between * (n_draws / (n_draws - 1)) if n_draws > 1 else between * np.nan
    beta_mean = fixef.mean(axis=0)
    cov_fixef = cross / n_draws - beta_mean[None, :, None] * delta[:, None, :]
    if n_draws > 1:
        cov_fixef = cov_fixef * (n_draws / (n_draws - 1))
    labels = effect_labels(names)
    return xr.Dataset(
        {"mean": ((_LEVEL, _EFFECT), shifted[:, q:] + delta),
         "cov": ((_LEVEL, _EFFECT, _EFFECT2), within / n_draws + between),
         "cov_fixef": ((_LEVEL, FIXEF_DIM, _EFFECT), cov_fixef)},
        coords={_LEVEL: [str(v) for v in stats.levels], _EFFECT: labels, _EFFECT2: labels,
                FIXEF_DIM: list(posterior[FIXEF_DIM].values)},
        attrs={"seed": str(int(seed)), "kind": "Rao-Blackwellised posterior moments of the "
               "group effects (mean over draws of the exact conditional moments)"})


def effect_labels(names: Sequence[BlockNames]) -> list[str]:
    """``"<block>:<term>"`` for every column of the stacked group effects."""
    return [f"{bn.label}:{term}" for bn in names for term in bn.block.columns]


@dataclass(eq=False)
class EffectSummary:
    """The group effects of a summarised fit: exact moments, and exact draws on demand.

    Attributes
    ----------
    stats : GroupStats
        Per-level cross-products of the design.
    names : list of BlockNames
        The blocks (all on one grouping factor).
    fixef, sigma, chol : numpy.ndarray
        Pooled hyperparameter draws (S, p), (S,), (S, Q, Q).
    seed : int
        Seed of the on-demand draws.
    mean, cov, cov_fixef : numpy.ndarray
        Posterior moments (J, Q), (J, Q, Q), (J, p, Q).
    """

    stats: GroupStats
    names: list[BlockNames]
    fixef: np.ndarray
    sigma: np.ndarray
    chol: np.ndarray
    seed: int
    mean: np.ndarray
    cov: np.ndarray
    cov_fixef: np.ndarray
    _full: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_idata(cls, idata: Any, stats: GroupStats, names: list[BlockNames]) -> EffectSummary:
        """Read the summaries and the hyperparameter draws of a fit's DataTree."""
        posterior, group = (_dataset(idata["posterior"]), _dataset(idata[SUMMARY_GROUP]))
        return cls(stats=stats, names=names,
                   fixef=_flat(np.asarray(posterior[FIXEF].values, dtype=float)),
                   sigma=_flat(np.asarray(posterior[SIGMA].values, dtype=float)),
                   chol=_block_chol(names, posterior, stats.block_slices),
                   seed=int(group.attrs["seed"]),
                   mean=np.asarray(group["mean"].values, dtype=float),
                   cov=np.asarray(group["cov"].values, dtype=float),
                   cov_fixef=np.asarray(group["cov_fixef"].values, dtype=float))

    @property
    def n_draws(self) -> int:
        """Number of posterior draws S."""
        return int(self.fixef.shape[0])

    def block_columns(self, index: int) -> slice:
        """Columns of block ``index`` among the stacked effects."""
        return self.stats.block_slices[index]

    def _chunk_draws(self, chunk: int) -> np.ndarray:
        """Exact conditional draws (S, levels of the chunk, Q) of one chunk of levels."""
        stats = self.stats
        part = slice(chunk * LEVEL_CHUNK, min((chunk + 1) * LEVEL_CHUNK, stats.n_groups))
        size = part.stop - part.start
        rng = np.random.default_rng([self.seed, 4, chunk])
        noise = rng.standard_normal((self.n_draws, size, stats.q_total))
        out = np.empty((self.n_draws, size, stats.q_total))
        conditional_loop(np.ascontiguousarray(stats.ztz[part]), np.ascontiguousarray(stats.ztx[part]),
                         np.ascontiguousarray(stats.zty[part]), stats.yty_level[part],
                         np.ascontiguousarray(stats.xty_level[part]),
                         np.ascontiguousarray(stats.xtx_level[part]), stats.n_level[part],
                         np.ascontiguousarray(self.fixef), np.ascontiguousarray(self.sigma),
                         np.ascontiguousarray(self.chol), noise, out, np.empty((0, 0)), True, False)
        return out

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """Levels in chunks: ``(levels, draws (S, chunk, Q))``, one chunk in memory at a time."""
        for chunk in range(math.ceil(self.stats.n_groups / LEVEL_CHUNK)):
            start = chunk * LEVEL_CHUNK
            draws = self._chunk_draws(chunk)
            yield slice(start, start + draws.shape[1]), draws

    def draws(self, levels: np.ndarray | None = None) -> np.ndarray:
        """Exact draws (S, len(levels), Q) of the given level positions (all when None)."""
        index = (np.arange(self.stats.n_groups) if levels is None
                 else np.asarray(levels, dtype=np.int64))
        out = np.empty((self.n_draws, index.size, self.stats.q_total))
        chunk_of = index // LEVEL_CHUNK
        for chunk in np.unique(chunk_of):
            where = np.flatnonzero(chunk_of == chunk)
            out[:, where] = self._chunk_draws(int(chunk))[:, index[where] - chunk * LEVEL_CHUNK]
        return out

    def block_draws(self, index: int) -> np.ndarray:
        """All exact draws (S, J, q) of block ``index`` (made once, then kept)."""
        if index not in self._full:
            self._full[index] = np.ascontiguousarray(self.draws()[:, :, self.block_columns(index)])
        return self._full[index]


class LazyEffects(Sequence[np.ndarray]):
    """``FitDraws.effects`` of a summarised fit: each block's exact draws, made on first use.

    Tables that have summaries (``ranef``, ``coef``, means of predictions)
    never ask for them; anything that needs the draws themselves gets them,
    at the memory cost the summary avoided.
    """

    def __init__(self, summary: EffectSummary) -> None:
        self.summary = summary

    def __len__(self) -> int:
        return len(self.summary.names)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.summary.block_draws(index % len(self))
