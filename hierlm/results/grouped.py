"""Per-level marginal quantities: integrating a factor's group effects out.

For a grouping factor g with levels j, the rows of level j depend on

* the effects of g's own blocks for level j,
* the effects of blocks *nested* in g (every level of such a block lies
  inside one level of g: the casks of a batch), which no other level shares,
* the effects of the remaining (crossed, or enclosing) blocks, which other
  levels share.

Integrating the first two kinds out, and conditioning on the third, gives

    y_j | beta, sigma, G, b_crossed ~ N(m_j, V_j),
    m_j = X_j beta + sum_{crossed k} Z_kj b_k,
    V_j = sigma^2 I + U_j D U_j',

where ``U_j`` holds the raw random-effect columns of the integrated blocks,
spread over the block's levels present in level j, and ``D`` is block
diagonal with one copy of ``G_k`` per such level. Because the levels of g are
conditionally independent given the crossed effects, ``log p(y_j | ...)`` is
the likelihood term of level j when whole levels are left out, which is what
group-level LOO needs. The same pieces give the information
``Z_j' V_j^-1 Z_j`` that the shrinkage factor of a nested design uses.

Everything is computed with a square root ``D = R R'`` (from an eigen
decomposition, so singular ``G`` is fine) and Woodbury's identity, so the cost
per draw and level is ``O(n_j m_j^2 + m_j^3)`` with ``m_j`` the number of
integrated effects, never ``O(n_j^3)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.design.blocks import Design
from hierlm.errors import ColumnNotFoundError
from hierlm.results.draws import FitDraws

__all__ = ["FactorSplit", "nested_in", "split_factor", "covariance_root", "level_loadings", "group_loglik"]


def nested_in(inner: np.ndarray, outer: np.ndarray) -> bool:
    """True when every level of the ``inner`` codes occurs within a single level of ``outer``."""
    pairs = np.unique(np.stack([inner, outer]), axis=1)
    return pairs.shape[1] == np.unique(inner).size


@dataclass(frozen=True)
class FactorSplit:
    """The blocks of a design sorted by their relation to one grouping factor.

    Attributes
    ----------
    group : str
        The factor.
    own : tuple of int
        Blocks on the factor itself.
    nested : tuple of int
        Blocks whose factor is nested in it (integrated out with it).
    other : tuple of int
        The remaining blocks (conditioned on).
    codes : numpy.ndarray
        Level of each row.
    levels : tuple of str
        Level labels.
    rows : tuple of numpy.ndarray
        Row indices of each level.
    """

    group: str
    own: tuple[int, ...]
    nested: tuple[int, ...]
    other: tuple[int, ...]
    codes: np.ndarray
    levels: tuple[str, ...]
    rows: tuple[np.ndarray, ...]

    @property
    def integrated(self) -> tuple[int, ...]:
        """Blocks integrated out per level: own then nested."""
        return self.own + self.nested


def split_factor(design: Design, group: str) -> FactorSplit:
    """Classify the blocks of ``design`` relative to the factor ``group``.

    Parameters
    ----------
    design : Design
        The model's design.
    group : str
        A grouping factor of the design.

    Returns
    -------
    FactorSplit

    Raises
    ------
    ColumnNotFoundError
        If ``group`` is not a grouping factor of the design.
    """
    own = tuple(k for k, block in enumerate(design.blocks) if block.group == group)
    if not own:
        groups = sorted({block.group for block in design.blocks})
        residual = getattr(design, "residual", None)
        if not groups and residual is not None:
            raise ColumnNotFoundError(
                f"{group!r} is not a grouping factor of the model: it has no random-effect terms "
                f"(a GLS / MMRM model), so nothing is shrunk; the within-{residual.spec.group} "
                f"correlation is in residual={residual.describe()!r}: see "
                "fit.residual_covariance(correlation=True).")
        raise ColumnNotFoundError(f"{group!r} is not a grouping factor of the model; choose one of {groups}.")
    codes = np.asarray(design.blocks[own[0]].codes)
    nested = tuple(
        k for k, block in enumerate(design.blocks)
        if k not in own and nested_in(np.asarray(block.codes), codes)
    )
    other = tuple(k for k in range(len(design.blocks)) if k not in own and k not in nested)
    n_levels = design.blocks[own[0]].n_levels
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=n_levels))])
    rows = tuple(order[bounds[j]:bounds[j + 1]] for j in range(n_levels))
    return FactorSplit(group, own, nested, other, codes, tuple(design.blocks[own[0]].levels), rows)


def covariance_root(covariance: np.ndarray) -> np.ndarray:
    """A square root R with ``R R' = G`` for each draw of a PSD matrix (S, q, q)."""
    values, vectors = np.linalg.eigh(covariance)
    return np.asarray(vectors * np.sqrt(np.clip(values, 0.0, None))[:, None, :])


