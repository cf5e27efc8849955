"""Marginal formulation: group effects integrated out analytically (Gaussian models).

With every block on one grouping factor, ``V = sigma^2 I + Z G Z'`` is block
diagonal by level ``j``. Write ``G_j = L L'`` (``L`` block diagonal, one
Cholesky factor per block), ``r_j = y_j - X_j beta`` and

    M_j = I + L' Z_j'Z_j L / sigma^2,      w_j = L' Z_j' r_j.

The matrix determinant lemma and Woodbury's identity give

    log|V_j| = n_j log sigma^2 + log|M_j|
    r_j' V_j^-1 r_j = (r_j'r_j - w_j' M_j^-1 w_j / sigma^2) / sigma^2

so the log-likelihood needs only the per-level cross-products ``Z_j'Z_j``,
``Z_j'X_j``, ``Z_j'y_j`` and the totals ``X'X``, ``X'y``, ``y'y``
(:mod:`hierlm.bayes.groupstats`): each evaluation costs O(J Q^3), whatever n.
``M_j`` has eigenvalues >= 1, so the formulas stay well conditioned even when
an SD is zero (``L`` singular), and no ``G^-1`` is ever formed.

For Q <= 3 columns per level, determinants and ``w' M^-1 w`` are written in
closed form (adjugate), an elementwise graph that compiles in a fraction of
the time of a batched Cholesky; larger Q uses batched Cholesky.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from hierlm.bayes.groupstats import GroupStats, group_stats, shared_group
from hierlm.bayes.parameters import add_parameters, model_coords
from hierlm.bayes.priors import PriorTable
from hierlm.design.blocks import Design

__all__ = [
    "MARGINAL_POTENTIAL",
    "can_marginalize",
    "build_marginal_model",
    "marginal_loglik",
    "inverse_and_logdet",
    "stack_block_chols",
]

MARGINAL_POTENTIAL = "marginal_loglik"


def can_marginalize(design: Design, family: str = "gaussian") -> bool:
    """True when the marginal formulation applies: Gaussian, every block on one factor.

    Parameters
    ----------
    design : Design
        The model's design.
    family : str
        Response family; only ``"gaussian"`` can be marginalised.

    Returns
    -------
    bool
        Whether :func:`build_marginal_model` accepts the design.
    """
    return family == "gaussian" and shared_group(design) is not None


def stack_block_chols(chols: list[TensorVariable], slices: tuple[slice, ...]) -> TensorVariable:
    """Place each block's Cholesky factor on the diagonal of one (Q, Q) matrix."""
    if len(chols) == 1:
        return chols[0]
    q_total = slices[-1].stop
    stacked = pt.zeros((q_total, q_total))
    for chol, cols in zip(chols, slices, strict=True):
        stacked = pt.set_subtensor(stacked[cols, cols], chol)
    return stacked


def inverse_and_logdet(m: TensorVariable, q: int) -> tuple[TensorVariable, TensorVariable]:
    """Return ``M_j^-1`` (J, q, q) and ``log|M_j|`` (J,) for a batch of SPD matrices.

    Closed form (adjugate over determinant) for q <= 3, an elementwise graph
    that compiles fast on every backend; batched Cholesky for larger q.
    """
    if q == 1:
        det = m[:, 0, 0]
        return (1.0 / det)[:, None, None], pt.log(det)
    if q == 2:
        a, b, d = m[:, 0, 0], m[:, 0, 1], m[:, 1, 1]
        det = a * d - b**2
        adjugate = pt.stack([pt.stack([d, -b], axis=1), pt.stack([-b, a], axis=1)], axis=1)
        return adjugate / det[:, None, None], pt.log(det)
    if q == 3:
        a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
        d, e, f = m[:, 1, 1], m[:, 1, 2], m[:, 2, 2]
        adj00, adj01, adj02 = d * f - e**2, c * e - b * f, b * e - c * d
        adj11, adj12, adj22 = a * f - c**2, b * c - a * e, a * d - b**2
        det = a * adj00 + b * adj01 + c * adj02
        adjugate = pt.stack(
            [
                pt.stack([adj00, adj01, adj02], axis=1),
                pt.stack([adj01, adj11, adj12], axis=1),
                pt.stack([adj02, adj12, adj22], axis=1),
            ],
            axis=1,
        )
        return adjugate / det[:, None, None], pt.log(det)
    chol = pt.linalg.cholesky(m)
    chol_inv = pt.linalg.solve_triangular(chol, pt.eye(q)[None, :, :], lower=True)
    inverse = pt.sum(chol_inv[:, :, :, None] * chol_inv[:, :, None, :], axis=1)
    return inverse, 2 * pt.sum(pt.log(pt.diagonal(chol, axis1=1, axis2=2)), axis=1)


