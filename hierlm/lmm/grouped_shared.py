"""The grouped criterion when every batch of groups shares one ``W`` (no random effects).

Without random effects and without ``variance=`` levels, the relative
covariance ``W_i = S(times_i)`` of a group depends on its times only, and
:class:`~hierlm.lmm.grouped.GroupedObjective` batches the groups with the same
times together, keeping their summed cross-products
``C_xx = sum_k X_k (x) X_k``, ``C_xy``, ``C_yy``. One evaluation of the
criterion then needs, per batch, one ``m x m`` factorisation and a few
products with the flattened cross-products, whatever the number of groups.

:class:`SharedCriterion` is that evaluation written for small matrices: the
cross-products are flattened once to ``(m^2, p^2)`` matrices, so that every
sum over a batch is one matrix-vector product, and the factorisations call
LAPACK directly (``dpotrf``/``dpotri``), without numpy's per-call checks
for stacked arrays. The formulas are those of the module docstring of
:mod:`hierlm.lmm.grouped`; the general path there computes the same numbers
(the tests compare the two at 1e-10).

When the structure inverts in closed form over every batch's times
(:meth:`~hierlm.design.residual.base.ResidualStructure.precision_form`:
``cs``, ``ar1``, ``car1``), ``W^-1 = sum_k c_k B_k`` with fixed ``B_k``, so each
batch's cross-products are reduced once to their inner products with the
``B_k`` (``R = B [C_xx | C_xr | C_rr]``, stacked over the batches), and an
evaluation needs no factorisation of ``W``: one product of the coefficient
rows ``[c; dc]`` with ``R`` gives ``X'W^-1X``, ``X'W^-1r0``, ``r0'W^-1r0`` and
their derivatives, and then ``r2 = r0'W^-1r0 - 2 delta'X'W^-1r0 + delta'X'W^-1X
delta`` (``delta = beta - beta0``), ``d r2`` the same with ``dc``, and
``d log|X'W^-1X| = tr(U d(X'W^-1X))`` (``U = (X'W^-1X)^-1``): ``O(K p^2)`` each.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri

from hierlm.design.residual import ResidualStructure
from hierlm.design.residual.precision import PrecisionForm
from hierlm.errors import FitError
from hierlm.lmm.objective import Components

__all__ = ["SharedCriterion", "cross_products", "upper_factor"]

_NOT_PD = "A group's covariance matrix is not positive definite at these parameters."
_DEPENDENT = "The fixed-effect columns are linearly dependent."
_ONE = np.ones(1)
_ONE.flags.writeable = False


@dataclass(frozen=True, eq=False)
class _Shared:
    """One batch: the times of its groups and their summed, flattened cross-products."""

    slots: np.ndarray  # (1, m)
    times: np.ndarray  # (1, m)
    copies: int  # number of groups
    cxx: np.ndarray  # (m * m, p * p)
    cxy: np.ndarray  # (m * m, p), of the OLS residuals r0
    cyy: np.ndarray  # (m * m,), of the OLS residuals r0
    upper: tuple[np.ndarray, np.ndarray]  # indices above the diagonal of an m x m matrix
    every_time: bool  # the groups have every distinct time, in order (slots 0, 1, ..., T - 1)


@dataclass(frozen=True, eq=False)
class _Reduced:
    """Every batch's cross-products on its closed-form basis, stacked for one product per evaluation."""

    forms: tuple[PrecisionForm, ...]  # one per batch
    copies: tuple[int, ...]  # number of groups of each batch
    # (sum of the K's, p * p + p + 1): <B_k, C_xx> (flattened), <B_k, C_xr>, <B_k, C_rr>
    products: np.ndarray