def level_loadings(design: Design, blocks: tuple[int, ...], rows: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Raw loadings of the integrated blocks for one level's rows.

    Parameters
    ----------
    design : Design
        The model's design.
    blocks : tuple of int
        Blocks to integrate out.
    rows : numpy.ndarray
        Row indices of the level.

    Returns
    -------
    list of (int, numpy.ndarray)
        Per block: its index and an array (n_j, L, q) with the block's columns
        placed at the local level of each row (L levels of the block occur in
        these rows).
    """
    out = []
    for k in blocks:
        block = design.blocks[k]
        local, position = np.unique(np.asarray(block.codes)[rows], return_inverse=True)
        spread = np.zeros((rows.size, local.size, block.q))
        spread[np.arange(rows.size), position] = np.asarray(block.z, dtype=float)[rows]
        out.append((k, spread))
    return out


def scaled_loadings(loadings: list[tuple[int, np.ndarray]], roots: list[np.ndarray]) -> np.ndarray:
    """Per-draw ``U_j R``: shape (S, n_j, m_j) from raw loadings and block roots (S, q, q)."""
    parts = [np.einsum("nlq,sqr->snlr", spread, roots[k]).reshape(roots[k].shape[0], spread.shape[0], -1)
             for k, spread in loadings]
    return np.concatenate(parts, axis=2)


def _gaussian_woodbury(residual: np.ndarray, loading: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Return log N(r | 0, s2 I + A A') per draw, for r (S, n), A (S, n, m), s2 (S,)."""
    n = residual.shape[1]
    m = loading.shape[2]
    inner = np.eye(m) + np.einsum("sna,snb->sab", loading, loading) / variance[:, None, None]
    chol = np.linalg.cholesky(inner)
    projected = np.einsum("sna,sn->sa", loading, residual)
    solved = np.linalg.solve(chol, projected[:, :, None])[:, :, 0]
    logdet = n * np.log(variance) + 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    quadratic = ((residual**2).sum(axis=1) - (solved**2).sum(axis=1) / variance) / variance
    return np.asarray(-0.5 * (n * np.log(2.0 * np.pi) + logdet + quadratic))


def group_loglik(draws: FitDraws, group: str) -> np.ndarray:
    """Marginal log-likelihood of each level of ``group``, per draw.

    ``log N(y_j | X_j beta + sum_{other k} Z_kj b_k, sigma^2 I + U_j D U_j')``
    with the factor's own blocks and the blocks nested in it integrated out
    (see the module docstring).

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.
    group : str
        The grouping factor whose levels are the units.

    Returns
    -------
    numpy.ndarray
        Shape (S, n_levels).
    """
    design = draws.design
    split = split_factor(design, group)
    mean = draws.beta @ np.asarray(design.X, dtype=float).T
    for k in split.other:
        block = design.blocks[k]
        mean += np.einsum("snq,nq->sn", draws.effects[k][:, np.asarray(block.codes), :],
                          np.asarray(block.z, dtype=float))
    residual = np.asarray(design.y, dtype=float)[None, :] - mean
    roots = {k: covariance_root(draws.covariances[k]) for k in split.integrated}
    variance = draws.sigma**2
    out = np.empty((draws.n_draws, len(split.levels)))
    for j, rows in enumerate(split.rows):
        loadings = level_loadings(design, split.integrated, rows)
        loading = scaled_loadings(loadings, [roots.get(k) for k in range(len(design.blocks))])  # type: ignore[misc]
        out[:, j] = _gaussian_woodbury(residual[:, rows], loading, variance)
    if design.rowless:
        # square-root rows (hierlm.sources) reproduce every cross-product, so the quadratic form
        # and the determinant are exact; only the count in n_j log(2 pi sigma^2) is the engine's
        counts = design.level_counts(split.own[0])
        rows_here = np.array([rows.size for rows in split.rows], dtype=float)
        out -= 0.5 * (counts - rows_here)[None, :] * np.log(2 * np.pi * variance)[:, None]
    return out