def _relative_precision(stats: GroupStats, chol: TensorVariable, sigma: TensorVariable):
    """``M_j = I + L' Z_j'Z_j L / sigma^2`` for all levels (sums over broadcast axes)."""
    q = stats.q_total
    ztz = pt.as_tensor(stats.ztz)
    s_l = pt.sum(ztz[:, :, :, None] * chol[None, None, :, :], axis=2)  # S_j L
    l_s_l = pt.sum(chol[None, :, :, None] * s_l[:, :, None, :], axis=1)  # L' S_j L
    return pt.eye(q)[None, :, :] + l_s_l / sigma**2


def _componentwise_terms(
    stats: GroupStats, fixef: TensorVariable, sigma: TensorVariable, chol: TensorVariable
) -> tuple[TensorVariable, TensorVariable]:
    """``sum_j log|M_j|`` and ``sum_j w_j' M_j^-1 w_j`` for Q <= 3, on per-level vectors.

    Every quantity is a length-J vector combined elementwise with the scalar
    entries of ``L``: no 3-d tensors, slices or stacks, so the graph fuses into
    a few loops on any backend (and its gradient does too).
    """
    q = stats.q_total
    entry = [[chol[a, b] for b in range(q)] for a in range(q)]
    ztz = [[pt.as_tensor(np.ascontiguousarray(stats.ztz[:, a, b])) for b in range(q)] for a in range(q)]
    resid = [
        pt.as_tensor(np.ascontiguousarray(stats.zty[:, a]))
        - sum(
            pt.as_tensor(np.ascontiguousarray(stats.ztx[:, a, k])) * fixef[k]
            for k in range(stats.ztx.shape[2])
        )
        for a in range(q)
    ]
    # T = S_j L, A = L' T, M = I + A / sigma^2, w = L' r_j (zero entries of L are skipped)
    lower = [[(a, b) for b in range(q) if a >= b] for a in range(q)]
    s_l = [
        [sum(ztz[a][k] * entry[k][b] for k in range(q) if (k, b) in lower[k]) for b in range(q)]
        for a in range(q)
    ]
    precision = {}
    for a in range(q):
        for b in range(a, q):
            a_ab = sum(entry[k][a] * s_l[k][b] for k in range(q) if (k, a) in lower[k])
            precision[a, b] = (1.0 if a == b else 0.0) + a_ab / sigma**2
    w = [sum(entry[k][a] * resid[k] for k in range(q) if (k, a) in lower[k]) for a in range(q)]
    m = {**precision, **{(b, a): v for (a, b), v in precision.items()}}
    if q == 1:
        det = m[0, 0]
        quad = w[0] ** 2 / det
    elif q == 2:
        det = m[0, 0] * m[1, 1] - m[0, 1] ** 2
        quad = (m[1, 1] * w[0] ** 2 - 2 * m[0, 1] * w[0] * w[1] + m[0, 0] * w[1] ** 2) / det
    else:
        adj00 = m[1, 1] * m[2, 2] - m[1, 2] ** 2
        adj01 = m[0, 2] * m[1, 2] - m[0, 1] * m[2, 2]
        adj02 = m[0, 1] * m[1, 2] - m[0, 2] * m[1, 1]
        adj11 = m[0, 0] * m[2, 2] - m[0, 2] ** 2
        adj12 = m[0, 1] * m[0, 2] - m[0, 0] * m[1, 2]
        adj22 = m[0, 0] * m[1, 1] - m[0, 1] ** 2
        det = m[0, 0] * adj00 + m[0, 1] * adj01 + m[0, 2] * adj02
        quad = (
            adj00 * w[0] ** 2
            + adj11 * w[1] ** 2
            + adj22 * w[2] ** 2
            + 2 * (adj01 * w[0] * w[1] + adj02 * w[0] * w[2] + adj12 * w[1] * w[2])
        ) / det
    return pt.sum(pt.log(det)), pt.sum(quad)


