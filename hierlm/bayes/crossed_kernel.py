"""Compiled twin of the one Gaussian likelihood for designs of scalar random-effect terms.

When every grouping factor carries one random-effect column (``(1 | a) +
(1 | b)``, ``(1 | a / b)``, InstEval's ``(1 | s) + (1 | d) + (1 | dept)``)
the likelihood of :class:`hierlm.lmm.likelihood.GaussianLikelihood` is
evaluated here by a numba kernel on the same cross-products
(:func:`hierlm.design.crossprod.crossproducts`), blocked as lme4 and
MixedModels.jl block it: the first (largest) factor's part of

    M = Lambda Z'Z Lambda + I,     Lambda = diag(theta_k(j)),

is diagonal, so it is eliminated level by level; the remaining ``m_z``
columns form a dense Schur complement ``S`` (LAPACK's ``dpotrf``/``dpotri``; formed, factored and
probed in :mod:`hierlm.bayes.crossed_schur`).
At ``y* = y - X beta``:

* ``log|M| = sum_l log A_l + log|S|``,
* ``pwrss = |y*|^2 - r'M^{-1} r`` with ``r = Lambda Z'y*``,
* ``d pwrss / d log theta_k = -2 sum_{j in k} b_j [Z'(y* - Z b)]_j``, ``b = Lambda M^{-1} r``
  (envelope theorem),
* ``d log|M| / d log theta_k = 2 (n_k - tr_k M^{-1})``: ``Lambda Z'Z Lambda M^{-1} = I - M^{-1}``,
  so only the diagonal of ``M^{-1}`` over factor ``k``'s columns is needed
  (stable as ``theta_k -> 0``).

The log-likelihood is then exactly that of ``GaussianLikelihood`` (tested as
its twin in ``tests/bayes/test_crossed_kernel.py``). Designs with vector-valued
terms keep the Python likelihood.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from hierlm.bayes.crossed_schur import factorize, lapack, probed_traces, schur_pairs, solve_many
from hierlm.bayes.groupstats import scalar_terms_only
from hierlm.bayes.kernel import log_prior_and_slope
from hierlm.design.blocks import Design
from hierlm.design.crossprod import CrossProducts, crossproducts
from hierlm.errors import FitError
from hierlm.lmm.likelihood import LikelihoodValue

__all__ = ["scalar_terms_only", "ScalarFactorLikelihood", "PROBED_GRADIENT_WIDTH", "N_PROBES",
           "EXACT_TRACE_LEVELS"]

_LOG_2PI = float(np.log(2.0 * np.pi))


# integer header of the packed buffers: n1, m_z, p, number of factors, coupling entries
_HEADER = 5
#: Dense Schur complements wider than this get the probed log-determinant gradient in the
#: sampler (:meth:`ScalarFactorLikelihood.logp`): there ``dpotri``'s ``2/3 m_z^3`` flops would
#: cost more than the factorisation itself (InstEval's 1142 columns: about 90 of 140 ms).
PROBED_GRADIENT_WIDTH = 400
#: Fixed Rademacher probe vectors of the probed gradient.
N_PROBES = 16
#: Factors with at most this many levels get their trace exactly even when probing.
EXACT_TRACE_LEVELS = 64
_PROBE_SEED = 20261201
#: Dense parts at least this wide are worth threads (group-effect draws, chains): below it a
#: call costs little more than Python's overhead.
PARALLEL_DRAW_WIDTH = 100


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _views(fbuf: np.ndarray, ibuf: np.ndarray) -> Any:  # pragma: no cover - compiled
    """The packed cross-products as views (see ``ScalarFactorLikelihood``)."""
    n1, mz, p, nf, nnz = ibuf[0], ibuf[1], ibuf[2], ibuf[3], ibuf[4]
    at = _HEADER
    ptr = ibuf[at:at + n1 + 1]
    at += n1 + 1
    ent_col = ibuf[at:at + nnz]
    at += nnz
    rest_factor = ibuf[at:at + mz]
    at = 0
    zz1 = fbuf[at:at + n1]
    at += n1
    ent_val = fbuf[at:at + nnz]
    at += nnz
    rr = fbuf[at:at + mz * mz].reshape(mz, mz)
    at += mz * mz
    n_cols = fbuf[at:at + nf]
    at += nf
    zx1 = fbuf[at:at + n1 * p].reshape(n1, p)
    at += n1 * p
    zy1 = fbuf[at:at + n1]
    at += n1
    zrx = fbuf[at:at + mz * p].reshape(mz, p)
    at += mz * p
    zry = fbuf[at:at + mz]
    at += mz
    xx = fbuf[at:at + p * p].reshape(p, p)
    at += p * p
    xy = fbuf[at:at + p]
    at += p
    return (ptr, ent_col, rest_factor, zz1, ent_val, rr, n_cols, zx1, zy1, zrx, zry, xx, xy,
            fbuf[at], fbuf[at + 1], fbuf[at + 2])


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _block_solve(t1: float, a: np.ndarray, th_r: np.ndarray, chol: np.ndarray, r1: np.ndarray,
                 r_r: np.ndarray, ptr: np.ndarray, ent_col: np.ndarray, ent_val: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``u = M^{-1} r`` blockwise: ``u_r = S^{-1}(r_r - B'A^{-1} r_1)``, ``u_1 = A^{-1}(r_1 - B u_r)``."""
    n1, mz = a.size, th_r.size
    u_r = r_r.copy()
    for level in range(n1):
        coef = t1 * r1[level] / a[level]
        for i in range(ptr[level], ptr[level + 1]):
            c = ent_col[i]
            u_r[c] -= coef * ent_val[i] * th_r[c]
    rhs = u_r.reshape(1, mz)
    solve_many(chol, rhs)  # S u_r = rhs (chol is positive definite: info is 0)
    u1 = np.empty(n1)
    for level in range(n1):
        acc = r1[level]
        for i in range(ptr[level], ptr[level + 1]):
            c = ent_col[i]
            acc -= t1 * ent_val[i] * th_r[c] * u_r[c]
        u1[level] = acc / a[level]
    return u1, u_r


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _scalar_loglik(theta: np.ndarray, beta: np.ndarray, sigma: float, fbuf: np.ndarray,
                   ibuf: np.ndarray, pairs: np.ndarray, pair_val: np.ndarray,
                   probes: np.ndarray, small_cols: np.ndarray, d_beta: np.ndarray,
                   d_log_theta: np.ndarray) -> tuple[float, float]:  # pragma: no cover - compiled
    """``(log p, d log p / d sigma)``; fills the gradients in beta and in log theta (per factor).

    Returns ``(-inf, 0)`` where the Schur complement is not numerically positive definite.
    With ``probes`` (rows), the log-determinant's gradient is the estimate of
    :func:`hierlm.bayes.crossed_schur.probed_traces` (the value stays exact); with none, it
    is exact (``dpotri``).
    """
    (ptr, ent_col, rest_factor, zz1, ent_val, rr, n_cols, zx1, zy1, zrx, zry, xx, xy, yy, n,
     log_weights) = _views(fbuf, ibuf)
    n1, mz, p, nf = ibuf[0], ibuf[1], ibuf[2], ibuf[3]
    t1 = theta[0]
    t1sq = t1 * t1
    a, th_r, s, info = factorize(theta, zz1, rr, rest_factor, pairs, pair_val)
    if info != 0:
        return -np.inf, 0.0
    chol = s  # lower triangle
    logdet = 0.0
    for level in range(n1):
        logdet += np.log(a[level])
    for j in range(mz):
        logdet += 2.0 * np.log(chol[j, j])

    # r = Lambda Z'y* at y* = y - X beta; u = M^{-1} r
    ys1 = zy1 - zx1 @ beta
    ysr = zry - zrx @ beta
    r1 = t1 * ys1
    r_r = th_r * ysr
    u1, u_r = _block_solve(t1, a, th_r, chol, r1, r_r, ptr, ent_col, ent_val)
    yys = yy - 2.0 * (beta @ xy) + beta @ (xx @ beta)
    pwrss = yys - (r1 @ u1 + r_r @ u_r)

    # envelope theorem: d pwrss / d log theta_k = -2 sum_{j in k} b_j [Z'(y* - Z b)]_j
    b1 = t1 * u1
    br = th_r * u_r
    g1 = zz1 * b1
    gr = rr @ br
    for level in range(n1):
        for i in range(ptr[level], ptr[level + 1]):
            c = ent_col[i]
            g1[level] += ent_val[i] * br[c]
            gr[c] += ent_val[i] * b1[level]
    d_pwrss = np.zeros(nf)
    for level in range(n1):
        d_pwrss[0] -= 2.0 * b1[level] * (ys1[level] - g1[level])
    for j in range(mz):
        d_pwrss[rest_factor[j]] -= 2.0 * br[j] * (ysr[j] - gr[j])
    xzb = zx1.T @ b1 + zrx.T @ br
    var = sigma * sigma
    for k in range(p):
        d_beta[k] = (xy[k] - xx[k] @ beta - xzb[k]) / var

    # d log|M| / d log theta_k = 2 (n_k - tr_k M^{-1}); S^{-1} in the lower triangle
    trace = np.zeros(nf)
    if probes.shape[0] > 0:
        if probed_traces(chol, probes, small_cols, t1sq, a, th_r, rest_factor, ptr, ent_col,
                          ent_val, trace) != 0:
            return -np.inf, 0.0
        for k in range(nf):
            d_log_theta[k] = -0.5 * (2.0 * (n_cols[k] - trace[k]) + d_pwrss[k] / var)
        value = -0.5 * (logdet + n * (_LOG_2PI + np.log(var)) + pwrss / var - log_weights)
        return value, -n / sigma + pwrss / (var * sigma)
    if lapack(1, s) != 0:
        return -np.inf, 0.0
    s_inv = s
    for j in range(mz):
        trace[rest_factor[j]] += s_inv[j, j]
    for level in range(n1):
        quad = 0.0
        for i in range(ptr[level], ptr[level + 1]):
            ci = ent_col[i]
            wi = ent_val[i] * th_r[ci]
            acc = 0.5 * wi * s_inv[ci, ci]
            for j in range(ptr[level], i):
                cj = ent_col[j]
                acc += ent_val[j] * th_r[cj] * s_inv[ci, cj]
            quad += 2.0 * wi * acc
        trace[0] += 1.0 / a[level] + t1sq * quad / (a[level] * a[level])
    for k in range(nf):
        d_log_theta[k] = -0.5 * (2.0 * (n_cols[k] - trace[k]) + d_pwrss[k] / var)
    value = -0.5 * (logdet + n * (_LOG_2PI + np.log(var)) + pwrss / var - log_weights)
    return value, -n / sigma + pwrss / (var * sigma)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _scalar_draw(theta: np.ndarray, fbuf: np.ndarray, ibuf: np.ndarray, pairs: np.ndarray,
                 pair_val: np.ndarray, r1: np.ndarray, r_r: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, int]:  # pragma: no cover
    """``b = Lambda M^{-1} r`` for a given right-hand side ``r`` (first factor, rest), and info."""
    ptr, ent_col, rest_factor, zz1, ent_val, rr = _views(fbuf, ibuf)[:6]
    a, th_r, chol, info = factorize(theta, zz1, rr, rest_factor, pairs, pair_val)
    if info != 0:
        return r1 * np.nan, r_r * np.nan, info
    u1, u_r = _block_solve(theta[0], a, th_r, chol, r1, r_r, ptr, ent_col, ent_val)
    return theta[0] * u1, th_r * u_r, 0


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _scalar_logp(x: np.ndarray, grad: np.ndarray, fbuf: np.ndarray, ibuf: np.ndarray,
                 pairs: np.ndarray, pair_val: np.ndarray, probes: np.ndarray,
                 small_cols: np.ndarray, factor_block: np.ndarray, prior_code: np.ndarray,
                 prior_par: np.ndarray) -> float:  # pragma: no cover - compiled
    """Log posterior over ``[beta | log sigma | log sd (one per term)]`` and its gradient.

    The same density, priors and Jacobians as
    :func:`hierlm.bayes.likelihood_model.likelihood_logp` (tested as its twin).
    """
    p, nf = ibuf[2], ibuf[3]
    beta = x[:p]
    log_sigma = x[p]
    sigma = np.exp(log_sigma)
    theta = np.empty(nf)
    for k in range(nf):
        theta[k] = np.exp(x[p + 1 + factor_block[k]] - log_sigma)
    if not (np.isfinite(sigma) and sigma > 0.0 and np.all(np.isfinite(theta))):
        return -np.inf
    d_beta = np.empty(p)
    d_log_theta = np.empty(nf)
    logp, d_sigma = _scalar_loglik(theta, beta, sigma, fbuf, ibuf, pairs, pair_val, probes,
                                   small_cols, d_beta, d_log_theta)
    if not np.isfinite(logp):
        return -np.inf
    grad[:p] = d_beta
    grad[p] = sigma * d_sigma
    for k in range(nf):
        grad[p + 1 + factor_block[k]] = d_log_theta[k]
        grad[p] -= d_log_theta[k]
    for k in range(p):
        value, slope = log_prior_and_slope(prior_code[k], prior_par[k, 0], prior_par[k, 1],
                                           prior_par[k, 2], beta[k])
        logp += value
        grad[k] += slope
    value, slope = log_prior_and_slope(prior_code[p], prior_par[p, 0], prior_par[p, 1],
                                       prior_par[p, 2], sigma)
    logp += value + log_sigma
    grad[p] += slope * sigma + 1.0
    for i in range(nf):
        row = p + 1 + i
        sd = np.exp(x[row])
        value, slope = log_prior_and_slope(prior_code[row], prior_par[row, 0], prior_par[row, 1],
                                           prior_par[row, 2], sd)
        logp += value + x[row]
        grad[row] += slope * sd + 1.0
    return logp



