"""Within/between decomposition of a level-1 predictor, usable inside formulas.

``between(x, g)`` is the mean of ``x`` in each level of ``g`` (the level-2
component) and ``within(x, g)`` is ``x`` minus that mean (group-mean centring,
the level-1 component). Together, ``y ~ within(x, g) + between(x, g) + (1 | g)``
separates the within-group from the between-group association (the contextual
effect is their difference), as in the multilevel literature (e.g. Enders &
Tofighi 2007; Bell & Jones 2015).

Both are stateful: the group means are those of the data the model was built
on, and are reused for new data. A level that the model never saw takes its
mean from the new data itself.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from formulaic.transforms import stateful_transform

from hierlm.formula.safety import ALLOWED_NUMPY

__all__ = ["within", "between", "group_means", "FORMULA_CONTEXT"]


def _level_keys(groups: Any) -> np.ndarray:
    """String keys of group labels (stable across int/str inputs and JSON)."""
    return np.asarray(pd.Series(groups).astype(str).to_numpy(), dtype=object)


def group_means(values: Any, groups: Any) -> dict[str, float]:
    """Return the mean of ``values`` in each level of ``groups``.

    Parameters
    ----------
    values : array-like of float
        A numeric predictor.
    groups : array-like
        Group labels, same length.

    Returns
    -------
    dict
        Level label (as string) -> mean.
    """
    frame = pd.DataFrame({"x": np.asarray(values, dtype=float), "g": _level_keys(groups)})
    means = frame.groupby("g", sort=False)["x"].mean()
    return {str(key): float(value) for key, value in means.items()}


def _means_for(values: Any, groups: Any, state: dict) -> np.ndarray:
    """Per-row group means, from the stored state where the level is known."""
    if "means" not in state:
        state["means"] = group_means(values, groups)
    stored: dict[str, float] = state["means"]
    keys = _level_keys(groups)
    result = np.array([stored.get(key, np.nan) for key in keys], dtype=float)
    unknown = np.isnan(result)
    if unknown.any():
        local = group_means(np.asarray(values, dtype=float)[unknown], keys[unknown])
        result[unknown] = [local[key] for key in keys[unknown]]
    return result


@stateful_transform
def between(values: Any, groups: Any, _state: dict | None = None) -> np.ndarray:
    """Group mean of ``values`` in each row's level of ``groups`` (level-2 component)."""
    state = {} if _state is None else _state
    return _means_for(values, groups, state)


@stateful_transform
def within(values: Any, groups: Any, _state: dict | None = None) -> np.ndarray:
    """``values`` minus its group mean (group-mean centring, level-1 component)."""
    state = {} if _state is None else _state
    return np.asarray(values, dtype=float) - _means_for(values, groups, state)


# ``np`` in a formula is this namespace of the allow-listed functions only, never the module:
# hierlm.formula.safety refuses any other attribute before evaluation, and this is the second lock.
_NUMPY_SUBSET = SimpleNamespace(**{name: getattr(np, name) for name in sorted(ALLOWED_NUMPY)})

# R spellings of common transforms so lme4 formulas such as ``log(y) ~ x`` work as written.
FORMULA_CONTEXT: dict[str, Any] = {
    "within": within,
    "between": between,
    "np": _NUMPY_SUBSET,
    "numpy": _NUMPY_SUBSET,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "abs": np.abs,
}
