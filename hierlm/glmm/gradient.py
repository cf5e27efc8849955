"""The gradient of the Laplace deviance, from one PIRLS mode instead of a PIRLS run per coordinate.

The Laplace deviance (:meth:`hierlm.glmm.pirls.GlmmProblem.laplace_terms`) is
``D(phi) = pdev(v_hat, phi) + log|M(phi, eta_hat)|`` with the modes ``v_hat(phi)``
solving ``F(v, phi) = R' s(eta) - P v = 0`` (``R = [A1 | rest]``, ``s`` the score,
``P`` the penalty) and ``M = R'WR + P`` at the Laplace weights ``W(eta)``. Its total
derivative needs no new PIRLS run:

* ``pdev`` is stationary in ``v`` at the mode, so only its partial derivative counts;
* ``log|M|`` moves with ``eta`` by ``c_i = w'_i l_i`` per row (``w'`` the
  derivative of the Laplace weight in ``eta``, ``l_i = r_i' M^-1 r_i`` the row's
  leverage), and ``eta`` moves with the modes, ``dv = M_o^-1 dF`` (``M_o`` the
  system at the observed information ``-ds/deta``, equal to ``M`` for canonical
  links and NB2's weights); with ``g = M_o^-1 R'c`` the modes' share is ``g' dF``.

So ``dD/dphi_k = d/dphi_k [pdev + log|M| + g'F]`` at fixed modes and fixed ``g``.
For the fixed effects this is ``X'(c - 2 s - W_o R g)``; for a covariance parameter
``core' dR_k u + s' dR_k g + 2 tr(M^-1 R'W dR_k)`` (``core`` the vector in the
fixed effects' bracket), the trace from the rows' own-level entries of ``M^-1 r_i``
(two triangular solves per row block, as for the leverages); for NB2's log
dispersion a central difference of the fixed-mode expression (one factorisation
per side, smooth to rounding: no PIRLS tolerance in it). ``w'`` and ``-ds/deta``
are elementwise central differences (the family supplies weights and scores, not
their derivatives).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.glmm.pirls import GlmmProblem, Mode, System
from hierlm.glmm.system import Factor, RestColumns, _RowScaled

__all__ = ["laplace_gradient"]

_STEP = 1e-5        # relative step of the fixed-mode differences in theta and log dispersion
_ETA_STEP = 1e-5    # relative step of the elementwise differences in eta
_CHUNK = 2_000_000  # entries of the dense row blocks formed at a time for the leverages


def laplace_gradient(problem: GlmmProblem, mode: Mode, theta: np.ndarray, beta: np.ndarray | None,
                     dispersion: float | None) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """``dD/dtheta``, ``dD/dbeta`` (None when ``beta`` is solved inside PIRLS) and ``dD/dlog(dispersion)``.

    Parameters
    ----------
    problem : GlmmProblem
        The design and family.
    mode : Mode
        The PIRLS mode at ``(theta, beta, dispersion)``.
    theta, beta, dispersion
        Where the gradient is taken; ``beta=None`` is the first stage's criterion
        (fixed effects inside the modes).

    Raises
    ------
    numpy.linalg.LinAlgError, FitError
        When the observed-information system is not positive definite (a
        non-canonical link far from the optimum); the caller falls back to
        differences of the deviance.
    """
    family = problem.family
    y, pw = problem.y, problem.prior_weights
    system = problem.system(theta, beta)
    joint = beta is None
    u1 = mode.u1
    v2 = np.concatenate([mode.u2, mode.beta]) if joint else mode.u2
    eta, mu = mode.eta, mode.mu
    score = problem.score(eta, mu, dispersion)
    h = _ETA_STEP * np.maximum(1.0, np.abs(eta))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        w_prime = (family.laplace_weights(y, eta + h, pw, dispersion)
                   - family.laplace_weights(y, eta - h, pw, dispersion)) / (2.0 * h)
        observed = -(_score_at(problem, eta + h, dispersion)
                     - _score_at(problem, eta - h, dispersion)) / (2.0 * h)
    factor = mode.factor
    laplace = family.laplace_weights(y, eta, pw, dispersion)
    if np.allclose(observed, laplace, rtol=1e-6, atol=1e-9 * float(np.max(np.abs(laplace)))):
        observed, factor_o = laplace, factor
    else:
        factor_o = Factor(problem.structure, system.a1, system.rest, system.penalty, observed)
    lev, own = _row_solves(system, factor)
    c = w_prime * lev
    g1, g2 = factor_o.solve(*_transpose_times(system, c))
    rg = system.eta(g1, g2)[0] - system.fixed_eta
    core = c - 2.0 * score - observed * rg
    grad_beta = None if joint else problem.X.T @ core
    grad_theta = _theta_gradient(problem, theta, mode, g1, g2, core, score, laplace, own)

    grad_disp = None
    if dispersion is not None:
        def fixed_mode(dispersion_k: float) -> float:
            eta_k = system.eta(u1, v2)[0]
            mu_k = family.link.inverse(eta_k)
            pdev, factor_k = problem.laplace_terms(system, u1, v2, eta_k, mu_k, dispersion_k)
            f1, f2 = _transpose_times(system, problem.score(eta_k, mu_k, dispersion_k))
            f2 = f2 - system.penalty * v2
            return pdev + factor_k.logdet + float(np.sum(g1 * (f1 - u1)) + np.dot(g2, f2))

        log_k = float(np.log(dispersion))
        step = _STEP * max(1.0, abs(log_k))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            grad_disp = (fixed_mode(float(np.exp(log_k + step)))
                         - fixed_mode(float(np.exp(log_k - step)))) / (2.0 * step)
    return grad_theta, grad_beta, grad_disp


def _theta_gradient(problem: GlmmProblem, theta: np.ndarray, mode: Mode, g1: np.ndarray,
                    g2: np.ndarray, core: np.ndarray, score: np.ndarray, weights: np.ndarray,
                    own: list[np.ndarray]) -> np.ndarray:
    """``dD/dtheta_k = core' dR_k u + s' dR_k g + 2 tr(M^-1 R'W dR_k)``.

    ``theta_k`` is entry ``(row, col)`` of block ``b``'s template, so ``dR_k`` has one
    entry per data row: ``z_i[row]`` in column ``col`` of the row's level of ``b``; the
    trace is ``2 sum_i w_i z_i[row] (M^-1 r_i)[b, level, col]`` with the row's own-level
    entries ``own[b]`` of ``M^-1 r_i``.
    """
    s = problem.structure
    layout = s.layout
    blocks = problem.design.blocks
    u_blocks = s.split_u(mode.u1, mode.u2)
    g_blocks = s.split_u(g1, g2[:s.m_rest])
    out = np.empty(layout.size)
    for k in range(layout.size):
        b, row, col = int(layout.block[k]), int(layout.row[k]), int(layout.col[k])
        codes = blocks[b].codes
        z_row = np.asarray(blocks[b].z, dtype=float)[:, row]
        moved = z_row * u_blocks[b][codes, col]          # d eta / d theta_k at fixed modes
        shifted = z_row * g_blocks[b][codes, col]        # dR_k g
        trace = 2.0 * float(np.sum(weights * z_row * own[b][:, col]))
        out[k] = float(np.dot(core, moved) + np.dot(score, shifted)) + trace
    return out


def _score_at(problem: GlmmProblem, eta: np.ndarray, dispersion: float | None) -> np.ndarray:
    return problem.score(eta, problem.family.link.inverse(eta), dispersion)


def _transpose_times(system: System, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``R' c`` as ``((n1, q1) first part, (m,) rest)``."""
    s = system.structure
    if s.q1 == 1:
        first = np.bincount(s.codes1, weights=system.a1[:, 0] * c, minlength=s.n1)[:, None]
    else:
        first = np.asarray(s.indicator @ (system.a1 * c[:, None]))
    rest = system.rest
    if rest is None:
        return first, np.zeros(0)
    second = rest.rmatvec(c) if isinstance(rest, RestColumns) else rest.T @ c
    return first, np.asarray(second)


def _row_solves(system: System, factor: Factor) -> tuple[np.ndarray, list[np.ndarray]]:
    """Leverages ``r_i' M^-1 r_i`` and, per design block, the row's own-level entries of ``M^-1 r_i``.

    With the block Cholesky factor ``L`` (:class:`~hierlm.glmm.system.Factor`):
    ``z = L^-1 r_i`` gives the leverage ``|z|^2`` and ``L^-T z = M^-1 r_i``; of the latter
    only the entries at the row's own levels are kept (``(n, q_b)`` per block).
    """
    s = system.structure
    blocks = s.design.blocks
    codes = s.codes1
    n = codes.size
    l11_inv_rows = factor.l11_inv[codes]
    z1 = np.einsum("iab,ib->ia", l11_inv_rows, system.a1)
    lev = np.sum(z1 * z1, axis=1)
    x1 = z1
    m = factor.m
    own: list[np.ndarray] = [np.empty(0)] * len(blocks)
    rest_own = [np.empty((n, blocks[k].q)) for k in s.rest]
    if m:
        rest = system.rest
        assert rest is not None
        y = factor.y
        y_dense = None
        if not isinstance(y, _RowScaled):  # (one row per level: Y's row of row i is scale_i r_i)
            y_dense = (y.toarray() if isinstance(y, sp.csr_matrix) else np.asarray(y))
            y_dense = y_dense.reshape(s.n1, s.q1, m)
        offsets = np.cumsum([0] + list(s.rest_widths))
        x1 = np.empty_like(z1)
        rows_per_chunk = max(1, _CHUNK // max(1, m * s.q1))
        for start in range(0, n, rows_per_chunk):
            rows = np.arange(start, min(n, start + rows_per_chunk))
            r_rows = _rest_rows(rest, rows)
            if isinstance(y, _RowScaled):
                t = r_rows * (1.0 - y.scale[rows] * z1[rows, 0])[:, None]
            else:
                assert y_dense is not None
                t = r_rows - np.einsum("ia,iam->im", z1[rows], y_dense[codes[rows]])
            z2 = sla.solve_triangular(factor.ls, t.T, lower=True, check_finite=False)
            lev[rows] += np.sum(z2 * z2, axis=0)
            x2 = sla.solve_triangular(factor.ls, z2, lower=True, trans="T", check_finite=False)
            if isinstance(y, _RowScaled):
                y_x2 = (y.scale[rows] * np.einsum("im,mi->i", r_rows, x2))[:, None]
            else:
                assert y_dense is not None
                y_x2 = np.einsum("iam,mi->ia", y_dense[codes[rows]], x2)
            x1[rows] = np.einsum("iba,ib->ia", l11_inv_rows[rows], z1[rows] - y_x2)
            index = np.arange(rows.size)
            for j, k in enumerate(s.rest):
                q = blocks[k].q
                columns = offsets[j] + blocks[k].codes[rows, None] * q + np.arange(q)[None, :]
                rest_own[j][rows] = x2[columns, index[:, None]]
    elif factor.diagonal is not None:
        x1 = z1 / np.sqrt(factor.diagonal[codes])[:, None]
    else:
        x1 = np.einsum("iba,ib->ia", l11_inv_rows, z1)
    offset = 0
    for k in s.first:
        q = blocks[k].q
        own[k] = x1[:, offset:offset + q]
        offset += q
    for j, k in enumerate(s.rest):
        own[k] = rest_own[j]
    return lev, own


def _rest_rows(rest: RestColumns | np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Dense rows of the rest columns."""
    if isinstance(rest, np.ndarray):
        return rest[rows]
    if not rest.scalar:
        assert rest.sparse is not None
        return np.asarray(rest.sparse.tocsr()[rows].toarray())
    out = np.zeros((rows.size, rest.shape[1]))
    offset = 0
    index = np.arange(rows.size)
    for codes, zt, levels in rest.parts:
        out[index, offset + codes[rows]] = zt[rows]
        offset += levels
    if rest.X is not None:
        out[:, rest.m_z:] = rest.X[rows]
    return out
