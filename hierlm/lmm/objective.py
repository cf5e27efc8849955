"""lme4's profiled deviance and REML criterion as a small kernel over cross-products.

Notation (Bates et al. 2015, JSS 67(1)): ``b = Lambda_theta u``, the penalised
least-squares system in ``(u, beta)`` is solved by a Cholesky factorisation of

    Omega = [Z Lambda, X, y]' [Z Lambda, X, y] + diag(I_q, 0, 0),

and with ``|L|^2 = |Lambda' Z'Z Lambda + I|``, ``|R_X|^2`` and the penalised
residual sum of squares ``r2`` (the square of Omega's last pivot):

* ML:   ``d(theta)   = log|L|^2 + n (1 + log(2 pi r2 / n))``
* REML: ``d_R(theta) = log|L|^2 + log|R_X|^2 + (n-p) (1 + log(2 pi r2 / (n-p)))``

The first factor term (block-diagonal in ``Z_1'Z_1``) is eliminated per level
with batched ``q x q`` Cholesky factors; the remaining columns ``R`` form a
dense Schur complement ``Lambda_R' K~ Lambda_R + D`` with

    K~ = R'R - sum_l (Z_1'R)_l' V_l (Z_1'R)_l,   V_l = T_1 A_l^{-1} T_1',
    A_l = T_1' (Z_1'Z_1)_l T_1 + I,

formed with one weighted ``bincount`` over the coupling pairs. The exact
gradient uses the envelope theorem for ``r2`` and selected entries of the
inverse of the Schur complement for the log-determinants (see ``_gradient``).

The records it returns (:class:`Components`, :class:`Solution`) live in
:mod:`hierlm.lmm.kernel_records` and the products with ``Lambda_R`` in
:mod:`hierlm.lmm.factor_algebra`; both records are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg import lapack

from hierlm.design.blocks import Design
from hierlm.design.crossprod import CrossProducts
from hierlm.errors import FitError
from hierlm.lmm.factor_algebra import rest_scale_vector, scale_both, scale_rows, scaled_vals, sigma_inverse
from hierlm.lmm.kernel_records import Components, Solution

__all__ = ["LmmObjective", "Components", "Solution", "objective"]

_LOG_2PI = float(np.log(2.0 * np.pi))
# Level x slot pair matrices with at most this many cells are stored dense.
_DENSE_PAIR_LIMIT = 2_000_000


@dataclass(eq=False)
class _Factor:
    """Internal state of one factorisation."""

    templates: list[np.ndarray]
    ainv_tt: np.ndarray  # (n1, q1, q1): A_l^{-1} T_1'
    v: np.ndarray  # (n1, q1, q1): T_1 A_l^{-1} T_1'
    k_tilde: np.ndarray  # (m, m) unscaled Schur complement K~
    chol: np.ndarray  # (m, m) lower Cholesky factor of the scaled Schur complement
    ld_first: float  # sum_l log|A_l|


class LmmObjective:
    """lme4's profiled deviance / REML criterion on precomputed cross-products.

    Parameters
    ----------
    cp : CrossProducts
        From :func:`hierlm.design.crossprod.crossproducts`.

    Examples
    --------
    >>> kernel = LmmObjective(crossproducts(design))        # doctest: +SKIP
    >>> kernel(np.array([1.0, 0.0, 1.0]), reml=True)         # doctest: +SKIP
    """

    def __init__(self, cp: CrossProducts) -> None:
        self.cp = cp
        q1 = cp.first.q
        first, second = cp.pair_first, cp.pair_second
        self._sym_index = [(a, b) for a in range(q1) for b in range(a, q1)]
        prods = []
        for a, b in self._sym_index:
            prod = cp.vals[a, first] * cp.vals[b, second]
            if a != b:
                prod = prod + cp.vals[b, first] * cp.vals[a, second]
            prods.append(prod)
        self._pair_half = np.where(first == second, 0.5, 1.0)
        m = cp.m
        rows, cols = np.divmod(cp.slot_flat, m)
        self._slot_rows, self._slot_cols = rows, cols
        mirror = cols * m + rows
        self._mirror_mask = mirror != cp.slot_flat
        self._slot_mirror = mirror[self._mirror_mask]
        self._n_slots = cp.slot_flat.size
        # Pairs are generated level by level, so per-level sums are segment sums.
        n1 = cp.first.n_levels
        self._pairs_per_level = np.bincount(cp.pair_level, minlength=n1)
        self._level_pair_start = np.concatenate(([0], np.cumsum(self._pairs_per_level)[:-1]))
        self._all_levels_paired = bool(np.all(self._pairs_per_level > 0))
        # Level x slot matrices of the theta-free pair products: sums over
        # levels (P' v) and over pairs of a level (P s) become sparse products.
        indptr = np.concatenate(([0], np.cumsum(self._pairs_per_level))).astype(np.int64)
        self._pair_mats = [
            sp.csr_matrix((prod, cp.pair_slot, indptr), shape=(n1, self._n_slots))
            for prod in prods
        ]
        if n1 * self._n_slots <= _DENSE_PAIR_LIMIT:
            # Small problems: dense products avoid scipy.sparse's per-call overhead.
            self._pair_mats = [mat.toarray() for mat in self._pair_mats]
            self._pair_mats_t = [np.ascontiguousarray(mat.T) for mat in self._pair_mats]
        else:
            self._pair_mats_t = [mat.T.tocsr() for mat in self._pair_mats]
        self._rest_diagonal = all(
            np.array_equal(f.t_row, f.t_col) for f in cp.rest
        )
        self.evaluations = 0

    # ------------------------------------------------------------------ basics
    #: lme4's theta can change sign freely (the criterion is even in a template column).
    needs_bounds = False

    @property
    def kernel(self) -> LmmObjective:
        """The kernel over template entries: this object (see ``StructuredObjective``)."""
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """lme4's theta names."""
        return self.cp.layout.names

    def theta(self, theta: np.ndarray) -> np.ndarray:
        """The template entries: theta itself."""
        return np.asarray(theta, dtype=float)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The optimiser's box: lme4's lower bounds, no upper ones."""
        lower = self.cp.layout.lower.copy()
        return lower, np.full(lower.size, np.inf)

    def parameter_blocks(self) -> np.ndarray:
        """Index of the design block of each theta entry."""
        return np.asarray(self.cp.layout.block)

    def parameter_levels(self) -> np.ndarray:
        """Number of levels of each theta entry's grouping factor."""
        cp = self.cp
        return np.array([next(f.n_levels for f in cp.factors if b in f.blocks)
                         for b in cp.layout.block], dtype=float)

    def canonical(self, theta: np.ndarray) -> np.ndarray:
        """Flip template columns with a negative diagonal (same covariance), then clip."""
        layout = self.cp.layout
        out = np.array(theta, dtype=float)
        for k in np.flatnonzero(layout.is_diagonal & (out < 0)):
            column = (layout.block == layout.block[k]) & (layout.col == layout.col[k])
            out[column] = -out[column]
        return np.maximum(out, layout.lower)

    def column_scale(self, design: Design) -> np.ndarray:
        """Root mean square of the random-effect column of each theta entry's template row."""
        layout = self.cp.layout
        rms = design.column_rms()
        scale = np.array([rms[b][r] for b, r in zip(layout.block, layout.row, strict=True)],
                         dtype=float)
        return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)

    @property
    def n_theta(self) -> int:
        """Number of covariance parameters."""
        return self.cp.n_theta

    @property
    def lower(self) -> np.ndarray:
        """lme4's lower bounds of theta (0 on diagonals, ``-inf`` elsewhere)."""
        return self.cp.layout.lower.copy()

    def start(self) -> np.ndarray:
        """Return lme4's starting theta."""
        return self.cp.layout.start()

    def __call__(self, theta: np.ndarray, reml: bool = True) -> float:
        """Return the profiled deviance (``reml=False``) or REML criterion at ``theta``."""
        return self.criterion(self.components(theta, reml, gradient=False))

    def value_and_gradient(self, theta: np.ndarray, reml: bool = True
                           ) -> tuple[float, np.ndarray]:
        """Return the criterion and its exact gradient with respect to theta."""
        comp = self.components(theta, reml, gradient=True)
        return self.criterion(comp), self.criterion_gradient(comp)

    def criterion(self, comp: Components) -> float:
        """Combine components into lme4's profiled deviance or REML criterion."""
        dof = self.cp.n - (self.cp.p if comp.reml else 0)
        return (comp.logdet + dof * (1.0 + _LOG_2PI + np.log(comp.r2 / dof))
                - self.cp.log_weights)

    def criterion_gradient(self, comp: Components) -> np.ndarray:
        """Gradient of :meth:`criterion` from components evaluated with ``gradient=True``."""
        if comp.d_logdet is None or comp.d_r2 is None:
            raise FitError("Components were evaluated without the gradient.")
        dof = self.cp.n - (self.cp.p if comp.reml else 0)
        return comp.d_logdet + (dof / comp.r2) * comp.d_r2

    # ----------------------------------------------------------- level helpers
    def _sum_pairs_by_level(self, weights: np.ndarray) -> np.ndarray:
        """Sum pair weights within each first-factor level."""
        if self._all_levels_paired:
            return np.add.reduceat(weights, self._level_pair_start)
        return np.bincount(self.cp.pair_level, weights=weights, minlength=self.cp.first.n_levels)

    # ----------------------------------------------------------- factorisation
    def _factorize(self, theta: np.ndarray) -> _Factor:
        cp = self.cp
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (cp.n_theta,):
            raise FitError(f"theta must have {cp.n_theta} entries, got shape {theta.shape}.")
        templates = [f.template(theta) for f in cp.factors]
        t1 = templates[0]
        q1 = t1.shape[0]
        a = np.matmul(np.matmul(t1.T, cp.zz_first), t1)
        a[:, np.arange(q1), np.arange(q1)] += 1.0
        if q1 == 1:
            ainv_tt = t1[0, 0] / a
            v = t1[0, 0] * ainv_tt
            ld_first = float(np.log(a).sum())
        elif q1 == 2:
            # Closed forms for 2 x 2 blocks (A is SPD with eigenvalues >= 1).
            a00, a01, a11 = a[:, 0, 0], a[:, 0, 1], a[:, 1, 1]
            det = a00 * a11 - a01 * a01
            ld_first = float(np.log(det).sum())
            a_inv = np.empty_like(a)
            a_inv[:, 0, 0] = a11 / det
            a_inv[:, 1, 1] = a00 / det
            a_inv[:, 0, 1] = a_inv[:, 1, 0] = -a01 / det
            ainv_tt = a_inv @ t1.T
            v = np.matmul(t1, ainv_tt)
        else:
            chol1 = np.linalg.cholesky(a)
            ld_first = 2.0 * float(np.log(np.diagonal(chol1, axis1=1, axis2=2)).sum())
            ainv_tt = np.linalg.solve(a, np.broadcast_to(t1.T, a.shape))
            v = np.matmul(t1, ainv_tt)
        sums = np.zeros(self._n_slots)
        for (i, j), mat_t in zip(self._sym_index, self._pair_mats_t, strict=True):
            sums += mat_t @ v[:, i, j]
        k_tilde = cp.rr.copy()
        flat = k_tilde.reshape(-1)
        flat[cp.slot_flat] -= sums
        flat[self._slot_mirror] -= sums[self._mirror_mask]
        schur = scale_both(cp, k_tilde, templates, self._rest_diagonal)
        diag = np.arange(cp.m_z)
        schur[diag, diag] += 1.0
        # ``schur`` is symmetric, so its C-ordered buffer is also its Fortran transpose.
        chol_t, info = lapack.dpotrf(schur.T, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            raise FitError(
                "The penalised least-squares system is not positive definite: the fixed-effect "
                "columns are linearly dependent or the response is fitted exactly."
            )
        chol = np.asarray(chol_t)
        self.evaluations += 1
        return _Factor(templates, ainv_tt, v, k_tilde, chol, ld_first)

    # -------------------------------------------------------------- pieces
    def _pieces(self, fac: _Factor) -> tuple[float, float, float]:
        cp = self.cp
        d = np.diagonal(fac.chol)
        ldL2 = fac.ld_first + 2.0 * float(np.log(d[:cp.m_z]).sum())
        ldRX2 = 2.0 * float(np.log(d[cp.m_z:cp.m_z + cp.p]).sum())
        r2 = float(d[-1] ** 2)
        return ldL2, ldRX2, r2

    def _solve(self, fac: _Factor, beta_fixed: np.ndarray | None = None
               ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """Return u and b per factor (level x q), beta, and the PLS weight vector w.

        ``beta_fixed``: solve for ``u`` at that beta instead of at its optimum
        (the back-substitution ``L_ZZ' u = l_yZ - L_XZ' beta``).
        """
        cp = self.cp
        m = cp.m
        chol = fac.chol
        if beta_fixed is None:
            x = sla.solve_triangular(chol[:m - 1, :m - 1], chol[m - 1, :m - 1], trans="T",
                                     lower=True, check_finite=False)
        else:
            m_z, p = cp.m_z, cp.p
            rhs = chol[m - 1, :m_z] - chol[m_z:m_z + p, :m_z].T @ beta_fixed
            x = np.concatenate([sla.solve_triangular(chol[:m_z, :m_z], rhs, trans="T", lower=True,
                                                     check_finite=False), beta_fixed])
        w = np.empty(m)
        us, bs = [], []
        t1 = fac.templates[0]
        n1, q1 = cp.first.n_levels, cp.first.q
        rest_u, rest_b = [], []
        for f, off, t in zip(cp.rest, cp.rest_offsets, fac.templates[1:], strict=True):
            u_k = x[off:off + f.n_levels * f.q].reshape(f.n_levels, f.q)
            b_k = u_k @ t.T
            w[off:off + f.n_levels * f.q] = b_k.ravel()
            rest_u.append(u_k)
            rest_b.append(b_k)
        beta = x[cp.m_z:cp.m_z + cp.p].copy()
        w[cp.m_z:cp.m_z + cp.p] = beta
        w[m - 1] = -1.0
        wc = w[cp.cols]
        t_level = np.empty((n1, q1))
        for a in range(q1):
            t_level[:, a] = np.bincount(cp.pos_level, weights=cp.vals[a] * wc, minlength=n1)
        u1 = -np.einsum("lab,lb->la", fac.ainv_tt, t_level)
        us.append(u1)
        bs.append(u1 @ t1.T)
        return us + rest_u, bs + rest_b, beta, w, t_level

    def _psi(self, sigma_inv: np.ndarray, templates: list[np.ndarray]) -> np.ndarray:
        """Return ``Psi_l = C_l Sigma C_l'`` per first-factor level, ``(n1, q1, q1)``."""
        cp = self.cp
        n1, q1 = cp.first.n_levels, cp.first.q
        psi = np.zeros((n1, q1, q1))
        size = sigma_inv.shape[0]
        if size == 0:
            return psi
        rows, cols = self._slot_rows, self._slot_cols
        inside = (rows < size) & (cols < size)
        sig_slot = np.zeros(self._n_slots)
        sig_slot[inside] = sigma_inv[rows[inside], cols[inside]]
        if self._rest_diagonal:
            # C = vals * scale[cols]: fold the scales and the diagonal halving into
            # the slots, then reuse the theta-free pair products.
            scale = rest_scale_vector(cp, templates)
            sig_slot *= scale[rows] * scale[cols] * np.where(rows == cols, 1.0, 2.0)
            for (a, b), mat in zip(self._sym_index, self._pair_mats, strict=True):
                val = mat @ sig_slot
                if a != b:
                    val *= 0.5
                psi[:, a, b] = val
                psi[:, b, a] = val
            return psi
        scaled = scaled_vals(cp, templates)
        sig_pair = sig_slot[cp.pair_slot]
        sig_pair *= self._pair_half
        f, s = cp.pair_first, cp.pair_second
        for a, b in self._sym_index:
            if q1 == 1:
                prod = scaled[0, f] * scaled[0, s]
                prod *= 2.0
            else:
                prod = scaled[a, f] * scaled[b, s] + scaled[a, s] * scaled[b, f]
            prod *= sig_pair
            val = self._sum_pairs_by_level(prod)
            psi[:, a, b] = val
            psi[:, b, a] = val
        return psi

    def components(self, theta: np.ndarray, reml: bool = True,
                   gradient: bool = True) -> Components:
        """Evaluate ``log|L|^2``, ``log|R_X|^2``, ``r2`` and optionally their gradients."""
        fac = self._factorize(theta)
        ldL2, ldRX2, r2 = self._pieces(fac)
        theta = np.array(theta, dtype=float)
        if not gradient:
            return Components(theta, reml, ldL2, ldRX2, r2, None, None)
        d_logdet, d_r2 = self._gradient(fac, reml)
        return Components(theta, reml, ldL2, ldRX2, r2, d_logdet, d_r2)

    def _gradient(self, fac: _Factor, reml: bool, beta_fixed: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        r"""Exact gradients of the log-determinant term and of ``r2``.

        ``r2`` (at beta's optimum, or the penalised residual sum of squares at
        ``beta_fixed``): by the envelope theorem ``d r2 / d theta_j = -2 r' Z E_j u`` with
        ``E_j = d Lambda / d theta_j`` and ``Z'r`` formed from cross-products.

        Log-determinant: ``log|M_P| = sum_l log|A_l| + log|S_P|`` where
        ``S_P = Lambda_P' K~_P Lambda_P + D_P`` (``P`` = random-effect columns of
        R, plus X for REML). With ``Sigma = S_P^{-1}`` and ``Psi_l = C_l Sigma C_l'``
        (``C_l`` the level's row of ``Z_1'R Lambda_R``), a first-factor entry
        ``(a, b)`` has derivative ``2 sum_l [A_l^{-1} T_1' (K_l - Psi_l (I - V_l K_l))]_{ba}``
        and an entry of another factor ``2 sum_l [Sigma Lambda_P' K~_P]_{(l,b),(l,a)}``.
        """
        cp = self.cp
        m, m_z = cp.m, cp.m_z
        q1 = cp.first.q
        us, _, _, w, t_level = self._solve(fac, beta_fixed)
        t1 = fac.templates[0]
        b1 = us[0] @ t1.T
        z1_r = -(t_level + np.einsum("lab,lb->la", cp.zz_first, b1))
        k_r1_b1 = np.bincount(cp.cols, weights=np.einsum("al,la->l", cp.vals, b1[cp.pos_level]),
                              minlength=m)
        zr_rest = -(k_r1_b1 + cp.rr @ w)[:m_z]
        z_r = [z1_r] + [zr_rest[off:off + f.n_levels * f.q].reshape(f.n_levels, f.q)
                        for f, off in zip(cp.rest, cp.rest_offsets, strict=True)]

        size = m_z + (cp.p if reml else 0)
        sigma_inv = sigma_inverse(fac.chol, size)
        psi = self._psi(sigma_inv, fac.templates)
        eye = np.eye(q1)
        first_term = np.matmul(fac.ainv_tt,
                               cp.zz_first - np.matmul(psi, eye - np.matmul(fac.v, cp.zz_first)))
        first_sum = first_term.sum(axis=0)  # (q1, q1)
        scaled_k = scale_rows(cp, fac.k_tilde[:size, :size], fac.templates) if size else None

        d_logdet = np.zeros(cp.n_theta)
        d_r2 = np.zeros(cp.n_theta)
        for k, f in enumerate(cp.factors):
            for a, b, j in zip(f.t_row, f.t_col, f.t_theta, strict=True):
                d_r2[j] += -2.0 * float(z_r[k][:, a] @ us[k][:, b])
                if k == 0:
                    d_logdet[j] += 2.0 * first_sum[b, a]
                else:
                    off = cp.rest_offsets[k - 1]
                    base = off + np.arange(f.n_levels) * f.q
                    assert scaled_k is not None
                    rows = sigma_inv[base + b, :]
                    cols = scaled_k[:, base + a]
                    d_logdet[j] += 2.0 * float(np.einsum("ls,sl->", rows, cols))
        return d_logdet, d_r2

    # ------------------------------------------------------------ solution
    def at_beta(self, theta: np.ndarray, beta: np.ndarray, gradient: bool = True
                ) -> tuple[float, float, np.ndarray | None, np.ndarray | None, np.ndarray]:
        """``log|L|^2`` and the penalised residual sum of squares at a given beta.

        ``pwrss(beta) = min_u |y - X beta - Z Lambda u|^2 + |u|^2 = r2 + |R_X (beta - beta_hat)|^2``
        from the same factorisation as :meth:`components`; the likelihood of
        :mod:`hierlm.lmm.likelihood` is built on it.

        Returns
        -------
        tuple
            ``(ldL2, pwrss, d ldL2 / d theta, d pwrss / d theta, d pwrss / d beta)``; the
            theta gradients are None when ``gradient`` is False.
        """
        cp = self.cp
        beta = np.asarray(beta, dtype=float)
        fac = self._factorize(theta)
        ldL2, _, r2 = self._pieces(fac)
        m_z, p, m = cp.m_z, cp.p, cp.m
        l_xx = fac.chol[m_z:m_z + p, m_z:m_z + p]
        gap = l_xx.T @ beta - fac.chol[m - 1, m_z:m_z + p]  # R_X (beta - beta_hat)
        pwrss = r2 + float(gap @ gap)
        d_beta = 2.0 * (l_xx @ gap)
        if not gradient:
            return ldL2, pwrss, None, None, d_beta
        d_ldL2, d_pwrss = self._gradient(fac, reml=False, beta_fixed=beta)
        return ldL2, pwrss, d_ldL2, d_pwrss, d_beta

    def solution(self, theta: np.ndarray, reml: bool = True,
                 cond_var: bool = True) -> Solution:
        """Return beta, sigma, random effects and derived quantities at ``theta``."""
        cp = self.cp
        theta = np.array(theta, dtype=float)
        fac = self._factorize(theta)
        ldL2, ldRX2, r2 = self._pieces(fac)
        comp = Components(theta, reml, ldL2, ldRX2, r2, None, None)
        value = self.criterion(comp)
        us, bs, beta, _, _ = self._solve(fac)
        dof = cp.n - (cp.p if reml else 0)
        sigma = float(np.sqrt(r2 / dof))
        m_z, p = cp.m_z, cp.p
        l_xx = fac.chol[m_z:m_z + p, m_z:m_z + p]
        r_x = l_xx.T.copy()
        if p:
            l_inv = sla.solve_triangular(l_xx, np.eye(p), lower=True, check_finite=False)
            unscaled = l_inv.T @ l_inv
        else:
            unscaled = np.zeros((0, 0))

        cv_factor: list[np.ndarray] | None = None
        if cond_var:
            sigma_z = sigma_inverse(fac.chol, m_z)
            psi = self._psi(sigma_z, fac.templates)
            t1 = fac.templates[0]
            q1 = t1.shape[0]
            if q1 == 1:
                a = (t1[0, 0] ** 2) * cp.zz_first + 1.0
                a_inv = 1.0 / a
            else:
                a = np.matmul(np.matmul(t1.T, cp.zz_first), t1) + np.eye(q1)
                a_inv = np.linalg.inv(a)
            inner = a_inv + np.matmul(np.matmul(fac.ainv_tt, psi),
                                      fac.ainv_tt.transpose(0, 2, 1))
            cv_factor = [sigma ** 2 * np.matmul(np.matmul(t1, inner), t1.T)]
            for f, off, t in zip(cp.rest, cp.rest_offsets, fac.templates[1:], strict=True):
                idx = off + np.arange(f.n_levels * f.q).reshape(f.n_levels, f.q)
                blocks = sigma_z[idx[:, :, None], idx[:, None, :]]
                cv_factor.append(sigma ** 2 * np.matmul(np.matmul(t, blocks), t.T))

        # Map factor terms back to design blocks.
        n_blocks = cp.layout.block_start.size - 1
        u_blocks: list[np.ndarray] = [np.zeros(0)] * n_blocks
        b_blocks: list[np.ndarray] = [np.zeros(0)] * n_blocks
        cv_blocks: list[np.ndarray] = [np.zeros(0)] * n_blocks
        for k, f in enumerate(cp.factors):
            widths = np.diff(np.append(f.block_offsets, f.q))
            for blk, off, width in zip(f.blocks, f.block_offsets, widths, strict=True):
                sl = slice(off, off + int(width))
                u_blocks[blk] = us[k][:, sl].copy()
                b_blocks[blk] = bs[k][:, sl].copy()
                if cv_factor is not None:
                    cv_blocks[blk] = cv_factor[k][:, sl, sl].copy()
        return Solution(theta=theta, reml=reml, value=value, ldL2=ldL2, ldRX2=ldRX2, r2=r2,
                        sigma=sigma, beta=beta, R_X=r_x, unscaled_vcov=unscaled,
                        u=u_blocks, b=b_blocks,
                        cond_var=cv_blocks if cv_factor is not None else None)


def objective(cp: CrossProducts, theta: np.ndarray, reml: bool = True) -> float:
    """Evaluate lme4's profiled deviance (ML) or REML criterion at ``theta``.

    Parameters
    ----------
    cp : CrossProducts
        Cross-products of the design.
    theta : numpy.ndarray
        Relative covariance parameters in lme4's layout.
    reml : bool
        REML criterion (True) or ML profiled deviance (False).

    Returns
    -------
    float
    """
    return LmmObjective(cp)(theta, reml)
