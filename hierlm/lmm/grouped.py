"""ML/REML with a residual covariance structure, group by group.

With correlated residuals the marginal covariance of group ``i`` is
``sigma^2 W_i``, ``W_i = Z_i Lambda Lambda' Z_i' + M_i S_i M_i`` (random effects
of the group, and the residual structure of :mod:`hierlm.design.residual`).
Groups are independent, so the profiled criterion is the lme4 one with

* ``log|L|^2  -> sum_i log|W_i|``,
* ``log|R_X|^2 -> log|X' W^-1 X|``,
* ``r2 -> sum_i r_i' W_i^-1 r_i`` at the generalised least-squares ``beta``,

and ``sigma^2 = r2 / n`` (ML) or ``r2 / (n - p)`` (REML), exactly as in
:mod:`hierlm.lmm.objective`. The groups are batched by size and factorised
together (batched Cholesky); the gradient is exact:
``d log|W_i| = tr(W_i^-1 dW_i)``, ``d r2 = -a_i' dW_i a_i`` with ``a_i = W_i^-1 r_i``
(envelope theorem in beta) and ``d log|X'W^-1X| = -tr(C B_i' dW_i B_i)`` with
``B_i = W_i^-1 X_i``, ``C = (X'W^-1X)^-1``.

:class:`GroupedObjective` answers the kernel's interface (``components``,
``solution``, bounds, names), so the optimiser, Satterthwaite's df, AIC/BIC,
likelihood-ratio tests and the result class work on it unchanged.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

from hierlm.design.blocks import Design
from hierlm.design.crossprod import theta_layout
from hierlm.design.residual import ResidualDesign
from hierlm.errors import DataError, FitError
from hierlm.lmm.grouped_batches import (
    Batch,
    make_batches,
    one_level_per_group,
    residual_correlation,
    shares_w,
)
from hierlm.lmm.grouped_shared import SharedCriterion, upper_factor
from hierlm.lmm.objective import Components, Solution

__all__ = ["GroupedObjective"]

_LOG_2PI = float(np.log(2.0 * np.pi))


class GroupedObjective:
    """The profiled ML/REML criterion with a residual structure (see module docstring).

    Parameters
    ----------
    design : Design
        With ``design.residual`` set. Every random-effect block must be grouped
        by the residual group (one level per group).
    """

    #: The optimiser keeps relative SDs of random-effect terms at or above 0.
    needs_bounds = True

    def __init__(self, design: Design, ols: np.ndarray | None = None) -> None:
        residual = design.residual
        if residual is None:
            raise FitError("GroupedObjective needs a design with a residual structure.")
        self.design = design
        self.residual: ResidualDesign = residual
        self.cp = SimpleNamespace(n=design.n, p=design.p, layout=theta_layout(design.blocks))
        #: the criterion's degrees of freedom, REML (n - p) and ML (n)
        self._dof = {True: design.n - design.p, False: design.n}
        self.evaluations = 0
        codes = residual.group_codes
        for block in design.blocks:
            if not one_level_per_group(block.codes, codes):
                raise DataError(
                    f"The random-effect term ({block.term}) is not grouped by the residual group "
                    f"{residual.spec.group!r}; with residual={residual.spec.text!r}, random effects "
                    f"must be per {residual.spec.group} (e.g. '(1 | {residual.spec.group})').")
        self._block_sizes = [b.structure.n_params for b in design.blocks]
        self._n_random = int(sum(self._block_sizes))
        self._ols = ols  # least-squares coefficients of y on X (the caller's, or made once)
        # no random effects, no variance= levels: one W per batch, the small-matrix path, on the
        # cross-products of the least-squares residuals
        shared = shares_w(design, residual)
        self._batches = make_batches(design, residual, self.ols() if shared else None)
        self._shared = (SharedCriterion(residual.structure, self._batches, design.p, self.ols())
                        if shared and self._batches else None)

    @property
    def n_theta(self) -> int:
        """Number of parameters: random-effect structures, residual structure, variance ratios."""
        return self._n_random + self.residual.n_params

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names."""
        labels = self.design.block_labels()
        random = [name for block, label in zip(self.design.blocks, labels, strict=True)
                  for name in block.structure.param_names(label, block.columns)]
        return tuple(random) + self.residual.names()

    @property
    def lower(self) -> np.ndarray:
        """0 for random-effect SDs, free otherwise."""
        return self._limits[0].copy()  # a copy: the callers' arrays are their own

    @property
    def kernel(self) -> GroupedObjective:
        """Return itself (the interface of :class:`~hierlm.lmm.parameters.StructuredObjective`)."""
        return self

    def start(self) -> np.ndarray:
        """Starting parameters; without random effects the residual structure's moment start."""
        parts = [b.structure.start() for b in self.design.blocks]
        residual = self.residual.start()
        if not self.design.blocks and self.design.p and self.residual.structure.n_params:
            residual[: self.residual.structure.n_params] = self.residual.structure.moment_start(
                self._residual_correlation())
        return np.concatenate(parts + [residual])

    def ols(self) -> np.ndarray:
        """The least-squares coefficients of ``y`` on ``X`` (one fit per objective)."""
        if self._ols is None:
            design = self.design
            self._ols = (np.linalg.lstsq(design.X, design.y, rcond=None)[0] if design.p
                         else np.zeros(0))
        return self._ols

    def _residual_correlation(self) -> np.ndarray:
        """Empirical correlation of the OLS residuals over the distinct times (NaN: no pair)."""
        return residual_correlation(self._batches, self.residual.structure.n_times, self.ols(),
                                    self._shared)

    def _over_times(self, struct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The structure's ``S`` over the distinct times, once per parameter value (many batches)."""
        key = np.asarray(struct, dtype=float).tobytes()
        memo = getattr(self, "_over_memo", None)
        if memo is None or memo[0] != key:
            memo = (key, self.residual.structure.over_times(np.array(struct, dtype=float)))
            self._over_memo = memo
        return memo[1]

    def _split(self, phi: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        phi = np.asarray(phi, dtype=float)
        key = phi.tobytes()
        memo = getattr(self, "_split_memo", None)
        if memo is not None and memo[0] == key:
            return memo[1]  # type: ignore[no-any-return]
        parts = self._split_parts(phi.copy())  # a copy: the memo must not see later edits
        self._split_memo = (key, parts)
        return parts

    def _split_parts(self, phi: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        bounds = np.concatenate(([0], np.cumsum(self._block_sizes))).astype(int)
        blocks = [phi[bounds[k]:bounds[k + 1]] for k in range(len(self._block_sizes))]
        rest = phi[self._n_random:]
        n_struct = self.residual.structure.n_params
        return blocks, rest[:n_struct], rest[n_struct:]

    def theta(self, phi: np.ndarray) -> np.ndarray:
        """Template entries of the random-effect blocks (the kernel's theta) at ``phi``."""
        if not self.design.blocks:
            return np.zeros(0)
        blocks, _, _ = self._split(phi)
        out = []
        for block, part in zip(self.design.blocks, blocks, strict=True):
            template = block.structure.template(part)
            rows, cols = zip(*block.structure.kernel_pattern(), strict=True)
            out.append(template[list(rows), list(cols)])
        return np.concatenate(out) if out else np.zeros(0)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The optimiser's box: random-effect structures' boxes, then the residual's."""
        return self._limits[1].copy(), self._limits[2].copy()

    @functools.cached_property
    def _limits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:attr:`lower` and :meth:`box`, made once (they depend on the design only)."""
        lower = np.concatenate([b.structure.lower() for b in self.design.blocks]
                               + [np.full(self.residual.n_params, -np.inf)])
        boxes = [b.structure.box() for b in self.design.blocks] + [self.residual.box()]
        return (lower, np.concatenate([lo for lo, _ in boxes]),
                np.concatenate([hi for _, hi in boxes]))

    def parameter_blocks(self) -> np.ndarray:
        """Block index of each random-effect parameter (-1 for residual parameters)."""
        return np.concatenate([np.repeat(np.arange(len(self._block_sizes)), self._block_sizes),
                               np.full(self.residual.n_params, -1)]).astype(np.int64)

    def parameter_levels(self) -> np.ndarray:
        """Number of groups behind each parameter (for the optimiser's scaling)."""
        return np.full(self.n_theta, float(len(self.residual.group_labels)))

    def canonical(self, phi: np.ndarray) -> np.ndarray:
        """Clip the random-effect SDs at 0."""
        return np.maximum(np.asarray(phi, dtype=float), self.lower)

    def column_scale(self, design: Design) -> np.ndarray:
        """1 for every parameter (the residual parameters are scale-free)."""
        return np.ones(self.n_theta)

    # ------------------------------------------------------ the matrices
    def _residual_parts(self, batch: Batch, phi: np.ndarray, gradient: bool, first_only: bool
                        ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The structure's ``S`` of a batch (k, m, m), its derivative, and ``M``'s outer product.

        ``first_only``: ``S`` of the batch's first group only (groups that share it).
        """
        _, struct, ratios = self._split(phi)
        slots = batch.slots[:1] if first_only else batch.slots
        times = batch.times[:1] if first_only else batch.times
        structure = self.residual.structure
        over = self._over_times(struct) if structure.slot_based else None
        s, d_s = structure.for_groups(struct, slots, times, gradient, over=over)
        outer = None
        function = self.residual.variance_function
        if batch.variance is not None and function is not None:
            multiplier = function.multipliers(ratios, batch.variance)  # (k, m)
            outer = multiplier[:, :, None] * multiplier[:, None, :]
        return s, d_s, outer

    def _w(self, batch: Batch, phi: np.ndarray, gradient: bool
           ) -> tuple[np.ndarray, np.ndarray | None]:
        """``W`` (k, m, m) of a batch and its derivative (n_params, k, m, m)."""
        blocks, _, _ = self._split(phi)
        residual = self.residual
        s, d_s, outer = self._residual_parts(batch, phi, gradient, batch.shared)
        w = s * outer if outer is not None else s.copy()
        grads: list[np.ndarray] = []
        for block, part, z in zip(self.design.blocks, blocks, batch.z, strict=True):
            template = block.structure.template(part)
            zt = z @ template  # (k, m, q)
            w += zt @ np.swapaxes(zt, 1, 2)
            if gradient:
                for d_template in block.structure.template_jacobian(part):
                    zd = z @ d_template
                    cross = zd @ np.swapaxes(zt, 1, 2)
                    grads.append(cross + np.swapaxes(cross, 1, 2))
        if not gradient:
            return w, None
        assert d_s is not None
        if d_s.ndim == 4 and outer is not None:
            grads.extend(d_s * outer[None])
        else:
            grads.extend(d_s)
        if outer is not None and batch.variance is not None:
            assert residual.variance_function is not None
            grads.extend(residual.variance_function.outer_gradient(s * outer, batch.variance))
        return w, np.stack(grads) if grads else np.zeros((0,) + w.shape)

    def _factor(self, phi: np.ndarray, gradient: bool) -> dict[str, object]:
        p = self.design.p
        xtwx = np.zeros((p, p))
        xtwy = np.zeros(p)
        parts = []
        logdet = 0.0
        for batch in self._batches:
            w, d_w = self._w(batch, phi, gradient)
            try:
                chol = np.linalg.cholesky(w)
            except np.linalg.LinAlgError:
                raise FitError("A group's covariance matrix is not positive definite at these "
                               "parameters.") from None
            copies = batch.rows.shape[0] if batch.shared else 1
            logdet += copies * 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
            w_inv = np.linalg.inv(w)
            if batch.shared:  # one W for the batch: the summed cross-products
                assert batch.cxx is not None and batch.cxy is not None
                single = w_inv[0]
                xtwx += np.einsum("ab,abpq->pq", single, batch.cxx)
                xtwy += np.einsum("ab,abp->p", single, batch.response_products())
                parts.append((batch, single, None, None if d_w is None else d_w[:, 0]))
                continue
            winv_x = w_inv @ batch.x  # (k, m, p)
            xtwx += np.einsum("kmp,kmq->pq", batch.x, winv_x)
            xtwy += np.einsum("kmp,km->p", winv_x, batch.y)
            parts.append((batch, w_inv, winv_x, d_w))
        self.evaluations += 1
        try:
            r_x = np.linalg.cholesky(xtwx).T if p else np.zeros((0, 0))
        except np.linalg.LinAlgError:
            raise FitError("The fixed-effect columns are linearly dependent.") from None
        unscaled = np.linalg.inv(xtwx) if p else np.zeros((0, 0))
        beta = unscaled @ xtwy if p else np.zeros(0)
        ldrx2 = 2.0 * float(np.log(np.diag(r_x)).sum()) if p else 0.0
        r2 = 0.0
        products: list[np.ndarray | None] = []  # sum_k r_k r_k' of shared batches, for the gradient
        for batch, w_inv, _, _ in parts:
            if batch.shared:
                products.append(batch.residual_products(beta))
                r2 += float(np.sum(w_inv * products[-1]))
                continue
            products.append(None)
            resid = batch.y - batch.x @ beta
            r2 += float(np.einsum("km,kmn,kn->", resid, w_inv, resid))
        return {"parts": parts, "beta": beta, "unscaled": unscaled, "r_x": r_x,
                "logdet": logdet, "ldrx2": ldrx2, "r2": r2, "products": products}

    # ------------------------------------------------- kernel interface
    def components(self, phi: np.ndarray, reml: bool = True, gradient: bool = True) -> Components:
        """``sum log|W_i|``, ``log|X'W^-1X|``, ``r2`` and optionally their exact gradients."""
        phi = np.array(phi, dtype=float)
        # the last evaluation is kept: the optimiser's end point is asked for again (its value,
        # the gradient of the fit record), and a value is part of an evaluation with gradient
        key = (phi.tobytes(), bool(reml))
        last = getattr(self, "_last_components", None)
        if last is not None and last[0] == key and (last[1].d_r2 is not None or not gradient):
            return last[1]  # type: ignore[no-any-return]
        if self._shared is not None:
            comp = self._shared.components(phi, reml, gradient)
            self.evaluations += 1
        else:
            comp = self._components(phi, reml, gradient)
        self._last_components = (key, comp)
        return comp

    def _components(self, phi: np.ndarray, reml: bool, gradient: bool) -> Components:
        fac = self._factor(phi, gradient)
        if not gradient:
            return Components(phi, reml, fac["logdet"], fac["ldrx2"], fac["r2"], None, None)  # type: ignore[arg-type]
        d_logdet = np.zeros(self.n_theta)
        d_r2 = np.zeros(self.n_theta)
        beta, unscaled = fac["beta"], fac["unscaled"]
        for (batch, w_inv, winv_x, d_w), products in zip(fac["parts"], fac["products"],  # type: ignore[call-overload]
                                                         strict=True):
            if batch.shared:  # sums over the batch's groups from its cross-products
                outer_sum = w_inv @ products @ w_inv  # sum_k a_k a_k'
                p_sum = batch.rows.shape[0] * w_inv
                if reml and self.design.p:
                    spread = np.einsum("abpq,pq->ab", batch.cxx, np.asarray(unscaled))  # sum X U X'
                    p_sum = p_sum - w_inv @ spread @ w_inv
                d_logdet += np.einsum("mn,jmn->j", p_sum, d_w)
                d_r2 -= np.einsum("mn,jmn->j", outer_sum, d_w)
                continue
            resid = batch.y - batch.x @ beta
            a = np.einsum("kmn,kn->km", w_inv, resid)
            outer_a = a[:, :, None] * a[:, None, :]
            p_matrix = w_inv
            if reml and self.design.p:
                p_matrix = w_inv - winv_x @ unscaled @ np.swapaxes(winv_x, 1, 2)
            d_logdet += np.einsum("kmn,jkmn->j", p_matrix, d_w)
            d_r2 -= np.einsum("kmn,jkmn->j", outer_a, d_w)
        return Components(phi, reml, fac["logdet"], fac["ldrx2"], fac["r2"], d_logdet, d_r2)  # type: ignore[arg-type]

    def criterion(self, comp: Components) -> float:
        """lme4's profiled deviance or REML criterion from components."""
        dof = self._dof[comp.reml]
        return comp.logdet + dof * (1.0 + _LOG_2PI + np.log(comp.r2 / dof))

    def criterion_gradient(self, comp: Components) -> np.ndarray:
        """Gradient of :meth:`criterion`."""
        if comp.d_logdet is None or comp.d_r2 is None:
            raise FitError("Components were evaluated without the gradient.")
        return comp.d_logdet + (self._dof[comp.reml] / comp.r2) * comp.d_r2

    def __call__(self, phi: np.ndarray, reml: bool = True) -> float:
        """Return the criterion at ``phi``."""
        return self.criterion(self.components(phi, reml, gradient=False))

    def value_and_gradient(self, phi: np.ndarray, reml: bool = True) -> tuple[float, np.ndarray]:
        """Return the criterion and its exact gradient."""
        comp = self.components(phi, reml, gradient=True)
        return self.criterion(comp), self.criterion_gradient(comp)

    def solution(self, phi: np.ndarray, reml: bool = True, cond_var: bool = True) -> Solution:
        """beta, sigma, conditional modes (and their conditional covariances) at ``phi``."""
        phi = np.array(phi, dtype=float)
        if self._shared is not None:  # no random effects: the shared-W evaluation
            comp, beta_s, unscaled, xtwx = self._shared.solve(phi, reml)
            self.evaluations += 1
            fac = {"parts": [], "beta": beta_s, "unscaled": unscaled, "logdet": comp.ldL2,
                   "ldrx2": comp.ldRX2, "r2": comp.r2,
                   "r_x": upper_factor(xtwx) if self.design.p else np.zeros((0, 0))}
        else:
            fac = self._factor(phi, gradient=False)
            comp = Components(phi, reml, fac["logdet"], fac["ldrx2"], fac["r2"], None, None)  # type: ignore[arg-type]
        value = self.criterion(comp)
        sigma = float(np.sqrt(fac["r2"] / self._dof[reml]))  # type: ignore[operator]
        beta = fac["beta"]
        blocks = self._split(phi)[0] if self.design.blocks else []
        b_list, cv_list = [], []
        for k, (block, part) in enumerate(zip(self.design.blocks, blocks, strict=True)):
            template = block.structure.template(part)
            g_rel = template @ template.T
            b = np.zeros((block.n_levels, block.q))
            cv = np.zeros((block.n_levels, block.q, block.q))
            for batch, w_inv, _, _ in fac["parts"]:  # type: ignore[attr-defined]
                resid = batch.y - batch.x @ beta
                z = batch.z[k]
                gz = z @ g_rel  # (k, m, q): rows of Z G
                levels = block.codes[batch.rows[:, 0]]
                b[levels] = np.einsum("kmq,kmn,kn->kq", gz, w_inv, resid)
                cv[levels] = sigma ** 2 * (g_rel[None] - np.swapaxes(gz, 1, 2) @ w_inv @ gz)
            b_list.append(b)
            cv_list.append(cv)
        u_list = [np.full_like(b, np.nan) for b in b_list]  # no spherical effects here
        return Solution(theta=self.theta(phi), reml=reml, value=value, ldL2=fac["logdet"],  # type: ignore[arg-type]
                        ldRX2=fac["ldrx2"], r2=fac["r2"], sigma=sigma, beta=beta,  # type: ignore[arg-type]
                        R_X=fac["r_x"], unscaled_vcov=fac["unscaled"], u=u_list, b=b_list,  # type: ignore[arg-type]
                        cond_var=cv_list if cond_var else None)

    def residual_precision(self, phi: np.ndarray) -> sp.csr_matrix:
        """``Omega^-1``: the inverse relative residual covariance, block diagonal in row order.

        ``Var(e) = sigma^2 Omega`` with ``Omega_i = M_i S_i M_i`` per group; the mixed-model
        equations of the prediction error variance weight ``X`` and ``Z`` with it.
        """
        n = self.design.n
        rows, cols, vals = [], [], []
        for batch in self._batches:
            s, _, outer = self._residual_parts(batch, phi, gradient=False, first_only=False)
            if outer is not None:
                s = s * outer
            inverse = np.linalg.inv(np.broadcast_to(s, (batch.rows.shape[0],) + s.shape[1:]))
            m = batch.rows.shape[1]
            rows.append(np.repeat(batch.rows, m, axis=1).ravel())
            cols.append(np.tile(batch.rows, (1, m)).ravel())
            vals.append(inverse.ravel())
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n, n))

    def residual_dense(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``Omega = M S M`` as a dense ``(n, n)`` matrix in row order and its derivatives.

        Parameters
        ----------
        params : numpy.ndarray
            The residual parameters (structure, then ``variance=`` ratios).

        Returns
        -------
        omega : numpy.ndarray
            ``(n, n)``.
        d_omega : numpy.ndarray
            ``(n_residual_params, n, n)``.
        """
        phi = np.concatenate([np.zeros(self._n_random), np.asarray(params, dtype=float)])
        n = self.design.n
        omega = np.zeros((n, n))
        d_omega = np.zeros((self.residual.n_params, n, n))
        function = self.residual.variance_function
        for batch in self._batches:
            s, d_s, outer = self._residual_parts(batch, phi, gradient=True, first_only=False)
            assert d_s is not None
            grads = list(d_s)
            if outer is not None and function is not None and batch.variance is not None:
                s = s * outer
                grads = [g * outer for g in grads] + function.outer_gradient(s, batch.variance)
            rows, cols = batch.rows[:, :, None], batch.rows[:, None, :]
            omega[rows, cols] = s
            for j, grad in enumerate(grads):
                d_omega[j, rows, cols] = grad
        return omega, d_omega

    def residual_projected(self, params: np.ndarray, a: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
        """``A' Omega A`` ``(p, p)`` and ``A' dOmega A`` per residual parameter, group by group.

        ``A`` is ``(n, p)`` in row order; no dense ``n x n`` matrix is formed.
        """
        phi = np.concatenate([np.zeros(self._n_random), np.asarray(params, dtype=float)])
        out = np.zeros((self.residual.n_params, a.shape[1], a.shape[1]))
        base = np.zeros((a.shape[1], a.shape[1]))
        function = self.residual.variance_function
        for batch in self._batches:
            s, d_s, outer = self._residual_parts(batch, phi, gradient=True, first_only=False)
            assert d_s is not None
            grads = d_s
            if outer is not None and function is not None and batch.variance is not None:
                s = s * outer
                grads = np.concatenate([d_s * outer[None],
                                        np.stack(function.outer_gradient(s, batch.variance))])
            a_batch = a[batch.rows]  # (k, m, p)
            base += np.einsum("kmp,kmn,knq->pq", a_batch, s, a_batch, optimize=True)
            out += np.einsum("kmp,jkmn,knq->jpq", a_batch, grads, a_batch, optimize=True)
        return base, out

    def simulate_residuals(self, phi: np.ndarray, sigma: float,
                           rng: np.random.Generator) -> np.ndarray:
        """Residuals drawn from ``N(0, sigma^2 M S M)`` group by group, in row order."""
        out = np.zeros(self.design.n)
        for batch in self._batches:
            s, _, outer = self._residual_parts(batch, phi, gradient=False, first_only=False)
            if outer is not None:
                s = s * outer
            root = np.linalg.cholesky(s)  # (k, m, m)
            draws = rng.standard_normal(batch.rows.shape)
            out[batch.rows] = sigma * np.einsum("kmn,kn->km", root, draws)
        return out

    def residual_covariance(self, phi: np.ndarray, sigma: float) -> np.ndarray:
        """Residual covariance over the distinct times (``car1``: at the distinct times)."""
        _, struct, _ = self._split(phi)
        cov, _ = self.residual.structure.over_times(struct)
        return sigma ** 2 * cov

    # ---------------------------------------------- unprofiled likelihood (hierlm.lmm.likelihood)
    # A self-contained block: the marginal likelihood at a given beta, for the Bayesian engine.
    def at_beta(self, phi: np.ndarray, beta: np.ndarray, gradient: bool = True
                ) -> tuple[float, float, np.ndarray | None, np.ndarray | None, np.ndarray]:
        """``sum_i log|W_i|`` and ``sum_i r_i' W_i^-1 r_i`` at a given beta (``r = y - X beta``).

        Returns
        -------
        tuple
            ``(logdet, quad, d logdet / d phi, d quad / d phi, d quad / d beta)``; the
            phi gradients are None when ``gradient`` is False.
        """
        phi = np.asarray(phi, dtype=float)
        beta = np.asarray(beta, dtype=float)
        logdet, quad = 0.0, 0.0
        d_beta = np.zeros(self.design.p)
        d_logdet = np.zeros(self.n_theta) if gradient else None
        d_quad = np.zeros(self.n_theta) if gradient else None
        for batch in self._batches:
            w, d_w = self._w(batch, phi, gradient)
            chol, w_inv = self._batch_inverse(batch, w)  # broadcast to every group if shared
            copies = batch.rows.shape[0] if batch.shared else 1
            logdet += 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
            resid = batch.y - batch.x @ beta
            a = np.einsum("kmn,kn->km", w_inv, resid)
            quad += float(np.einsum("km,km->", resid, a))
            d_beta -= 2.0 * np.einsum("kmp,km->p", batch.x, a)
            if d_logdet is not None and d_quad is not None and d_w is not None:
                if batch.shared:
                    d_logdet += copies * np.einsum("mn,jmn->j", w_inv[0], d_w[:, 0])
                    d_quad -= np.einsum("km,kn,jmn->j", a, a, d_w[:, 0])
                else:
                    d_logdet += np.einsum("kmn,jkmn->j", w_inv, d_w)
                    d_quad -= np.einsum("km,kn,jkmn->j", a, a, d_w)
        self.evaluations += 1
        return logdet, quad, d_logdet, d_quad, d_beta

    def group_logdensity(self, phi: np.ndarray, beta: np.ndarray, sigma: float) -> np.ndarray:
        """Log-density of each residual group's observations (random effects integrated out).

        Returns
        -------
        numpy.ndarray
            One value per group, in the order of ``design.residual.group_labels``.
        """
        out = np.zeros(len(self.residual.group_labels))
        for batch in self._batches:
            w, _ = self._w(batch, np.asarray(phi, dtype=float), gradient=False)
            chol, w_inv = self._batch_inverse(batch, w)
            logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
            resid = batch.y - batch.x @ np.asarray(beta, dtype=float)
            quad = np.einsum("km,kmn,kn->k", resid, w_inv, resid)
            m = batch.rows.shape[1]
            out[batch.groups] = -0.5 * (m * (_LOG_2PI + 2.0 * np.log(sigma)) + logdet
                                        + quad / sigma ** 2)
        return out

    def _batch_inverse(self, batch: Batch, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cholesky factors and inverses of a batch's ``W`` (broadcast to every group if shared)."""
        try:
            chol = np.linalg.cholesky(w)
        except np.linalg.LinAlgError:
            raise FitError("A group's covariance matrix is not positive definite at these "
                           "parameters.") from None
        w_inv = np.linalg.inv(w)
        if batch.shared:
            shape = (batch.rows.shape[0],) + w.shape[1:]
            return np.broadcast_to(chol, shape), np.broadcast_to(w_inv, shape)
        return chol, w_inv