def cross_products(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Summed cross-products of ``k`` groups of ``m`` rows, by matrix products.

    Parameters
    ----------
    x : numpy.ndarray
        ``(k, m, p)``.
    y : numpy.ndarray
        ``(k, m)``.

    Returns
    -------
    cxx, cxy, cyy : numpy.ndarray
        ``C_xx[a, b, p, q] = sum_k x[k, a, p] x[k, b, q]`` ``(m, m, p, p)``,
        ``C_xy[a, b, p] = sum_k x[k, a, p] y[k, b]`` ``(m, m, p)`` and
        ``C_yy[a, b] = sum_k y[k, a] y[k, b]`` ``(m, m)``.
    """
    k, m, p = x.shape
    flat = x.reshape(k, m * p)
    cxx = (flat.T @ flat).reshape(m, p, m, p).transpose(0, 2, 1, 3)
    return (np.ascontiguousarray(cxx), *_residual_products(x, y))


@functools.lru_cache(maxsize=64)
def _upper(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices above the diagonal of an ``m x m`` matrix (read-only arrays, one pair per size)."""
    rows, cols = np.triu_indices(m, 1)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


def _residual_products(x: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``C_xr`` and ``C_rr`` of :func:`cross_products` (without ``C_xx``), ``(m, m, p)`` and ``(m, m)``."""
    k, m, p = x.shape
    cxr = (x.reshape(k, m * p).T @ r).reshape(m, p, m).transpose(0, 2, 1)
    return np.ascontiguousarray(cxr), r.T @ r


def upper_factor(matrix: np.ndarray) -> np.ndarray:
    """The upper Cholesky factor ``R`` (``R'R = matrix``) of a positive-definite matrix (LAPACK)."""
    factor, info = dpotrf(matrix, lower=0, clean=1)
    if info != 0:
        raise FitError(_DEPENDENT)
    return factor  # type: ignore[no-any-return]


def _inverse(matrix: np.ndarray, message: str, upper: tuple[np.ndarray, np.ndarray]
             ) -> tuple[np.ndarray, float]:
    """Inverse and log-determinant of a symmetric positive-definite matrix (LAPACK).

    ``upper``: the indices above the diagonal (filled from below, as ``dpotri`` leaves them).
    """
    factor, info = dpotrf(matrix, lower=1, clean=1)
    if info != 0:
        raise FitError(message)
    logdet = 2.0 * math.fsum(map(math.log, factor.diagonal().tolist()))  # (small: Python floats)
    inverse, info = dpotri(factor, lower=1)
    if info != 0:
        raise FitError(message)
    inverse[upper] = inverse.T[upper]
    return inverse, logdet


class SharedCriterion:
    """The components of the grouped criterion for batches that share ``W``.

    Parameters
    ----------
    structure : ResidualStructure
        The bound residual structure.
    batches : list
        :class:`~hierlm.lmm.grouped.GroupedObjective`'s batches, every one
        ``shared`` (with its cross-products ``cxx``, ``cxy``, ``cyy``).
    p : int
        Number of fixed effects.
    beta0 : numpy.ndarray, optional
        The least-squares coefficients of ``y`` on ``X`` when the caller has them
        (computed here otherwise).
    """

    def __init__(self, structure: ResidualStructure, batches: list, p: int,
                 beta0: np.ndarray | None = None) -> None:
        self.structure = structure
        self.p = p
        self._upper_p = _upper(p)
        # The responses enter as residuals from the OLS fit, r0 = y - X beta0 (r = r0 - X delta,
        # beta = beta0 + delta): the same criterion, with cross-products of the residuals' size
        # instead of the response's, so that r2 = sum W^-1 (C_rr - ...) loses fewer digits to
        # cancellation and is smooth in the parameters to near machine precision.
        if beta0 is None:
            x_all = np.concatenate([b.x.reshape(-1, p) for b in batches])
            y_all = np.concatenate([b.y.ravel() for b in batches])
            beta0 = np.linalg.lstsq(x_all, y_all, rcond=None)[0] if p else np.zeros(0)
        self.beta0 = np.asarray(beta0, dtype=float)
        self._last: tuple[tuple[bytes, bool], tuple] | None = None  # the last evaluation
        self.batches = []
        for batch in batches:
            m = batch.rows.shape[1]
            if batch.centre is not None and np.array_equal(batch.centre, self.beta0):
                cxy, cyy = batch.cxy, batch.cyy  # (made on these residuals already)
            else:
                cxy, cyy = _residual_products(batch.x, batch.y - batch.x @ self.beta0)
            self.batches.append(_Shared(
                slots=np.ascontiguousarray(batch.slots[:1]), times=np.ascontiguousarray(batch.times[:1]),
                copies=int(batch.rows.shape[0]),
                cxx=np.ascontiguousarray(batch.cxx.reshape(m * m, p * p)),
                cxy=np.ascontiguousarray(cxy.reshape(m * m, p)),
                cyy=np.ascontiguousarray(cyy.reshape(m * m)),
                upper=_upper(m),
                every_time=bool(m == structure.n_times
                                and np.array_equal(batch.slots[0], np.arange(m)))))
        self.reduced = self._reduce()

    def _reduce(self) -> _Reduced | None:
        """The batches' cross-products on their closed-form bases; None without a closed form."""
        forms = [self.structure.precision_form(b.slots[0], b.times[0]) for b in self.batches]
        if not all(forms):
            return None
        products = [form.basis @ np.concatenate([b.cxx, b.cxy, b.cyy[:, None]], axis=1)
                    for form, b in zip(forms, self.batches, strict=True) if form is not None]
        return _Reduced(tuple(f for f in forms if f is not None), tuple(b.copies for b in self.batches),
                        products[0] if len(products) == 1 else np.concatenate(products))

    def solve(self, phi: np.ndarray, reml: bool
              ) -> tuple[Components, np.ndarray, np.ndarray, np.ndarray]:
        """The components at ``phi``, ``beta``, ``(X'W^-1X)^-1`` and ``X'W^-1X``.

        The last evaluation's, when it was at ``phi`` (the optimiser's end point, usually).
        """
        last = self._last
        if last is not None and last[0] == (np.asarray(phi, dtype=float).tobytes(), bool(reml)):
            comp, unscaled, delta, xtwx = last[1]
        else:
            comp, unscaled, delta, xtwx = self._evaluate(phi, reml, False)
        # copies: the caller's result must not share arrays with this cache
        return comp, self.beta0 + delta, unscaled.copy(), xtwx.reshape(self.p, self.p).copy()

    def components(self, phi: np.ndarray, reml: bool, gradient: bool) -> Components:
        """``sum log|W_i|``, ``log|X'W^-1X|``, ``r2`` and optionally their gradients at ``phi``."""
        return self._evaluate(phi, reml, gradient)[0]

    def _evaluate(self, phi: np.ndarray, reml: bool, gradient: bool
                  ) -> tuple[Components, np.ndarray, np.ndarray, np.ndarray]:
        if self.reduced is not None:
            result = self._evaluate_reduced(phi, reml, gradient)
        else:
            result = self._evaluate_general(phi, reml, gradient)
        self._last = ((np.asarray(phi, dtype=float).tobytes(), bool(reml)), result)
        return result

    def _fixed(self, xtwx: np.ndarray, xtwy: np.ndarray
               ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """``U = (X'W^-1X)^-1``, ``log|X'W^-1X|``, ``delta = beta - beta0`` and ``delta delta'``."""
        p = self.p
        if not p:
            return np.zeros((0, 0)), 0.0, np.zeros(0), np.zeros(0)
        unscaled, ldrx2 = _inverse(xtwx.reshape(p, p), _DEPENDENT, self._upper_p)
        delta = unscaled @ xtwy
        return unscaled, ldrx2, delta, (delta[:, None] * delta).ravel()

    def _evaluate_reduced(self, phi: np.ndarray, reml: bool, gradient: bool
                          ) -> tuple[Components, np.ndarray, np.ndarray, np.ndarray]:
        """The closed-form evaluation (module docstring): no factorisation of ``W``.

        One product of the coefficient rows (``c``, then ``dc``) with the stacked reduced
        cross-products gives ``X'W^-1X``, ``X'W^-1r0``, ``r0'W^-1r0`` and their derivatives.
        """
        reduced, p = self.reduced, self.p
        assert reduced is not None
        if len(reduced.forms) == 1:  # one time pattern (balanced data)
            coefficients, logdet, d_logdet = reduced.forms[0].coefficients(phi, gradient)
            logdet *= reduced.copies[0]
            if d_logdet is not None:
                d_logdet = reduced.copies[0] * d_logdet
        else:
            rows, logdet, d_logdet = [], 0.0, np.zeros(phi.size) if gradient else None
            for form, copies in zip(reduced.forms, reduced.copies, strict=True):
                batch_coefficients, batch_logdet, d_batch_logdet = form.coefficients(phi, gradient)
                rows.append(batch_coefficients)
                logdet += copies * batch_logdet
                if d_logdet is not None and d_batch_logdet is not None:
                    d_logdet += copies * d_batch_logdet
            coefficients = np.concatenate(rows, axis=1)
        sums = coefficients @ reduced.products
        pp = p * p
        xtwx = sums[0, :pp]
        unscaled, ldrx2, delta, delta_outer = self._fixed(xtwx, sums[0, pp:pp + p])
        # r2 = sum_k c_k <B_k, sum r r'> with r = r0 - X delta, and its derivatives (dc for c)
        quadratic = sums @ np.concatenate((delta_outer, -2.0 * delta, _ONE))
        d_r2 = None
        if d_logdet is not None:
            d_r2 = quadratic[1:]  # -a' dW a = r' dW^-1 r (envelope theorem in beta)
            if reml:  # d log|X'W^-1X| = tr(U X' dW^-1 X)
                d_logdet += sums[1:, :pp] @ unscaled.ravel()
        return (Components(phi, reml, logdet, ldrx2, float(quadratic[0]), d_logdet, d_r2),  # type: ignore[arg-type]
                unscaled, delta, xtwx)

    def _evaluate_general(self, phi: np.ndarray, reml: bool, gradient: bool
                          ) -> tuple[Components, np.ndarray, np.ndarray, np.ndarray]:
        """One ``m x m`` factorisation per batch."""
        structure, p = self.structure, self.p
        over = structure.over_times(phi) if structure.slot_based else None
        logdet = 0.0
        xtwx, xtwy = np.zeros(p * p), np.zeros(p)
        parts = []
        for batch in self.batches:
            if over is not None and batch.every_time:  # S over the distinct times itself
                s, d_s = over[0][None], (over[1][:, None] if gradient else None)
            else:
                s, d_s = structure.for_groups(phi, batch.slots, batch.times, gradient, over=over)
            w_inv, batch_logdet = _inverse(s[0], _NOT_PD, batch.upper)
            logdet += batch.copies * batch_logdet
            flat = w_inv.ravel()
            if p:
                xtwx += flat @ batch.cxx
                xtwy += flat @ batch.cxy
            parts.append((batch, w_inv, d_s))
        unscaled, ldrx2, delta, delta_outer = self._fixed(xtwx, xtwy)
        r2 = 0.0
        d_logdet = np.zeros(phi.size) if gradient else None
        d_r2 = np.zeros(phi.size) if gradient else None
        for batch, w_inv, d_s in parts:
            m = w_inv.shape[0]
            products = batch.cyy.copy()  # sum_k r_k r_k' at beta, flattened (r = r0 - X delta)
            if p:
                cross = (batch.cxy @ delta).reshape(m, m)
                products += batch.cxx @ delta_outer - (cross + cross.T).ravel()
            r2 += float(w_inv.ravel() @ products)
            if d_logdet is None or d_r2 is None or d_s is None:
                continue
            d_w = d_s.reshape(d_s.shape[0], m * m)
            outer_sum = w_inv @ products.reshape(m, m) @ w_inv  # sum_k a_k a_k'
            p_sum = batch.copies * w_inv
            if reml and p:
                spread = (batch.cxx @ unscaled.ravel()).reshape(m, m)  # sum_k X_k U X_k'
                p_sum = p_sum - w_inv @ spread @ w_inv
            d_logdet += d_w @ p_sum.ravel()
            d_r2 -= d_w @ outer_sum.ravel()
        return (Components(phi, reml, logdet, ldrx2, r2, d_logdet, d_r2),  # type: ignore[arg-type]
                unscaled, delta, xtwx)
