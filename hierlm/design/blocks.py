"""Matrix blocks of a mixed model: the fixed-effect matrix and one block per bar.

These records are the only thing the engines (``hierlm.lmm``, ``hierlm.bayes``)
see of the data. A random-effect block is stored per level, never as a dense
``n x (levels * q)`` matrix: row ``i`` of the data contributes ``z[i]`` to the
effects of level ``codes[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from hierlm.design.covariance import CovarianceStructure
from hierlm.design.residual import ResidualDesign

__all__ = ["RandomBlock", "Design", "RowSummary", "ColumnMoments"]


@dataclass(frozen=True, eq=False)
class RandomBlock:
    """One random-effect bar after expansion, e.g. ``(Days | Subject)``.

    Attributes
    ----------
    group : str
        Name of the grouping factor, ``"Subject"`` or ``"cask:batch"`` for an
        interaction of factors.
    columns : tuple of str
        Names of the block's columns, e.g. ``("Intercept", "Days")``.
    structure : CovarianceStructure
        The covariance structure of the block's terms (``us`` for lme4's
        ``(x | g)``; bars from ``||`` give one-column blocks).
    levels : tuple of str
        Labels of the grouping levels, in the order used by ``codes``.
    codes : numpy.ndarray
        Integer array of length n: the level of each observation.
    z : numpy.ndarray
        Float array of shape (n, q): the raw model matrix of the bar's left side.
    """

    group: str
    columns: tuple[str, ...]
    structure: CovarianceStructure
    levels: tuple[str, ...]
    codes: np.ndarray
    z: np.ndarray

    @property
    def correlated(self) -> bool:
        """True when the block has correlation parameters (from its structure)."""
        return self.structure.has_correlation

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)

    @property
    def q(self) -> int:
        """Number of columns (coefficients per level)."""
        return len(self.columns)

    @property
    def term(self) -> str:
        """The block written back as an lme4 bar, e.g. ``"1 + Days | Subject"``."""
        lhs = " + ".join("1" if c == "Intercept" else c for c in self.columns)
        if "Intercept" not in self.columns:
            lhs = "0 + " + lhs
        structure = self.structure
        if structure.name == "us" or self.q == 1 and structure.name == "diag":
            return f"{lhs} | {self.group}"
        option = ", hom = FALSE" if getattr(structure, "homogeneous", True) is False else ""
        return f"{structure.name}({lhs} | {self.group}{option})"

    def sparse_z(self) -> sp.csc_matrix:
        """Return the block's Z as a sparse ``n x (n_levels * q)`` matrix (level-major)."""
        n, q = self.z.shape
        rows = np.repeat(np.arange(n), q)
        cols = (self.codes[:, None] * q + np.arange(q)[None, :]).ravel()
        return sp.csc_matrix((self.z.ravel(), (rows, cols)), shape=(n, self.n_levels * q))

    def as_dict(self) -> dict[str, object]:
        """Summary used by ``Model.random_terms``."""
        return {
            "group": self.group,
            "columns": list(self.columns),
            "correlated": self.correlated,
            "structure": self.structure.describe(),
            "n_levels": self.n_levels,
        }


@dataclass(frozen=True, eq=False)
class RowSummary:
    """What a row-less design knows of the rows it summarises (:mod:`hierlm.sources`).

    A design built from data held elsewhere (DuckDB, Parquet, Polars, Dask)
    carries its sufficient statistics in square-root form: per cell of the
    grouping factors, rows whose cross-products equal those of the cell's data
    (the cell's Gram matrix factorised). Everything that depends on the data
    through cross-products is exact; quantities that need the rows themselves
    ask ``source`` for a second pass or are refused.

    Attributes
    ----------
    n : int
        Number of observations summarised.
    column_sq_sums : tuple of numpy.ndarray
        Per design block, the sum over the observations of each squared
        random-effect column.
    x_sums : numpy.ndarray
        Column sums of the fixed-effect matrix over the observations.
    source : object
        The data source that made the summary (second passes).
    """

    n: int
    column_sq_sums: tuple[np.ndarray, ...]
    x_sums: np.ndarray
    source: object = None
    moments: ColumnMoments | None = None
    level_counts: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True, eq=False)
class ColumnMoments:
    """Means and standard deviations (ddof 1; NaN for fewer than 2 rows) of the design's columns.

    Attributes
    ----------
    y_mean, y_sd : float
        Of the response.
    x_sd : numpy.ndarray
        Of each fixed-effect column.
    z_sd : tuple of numpy.ndarray
        Of each block's random-effect columns.
    """

    y_mean: float
    y_sd: float
    x_sd: np.ndarray
    z_sd: tuple[np.ndarray, ...]


