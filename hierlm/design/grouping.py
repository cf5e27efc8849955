"""The grouping of each random-effect bar: its frozen spec, level codes, and lme4's term order.

:class:`GroupingSpec` is what the training data taught about one bar (columns,
levels, formulaic's spec of its Z); the functions code the rows of a grouping
(interactions keep observed combinations only), assemble a
:class:`~hierlm.design.blocks.RandomBlock`, and order the bars as lme4 does.
Used by :mod:`hierlm.design.spec` and :mod:`hierlm.sources.learn`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic.model_spec import ModelSpec as FormulaicSpec

from hierlm.design.blocks import RandomBlock
from hierlm.design.checks import column_of
from hierlm.design.covariance import CovarianceStructure, make_structure
from hierlm.design.frame import group_labels
from hierlm.formula import BarTerm

__all__ = ["GroupingSpec", "_block", "_combined_labels", "_grouping_codes", "_lme4_order"]


@dataclass(frozen=True)
class GroupingSpec:
    """What the training data taught about one random-effect block."""

    term: BarTerm
    columns: tuple[str, ...]
    formulaic_spec: FormulaicSpec
    levels: tuple[str, ...]

    @property
    def structure(self) -> CovarianceStructure:
        """The block's covariance structure object, for its number of columns."""
        return make_structure(self.term.structure, len(self.columns), self.term.homogeneous)

    @property
    def correlated(self) -> bool:
        """True when the block has correlation parameters."""
        return self.structure.has_correlation


def _combined_labels(data: pd.DataFrame, factors: tuple[str, ...]) -> list[str]:
    """Level label of each row for a (possibly interacted) grouping."""
    per_factor = []
    for name in factors:
        codes, levels = group_labels(data[name])
        per_factor.append(np.asarray(levels, dtype=object)[codes])
    return [":".join(parts) for parts in zip(*per_factor, strict=True)]


def _grouping_codes(data: pd.DataFrame, factors: tuple[str, ...],
                    columns: Mapping[str, pd.Series] | None = None
                    ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes and labels of a grouping; interactions keep observed combinations only.

    ``columns``: those of ``data`` already read (:func:`~hierlm.design.checks.read_columns`).
    """
    if len(factors) == 1:
        return group_labels(column_of(data, columns, factors[0]))
    parts = [group_labels(column_of(data, columns, name)) for name in factors]
    keys = np.stack([codes for codes, _ in parts], axis=1)
    unique_keys, codes = np.unique(keys, axis=0, return_inverse=True)
    labels = tuple(
        ":".join(parts[j][1][k] for j, k in enumerate(key)) for key in unique_keys
    )
    return codes.ravel().astype(np.int64), labels


def _block(grouping: GroupingSpec, codes: np.ndarray, z: np.ndarray) -> RandomBlock:
    """RandomBlock from a grouping spec and its matrices."""
    return RandomBlock(group=grouping.term.group, columns=grouping.columns,
                       structure=grouping.structure, levels=grouping.levels,
                       codes=codes, z=np.ascontiguousarray(z))


def _lme4_order(n_levels: list[int]) -> list[int]:
    """Term order lme4's mkReTrms uses: reversed stable ascending order, only if any term grows."""
    if not any(later > earlier for earlier, later in zip(n_levels, n_levels[1:], strict=False)):
        return list(range(len(n_levels)))
    ascending = sorted(range(len(n_levels)), key=lambda i: n_levels[i])
    return list(reversed(ascending))