def _rest_columns(cp: CrossProducts) -> list[tuple[int, slice]]:
    """``(factor index, its columns among the rest factors' levels)`` for factors 1, 2, ..."""
    return [(k, slice(off, off + f.n_levels))
            for k, (f, off) in enumerate(zip(cp.factors[1:], cp.rest_offsets, strict=True), start=1)]

class ScalarFactorLikelihood:
    """The one likelihood, compiled, for designs of scalar terms on distinct factors.

    It answers :meth:`evaluate` as :class:`hierlm.lmm.likelihood.GaussianLikelihood`
    does, with ``phi`` lme4's theta (one entry per term).

    Parameters
    ----------
    design : Design
        A design for which :func:`scalar_terms_only` holds.
    cp : CrossProducts, optional
        Its cross-products (formed if not given).
    probed : bool, optional
        Whether :meth:`logp` probes the log-determinant's gradient; default: past
        ``PROBED_GRADIENT_WIDTH`` dense columns.
    """

    def __init__(self, design: Design, cp: CrossProducts | None = None,
                 probed: bool | None = None) -> None:
        if not scalar_terms_only(design):
            raise FitError("the compiled crossed likelihood needs scalar random-effect terms on "
                           "distinct grouping factors and no residual structure")
        cp = crossproducts(design) if cp is None else cp
        self.design, self.cp = design, cp
        self.n, self.p = cp.n, cp.p
        mz, p, n1 = cp.m_z, cp.p, cp.first.n_levels
        n_factors = len(cp.factors)
        self._theta_of_factor = np.array([int(f.t_theta[0]) for f in cp.factors], dtype=np.int64)
        #: design block of each factor (the unconstrained vector's sd order)
        self.factor_block = np.array([int(f.blocks[0]) for f in cp.factors], dtype=np.int64)
        rest_factor = np.empty(mz, dtype=np.int64)
        for k, columns in _rest_columns(cp):
            rest_factor[columns] = k
        vals = cp.vals[0]
        z_part = cp.cols < mz
        ptr = np.searchsorted(cp.pos_level[z_part], np.arange(n1 + 1))
        zxy1 = np.zeros((n1, p + 1))
        zxy1[cp.pos_level[~z_part], cp.cols[~z_part] - mz] = vals[~z_part]
        n_cols = [f.n_levels for f in cp.factors]
        rr = cp.rr
        self._fbuf = np.concatenate([
            cp.zz_first[:, 0, 0], vals[z_part], rr[:mz, :mz].ravel(), n_cols,
            zxy1[:, :p].ravel(), zxy1[:, p], rr[:mz, mz:mz + p].ravel(), rr[:mz, mz + p],
            rr[mz:mz + p, mz:mz + p].ravel(), rr[mz:mz + p, mz + p],
            [rr[mz + p, mz + p], cp.n, cp.log_weights]]).astype(float)
        self._ibuf = np.concatenate([
            [n1, mz, p, n_factors, int(z_part.sum())], ptr, cp.cols[z_part],
            rest_factor]).astype(np.int64)
        self._n_factors = n_factors
        self._ibuf_rest_factor = rest_factor
        self._pairs, self._pair_val = schur_pairs(ptr.astype(np.int64),
                                                   cp.cols[z_part].astype(np.int64),
                                                   np.ascontiguousarray(vals[z_part], dtype=float),
                                                   mz)
        self._no_probes = np.zeros((0, mz))
        small = [np.arange(mz)[columns] for k, columns in _rest_columns(cp)
                 if cp.factors[k].n_levels <= EXACT_TRACE_LEVELS]
        self._small_cols = (np.concatenate(small) if small else np.zeros(0)).astype(np.int64)
        #: whether :meth:`logp` probes the log-determinant's gradient (see ``PROBED_GRADIENT_WIDTH``)
        self.probed = mz > PROBED_GRADIENT_WIDTH if probed is None else bool(probed)
        rng = np.random.default_rng(_PROBE_SEED)
        self._probes = (rng.choice([-1.0, 1.0], size=(N_PROBES, mz)) if self.probed
                        else self._no_probes)

    @property
    def n_phi(self) -> int:
        """Number of covariance parameters (lme4's theta, one per term)."""
        return self._n_factors

    def evaluate(self, beta: np.ndarray, phi: np.ndarray, sigma: float,
                 gradient: bool = True) -> LikelihoodValue:
        """The marginal log-likelihood and its gradient, as ``GaussianLikelihood.evaluate``."""
        phi = np.asarray(phi, dtype=float)
        theta = np.abs(phi[self._theta_of_factor])  # the likelihood is even in each theta
        d_beta = np.empty(self.p)
        d_log_theta = np.empty(self._n_factors)
        value, d_sigma = _scalar_loglik(theta, np.asarray(beta, dtype=float), float(sigma),
                                        self._fbuf, self._ibuf, self._pairs, self._pair_val,
                                        self._no_probes, self._small_cols, d_beta, d_log_theta)
        if not np.isfinite(value):
            raise FitError("the Schur complement of the crossed design is not positive definite")
        d_phi = np.zeros(self._n_factors)
        nonzero = phi[self._theta_of_factor] != 0.0
        d_phi[self._theta_of_factor[nonzero]] = (d_log_theta[nonzero]
                                                 / phi[self._theta_of_factor][nonzero])
        return LikelihoodValue(float(value), d_beta, d_phi if gradient else None, float(d_sigma))

    def logp(self, prior_code: np.ndarray, prior_par: np.ndarray
             ) -> Callable[..., tuple[float, np.ndarray]]:
        """``x -> (log posterior, gradient)`` over ``[beta | log sigma | log sd]``.

        ``prior_code``/``prior_par``: the packed priors of
        :func:`hierlm.bayes.kernel_model.kernel_layout`. The value is exact. Where
        :attr:`probed` (a dense part wider than ``PROBED_GRADIENT_WIDTH``), the gradient of the
        log-determinant is a deterministic estimate by ``N_PROBES`` fixed probe vectors (factors
        of at most ``EXACT_TRACE_LEVELS`` levels exact): NUTS stays exact with it, because the
        leapfrog map is volume-preserving and reversible for any force that is a function of
        position, and the acceptance uses the exact density; only the trajectories' energy
        error grows a little.
        """
        fbuf, ibuf, factor_block = self._fbuf, self._ibuf, self.factor_block
        pairs, pair_val = self._pairs, self._pair_val
        probes, small_cols = self._probes, self._small_cols
        size = self.p + 1 + self._n_factors

        def logp_and_grad(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
            grad = np.zeros(size)
            value = _scalar_logp(np.asarray(x, dtype=float), grad, fbuf, ibuf, pairs, pair_val,
                                 probes, small_cols, factor_block, prior_code, prior_par)
            if not np.isfinite(value):
                return -np.inf, np.zeros(size)
            return float(value), grad

        return logp_and_grad

    def draws(self, thetas: np.ndarray, fixef: np.ndarray, sigma: np.ndarray,
              rng: np.random.Generator, chunk: int = 64) -> list[np.ndarray]:
        """Exact draws of every group effect, one per posterior draw, per design block.

        As :meth:`hierlm.bayes.conditional.SparseConditional.draws`: with
        ``r = Lambda Z'(y - X beta + sigma e_1) + sigma e_2`` (``e_1 ~ N(0, I_n)``,
        ``e_2 ~ N(0, I_q)``), ``b = Lambda M^{-1} r`` is a draw of ``b | y, beta,
        theta, sigma``; ``M`` is factored as for the likelihood.

        Parameters
        ----------
        thetas : numpy.ndarray
            (S, n_theta) lme4's theta per draw.
        fixef : numpy.ndarray
            (S, p) fixed effects.
        sigma : numpy.ndarray
            (S,) residual SDs.
        rng : numpy.random.Generator
            Source of the perturbations.
        chunk : int
            Draws whose ``Z'e_1`` are formed together.

        Returns
        -------
        list of numpy.ndarray
            Per design block, shape (S, levels, 1).
        """
        cp, design = self.cp, self.design
        blocks = [design.blocks[b] for b in self.factor_block]
        z_first = blocks[0].sparse_z()
        z_rest = sp.hstack([b.sparse_z() for b in blocks[1:]], format="csc")
        if design.has_weights:
            root = sp.diags(np.sqrt(np.asarray(design.weights, dtype=float)))
            z_first, z_rest = root @ z_first, root @ z_rest
        zt_first, zt_rest = z_first.T.tocsr(), z_rest.T.tocsr()
        (_, _, _, _, _, _, _, zx1, zy1, zrx, zry, *_rest) = _views(self._fbuf, self._ibuf)
        n_draws, n1, mz = thetas.shape[0], cp.first.n_levels, cp.m_z
        first = np.empty((n_draws, n1))
        rest = np.empty((n_draws, mz))
        def solve(s: int, r1: np.ndarray, r_r: np.ndarray) -> None:
            b1, br, info = _scalar_draw(np.abs(thetas[s][self._theta_of_factor]), self._fbuf,
                                        self._ibuf, self._pairs, self._pair_val, r1, r_r)
            if info != 0:
                raise FitError("the Schur complement of the crossed design is not positive "
                               f"definite at posterior draw {s}")
            first[s], rest[s] = b1, br

        # the kernel releases the GIL: draws are solved in parallel threads, one BLAS thread each
        workers = min(os.cpu_count() or 1, chunk) if mz > PARALLEL_DRAW_WIDTH else 1
        with ThreadPoolExecutor(max_workers=workers) as pool, \
                threadpool_limits(limits=1, user_api="blas"):
            for start in range(0, n_draws, chunk):
                stop = min(start + chunk, n_draws)
                noise = rng.standard_normal((z_first.shape[0], stop - start))  # stored rows
                noise_first = np.asarray(zt_first @ noise)
                noise_rest = np.asarray(zt_rest @ noise)
                jobs = []
                for s in range(start, stop):
                    theta = np.abs(thetas[s][self._theta_of_factor])
                    beta, sd = fixef[s], float(sigma[s])
                    t_rest = theta[self._ibuf_rest_factor]
                    r1 = theta[0] * (zy1 - zx1 @ beta + sd * noise_first[:, s - start])
                    r1 += sd * rng.standard_normal(n1)
                    r_r = t_rest * (zry - zrx @ beta + sd * noise_rest[:, s - start])
                    r_r += sd * rng.standard_normal(mz)
                    jobs.append(pool.submit(solve, s, r1, r_r))
                for job in jobs:
                    job.result()
        out: list[np.ndarray] = [np.zeros(0)] * len(design.blocks)
        out[int(self.factor_block[0])] = first[:, :, None]
        for k, columns in _rest_columns(cp):
            out[int(self.factor_block[k])] = rest[:, columns, None]
        return out