def _sd(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if values.size >= 2 else float("nan")


@dataclass(frozen=True, eq=False)
class Design:
    """Response, fixed-effect matrix and random-effect blocks of one data set.

    Attributes
    ----------
    y : numpy.ndarray
        Response, length n.
    X : numpy.ndarray
        Fixed-effect model matrix, shape (n, p).
    fixed_names : tuple of str
        Column names of ``X`` (lme4 style: ``"Intercept"``, ``"Days"``, ``"recipeB"``).
    blocks : tuple of RandomBlock
        Random-effect blocks in lme4's order (terms reordered by decreasing
        number of levels exactly when lme4 reorders them).
    response : str
        Name of the response column.
    row_index : numpy.ndarray
        Index labels of the rows of the input frame that were used.
    residual : ResidualDesign or None
        The residual covariance structure's row indices (``residual=`` /
        ``variance=``); None for independent residuals with one variance.
    summary : RowSummary or None
        Set for a row-less design (:mod:`hierlm.sources`): ``X``, ``y`` and the
        blocks' ``z`` are then the square-root form of the sufficient
        statistics, not observations.
    offset : numpy.ndarray
        Offset added to the linear predictor, one per row of ``X`` (zeros when
        the model has none; ``offset()`` terms and ``offset=`` summed).
    weights : numpy.ndarray
        Prior weights, one per row of ``X`` (ones when none were given;
        binomial: the trials).
    """

    y: np.ndarray
    X: np.ndarray
    fixed_names: tuple[str, ...]
    blocks: tuple[RandomBlock, ...]
    response: str
    row_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))
    residual: ResidualDesign | None = None
    summary: RowSummary | None = None
    # None is replaced by zeros / ones in __post_init__, so the attributes are always arrays
    offset: np.ndarray = None  # type: ignore[assignment]
    weights: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        rows = int(np.shape(self.X)[0])
        offset = np.zeros(rows) if self.offset is None else np.asarray(self.offset, dtype=float)
        weights = np.ones(rows) if self.weights is None else np.asarray(self.weights, dtype=float)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "weights", weights)

    @property
    def has_offset(self) -> bool:
        """Whether any offset is non-zero."""
        return bool(np.any(self.offset != 0.0))

    @property
    def has_weights(self) -> bool:
        """Whether any prior weight differs from 1."""
        return bool(np.any(self.weights != 1.0))

    @property
    def n(self) -> int:
        """Number of observations."""
        return int(self.X.shape[0]) if self.summary is None else self.summary.n

    @property
    def rowless(self) -> bool:
        """True when the design holds sufficient statistics instead of rows."""
        return self.summary is not None

    def require_rows(self, what: str) -> None:
        """Refuse a quantity that needs the observations when the design is row-less.

        Raises
        ------
        FitError
            Naming the quantity, for a design of data held by an engine.
        """
        if self.summary is not None:
            from hierlm.errors import FitError

            raise FitError(
                f"{what} needs the rows of the data, and this model was fitted from sufficient "
                "statistics computed by its data engine (DuckDB, Parquet, polars or Dask); it is "
                "not available for such data. Fit a sample of the rows as a pandas DataFrame, or "
                "use fixef(), varcorr(), ranef(), coef(), confint(method='profile'), "
                "predict(new_data) and the engine's own second pass (docs: 'Data larger than "
                "memory').")

    def column_moments(self) -> ColumnMoments:
        """Means and SDs of the response and the design's columns (from the summary if row-less)."""
        if self.summary is not None and self.summary.moments is not None:
            return self.summary.moments
        y = np.asarray(self.y, dtype=float)
        X = np.asarray(self.X, dtype=float)
        return ColumnMoments(
            y_mean=float(np.mean(y)) if y.size else float("nan"), y_sd=_sd(y),
            x_sd=np.array([_sd(X[:, k]) for k in range(X.shape[1])]),
            z_sd=tuple(np.array([_sd(np.asarray(b.z, dtype=float)[:, k]) for k in range(b.q)])
                       for b in self.blocks))

    def level_counts(self, index: int) -> np.ndarray:
        """Observations per level of block ``index`` (float, as the likelihoods use them)."""
        if self.summary is not None and self.summary.level_counts:
            return np.asarray(self.summary.level_counts[index], dtype=float)
        block = self.blocks[index]
        return np.bincount(np.asarray(block.codes, dtype=np.intp),
                           minlength=block.n_levels).astype(float)

    def column_rms(self) -> list[np.ndarray]:
        """Root mean square over the observations of each block's random-effect columns."""
        if self.summary is not None:
            return [np.sqrt(sq / self.summary.n) for sq in self.summary.column_sq_sums]
        return [np.sqrt(np.mean(np.square(np.asarray(b.z, dtype=float)), axis=0))
                for b in self.blocks]

    @property
    def p(self) -> int:
        """Number of fixed-effect columns."""
        return int(self.X.shape[1])

    def block_labels(self) -> list[str]:
        """Label every block as lme4's ``VarCorr`` does: ``Subject``, ``Subject.1``, ...

        The second, third ... block on one factor get ``.1``, ``.2`` ... appended
        (``(Days || Subject)`` gives ``Subject`` and ``Subject.1``), so the labels
        are distinct and in the design's block order.
        """
        seen: dict[str, int] = {}
        labels = []
        for block in self.blocks:
            count = seen.get(block.group, 0)
            labels.append(block.group if count == 0 else f"{block.group}.{count}")
            seen[block.group] = count + 1
        return labels

    def sparse_z(self) -> sp.csc_matrix:
        """Return the full Z = [Z_1 ... Z_k] as a sparse matrix (for tests and small problems)."""
        if not self.blocks:
            return sp.csc_matrix((self.n, 0))
        return sp.hstack([b.sparse_z() for b in self.blocks], format="csc")
