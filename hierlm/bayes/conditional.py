"""Quantities computed from posterior draws after sampling (NumPy only).

* exact draws of the group effects from their Gaussian conditional given each
  posterior draw of (beta, sigma, G), for the marginal formulation;
* the per-group marginal log-likelihood (group effects integrated out), for
  leave-one-group-out cross-validation;
* the pointwise (per-observation) log-likelihood given the group effects.

With ``u = L^-1 b`` (``G = L L'``), the conditional of level ``j`` is
``u_j | y ~ N(M_j^-1 w_j / sigma^2, M_j^-1)`` where ``M_j = I + L'Z_j'Z_j L /
sigma^2 = R_j R_j'`` and ``w_j = L'Z_j'(y_j - X_j beta)``. Hence one draw is
``u_j = R_j^-T (R_j^-1 w_j / sigma^2 + e)`` with ``e ~ N(0, I)`` and
``b_j = L u_j``, which stays exact when ``L`` is singular (an SD of zero).
Small Cholesky factors are computed entry by entry, vectorised over draws and
levels, which is much faster than NumPy's batched LAPACK calls on millions of
2 x 2 matrices. Work is split into chunks of draws to bound memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from hierlm.bayes.groupstats import GroupStats
from hierlm.design.blocks import Design
from hierlm.design.crossprod import theta_layout

__all__ = [
    "linear_predictor",
    "covariance_cholesky",
    "stack_cholesky",
    "batched_cholesky",
    "solve_lower",
    "solve_lower_transposed",
    "conditional_quantities",
    "draw_group_effects",
    "group_loglik",
    "pointwise_loglik",
    "SparseConditional",
    "conditional_means",
]

_CHUNK_ELEMENTS = 4_000_000


def covariance_cholesky(sd: np.ndarray, corr_chol: np.ndarray | None) -> np.ndarray:
    """Cholesky factors ``L = diag(sd) C`` of block covariances, per draw.

    Parameters
    ----------
    sd : ndarray
        SDs, shape (S, q).
    corr_chol : ndarray or None
        Cholesky factors of the correlation matrices (S, q, q); None for
        independent terms.

    Returns
    -------
    ndarray
        Shape (S, q, q).
    """
    if corr_chol is None:
        return sd[:, :, None] * np.eye(sd.shape[1])[None, :, :]
    return sd[:, :, None] * corr_chol


def stack_cholesky(chols: list[np.ndarray], slices: tuple[slice, ...]) -> np.ndarray:
    """Place per-block factors (S, q_b, q_b) on the diagonal of one (S, Q, Q) array."""
    n_draws, q_total = chols[0].shape[0], slices[-1].stop
    out = np.zeros((n_draws, q_total, q_total))
    for chol, cols in zip(chols, slices, strict=True):
        out[:, cols, cols] = chol
    return out


def batched_cholesky(m: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of SPD matrices (..., q, q), entry by entry."""
    q = m.shape[-1]
    r = np.zeros_like(m)
    for j in range(q):
        diagonal = m[..., j, j] - np.sum(r[..., j, :j] ** 2, axis=-1)
        r[..., j, j] = np.sqrt(diagonal)
        for i in range(j + 1, q):
            off = m[..., i, j] - np.sum(r[..., i, :j] * r[..., j, :j], axis=-1)
            r[..., i, j] = off / r[..., j, j]
    return r


