"""The layout of :class:`~hierlm.lmm.grouped.GroupedObjective`: its groups, batched by size and times.

The grouped criterion factorises the groups of one size together (batched
Cholesky). Without random effects and ``variance=`` levels a group's ``W``
depends on its times only, so the groups of one size are split further by
their times (one piece per time pattern; balanced data: one piece for all
groups), and each piece keeps its summed cross-products, which is all that
:class:`~hierlm.lmm.grouped_shared.SharedCriterion` needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.design.blocks import Design
from hierlm.design.residual import ResidualDesign
from hierlm.lmm.grouped_shared import SharedCriterion, cross_products

__all__ = ["Batch", "make_batches", "one_level_per_group", "residual_correlation", "shares_w"]


@dataclass(frozen=True, eq=False)
class Batch:
    """Groups of one size ``m``: row indices and their arrays."""

    rows: np.ndarray  # (k, m)
    groups: np.ndarray  # (k,)
    x: np.ndarray  # (k, m, p)
    y: np.ndarray  # (k, m)
    slots: np.ndarray  # (k, m)
    times: np.ndarray  # (k, m)
    z: list[np.ndarray]  # per block (k, m, q)
    variance: np.ndarray | None  # (k, m) codes
    shared: bool = False  # every group of the batch has the same W (same times, no Z, no M)
    # shared batches: cross-products summed over the groups, so that an evaluation costs
    # O(m^2 p^2) whatever the number of groups: C_xx[a,b,p,q] = sum_k X_k[a,p] X_k[b,q], ...
    cxx: np.ndarray | None = None  # (m, m, p, p)
    cxy: np.ndarray | None = None  # (m, m, p): sum_k X_k[a,p] y_k[b]
    cyy: np.ndarray | None = None  # (m, m)
    # where given, cxy and cyy are those of the residuals y - X centre instead of y
    centre: np.ndarray | None = None

    def residual_products(self, beta: np.ndarray) -> np.ndarray:
        """``sum_k r_k r_k'`` with ``r_k = y_k - X_k beta`` (shared batches), ``(m, m)``."""
        assert self.cxx is not None and self.cxy is not None and self.cyy is not None
        shift = beta if self.centre is None else beta - self.centre  # r_k = y_k - X_k centre - X_k shift
        cross = self.cxy @ shift  # (m, m): sum_k (X_k shift)[a] y_k[b]
        return self.cyy - cross - cross.T + np.einsum("abpq,p,q->ab", self.cxx, shift, shift)

    def response_products(self) -> np.ndarray:
        """``C_xy`` of the response itself, ``sum_k X_k[a,p] y_k[b]`` (shared batches)."""
        assert self.cxx is not None and self.cxy is not None
        if self.centre is None:
            return self.cxy
        return self.cxy + np.einsum("abpq,q->abp", self.cxx, self.centre)


def shares_w(design: Design, residual: ResidualDesign) -> bool:
    """True when every group's ``W`` depends on its times only (no random effects, no ``variance=``)."""
    return not design.blocks and residual.variance_codes is None


def make_batches(design: Design, residual: ResidualDesign,
                 centre: np.ndarray | None = None) -> list[Batch]:
    """The groups of ``design`` batched by size (and, when ``W`` can be shared, by times).

    Rows within a group are in time order. ``centre``: coefficients whose residuals
    ``y - X centre`` the shared batches' cross-products are of (the response's when None).
    """
    codes = residual.group_codes
    order = np.lexsort((residual.times, codes))
    sizes = np.bincount(codes, minlength=len(residual.group_labels))
    starts = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    # Without random effects or variance= levels, W depends on a group's times only: groups
    # with the same times share one factorisation (balanced designs: one for all groups).
    shareable = shares_w(design, residual)
    batches = []
    present = np.flatnonzero(np.bincount(sizes)) if sizes.size else np.zeros(0, dtype=np.int64)
    for m in present[present > 0].tolist():  # the group sizes, ascending (np.unique's order)
        groups = np.flatnonzero(sizes == m)
        rows = order[starts[groups][:, None] + np.arange(m)[None, :]]
        times = residual.times[rows]
        if shareable and not (times == times[:1]).all():  # (all alike: one piece, as below)
            _, pattern = np.unique(times, axis=0, return_inverse=True)
            pieces = [np.flatnonzero(pattern.ravel() == k) for k in range(int(pattern.max()) + 1)]
        else:
            pieces = [np.arange(groups.size)]
        for piece in pieces:
            sub = rows[piece] if len(pieces) > 1 else rows
            variance = (None if residual.variance_codes is None
                        else residual.variance_codes[sub])
            x, y = design.X[sub], design.y[sub]
            products: dict[str, np.ndarray | None] = {}
            if shareable:
                response = y if centre is None else y - x @ centre
                products = dict(zip(("cxx", "cxy", "cyy"), cross_products(x, response), strict=True))
                products["centre"] = centre
            batches.append(Batch(sub, groups[piece], x, y, residual.slots[sub],
                                 times[piece] if len(pieces) > 1 else times,
                                 [b.z[sub] for b in design.blocks], variance, shared=shareable,
                                 **products))
    return batches


def residual_correlation(batches: list[Batch], n_times: int, beta: np.ndarray,
                         shared: SharedCriterion | None) -> np.ndarray:
    """Empirical correlation of the residuals at ``beta`` over the distinct times (NaN: no pair).

    ``shared``: the criterion of these batches when they share ``W``, with ``beta`` its
    ``beta0`` (its residual cross-products are then the sums needed).
    """
    sums, counts = np.zeros((n_times, n_times)), np.zeros((n_times, n_times))
    for k, batch in enumerate(batches):
        if batch.shared:  # the groups' times are the same: their summed products
            if shared is not None and np.array_equal(shared.beta0, beta):
                m = batch.rows.shape[1]
                products = shared.batches[k].cyy.reshape(m, m)
            else:
                products = batch.residual_products(beta)
            if shared is not None and shared.batches[k].every_time:  # slots 0, 1, ..., T - 1
                sums += products
                counts += batch.rows.shape[0]
                continue
            index = np.ix_(batch.slots[0], batch.slots[0])
            sums[index] += products
            counts[index] += batch.rows.shape[0]
            continue
        resid = batch.y - batch.x @ beta  # (k, m)
        rows, cols = batch.slots[:, :, None], batch.slots[:, None, :]
        np.add.at(sums, (rows, cols), resid[:, :, None] * resid[:, None, :])
        np.add.at(counts, (rows, cols), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sums / counts
        sd = np.sqrt(np.diag(cov))
        return cov / np.outer(sd, sd)  # type: ignore[no-any-return]


def one_level_per_group(block_codes: np.ndarray, group_codes: np.ndarray) -> bool:
    """True when each residual group holds one level of the block, and each level one group."""
    pairs = np.unique(np.stack([group_codes, block_codes], axis=1), axis=0)
    return (np.unique(pairs[:, 0]).size == pairs.shape[0]
            and np.unique(pairs[:, 1]).size == pairs.shape[0])
