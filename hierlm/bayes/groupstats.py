"""Per-group cross-products used by the marginal formulation and by MAP.

When every random-effect block of a model shares one grouping factor, the
marginal covariance of ``y`` is block diagonal by level of that factor and
everything the Gaussian likelihood needs is a handful of cross-products per
level. They are formed here once, in a single pass over the rows, so that the
sampler never touches the ``n`` rows again.

This is a private helper of ``hierlm.bayes``; ``hierlm.design.crossprod``
(written for the ML/REML engine) computes related quantities for the general
case. Here all blocks on the shared factor are concatenated into one
``(n, Q)`` matrix ``Z`` so that each level has one dense ``Q x Q`` block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.design.blocks import Design

__all__ = ["GroupStats", "scalar_terms_only", "shared_group", "group_stats"]


@dataclass(frozen=True, eq=False)
class GroupStats:
    """Cross-products of one design, summed within each level of one factor.

    Attributes
    ----------
    group : str
        Name of the shared grouping factor.
    levels : tuple of str
        Its levels, in the order of the first axis of the arrays below.
    codes : numpy.ndarray
        Level of each observation (int, length n).
    z : numpy.ndarray
        Concatenated random-effect columns of all blocks, shape (n, Q).
    block_slices : tuple of slice
        Columns of ``z`` that belong to each block, in design order.
    ztz, ztx, zty : numpy.ndarray
        Per-level ``Z_j'Z_j`` (J, Q, Q), ``Z_j'X_j`` (J, Q, p), ``Z_j'y_j`` (J, Q).
    xtx_level, xty_level, yty_level, n_level : numpy.ndarray
        Per-level ``X_j'X_j`` (J, p, p), ``X_j'y_j`` (J, p), ``y_j'y_j`` (J,)
        and row counts (J,), needed for per-group log-likelihoods.
    xtx, xty, yty : numpy.ndarray or float
        Totals over all levels.
    n : int
        Number of observations.
    """

    group: str
    levels: tuple[str, ...]
    codes: np.ndarray
    z: np.ndarray
    block_slices: tuple[slice, ...]
    ztz: np.ndarray
    ztx: np.ndarray
    zty: np.ndarray
    xtx_level: np.ndarray
    xty_level: np.ndarray
    yty_level: np.ndarray
    n_level: np.ndarray
    xtx: np.ndarray
    xty: np.ndarray
    yty: float
    n: int

    @property
    def n_groups(self) -> int:
        """Number of levels J."""
        return len(self.levels)

    @property
    def q_total(self) -> int:
        """Number of random-effect columns per level Q."""
        return int(self.z.shape[1])


def scalar_terms_only(design: Design) -> bool:
    """Whether the compiled crossed kernel applies: scalar terms, one per grouping factor.

    Used by :mod:`hierlm.bayes.crossed_kernel` and ``formulation="auto"``: us/diag
    terms of one column, on two or more distinct grouping factors (one factor is
    the one-factor kernel's case), and no residual structure.
    """
    if design.residual is not None or len(design.blocks) < 2:
        return False
    if any(not block.structure.is_lme4 or block.q != 1 for block in design.blocks):
        return False
    groups = [block.group for block in design.blocks]
    return len(set(groups)) == len(groups)


def shared_group(design: Design) -> str | None:
    """Return the grouping factor shared by every block, or None if there is none.

    Blocks count as sharing a factor when they have the same group name, the
    same levels and the same level code for every row.

    Parameters
    ----------
    design : Design
        The model's design.

    Returns
    -------
    str or None
        The common group name; None without blocks or with different factors.
    """
    if not design.blocks:
        return None
    first = design.blocks[0]
    for block in design.blocks[1:]:
        same = (
            block.group == first.group
            and block.levels == first.levels
            and np.array_equal(block.codes, first.codes)
        )
        if not same:
            return None
    return first.group


def _sum_by_level(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the rows of ``values`` (n, k) within each level; returns (n_groups, k)."""
    out = np.empty((n_groups, values.shape[1]))
    for column in range(values.shape[1]):
        out[:, column] = np.bincount(codes, weights=values[:, column], minlength=n_groups)
    return out


def group_stats(design: Design) -> GroupStats:
    """Compute the per-level cross-products of a design whose blocks share one factor.

    Parameters
    ----------
    design : Design
        A design for which :func:`shared_group` is not None.

    Returns
    -------
    GroupStats
        Cross-products per level and in total.

    Raises
    ------
    ValueError
        If the blocks do not share one grouping factor.
    """
    group = shared_group(design)
    if group is None:
        raise ValueError("group_stats needs every random-effect block on one grouping factor")
    first = design.blocks[0]
    codes = np.asarray(first.codes, dtype=np.intp)
    n_groups = first.n_levels
    z = np.column_stack([np.asarray(b.z, dtype=float) for b in design.blocks])
    slices = []
    start = 0
    for block in design.blocks:
        slices.append(slice(start, start + block.q))
        start += block.q
    X = np.asarray(design.X, dtype=float)
    y = np.asarray(design.y, dtype=float)

    def outer_sums(a: np.ndarray, b: np.ndarray, symmetric: bool) -> np.ndarray:
        # one pass per entry keeps memory at O(n) whatever the number of columns
        out = np.empty((n_groups, a.shape[1], b.shape[1]))
        for k in range(a.shape[1]):
            for m in range(k if symmetric else 0, b.shape[1]):
                out[:, k, m] = np.bincount(codes, weights=a[:, k] * b[:, m], minlength=n_groups)
                if symmetric:
                    out[:, m, k] = out[:, k, m]
        return out

    ztz = outer_sums(z, z, symmetric=True)
    ztx = outer_sums(z, X, symmetric=False)
    zty = _sum_by_level(codes, z * y[:, None], n_groups)
    xtx_level = outer_sums(X, X, symmetric=True)
    xty_level = _sum_by_level(codes, X * y[:, None], n_groups)
    yty_level = np.bincount(codes, weights=y * y, minlength=n_groups)
    n_level = design.level_counts(0)  # blocks share the factor: the first block's counts
    return GroupStats(
        group=group,
        levels=tuple(str(level) for level in first.levels),
        codes=codes,
        z=z,
        block_slices=tuple(slices),
        ztz=ztz,
        ztx=ztx,
        zty=zty,
        xtx_level=xtx_level,
        xty_level=xty_level,
        yty_level=yty_level,
        n_level=n_level,
        xtx=X.T @ X,
        xty=X.T @ y,
        yty=float(y @ y),
        n=design.n,
    )