def solve_lower(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Solve ``R x = v`` for lower-triangular R (..., q, q), v (..., q)."""
    q = r.shape[-1]
    x = np.empty_like(v)
    for i in range(q):
        x[..., i] = (v[..., i] - np.sum(r[..., i, :i] * x[..., :i], axis=-1)) / r[..., i, i]
    return x


def solve_lower_transposed(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Solve ``R' x = v`` for lower-triangular R (..., q, q), v (..., q)."""
    q = r.shape[-1]
    x = np.empty_like(v)
    for i in reversed(range(q)):
        tail = np.sum(r[..., i + 1 :, i] * x[..., i + 1 :], axis=-1)
        x[..., i] = (v[..., i] - tail) / r[..., i, i]
    return x


def _chunks(n_draws: int, per_draw: int) -> list[slice]:
    """Split draws into chunks of at most ``_CHUNK_ELEMENTS`` elements of work."""
    size = max(1, _CHUNK_ELEMENTS // max(per_draw, 1))
    return [slice(start, min(start + size, n_draws)) for start in range(0, n_draws, size)]


def _factor_and_rhs(
    stats: GroupStats, fixef: np.ndarray, sigma: np.ndarray, chol: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factors R of M_j (s, J, Q, Q) and ``R^-1 w_j`` (s, J, Q) for a chunk of draws."""
    s_l = np.einsum("jab,sbm->sjam", stats.ztz, chol)
    l_s_l = np.einsum("sak,sjam->sjkm", chol, s_l)
    m = np.eye(stats.q_total) + l_s_l / sigma[:, None, None, None] ** 2
    zt_resid = stats.zty[None, :, :] - np.einsum("jkp,sp->sjk", stats.ztx, fixef)
    w = np.einsum("sjk,skm->sjm", zt_resid, chol)
    r = batched_cholesky(m)
    return r, solve_lower(r, w)


# above this many (draw x level x Q x Q) numbers the compiled loop is used
_COMPILED_THRESHOLD = 2_000_000


def _numpy_chunk(
    stats: GroupStats,
    fixef: np.ndarray,
    sigma: np.ndarray,
    chol: np.ndarray,
    noise: np.ndarray | None,
    want_loglik: bool,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Vectorised NumPy version of the per-(draw, level) computations for one chunk."""
    r, r_inv_w = _factor_and_rhs(stats, fixef, sigma, chol)
    var = sigma[:, None] ** 2
    effects = loglik = None
    if noise is not None:
        u = solve_lower_transposed(r, r_inv_w / var[:, :, None] + noise)
        effects = np.einsum("skm,sjm->sjk", chol, u)
    if want_loglik:
        logdet = 2 * np.sum(np.log(np.diagonal(r, axis1=-2, axis2=-1)), axis=-1)
        rtr = (
            stats.yty_level[None, :]
            - 2 * np.einsum("jp,sp->sj", stats.xty_level, fixef)
            + np.einsum("sp,jpk,sk->sj", fixef, stats.xtx_level, fixef)
        )
        quad = (rtr - np.sum(r_inv_w**2, axis=-1) / var) / var
        loglik = -0.5 * (stats.n_level[None, :] * np.log(2 * np.pi * var) + logdet + quad)
    return effects, loglik


def conditional_quantities(
    stats: GroupStats,
    fixef: np.ndarray,
    sigma: np.ndarray,
    chol: np.ndarray,
    rng: np.random.Generator | None,
    want_loglik: bool,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Group-effect draws (if ``rng`` is given) and per-level log-likelihoods (if asked), in one pass.

    Parameters
    ----------
    stats : GroupStats
        Per-level cross-products.
    fixef, sigma, chol : ndarray
        Draws: (S, p), (S,), (S, Q, Q) with ``G = L L'``.
    rng : numpy.random.Generator or None
        Source of the innovations of the group-effect draws; None skips them.
    want_loglik : bool
        Compute the per-level marginal log-likelihoods.

    Returns
    -------
    effects : ndarray or None
        (S, J, Q).
    loglik : ndarray or None
        (S, J).
    """
    n_draws, n_groups, q = fixef.shape[0], stats.n_groups, stats.q_total
    effects = np.empty((n_draws, n_groups, q)) if rng is not None else None
    loglik = np.empty((n_draws, n_groups)) if want_loglik else None
    compiled = n_draws * n_groups * q * q > _COMPILED_THRESHOLD
    for part in _chunks(n_draws, n_groups * q * q * 4):
        noise = rng.standard_normal((part.stop - part.start, n_groups, q)) if rng is not None else None
        if compiled:
            from hierlm.bayes.conditional_kernel import conditional_loop

            size = part.stop - part.start
            chunk_effects = np.empty((size, n_groups, q)) if effects is not None else np.empty((0, 0, 0))
            chunk_loglik = np.empty((size, n_groups)) if loglik is not None else np.empty((0, 0))
            conditional_loop(
                stats.ztz,
                stats.ztx,
                stats.zty,
                stats.yty_level,
                stats.xty_level,
                stats.xtx_level,
                stats.n_level,
                np.ascontiguousarray(fixef[part]),
                np.ascontiguousarray(sigma[part]),
                np.ascontiguousarray(chol[part]),
                noise if noise is not None else np.empty((0, 0, 0)),
                chunk_effects,
                chunk_loglik,
                effects is not None,
                loglik is not None,
            )
            part_effects: np.ndarray | None = chunk_effects
            part_loglik: np.ndarray | None = chunk_loglik
        else:
            part_effects, part_loglik = _numpy_chunk(
                stats, fixef[part], sigma[part], chol[part], noise, want_loglik
            )
        if effects is not None:
            effects[part] = part_effects
        if loglik is not None:
            loglik[part] = part_loglik
    return effects, loglik


def draw_group_effects(
    stats: GroupStats,
    fixef: np.ndarray,
    sigma: np.ndarray,
    chol: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw group effects from their exact conditional, one draw per posterior draw.

    Parameters
    ----------
    stats : GroupStats
        Per-level cross-products.
    fixef : ndarray
        Fixed effects (S, p).
    sigma : ndarray
        Residual SDs (S,).
    chol : ndarray
        ``L`` with ``G = L L'`` (S, Q, Q).
    rng : numpy.random.Generator
        Source of the standard-normal innovations (seeded by the caller).

    Returns
    -------
    ndarray
        Group effects, shape (S, J, Q), columns in the order of ``stats.z``.
    """
    effects, _ = conditional_quantities(stats, fixef, sigma, chol, rng, want_loglik=False)
    assert effects is not None
    return effects


def group_loglik(stats: GroupStats, fixef: np.ndarray, sigma: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """Marginal log-likelihood of each level's observations (group effects integrated out).

    Parameters
    ----------
    stats : GroupStats
        Per-level cross-products.
    fixef, sigma, chol : ndarray
        Draws: (S, p), (S,), (S, Q, Q).

    Returns
    -------
    ndarray
        Shape (S, J); row sums are the marginal log-likelihood of all data.
    """
    _, loglik = conditional_quantities(stats, fixef, sigma, chol, None, want_loglik=True)
    assert loglik is not None
    return loglik


def pointwise_loglik(
    y: np.ndarray,
    X: np.ndarray,
    fixef: np.ndarray,
    sigma: np.ndarray,
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Log-density of each observation given all parameters and group effects.

    Parameters
    ----------
    y : ndarray
        Response (n,).
    X : ndarray
        Fixed-effect matrix (n, p).
    fixef, sigma : ndarray
        Draws (S, p) and (S,).
    blocks : list of (codes, z, effects)
        Per block: level codes (n,), columns (n, q) and effect draws (S, J, q).

    Returns
    -------
    ndarray
        Shape (S, n).
    """
    n_draws, n = fixef.shape[0], len(y)
    out = np.empty((n_draws, n))
    for part in _chunks(n_draws, n * 4):
        mu = linear_predictor(X, fixef[part], [(codes, z, effects[part]) for codes, z, effects in blocks])
        resid = (y[None, :] - mu) / sigma[part, None]
        out[part] = -0.5 * resid**2 - np.log(sigma[part, None]) - 0.5 * np.log(2 * np.pi)
    return out


def linear_predictor(
    X: np.ndarray, fixef: np.ndarray, blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Mean of every row for every draw, ``X beta + sum_k z_k b_k[level]``.

    Parameters
    ----------
    X : ndarray
        Fixed-effect matrix (n, p).
    fixef : ndarray
        Draws (S, p).
    blocks : list of (codes, z, effects)
        Per block: level codes (n,), columns (n, q) and effect draws (S, J, q).

    Returns
    -------
    ndarray
        Shape (S, n).
    """
    mu = fixef @ X.T
    for codes, z, effects in blocks:
        mu += np.einsum("sik,ik->si", effects[:, codes, :], z)
    return mu


# A of at most this size is factored densely; larger ones by sparse LU (symmetric mode).
_DENSE_A = 2500


class SparseConditional:
    """The Gaussian conditional of every group effect given (beta, theta, sigma), any design.

    With ``b = Lambda u`` and ``A = Lambda'Z'Z Lambda + I`` (sparse, never a
    dense n x levels matrix), ``u | y ~ N(A^-1 Lambda'Z'(y - X beta), sigma^2 A^-1)``.
    A draw perturbs the right-hand side instead of factoring the covariance:
    ``u = A^-1 (Lambda'Z'(y - X beta) + sigma (Lambda'Z'e_1 + e_2))`` with
    ``e_1 ~ N(0, I_n)``, ``e_2 ~ N(0, I_q)`` has exactly that distribution
    (the perturbation has covariance ``sigma^2 A``), so each draw is one
    sparse solve. Crossed and nested designs included.

    Parameters
    ----------
    design : Design
        The model's design (us/diag blocks: ``theta`` is lme4's).
    """

    def __init__(self, design: Design) -> None:
        self.design = design
        self.layout = theta_layout(design.blocks)
        self.z = design.sparse_z().tocsr()
        self.zt = self.z.T.tocsr()
        self.ztz = (self.zt @ self.z).tocsc()
        X = np.asarray(design.X, dtype=float)
        self.ztx = np.asarray(self.zt @ X)
        self.zty = np.asarray(self.zt @ np.asarray(design.y, dtype=float)).ravel()
        self.m = self.z.shape[1]
        self._q = [b.q for b in design.blocks]

    def lambda_matrix(self, theta: np.ndarray) -> sp.csc_matrix:
        """Block-diagonal ``Lambda`` (level-major within each block, as ``Design.sparse_z``)."""
        templates = self.layout.templates(np.asarray(theta, dtype=float), self._q)
        parts = [sp.kron(sp.identity(block.n_levels, format="csc"), sp.csc_matrix(t), format="csc")
                 for block, t in zip(self.design.blocks, templates, strict=True)]
        return sp.block_diag(parts, format="csc")

    def _solve(self, lam: sp.csc_matrix, rhs: np.ndarray) -> np.ndarray:
        """``A^-1 rhs``."""
        a = (lam.T @ self.ztz @ lam + sp.identity(self.m, format="csc")).tocsc()
        if self.m <= _DENSE_A:
            dense = a.toarray()
            chol = np.linalg.cholesky(dense)
            return np.linalg.solve(chol.T, np.linalg.solve(chol, rhs))
        lu = spla.splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                       options={"SymmetricMode": True})
        return np.asarray(lu.solve(rhs))

    def _split(self, b: np.ndarray) -> list[np.ndarray]:
        out, start = [], 0
        for block in self.design.blocks:
            size = block.n_levels * block.q
            out.append(np.asarray(b[start:start + size]).reshape(block.n_levels, block.q))
            start += size
        return out

    def mean(self, theta: np.ndarray, beta: np.ndarray) -> list[np.ndarray]:
        """Conditional means ``E(b | y)`` per block, shape (levels, q)."""
        lam = self.lambda_matrix(theta)
        rhs = np.asarray(lam.T @ (self.zty - self.ztx @ np.asarray(beta, dtype=float))).ravel()
        return self._split(lam @ self._solve(lam, rhs))

    def draw(self, theta: np.ndarray, beta: np.ndarray, sigma: float,
             rng: np.random.Generator) -> list[np.ndarray]:
        """One exact draw of every group effect from its conditional, per block (levels, q)."""
        lam = self.lambda_matrix(theta)
        base = self.zty - self.ztx @ np.asarray(beta, dtype=float)
        perturbed = base + sigma * (self.zt @ rng.standard_normal(self.z.shape[0]))
        rhs = np.asarray(lam.T @ perturbed).ravel() + sigma * rng.standard_normal(self.m)
        return self._split(lam @ self._solve(lam, rhs))

    def draws(self, thetas: np.ndarray, fixef: np.ndarray, sigma: np.ndarray,
              rng: np.random.Generator) -> list[np.ndarray]:
        """Exact draws for every posterior draw: per block, shape (S, levels, q)."""
        out = [np.empty((thetas.shape[0], b.n_levels, b.q)) for b in self.design.blocks]
        for s in range(thetas.shape[0]):
            for k, values in enumerate(self.draw(thetas[s], fixef[s], float(sigma[s]), rng)):
                out[k][s] = values
        return out


def conditional_means(design: Design, criterion: Any, theta: np.ndarray,
                      beta: np.ndarray) -> list[np.ndarray]:
    """Conditional means of the group effects at ``(theta, beta)``, per block (levels, q).

    At the generalised least-squares beta these are the ML criterion's own
    solution; elsewhere :class:`SparseConditional` solves for them.
    """
    sol = criterion.solution(theta, False, cond_var=False)
    if np.allclose(sol.beta, beta, rtol=1e-12, atol=0.0):
        return [np.asarray(b) for b in sol.b]
    return SparseConditional(design).mean(theta, beta)
