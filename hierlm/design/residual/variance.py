"""Variance functions of the residuals: nlme's ``varIdent``, composable with any structure.

The residual covariance of group ``i`` is ``sigma^2 M_i S_i M_i``; a variance
function gives the diagonal ``M_i`` of per-row SD ratios. :class:`VarIdent`
has one ratio per level of a column, the first level's fixed at 1.
"""

from __future__ import annotations

import copy

import numpy as np

from hierlm.design.covariance import FREE_LIMIT
from hierlm.errors import FitError

__all__ = ["VarIdent"]


class VarIdent:
    """One residual SD per level of ``column`` (nlme's ``varIdent(form = ~1 | column)``).

    Parameters
    ----------
    column : str
        The column whose levels get their own SD; the first level's ratio is 1.
    """

    def __init__(self, column: str) -> None:
        if not isinstance(column, str):
            raise FitError(f"VarIdent takes a column name, e.g. VarIdent('Sex'); got {column!r}.")
        self.column = column
        self.labels: tuple[str, ...] = ()

    def bind(self, labels: tuple[str, ...]) -> VarIdent:
        """Return a copy with the column's levels."""
        out = copy.copy(self)
        out.labels = tuple(labels)
        return out

    @property
    def n_params(self) -> int:
        """Levels minus one (log SD ratios)."""
        return max(len(self.labels) - 1, 0)

    def names(self) -> tuple[str, ...]:
        """``residual.log_ratio.<column>.<level>``."""
        return tuple(f"residual.log_ratio.{self.column}.{label}" for label in self.labels[1:])

    def start(self) -> np.ndarray:
        """Equal SDs."""
        return np.zeros(self.n_params)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """Ratios within ``exp(+-FREE_LIMIT)``."""
        return np.full(self.n_params, -FREE_LIMIT), np.full(self.n_params, FREE_LIMIT)

    def natural(self, params: np.ndarray) -> dict[str, float]:
        """``ratio.<column>.<level>``."""
        ratios = np.exp(np.asarray(params, dtype=float))
        return {f"ratio.{self.column}.{label}": float(v)
                for label, v in zip(self.labels[1:], ratios, strict=True)}

    def multipliers(self, params: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """SD ratio of each row, from its level ``codes`` (any shape)."""
        return np.exp(np.concatenate([[0.0], np.asarray(params, dtype=float)]))[codes]

    def outer_gradient(self, base: np.ndarray, codes: np.ndarray) -> list[np.ndarray]:
        """Derivatives of ``M S M`` (``base``, ``(k, m, m)``) in each log ratio."""
        out = []
        for level in range(1, len(self.labels)):
            hit = (codes == level).astype(float)
            out.append(base * (hit[:, :, None] + hit[:, None, :]))
        return out

    def __repr__(self) -> str:
        return f"VarIdent({self.column!r})"
