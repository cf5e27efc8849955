"""Checks of the grouping factors of the random-effect bars: levels, repeats, continuous columns.

lme4's identifiability rules for one block (:func:`check_grouping`) and the
warnings about a random effect written twice or a grouping column that looks
like a measurement; the names are re-exported by :mod:`hierlm.design.checks`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from hierlm.design.dtypes import is_bool, is_numeric
from hierlm.errors import DataError, HierlmWarning

__all__ = ["check_grouping", "warn_continuous_grouping", "warn_repeated_terms"]


def warn_repeated_terms(blocks: Iterable[tuple[str, tuple[str, ...], str]]) -> None:
    """Warn when two bars give the same grouping factor the same coefficient.

    ``(1 | g) + (1 | g)`` (or ``(1 | g) + (1 + x | g)``) adds two variances of
    the same random intercept: the likelihood depends on their sum only, so
    how it is split between the two is unidentifiable.

    Parameters
    ----------
    blocks : iterable of (group, columns, source)
        One entry per random-effect block.
    """
    seen: dict[tuple[str, str], str] = {}
    repeated: list[str] = []
    for group, columns, source in blocks:
        for column in columns:
            key = (group, column)
            if key in seen and seen[key] != source:
                repeated.append(f"{column!r} of {group!r} in {seen[key]} and {source}")
            elif key in seen:
                repeated.append(f"{column!r} of {group!r} twice in {source}")
            seen.setdefault(key, source)
    if repeated:
        warnings.warn(
            "The same random effect appears in more than one bar (" + "; ".join(repeated) + "): "
            "only the sum of their variances is identified, so how it is split between the bars "
            "is arbitrary. Write each random effect once, e.g. '(1 + x | g)' instead of "
            "'(1 | g) + (1 + x | g)'.",
            HierlmWarning,
            stacklevel=4,
        )


def check_grouping(group: str, n_levels: int, n_columns: int, n_obs: int, source: str) -> None:
    """Apply lme4's identifiability checks to one random-effect block."""
    if n_levels < 2:
        raise DataError(
            f"Grouping factor {group!r} in {source} has only {n_levels} level; a random effect "
            "needs at least two. Drop the bar or use a factor with more levels."
        )
    if n_levels >= n_obs:
        raise DataError(
            f"Grouping factor {group!r} in {source} has {n_levels} levels for {n_obs} "
            "observations: each level must have more than one observation on average "
            "(number of levels must be < number of observations). "
            "The random effect would be confounded with the residual."
        )
    if n_levels * n_columns >= n_obs:
        raise DataError(
            f"The bar {source} has {n_levels * n_columns} random effects for {n_obs} "
            "observations; the variance parameters would be unidentifiable. "
            "Use fewer random-effect terms or more data."
        )


def warn_continuous_grouping(data: pd.DataFrame, name: str, source: str) -> None:
    """Warn when a grouping column looks like a continuous measurement."""
    column = data[name]
    if not is_numeric(column) or is_bool(column):
        return
    values = column.to_numpy(dtype=float)
    n_distinct = len(np.unique(values))
    fractional = bool(np.any(values != np.round(values)))
    if (fractional and n_distinct > 20) or n_distinct >= max(1000, 0.5 * len(values)):
        warnings.warn(
            f"Grouping variable {name!r} in {source} looks continuous ({n_distinct} distinct "
            "numeric values). Each value becomes its own level; if that is not intended, "
            "use a categorical column.",
            HierlmWarning,
            stacklevel=4,
        )
