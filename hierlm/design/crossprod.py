"""Cross-products of a mixed-model design, formed once per fit.

The ML/REML objective only ever needs the cross-products of the columns
``[Z_1 ... Z_k X y]``. They are formed here in one pass over the rows, so an
evaluation of the objective costs no more than the size of its Cholesky
factor, whatever the number of observations.

Layout (in the spirit of MixedModels.jl):

* Random-effect blocks on the same grouping factor (``(1|g) + (0+x|g)``, i.e.
  ``(x||g)``) are merged into one *factor term* whose relative covariance
  template has structural zeros. This changes nothing in the likelihood (it
  only permutes the random effects) but keeps every factor block-diagonal.
* Factor terms are ordered by decreasing number of levels. The first one is
  eliminated analytically: its cross-product ``Z_1'Z_1`` is block-diagonal
  (one ``q x q`` block per level) and is stored as such (``zz_first``).
* All remaining columns ``R = [Z_2 ... Z_k X y]`` (width ``m``) are kept as a
  dense ``m x m`` cross-product ``rr``.
* The coupling ``Z_1'R`` is stored per level of the first factor as a sparse
  row pattern (``level_ptr``, ``cols``, ``vals``), together with the list of
  column pairs that share a level (``pair_*``), so that sums over levels of
  ``Z_1'R`` quadratic forms become a single weighted ``bincount``.

The theta layout follows lme4: per random-effect block in the design's order,
the lower-triangular entries of the block's relative covariance factor,
column-wise (only the diagonal for uncorrelated multi-column blocks). The
entries are those of the block's covariance structure
(:meth:`~hierlm.design.covariance.CovarianceStructure.kernel_pattern`); for a
patterned structure (``cs``, ``ar1``, ``toep``) they are every entry of its
lower-triangular factor, which the structure's parameters determine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.design.blocks import Design, RandomBlock
from hierlm.design.checks import require_dense_memory
from hierlm.errors import DataError

__all__ = [
    "ThetaLayout",
    "FactorTerm",
    "CrossProducts",
    "GroupCrossProducts",
    "theta_layout",
    "crossproducts",
    "group_crossproducts",
]


# Size limits of the engine: width of the dense part and number of coupling pairs.
_MAX_DENSE = 20_000
_MAX_PAIRS = 100_000_000


def _lme4_name(column: str) -> str:
    return "(Intercept)" if column == "Intercept" else column


@dataclass(frozen=True, eq=False)
class ThetaLayout:
    """Where each theta entry sits in the relative covariance factors.

    Attributes
    ----------
    block : numpy.ndarray
        Index of the design block of each theta entry.
    row, col : numpy.ndarray
        Position of each theta entry inside its block's ``q x q`` template.
    lower : numpy.ndarray
        Lower bounds: 0 for diagonal entries, ``-inf`` elsewhere (lme4's).
    names : tuple of str
        lme4's theta names, e.g. ``"Subject.(Intercept)"``,
        ``"Subject.Days.(Intercept)"``, ``"Subject.Days"``.
    block_start : numpy.ndarray
        Offset of each block's entries in theta (length ``n_blocks + 1``).
    """

    block: np.ndarray
    row: np.ndarray
    col: np.ndarray
    lower: np.ndarray
    names: tuple[str, ...]
    block_start: np.ndarray

    @property
    def size(self) -> int:
        """Number of theta entries."""
        return int(self.block.size)

    @property
    def is_diagonal(self) -> np.ndarray:
        """Boolean mask of the entries on a template diagonal (the bounded ones)."""
        return np.asarray(self.row == self.col)

    def start(self) -> np.ndarray:
        """Return lme4's starting values: 1 on diagonals, 0 elsewhere."""
        return self.is_diagonal.astype(float)

    def templates(self, theta: np.ndarray, q: list[int]) -> list[np.ndarray]:
        """Return each block's lower-triangular template filled from ``theta``."""
        out = [np.zeros((qb, qb)) for qb in q]
        for k in range(self.size):
            out[self.block[k]][self.row[k], self.col[k]] = theta[k]
        return out


def theta_layout(blocks: tuple[RandomBlock, ...]) -> ThetaLayout:
    """Build lme4's theta layout for a tuple of random-effect blocks.

    Parameters
    ----------
    blocks : tuple of RandomBlock
        The design's blocks, in lme4's term order.

    Returns
    -------
    ThetaLayout
    """
    block, row, col, names = [], [], [], []
    starts = [0]
    for index, rb in enumerate(blocks):
        # The kernel's template entries: lme4's theta for us/diag, all of T for patterned blocks.
        for i, j in rb.structure.kernel_pattern():
            block.append(index)
            row.append(i)
            col.append(j)
            if i == j:
                names.append(f"{rb.group}.{_lme4_name(rb.columns[i])}")
            else:
                names.append(f"{rb.group}.{_lme4_name(rb.columns[i])}."
                             f"{_lme4_name(rb.columns[j])}")
        starts.append(len(block))
    row_a = np.asarray(row, dtype=np.int64)
    col_a = np.asarray(col, dtype=np.int64)
    lower = np.where(row_a == col_a, 0.0, -np.inf)
    return ThetaLayout(np.asarray(block, dtype=np.int64), row_a, col_a, lower,
                       tuple(names), np.asarray(starts, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class FactorTerm:
    """All random-effect columns on one grouping factor (merged blocks).

    Attributes
    ----------
    group : str
        Name of the grouping factor.
    n_levels : int
        Number of levels.
    q : int
        Number of random-effect columns per level (summed over merged blocks).
    blocks : tuple of int
        Indices of the design blocks merged here, in column order.
    block_offsets : tuple of int
        First column of each merged block inside this factor's ``q`` columns.
    t_row, t_col, t_theta : numpy.ndarray
        Template entries: ``T[t_row[k], t_col[k]] = theta[t_theta[k]]``; all
        other entries of the ``q x q`` template are structural zeros.
    """

    group: str
    n_levels: int
    q: int
    blocks: tuple[int, ...]
    block_offsets: tuple[int, ...]
    t_row: np.ndarray
    t_col: np.ndarray
    t_theta: np.ndarray

    def template(self, theta: np.ndarray) -> np.ndarray:
        """Return the ``q x q`` lower-triangular relative covariance factor at ``theta``."""
        out = np.zeros((self.q, self.q))
        out[self.t_row, self.t_col] = theta[self.t_theta]
        return out


@dataclass(frozen=True, eq=False)
class CrossProducts:
    """Cross-products of ``[Z_1 ... Z_k X y]`` arranged for the ML/REML kernel.

    Attributes
    ----------
    n, p : int
        Number of observations and fixed-effect columns.
    layout : ThetaLayout
        lme4's theta layout of the design blocks.
    factors : tuple of FactorTerm
        Merged factor terms, largest first; ``factors[0]`` is eliminated.
    zz_first : numpy.ndarray
        ``(n1, q1, q1)``: per-level ``Z_1'Z_1`` of the first factor.
    rest_offsets : tuple of int
        Column offset in ``R`` of each remaining factor (``factors[1:]``).
    m_z : int
        Number of random-effect columns in ``R`` (``R = [Z_rest, X, y]``).
    m : int
        Width of ``R``: ``m_z + p + 1``.
    rr : numpy.ndarray
        Dense ``(m, m)`` cross-product ``R'R``.
    level_ptr : numpy.ndarray
        ``(n1 + 1,)``: positions ``level_ptr[l]:level_ptr[l+1]`` of level ``l`` of
        the first factor in ``cols``/``vals``.
    cols : numpy.ndarray
        Column of ``R`` of each stored coupling entry (sorted within a level).
    pos_level : numpy.ndarray
        Level of the first factor of each stored coupling entry.
    vals : numpy.ndarray
        ``(q1, nnz)``: ``Z_1'R`` entries, one row per first-factor column.
    pair_first, pair_second : numpy.ndarray
        Positions (into ``cols``) of every pair of entries sharing a level,
        ``pair_first <= pair_second``.
    pair_level : numpy.ndarray
        Level of each pair.
    pair_slot : numpy.ndarray
        Index of each pair's ``(cols[first], cols[second])`` cell in ``slot_flat``.
    slot_flat : numpy.ndarray
        Distinct upper-triangle cells of ``R'R`` touched by pairs, as flat
        indices ``row * m + col``.
    rest_positions : tuple of numpy.ndarray
        For each remaining factor, the coupling positions whose column belongs
        to it (in groups of that factor's ``q`` consecutive columns).
    log_weights : float
        ``sum(log w)`` of the prior weights (0 without weights): every
        cross-product is of the rows scaled by ``sqrt(w)``, and the deviance
        gains ``-sum(log w)``, as lme4's weighted ``lmer``.
    """

    n: int
    p: int
    layout: ThetaLayout
    factors: tuple[FactorTerm, ...]
    zz_first: np.ndarray
    rest_offsets: tuple[int, ...]
    m_z: int
    m: int
    rr: np.ndarray
    level_ptr: np.ndarray
    cols: np.ndarray
    pos_level: np.ndarray
    vals: np.ndarray
    pair_first: np.ndarray
    pair_second: np.ndarray
    pair_level: np.ndarray
    pair_slot: np.ndarray
    slot_flat: np.ndarray
    rest_positions: tuple[np.ndarray, ...]
    log_weights: float = 0.0

    @property
    def n_theta(self) -> int:
        """Number of covariance parameters."""
        return self.layout.size

    @property
    def first(self) -> FactorTerm:
        """The eliminated (largest) factor term."""
        return self.factors[0]

    @property
    def rest(self) -> tuple[FactorTerm, ...]:
        """Factor terms kept in the dense part."""
        return self.factors[1:]

    @property
    def n_pairs(self) -> int:
        """Number of coupling pairs (the cost of one evaluation's sparse part)."""
        return int(self.pair_first.size)


def _level_sums(codes: np.ndarray, n_levels: int, left: np.ndarray,
                right: np.ndarray) -> np.ndarray:
    """Return ``out[l] = sum_{i: codes[i] = l} left[i]' right[i]`` of shape (L, a, b)."""
    a, b = left.shape[1], right.shape[1]
    out = np.empty((n_levels, a, b))
    for i in range(a):
        for j in range(b):
            out[:, i, j] = np.bincount(codes, weights=left[:, i] * right[:, j],
                                       minlength=n_levels)
    return out


def _pair_sums(codes_a: np.ndarray, z_a: np.ndarray, codes_b: np.ndarray, n_b: int,
               z_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum ``z_a[i]' z_b[i]`` over rows sharing a (level a, level b) pair.

    Returns the distinct level pairs ``(la, lb)`` (sorted by ``la`` then ``lb``)
    and their sums of shape ``(n_pairs, qa, qb)``.
    """
    key = codes_a.astype(np.int64) * n_b + codes_b
    uniq, inverse = np.unique(key, return_inverse=True)
    qa, qb = z_a.shape[1], z_b.shape[1]
    sums = np.empty((uniq.size, qa, qb))
    for i in range(qa):
        for j in range(qb):
            sums[:, i, j] = np.bincount(inverse, weights=z_a[:, i] * z_b[:, j],
                                        minlength=uniq.size)
    return uniq // n_b, uniq % n_b, sums


def _merge_factors(blocks: tuple[RandomBlock, ...], layout: ThetaLayout
                   ) -> tuple[list[FactorTerm], list[np.ndarray], list[np.ndarray]]:
    """Merge blocks on the same grouping factor; return factors, codes and z's."""
    groups: list[list[int]] = []
    for index, rb in enumerate(blocks):
        for members in groups:
            first = blocks[members[0]]
            if (first.group == rb.group and first.n_levels == rb.n_levels
                    and np.array_equal(first.codes, rb.codes)):
                members.append(index)
                break
        else:
            groups.append([index])
    factors, codes, zs = [], [], []
    for members in groups:
        offsets, rows, cols, thetas = [], [], [], []
        q = 0
        for b in members:
            offsets.append(q)
            sel = np.flatnonzero(layout.block == b)
            rows.append(layout.row[sel] + q)
            cols.append(layout.col[sel] + q)
            thetas.append(sel)
            q += blocks[b].q
        rb = blocks[members[0]]
        factors.append(FactorTerm(rb.group, rb.n_levels, q, tuple(members), tuple(offsets),
                                  np.concatenate(rows), np.concatenate(cols),
                                  np.concatenate(thetas)))
        codes.append(np.asarray(rb.codes, dtype=np.int64))
        zs.append(np.column_stack([np.asarray(blocks[b].z, dtype=float).reshape(rb.codes.size, -1)
                                   for b in members]))
    order = sorted(range(len(factors)), key=lambda k: -factors[k].n_levels)
    return [factors[k] for k in order], [codes[k] for k in order], [zs[k] for k in order]


def crossproducts(design: Design) -> CrossProducts:
    """Form all cross-products the ML/REML kernel needs, in one pass over the rows.

    Parameters
    ----------
    design : Design
        The model's design; it must have at least one random-effect block.

    Returns
    -------
    CrossProducts

    Raises
    ------
    DataError
        If the design has no random-effect block or a level with no rows.
    """
    if not design.blocks:
        raise DataError("The model has no random-effect term; use a linear model instead.")
    layout = theta_layout(design.blocks)
    factors, codes, zs = _merge_factors(design.blocks, layout)
    for f, c in zip(factors, codes, strict=True):
        if c.size and (c.min() < 0 or c.max() >= f.n_levels):
            raise DataError(f"Grouping factor {f.group!r} has codes outside its levels.")
    n, p = design.n, design.p
    y = np.asarray(design.y, dtype=float).reshape(-1, 1)  # rows (square-root rows if row-less)
    xy = np.hstack([np.asarray(design.X, dtype=float), y])
    log_weights = 0.0
    if design.has_weights:
        # prior weights: Var(y_i) = sigma^2 / w_i, so every row is scaled by sqrt(w_i) once here
        root = np.sqrt(np.asarray(design.weights, dtype=float))[:, None]
        xy = xy * root
        zs = [z * root for z in zs]
        log_weights = float(np.sum(np.log(design.weights)))
    first, c1, z1 = factors[0], codes[0], zs[0]
    n1, q1 = first.n_levels, first.q

    # Widths and offsets of the dense part R = [Z_2 ... Z_k, X, y].
    rest_offsets, offset = [], 0
    for f in factors[1:]:
        rest_offsets.append(offset)
        offset += f.n_levels * f.q
    m_z = offset
    m = m_z + p + 1
    if m > _MAX_DENSE:
        raise DataError(
            f"After eliminating {first.group!r} ({n1} levels), the remaining random effects "
            f"and fixed effects form a dense block {m} columns wide (limit {_MAX_DENSE}); this "
            "engine cannot fit it in memory. Consider fewer levels or fewer crossed factors.")
    # the kernel holds several m x m copies: refuse before allocating what memory cannot hold
    require_dense_memory(m, f"After eliminating {first.group!r} ({n1} levels), the remaining "
                            "random effects and fixed effects")

    zz_first = _level_sums(c1, n1, z1, z1)

    # R'R (dense).
    rr = np.zeros((m, m))
    rr[m_z:, m_z:] = xy.T @ xy
    for k, f in enumerate(factors[1:], start=1):
        ok, nk, qk = rest_offsets[k - 1], f.n_levels, f.q
        diag = _level_sums(codes[k], nk, zs[k], zs[k])
        idx = ok + np.arange(nk * qk).reshape(nk, qk)
        rr[idx[:, :, None], idx[:, None, :]] = diag
        zx = _level_sums(codes[k], nk, zs[k], xy).reshape(nk * qk, p + 1)
        rr[ok:ok + nk * qk, m_z:] = zx
        rr[m_z:, ok:ok + nk * qk] = zx.T
        for j, g in enumerate(factors[k + 1:], start=k + 1):
            oj, qj = rest_offsets[j - 1], g.q
            la, lb, sums = _pair_sums(codes[k], zs[k], codes[j], g.n_levels, zs[j])
            ri = ok + la[:, None] * qk + np.arange(qk)[None, :]
            ci = oj + lb[:, None] * qj + np.arange(qj)[None, :]
            rr[ri[:, :, None], ci[:, None, :]] = sums
            rr[ci[:, :, None], ri[:, None, :]] = sums.transpose(0, 2, 1)

    # Z_1'R, stored per level of the first factor.
    ent_level, ent_col, ent_vals = [], [], []
    for k, f in enumerate(factors[1:], start=1):
        ok, qk = rest_offsets[k - 1], f.q
        la, lb, sums = _pair_sums(c1, z1, codes[k], f.n_levels, zs[k])
        ent_level.append(np.repeat(la, qk))
        ent_col.append((ok + lb[:, None] * qk + np.arange(qk)[None, :]).ravel())
        ent_vals.append(sums.transpose(1, 0, 2).reshape(q1, -1))
    zxy = _level_sums(c1, n1, z1, xy)  # (n1, q1, p + 1)
    ent_level.append(np.repeat(np.arange(n1), p + 1))
    ent_col.append(np.tile(np.arange(m_z, m), n1))
    ent_vals.append(zxy.transpose(1, 0, 2).reshape(q1, -1))
    level_all = np.concatenate(ent_level)
    col_all = np.concatenate(ent_col)
    order = np.lexsort((col_all, level_all))
    pos_level = level_all[order]
    cols = col_all[order]
    vals = np.concatenate(ent_vals, axis=1)[:, order]
    level_ptr = np.searchsorted(pos_level, np.arange(n1 + 1)).astype(np.int64)

    # Every pair of entries of one level (first <= second).
    nnz = cols.size
    level_end = level_ptr[1:][pos_level]
    count = level_end - np.arange(nnz)
    total = int(count.sum())
    if total > _MAX_PAIRS:
        raise DataError(
            f"The levels of {first.group!r} share {total:,} pairs of columns with the other "
            f"terms (limit {_MAX_PAIRS:,}); the crossed design is too dense for this engine.")
    pair_first = np.repeat(np.arange(nnz), count)
    pair_start = np.repeat(np.cumsum(count) - count, count)
    pair_second = pair_first + (np.arange(total) - pair_start)
    pair_level = pos_level[pair_first]
    flat = cols[pair_first] * m + cols[pair_second]
    slot_flat, pair_slot = np.unique(flat, return_inverse=True)

    rest_positions = []
    for k, f in enumerate(factors[1:], start=1):
        ok = rest_offsets[k - 1]
        rest_positions.append(np.flatnonzero((cols >= ok) & (cols < ok + f.n_levels * f.q)))

    return CrossProducts(
        n=n, p=p, layout=layout, factors=tuple(factors), zz_first=zz_first,
        rest_offsets=tuple(rest_offsets), m_z=m_z, m=m, rr=rr, level_ptr=level_ptr,
        cols=cols, pos_level=pos_level, vals=vals, pair_first=pair_first,
        pair_second=pair_second, pair_level=pair_level, pair_slot=pair_slot.ravel(),
        slot_flat=slot_flat, rest_positions=tuple(rest_positions), log_weights=log_weights,
    )


@dataclass(frozen=True, eq=False)
class GroupCrossProducts:
    """Cross-products summed within each level of one grouping factor.

    All blocks on the factor are concatenated into ``Q`` columns (``(x||g)``
    gives ``Q = 2``). Everything a Gaussian likelihood with this single factor
    needs, without touching the rows again.

    Attributes
    ----------
    group : str
        The grouping factor.
    levels : tuple of str
        Its levels (first axis of the arrays).
    blocks : tuple of int
        Design blocks concatenated, in column order.
    n_obs : numpy.ndarray
        Rows per level, ``(J,)``.
    ztz, ztx, zty : numpy.ndarray
        ``Z_j'Z_j`` (J, Q, Q), ``Z_j'X_j`` (J, Q, p), ``Z_j'y_j`` (J, Q).
    xtx, xty, yty : numpy.ndarray
        ``X_j'X_j`` (J, p, p), ``X_j'y_j`` (J, p), ``y_j'y_j`` (J,).
    """

    group: str
    levels: tuple[str, ...]
    blocks: tuple[int, ...]
    n_obs: np.ndarray
    ztz: np.ndarray
    ztx: np.ndarray
    zty: np.ndarray
    xtx: np.ndarray
    xty: np.ndarray
    yty: np.ndarray


def group_crossproducts(design: Design, group: str | None = None) -> GroupCrossProducts:
    """Per-level cross-products ``Z_j'Z_j, Z_j'X_j, Z_j'y_j, X_j'X_j, X_j'y_j, y_j'y_j``.

    Parameters
    ----------
    design : Design
        The design.
    group : str, optional
        Grouping factor to sum within. Defaults to the design's only factor;
        a design with several factors needs it named.

    Returns
    -------
    GroupCrossProducts

    Raises
    ------
    DataError
        If ``group`` is missing for a multi-factor design or unknown.
    """
    groups = list(dict.fromkeys(b.group for b in design.blocks))
    if group is None:
        if len(groups) != 1:
            raise DataError(f"The design has grouping factors {groups}; name one with group=.")
        group = groups[0]
    members = [k for k, b in enumerate(design.blocks) if b.group == group]
    if not members:
        raise DataError(f"No random-effect block is grouped by {group!r}; have {groups}.")
    rb = design.blocks[members[0]]
    codes = np.asarray(rb.codes, dtype=np.int64)
    z = np.column_stack([np.asarray(design.blocks[k].z, dtype=float).reshape(codes.size, -1)
                         for k in members])
    x = np.asarray(design.X, dtype=float)
    y = np.asarray(design.y, dtype=float).reshape(-1, 1)
    J = rb.n_levels
    return GroupCrossProducts(
        group=group, levels=rb.levels, blocks=tuple(members),
        n_obs=np.bincount(codes, minlength=J).astype(np.int64),
        ztz=_level_sums(codes, J, z, z), ztx=_level_sums(codes, J, z, x),
        zty=_level_sums(codes, J, z, y)[:, :, 0], xtx=_level_sums(codes, J, x, x),
        xty=_level_sums(codes, J, x, y)[:, :, 0], yty=_level_sums(codes, J, y, y)[:, 0, 0],
    )