def marginal_loglik(
    stats: GroupStats,
    fixef: TensorVariable | None,
    sigma: TensorVariable,
    chol: TensorVariable,
    reml: bool = False,
) -> TensorVariable:
    """Symbolic marginal log-likelihood ``log p(y | beta, sigma, G)`` (b integrated out).

    Parameters
    ----------
    stats : GroupStats
        Per-level cross-products.
    fixef : TensorVariable or None
        Fixed effects (p,). Not used (may be None) when ``reml``.
    sigma : TensorVariable
        Residual SD.
    chol : TensorVariable
        ``L`` (Q, Q) with ``G_j = L L'`` for every level.
    reml : bool
        If True, return the REML log-likelihood: ``beta`` integrated out under
        a flat prior, ``log p(y | beta_hat) - 1/2 log|X'V^-1 X| + p/2 log(2 pi)``
        with ``beta_hat`` the GLS estimate.

    Returns
    -------
    TensorVariable
        Scalar log-likelihood.
    """
    q = stats.q_total
    p = stats.xtx.shape[0]
    two_pi_sigma2 = 2 * np.pi * sigma**2
    rtr = None
    if not reml:
        if fixef is None:
            raise ValueError("fixef is needed unless reml=True")
        rtr = stats.yty - 2 * pt.sum(fixef * stats.xty) + pt.sum(stats.xtx * fixef[:, None] * fixef[None, :])
    if fixef is not None and rtr is not None and q <= 3:
        logdet_sum, quad = _componentwise_terms(stats, fixef, sigma, chol)
        return -0.5 * (stats.n * pt.log(two_pi_sigma2) + logdet_sum + (rtr - quad / sigma**2) / sigma**2)
    m_inverse, logdet = inverse_and_logdet(_relative_precision(stats, chol, sigma), q)
    if not reml:
        zt_resid = pt.as_tensor(stats.zty) - pt.sum(pt.as_tensor(stats.ztx) * fixef, axis=2)
        w = pt.sum(zt_resid[:, :, None] * chol[None, :, :], axis=1)  # L' Z_j' r_j
        quad = pt.sum(w[:, :, None] * m_inverse * w[:, None, :])
        return -0.5 * (stats.n * pt.log(two_pi_sigma2) + pt.sum(logdet) + (rtr - quad / sigma**2) / sigma**2)
    # REML: with C = [y, X], sigma^2 C'V^-1 C = C'C - sum_j W_j' M_j^-1 W_j / sigma^2,
    # where W_j = L' Z_j' C_j; beta_hat and the profiled residual come from its blocks.
    ztc = np.concatenate([stats.zty[:, :, None], stats.ztx], axis=2)  # (J, Q, p + 1)
    ctc = np.block([[np.array([[stats.yty]]), stats.xty[None, :]], [stats.xty[:, None], stats.xtx]])
    w = pt.sum(pt.as_tensor(ztc)[:, :, None, :] * chol[None, :, :, None], axis=1)  # (J, Q, p+1)
    m_inverse_w = pt.sum(m_inverse[:, :, :, None] * w[:, None, :, :], axis=2)
    gram = pt.as_tensor(ctc) - pt.sum(w[:, :, :, None] * m_inverse_w[:, :, None, :], axis=(0, 1)) / sigma**2
    xvx, xvy, yvy = gram[1:, 1:], gram[1:, 0], gram[0, 0]
    chol_x = pt.linalg.cholesky(xvx)
    half = pt.linalg.solve_triangular(chol_x, xvy, lower=True)
    pwrss = yvy - pt.sum(half**2)
    logdet_x = 2 * pt.sum(pt.log(pt.diag(chol_x)))
    return -0.5 * ((stats.n - p) * pt.log(two_pi_sigma2) + pt.sum(logdet) + logdet_x + pwrss / sigma**2)


def build_marginal_model(
    design: Design, priors: PriorTable, stats: GroupStats | None = None
) -> tuple[pm.Model, GroupStats]:
    """Build the marginal PyMC model (group effects integrated out).

    Parameters
    ----------
    design : Design
        A Gaussian design whose blocks share one grouping factor.
    priors : PriorTable
        Resolved priors.
    stats : GroupStats, optional
        Cross-products of ``design`` if already computed.

    Returns
    -------
    model : pymc.Model
        Free variables ``fixef``, ``sigma``, ``sd_<block>``, ``corr_chol_<block>``;
        deterministic ``cor_<block>``; the likelihood is the potential
        ``marginal_loglik``. Group effects are drawn after sampling
        (:func:`hierlm.bayes.conditional.draw_group_effects`).
    stats : GroupStats
        The cross-products the likelihood was built from.

    Raises
    ------
    ValueError
        If the blocks do not share one grouping factor.
    """
    if shared_group(design) is None:
        raise ValueError(
            "the marginal formulation needs every random-effect block on one grouping factor; "
            "use formulation='full'"
        )
    stats = group_stats(design) if stats is None else stats
    with pm.Model(coords=model_coords(design)) as model:
        params = add_parameters(design, priors)
        assert params.sigma is not None  # a Gaussian model always has sigma
        chol = stack_block_chols(params.chols, stats.block_slices)
        pm.Potential(MARGINAL_POTENTIAL, marginal_loglik(stats, params.fixef, params.sigma, chol))
    return model, stats
