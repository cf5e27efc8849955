"""The marginal formulation for every Gaussian design: the one likelihood as a nutpie model.

NUTS moves over the same unconstrained vector as the compiled one-factor
kernel (:mod:`hierlm.bayes.kernel`), ``[beta | log sigma | log sd | raw]``,
with the same priors and transforms; the log-likelihood and its exact
gradient come from :class:`hierlm.lmm.likelihood.GaussianLikelihood` (the
ML/REML criterion's factorisation: crossed and nested designs included). The
chain rule to the sampler's coordinates: the relative factor of a block is
``T = diag(sd) C / sigma`` (``C`` the correlation Cholesky factor), so with
``g = d loglik / d T``

* ``d / d log sd_i = sum_j g_ij T_ij``,
* ``d / d log sigma = sigma d loglik / d sigma - sum_blocks sum_ij g_ij T_ij``,
* ``d / d C_ij = g_ij sd_i / sigma`` (through Stan's transform and the LKJ
  density, :func:`hierlm.bayes.kernel._corr_reverse`).

Designs of scalar terms on distinct factors (``(1 | a) + (1 | b)``, ``(1 | a / b)``)
use the compiled twin :class:`hierlm.bayes.crossed_kernel.ScalarFactorLikelihood`
of the same likelihood and log posterior. Group effects are drawn afterwards
from their exact conditional (:class:`hierlm.bayes.conditional.SparseConditional`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.conditional import SparseConditional
from hierlm.bayes.crossed_kernel import ScalarFactorLikelihood, scalar_terms_only
from hierlm.bayes.crossed_precondition import mode_map, precondition_applies
from hierlm.bayes.kernel import _corr_cholesky, _corr_reverse, log_prior_and_slope
from hierlm.bayes.kernel_model import (
    KernelLayout,
    _start,
    expand_point,
    kernel_layout,
    nutpie_model,
    nutpie_model_of_layout,
    parameter_coords,
)
from hierlm.bayes.naming import FIXEF, SIGMA
from hierlm.design.crossprod import theta_layout
from hierlm.errors import FitError
from hierlm.lmm.likelihood import GaussianLikelihood

__all__ = ["likelihood_logp", "relative_theta", "compile_likelihood_for_nutpie",
           "standardised_nutpie_model", "draw_effects_any_design"]


def _corr_factor(x: np.ndarray, layout: KernelLayout, k: int) -> np.ndarray:
    """The correlation Cholesky factor of block ``k`` at ``x`` (identity if uncorrelated)."""
    q = int(layout.block_q[k])
    out = np.eye(q)
    if layout.block_corr[k]:
        _corr_cholesky(x, layout.p + 1 + layout.q_total + int(layout.block_raw[k]), q, out)
    return out


def relative_theta(sd: list[np.ndarray], corr: list[np.ndarray], sigma: float,
                   positions: Any) -> np.ndarray:
    """lme4's theta of ``T_b = diag(sd_b) C_b / sigma`` (``positions``: a ThetaLayout)."""
    templates = [s[:, None] * c / sigma for s, c in zip(sd, corr, strict=True)]
    return np.array([templates[b][r, c] for b, r, c in
                     zip(positions.block, positions.row, positions.col, strict=True)])


