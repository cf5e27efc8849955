"""Kenward-Roger small-sample inference for the fixed effects of a REML fit.

Kenward & Roger (1997, Biometrics 53: 983-997) correct two things for
``L beta = 0``: the covariance of ``beta_hat`` (``Phi = (X' Sigma^-1 X)^-1``
ignores that the variance parameters are estimated) and the reference
distribution (a scaled F with estimated denominator df). As in pbkrtest (used
by lmerTest's ``ddf = "Kenward-Roger"``), the marginal covariance is written
linearly, ``Sigma = sum_r gamma_r G_r``, with one ``G_r`` per variance and
covariance of every random-effect block (``Z_b (I (x) E_r) Z_b'``) and the
identity for the residual variance, so the second derivatives vanish and

* ``P_r = -X' Sigma^-1 G_r Sigma^-1 X``,
  ``Q_rs = X' Sigma^-1 G_r Sigma^-1 G_s Sigma^-1 X``;
* ``W = 2 I^-1`` with the REML information
  ``I_rs = tr(Sigma^-1 G_r Sigma^-1 G_s) - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s)``;
* ``Phi_A = Phi + 2 Phi [sum_rs W_rs (Q_rs - P_r Phi P_s)] Phi``.

For a contrast matrix ``L`` of rank ``q``, with ``Theta = L' (L Phi L')^-1 L``,
``A1 = sum_rs W_rs tr(Theta Phi P_r Phi) tr(Theta Phi P_s Phi)`` and
``A2 = sum_rs W_rs tr(Theta Phi P_r Phi Theta Phi P_s Phi)``, the denominator df
are ``m = 4 + (q + 2) / (q rho - 1)`` and the F statistic
``(L beta)' (L Phi_A L')^-1 (L beta) / q`` is scaled by
``m (1 - A2 / q) / (m - 2)`` (see :func:`kr_test` for ``rho``).

With patterned random-effect structures or a residual structure the
covariance is not linear in its parameters. Then, as Kenward & Roger's paper,
SAS PROC MIXED (``DDFM=KR``) and mmrm (``"Kenward-Roger"``) do, the adjusted
covariance has the second-derivative term,
``Phi_A = Phi + 2 Phi [sum_rs W_rs (Q_rs - P_r Phi P_s - R_rs / 4)] Phi`` with
``R_rs = X' Sigma^-1 (d^2 Sigma / d gamma_r d gamma_s) Sigma^-1 X``. The
parameters ``gamma`` are the *covariance parameters* (SAS's scale): for each
``us``/``diag`` block its variances and covariances (linear), for a patterned
block its variances and natural correlations, and for the residual structure
those of :meth:`~hierlm.design.residual.base.ResidualStructure.covariance_parameters`
(``cs``: common covariance and residual variance, linear, so residual ``cs``
is the random-intercept model exactly; ``ar1``: variance and ``rho``; ``un``:
every variance and covariance). ``Sigma`` is a sum of one piece per block and
one for the residuals, so second derivatives across pieces vanish; within a
non-linear piece they are central differences of the exact first derivatives
(the structures' ``dS``, by the chain rule through the piece's map from
``gamma`` to the optimiser's parameters). The information is the expected one
(as pbkrtest's).

When all random effects are ``us``/``diag`` blocks on one grouping factor and
the residuals are independent, ``Sigma`` is block-diagonal and every term
above reduces to per-group cross-products (:mod:`hierlm.lmm.kr_grouped`),
for any number of rows and for data held by an engine. Other models use the
dense n x n marginal covariance, as pbkrtest does, limited to
:data:`MAX_ROWS` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.core.ddf import DDF_METHODS, check_ddf
from hierlm.errors import FitError
from hierlm.lmm.kr_grouped import grouped_eligible, grouped_terms
from hierlm.lmm.kr_parameters import covariance_pieces

__all__ = [
    "MAX_ROWS", "DDF_METHODS", "KenwardRoger", "check_ddf", "kenward_roger", "kr_contrast_test", "kr_test",
]

MAX_ROWS = 6000
@dataclass(frozen=True)
class KenwardRoger:
    """The adjusted covariance of the fixed effects and what the tests need.

    Attributes
    ----------
    vcov : numpy.ndarray
        Unadjusted ``Phi`` (p x p).
    vcov_adjusted : numpy.ndarray
        ``Phi_A``.
    P : list of numpy.ndarray
        ``P_r`` per variance parameter.
    W : numpy.ndarray
        ``2 I^-1``, the asymptotic covariance of the variance parameters.
    """

    vcov: np.ndarray
    vcov_adjusted: np.ndarray
    P: list[np.ndarray]
    W: np.ndarray


def _covariance_entries(block: Any) -> list[tuple[int, int]]:
    """The (row, column) of each variance and covariance parameter of a block, column by column."""
    return [(a, b) for b in range(block.q) for a in range(b, block.q) if block.correlated or a == b]


def _derivative_matrices(design: Any, n: int) -> list[np.ndarray]:
    """``G_r`` for every variance/covariance of every block, then the identity (residual)."""
    out = []
    for block in design.blocks:
        codes = np.asarray(block.codes)
        z = np.asarray(block.z, dtype=float)
        same = (codes[:, None] == codes[None, :]).astype(float)
        for a, b in _covariance_entries(block):
            outer = np.outer(z[:, a], z[:, b])
            if a != b:
                outer = outer + outer.T
            out.append(same * outer)
    out.append(np.eye(n))
    return out


def kenward_roger(fit: Any) -> KenwardRoger:
    """Compute the Kenward-Roger adjusted covariance of a REML fit's fixed effects.

    One grouping factor with ``us``/``diag`` blocks and independent residuals
    (the common case) goes through the per-group cross-products
    (:mod:`hierlm.lmm.kr_grouped`), for any number of rows and for data held by
    an engine; other models use the dense marginal covariance of at most
    :data:`MAX_ROWS` rows (for a row-less design: of its square-root rows, whose
    complement in each cell adds only ``(n - rows) / sigma^4`` to the residual
    variance's information).

    Parameters
    ----------
    fit : LmmResult
        A REML fit.

    Returns
    -------
    KenwardRoger

    Raises
    ------
    FitError
        For an ML fit or a dense case above the row limit.
    """
    if not fit.reml:
        raise FitError("Kenward-Roger's method needs a REML fit; refit with method='reml'.")
    design = fit.design
    phi = np.asarray(fit.vcov().to_numpy(), dtype=float)
    if grouped_eligible(design):
        terms = grouped_terms(design, list(fit.covariances()), float(fit.sigma) ** 2)
        return _assemble(terms.P, terms.Q, terms.traces, {}, phi)
    X = np.asarray(design.X, dtype=float)
    m = X.shape[0]
    if m > MAX_ROWS:
        raise FitError(
            f"Kenward-Roger's method for this model works with the dense {m} x {m} covariance "
            f"of the data, limited to {MAX_ROWS} rows (per-group cross-products serve models "
            "whose random effects are all on one grouping factor, with independent residuals); "
            "use ddf='satterthwaite' for this model."
        )
    second: dict[tuple[int, int], np.ndarray] = {}
    if design.residual is None and all(block.structure.is_lme4 for block in design.blocks):
        G = _derivative_matrices(design, m)  # linear in the variances and covariances
        gamma = []
        for block, cov in zip(design.blocks, fit.covariances(), strict=True):
            gamma += [cov[a, b] for a, b in _covariance_entries(block)]
        gamma.append(fit.sigma**2)
        sigma = sum(g * matrix for g, matrix in zip(gamma, G, strict=True))
    else:
        sigma, G, second = _structured_derivatives(fit)
        phi = np.linalg.inv(X.T @ np.linalg.solve(sigma, X))
        phi = (phi + phi.T) / 2.0
    P, Q, traces = _dense_terms(X, sigma, G)
    if design.rowless:  # the cells' complement of the square-root rows: sigma^2 I, no X
        traces[-1, -1] += (design.n - m) / float(fit.sigma) ** 4
    return _assemble(P, Q, traces, second, phi)


def _structured_derivatives(fit: Any) -> tuple[np.ndarray, list[np.ndarray],
                                                 dict[tuple[int, int], np.ndarray]]:
    """``Sigma``, ``dSigma/dgamma`` and the non-zero ``X' Sigma^-1 d^2 Sigma Sigma^-1 X``."""
    pieces = covariance_pieces(fit)
    parts = [piece.matrices(piece.gamma) for piece in pieces]
    sigma = np.sum([matrix for matrix, _ in parts], axis=0)
    G: list[np.ndarray] = [d for _, derivatives in parts for d in derivatives]
    a = np.linalg.solve(sigma, np.asarray(fit.design.X, dtype=float))  # Sigma^-1 X
    second: dict[tuple[int, int], np.ndarray] = {}
    offset = 0
    for piece, (_, derivatives) in zip(pieces, parts, strict=True):
        for (r, s_), matrix in piece.second_derivatives(a).items():
            second[offset + r, offset + s_] = matrix
        offset += len(derivatives)
    return sigma, G, second


def _dense_terms(X: np.ndarray, sigma: np.ndarray, G: list[np.ndarray]
                 ) -> tuple[list[np.ndarray], dict[tuple[int, int], np.ndarray], np.ndarray]:
    """``P_r``, ``Q_rs`` and ``tr(Sigma^-1 G_r Sigma^-1 G_s)`` from the dense ``Sigma`` and ``G_r``."""
    chol = np.linalg.cholesky(sigma)
    sigma_inv = np.linalg.inv(chol).T @ np.linalg.inv(chol)
    sigma_inv_x = sigma_inv @ X
    g_sigma_inv = [m @ sigma_inv for m in G]
    g_sigma_inv_x = [h @ X for h in g_sigma_inv]
    P = [-(o.T @ sigma_inv_x) for o in g_sigma_inv_x]
    P = [(p + p.T) / 2.0 for p in P]
    k = len(G)
    Q = {(r, s): g_sigma_inv_x[r].T @ sigma_inv @ g_sigma_inv_x[s] for r in range(k) for s in range(k)}
    traces = np.empty((k, k))
    for r in range(k):
        for s in range(r, k):
            traces[r, s] = traces[s, r] = float(np.sum(g_sigma_inv[r].T * g_sigma_inv[s]))
    return P, Q, traces


def _assemble(P: list[np.ndarray], Q: dict[tuple[int, int], np.ndarray], traces: np.ndarray,
              second: dict[tuple[int, int], np.ndarray], phi: np.ndarray) -> KenwardRoger:
    """Kenward-Roger's ``W`` and ``Phi_A`` from ``P_r``, ``Q_rs``, the traces and ``R_rs``."""
    k = len(P)
    information = np.empty((k, k))
    for r in range(k):
        for s in range(r, k):
            value = (traces[r, s] - 2.0 * float(np.sum(phi * Q[r, s]))
                     + float(np.sum((phi @ P[r]) * (P[s] @ phi))))
            information[r, s] = information[s, r] = value
    smallest = float(np.min(np.abs(np.linalg.eigvalsh(information))))
    W = 2.0 * (np.linalg.inv(information) if smallest > 1e-10 else np.linalg.pinv(information))
    U = sum(W[r, s] * (Q[r, s] - P[r] @ phi @ P[s]) for r in range(k) for s in range(k))
    for (r, s), matrix in second.items():  # - R_rs / 4, R_rs = X' Sigma^-1 dd Sigma Sigma^-1 X
        U = U - 0.25 * W[r, s] * matrix
    adjusted = phi + 2.0 * phi @ U @ phi
    return KenwardRoger(vcov=phi, vcov_adjusted=(adjusted + adjusted.T) / 2.0, P=P, W=W)


def kr_test(kr: KenwardRoger, beta: np.ndarray, contrast: np.ndarray) -> dict[str, float]:
    """Kenward-Roger F-test of ``contrast @ beta = 0``.

    ``rho = (1 - A2/q)^2 / (1 - c2 B)^2 (1 + c1 B) / (q (1 - c3 B))`` with
    ``B = (A1 + 6 A2) / (2 q)``, ``g = ((q + 1) A1 - (q + 4) A2) / ((q + 2) A2)``
    and ``c1, c2, c3 = g, q - g, q + 2 - g`` over ``3 q + 2 (1 - g)``.

    Returns
    -------
    dict
        ``f_value`` (scaled), ``f_unscaled``, ``num_df``, ``den_df``, ``scale``,
        ``se`` (the adjusted standard error, one-row contrasts).
    """
    L = np.atleast_2d(np.asarray(contrast, dtype=float))
    phi = kr.vcov
    q = int(np.linalg.matrix_rank(L))
    theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
    theta_phi = theta @ phi
    k = len(kr.P)
    u = [theta_phi @ p @ phi for p in kr.P]
    A1 = sum(kr.W[r, s] * np.trace(u[r]) * np.trace(u[s]) for r in range(k) for s in range(k))
    A2 = sum(kr.W[r, s] * float(np.sum(u[r] * u[s].T)) for r in range(k) for s in range(k))
    B = (A1 + 6.0 * A2) / (2.0 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    denominator = 3.0 * q + 2.0 * (1.0 - g)
    c1, c2, c3 = g / denominator, (q - g) / denominator, (q + 2.0 - g) / denominator
    v0 = 1.0 + c1 * B
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    v1, v2 = 1.0 - c2 * B, 1.0 - c3 * B
    ratio = (1.0 - A2 / q) / v1 if v1 != 0 else 0.0
    rho = ratio**2 * v0 / v2 / q
    den_df = 4.0 + (q + 2.0) / (q * rho - 1.0)
    scale = 1.0 if abs(den_df - 2.0) < 0.01 else den_df * (1.0 - A2 / q) / (den_df - 2.0)
    estimate = L @ beta
    f_unscaled = float(estimate @ np.linalg.solve(L @ kr.vcov_adjusted @ L.T, estimate)) / q
    se = float(np.sqrt(L[0] @ kr.vcov_adjusted @ L[0])) if L.shape[0] == 1 else float("nan")
    return {"f_value": f_unscaled * scale, "f_unscaled": f_unscaled, "num_df": q, "den_df": den_df,
            "scale": scale, "se": se}


def kr_contrast_test(kr: KenwardRoger, beta: np.ndarray, contrast: np.ndarray,
                     rhs: float = 0.0) -> dict[str, float]:
    """t-test of ``contrast @ beta = rhs`` with the adjusted standard error and Kenward-Roger df.

    Returns
    -------
    dict
        ``estimate``, ``std_error``, ``df``, ``t_value``, ``p_value`` (as
        :func:`hierlm.lmm.satterthwaite.contrast_test`).
    """
    from scipy import stats

    vector = np.asarray(contrast, dtype=float).ravel()
    result = kr_test(kr, beta, vector)
    estimate = float(vector @ beta)
    t_value = (estimate - rhs) / result["se"]
    p_value = float(2.0 * stats.t.sf(abs(t_value), result["den_df"]))
    return {"estimate": estimate, "std_error": result["se"], "df": result["den_df"],
            "t_value": t_value, "p_value": p_value}