def likelihood_logp(likelihood: GaussianLikelihood, layout: KernelLayout
                    ) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """Return ``x -> (log posterior, gradient)`` over the unconstrained vector."""
    p, q_total = layout.p, layout.q_total
    raw_offset = p + 1 + q_total
    positions = theta_layout(likelihood.design.blocks)
    n_blocks = len(layout.block_q)
    codes, pars = layout.prior_code, layout.prior_par

    def prior(row: int, value: float) -> tuple[float, float]:
        return log_prior_and_slope(int(codes[row]), pars[row, 0], pars[row, 1], pars[row, 2], value)

    def logp_and_grad(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
        x = np.asarray(x, dtype=float)
        beta, log_sigma = x[:p], float(x[p])
        sigma = float(np.exp(log_sigma))
        sd_all = np.exp(x[p + 1:raw_offset])
        if not (np.isfinite(sigma) and sigma > 0 and np.all(np.isfinite(sd_all))):
            return -np.inf, np.zeros_like(x)
        sds, corrs = [], []
        for k in range(n_blocks):
            start, q = int(layout.block_start[k]), int(layout.block_q[k])
            sds.append(sd_all[start:start + q])
            corrs.append(_corr_factor(x, layout, k))
        theta = relative_theta(sds, corrs, sigma, positions)
        try:
            got = likelihood.evaluate(beta, theta, sigma)
        except FitError:
            return -np.inf, np.zeros_like(x)
        assert got.d_phi is not None
        adj = [np.zeros((int(q), int(q))) for q in layout.block_q]
        for value, b, r, c in zip(got.d_phi, positions.block, positions.row, positions.col,
                                  strict=True):
            adj[b][r, c] += value
        grad = np.zeros_like(x)
        logp = got.value
        grad[:p] = got.d_beta
        d_log_sigma = got.d_sigma * sigma
        for k in range(n_blocks):
            start, q = int(layout.block_start[k]), int(layout.block_q[k])
            template = sds[k][:, None] * corrs[k] / sigma
            weighted = adj[k] * template
            grad[p + 1 + start:p + 1 + start + q] = weighted.sum(axis=1)
            d_log_sigma -= float(weighted.sum())
            if layout.block_corr[k]:
                adjoint = np.tril(adj[k] * sds[k][:, None] / sigma)
                offset = raw_offset + int(layout.block_raw[k])
                logp += _corr_reverse(x, offset, q, float(layout.block_eta[k]), adjoint, grad,
                                      offset)
        grad[p] = d_log_sigma
        for k in range(p):
            value, slope = prior(k, float(beta[k]))
            logp += value
            grad[k] += slope
        value, slope = prior(p, sigma)
        logp += value + log_sigma
        grad[p] += slope * sigma + 1.0
        for i in range(q_total):
            row = p + 1 + i
            value, slope = prior(row, float(sd_all[i]))
            logp += value + float(x[row])
            grad[row] += slope * sd_all[i] + 1.0
        if not (np.isfinite(logp) and np.all(np.isfinite(grad))):
            return -np.inf, np.zeros_like(x)
        return float(logp), grad

    return logp_and_grad


def compile_likelihood_for_nutpie(built: BuiltModel, var_names: list[str]) -> Any:
    """A nutpie model of a marginal ``BuiltModel`` whose density is the one likelihood.

    Parameters
    ----------
    built : BuiltModel
        Marginal formulation of any Gaussian design with us/diag blocks.
    var_names : list of str
        Variables to store (see :func:`hierlm.bayes.sample.stored_variables`).

    Returns
    -------
    nutpie compiled model
        Chains start at jittered least-squares values, as with the kernel.
    """
    layout = kernel_layout(built)
    logp: Callable[..., tuple[float, np.ndarray]]
    if scalar_terms_only(built.design):  # the compiled twin (crossed_kernel)
        likelihood = ScalarFactorLikelihood(built.design)
        logp = likelihood.logp(layout.prior_code, layout.prior_par)
        if precondition_applies(likelihood.cp.m_z):  # wide dense part: standardise at the mode
            return standardised_nutpie_model(built, layout, logp, var_names)
    else:
        logp = likelihood_logp(GaussianLikelihood(built.design), layout)
    return nutpie_model_of_layout(built, layout, logp, var_names)


def standardised_nutpie_model(built: BuiltModel, layout: KernelLayout,
                              logp: Callable[..., tuple[float, np.ndarray]],
                              var_names: list[str]) -> Any:
    """The nutpie model of ``logp`` in coordinates standardised at its mode.

    See :mod:`hierlm.bayes.crossed_precondition`: NUTS moves over ``z`` with
    ``x = m + L z``; the stored variables are those of ``x``, so the draws are of the
    same posterior. Chains start at ``z`` uniform on ``[-1, 1]`` per coordinate.
    """
    with threadpool_limits(limits=1, user_api="blas"):  # as the sampler's chains run
        affine = mode_map(logp, _start(built, layout))
    return nutpie_model(layout.size, affine.logp(logp),
                        lambda z: expand_point(affine.to_x(z), layout), np.zeros(layout.size),
                        np.ones(layout.size), var_names, parameter_coords(built))


def draw_effects_any_design(built: BuiltModel, draws: dict[str, np.ndarray],
                            rng: np.random.Generator) -> list[np.ndarray]:
    """Exact draws of every group effect, one per posterior draw, for any design.

    Parameters
    ----------
    built : BuiltModel
        The sampled marginal model.
    draws : dict of str to ndarray
        Posterior draws with (chain, draw) leading axes.
    rng : numpy.random.Generator
        Source of the perturbations.

    Returns
    -------
    list of ndarray
        Per block, shape (chains * draws, levels, q).
    """
    positions = theta_layout(built.design.blocks)
    fixef = draws[FIXEF].reshape(-1, draws[FIXEF].shape[-1])
    sigma = draws[SIGMA].reshape(-1)
    sds = [draws[bn.sd].reshape(sigma.size, -1) for bn in built.names]
    corrs = [draws[bn.corr_chol].reshape(sigma.size, bn.block.q, bn.block.q)
             if bn.corr_chol in draws else None for bn in built.names]
    thetas = np.array([
        relative_theta([sd[s] for sd in sds],
                       [np.eye(sd.shape[1]) if c is None else c[s] for sd, c in zip(sds, corrs,
                                                                                strict=True)],
                       float(sigma[s]), positions)
        for s in range(sigma.size)])
    if scalar_terms_only(built.design):  # the compiled twin's factorisation
        return ScalarFactorLikelihood(built.design).draws(thetas, fixef, sigma, rng)
    return SparseConditional(built.design).draws(thetas, fixef, sigma, rng)
