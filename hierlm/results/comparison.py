"""Compare fits by their expected log predictive density (LOO or WAIC).

For models k with pointwise elpd values ``e_ik`` on the same n units:

* ``elpd_diff_k = sum_i (e_ik - e_i,best)``, the difference to the best model;
* ``dse_k = sqrt(n var_i(e_ik - e_i,best))``, the SE of that difference, which
  is much smaller than the models' own SEs combined because the pointwise
  values are paired (Vehtari, Gelman & Gabry 2017, eq. 24; ``var_i`` is the
  sample variance with divisor n - 1, as in R's ``loo``, where
  ``arviz_stats.compare`` divides by n);
* weights for averaging the predictive distributions (Yao, Vehtari, Simpson
  & Gelman 2018, Bayesian Anal. 13: 917-1007):

  - ``"stacking"``: the w on the simplex maximising
    ``sum_i log sum_k w_k exp(e_ik)``;
  - ``"pseudo-BMA"``: ``w_k ∝ exp(elpd_k)``;
  - ``"BB-pseudo-BMA"``: pseudo-BMA weights averaged over Bayesian-bootstrap
    resamples of the units (Dirichlet(1, ..., 1) weights), which accounts for
    the uncertainty of the elpd estimates (seeded).

Fits are refused unless they were fitted to the same response (same n and
values) and, for group-level comparisons, the same grouping levels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import softmax

from hierlm.errors import DataError, InputTypeError
from hierlm.results.ic import ElpdResult, loo, waic

__all__ = ["compare", "stacking_weights", "pseudo_bma_weights"]

_METHODS = ("stacking", "pseudo-BMA", "BB-pseudo-BMA")


def stacking_weights(pointwise: np.ndarray) -> np.ndarray:
    """Stacking weights from pointwise elpd values.

    Parameters
    ----------
    pointwise : numpy.ndarray
        Shape (n, K): elpd of unit i under model k.

    Returns
    -------
    numpy.ndarray
        Shape (K,), non-negative, summing to 1, maximising
        ``sum_i log sum_k w_k exp(pointwise[i, k])``.
    """
    values = np.asarray(pointwise, dtype=float)
    n_models = values.shape[1]
    if n_models == 1:
        return np.ones(1)
    scaled = np.exp(values - values.max(axis=1, keepdims=True))

    def objective(free: np.ndarray) -> tuple[float, np.ndarray]:
        weights = softmax(np.append(free, 0.0))
        mixture = scaled @ weights
        gradient_w = (scaled / mixture[:, None]).sum(axis=0)
        gradient_a = weights * (gradient_w - weights @ gradient_w)
        return -float(np.log(mixture).sum()), -gradient_a[:-1]

    found = minimize(objective, np.zeros(n_models - 1), jac=True, method="L-BFGS-B")
    return np.asarray(softmax(np.append(found.x, 0.0)))


def pseudo_bma_weights(pointwise: np.ndarray, bootstrap: int = 0,
                       seed: int | np.random.Generator | None = None) -> np.ndarray:
    """Pseudo-BMA weights, optionally Bayesian-bootstrap stabilised.

    Parameters
    ----------
    pointwise : numpy.ndarray
        Shape (n, K) pointwise elpd values.
    bootstrap : int
        Number of Bayesian-bootstrap resamples; 0 for plain pseudo-BMA.
    seed : int or numpy.random.Generator, optional
        Seed of the bootstrap.

    Returns
    -------
    numpy.ndarray
        Shape (K,), summing to 1.
    """
    values = np.asarray(pointwise, dtype=float)
    n_units = values.shape[0]
    if bootstrap <= 0:
        return np.asarray(softmax(values.sum(axis=0)))
    rng = np.random.default_rng(seed)
    resampled = n_units * rng.dirichlet(np.ones(n_units), size=bootstrap) @ values
    return np.asarray(softmax(resampled, axis=1).mean(axis=0))


def _same_data(results: Mapping[str, ElpdResult]) -> None:
    """Raise DataError unless all results refer to the same units and response."""
    names = list(results)
    first = results[names[0]]
    for name in names[1:]:
        other = results[name]
        if other.level != first.level or other.group != first.group:
            raise DataError(
                f"{names[0]!r} is {first.level}-level ({first.group}) but {name!r} is "
                f"{other.level}-level ({other.group}); compare like with like."
            )
        if other.n_points != first.n_points or list(other.pointwise.index) != list(first.pointwise.index):
            raise DataError(
                f"{names[0]!r} has {first.n_points} units and {name!r} has {other.n_points} "
                "(or different unit labels); models must be fitted to the same data to be compared."
            )
        if first.y is not None and other.y is not None:
            same = first.y.shape == other.y.shape and np.allclose(first.y, other.y, equal_nan=True)
            if not same:
                raise DataError(
                    f"{names[0]!r} and {name!r} were fitted to different responses (n = "
                    f"{first.y.size} vs {other.y.size}, or different values); elpd values of "
                    "different data cannot be compared."
                )


def compare(
    fits: Mapping[str, object],
    ic: str = "loo",
    level: str = "observation",
    group: str | None = None,
    method: str = "stacking",
    bootstrap: int = 1000,
    seed: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Rank fits by elpd, with paired SEs of the differences and model weights.

    Parameters
    ----------
    fits : dict
        Name -> Bayesian fit, FitDraws or a precomputed
        :class:`~hierlm.results.ic.ElpdResult`.
    ic : {"loo", "waic"}
        The criterion computed for fits given as fits.
    level : {"observation", "group"}
        Units: observations, or levels of ``group``.
    group : str, optional
        Grouping factor for ``level="group"``.
    method : {"stacking", "pseudo-BMA", "BB-pseudo-BMA"}
        How to compute the weights.
    bootstrap : int
        Resamples for ``"BB-pseudo-BMA"``.
    seed : int or numpy.random.Generator, optional
        Seed of the Bayesian bootstrap.

    Returns
    -------
    pandas.DataFrame
        One row per fit, best first: rank, elpd, p, elpd_diff, dse, weight,
        se, warning. ``attrs`` records ic, level, group and method.

    Raises
    ------
    InputTypeError
        If fewer than two fits are given or an option is unknown.
    DataError
        If the fits were not made on the same data.
    """
    if ic not in ("loo", "waic"):
        raise InputTypeError(f"ic must be 'loo' or 'waic', got {ic!r}.")
    if method not in _METHODS:
        raise InputTypeError(f"method must be one of {', '.join(_METHODS)}, got {method!r}.")
    if not isinstance(fits, Mapping) or len(fits) < 2:
        raise InputTypeError("compare() needs a dict of at least two named fits, e.g. {'a': f1, 'b': f2}.")
    criterion = loo if ic == "loo" else waic
    results: dict[str, ElpdResult] = {}
    for name, fit in fits.items():
        results[str(name)] = fit if isinstance(fit, ElpdResult) else criterion(fit, level=level, group=group)
    _same_data(results)
    names = list(results)
    pointwise = np.column_stack([results[name].pointwise["elpd"].to_numpy() for name in names])
    elpd = pointwise.sum(axis=0)
    order = np.argsort(-elpd, kind="stable")
    best = order[0]
    differences = pointwise - pointwise[:, [best]]
    n_units = pointwise.shape[0]
    dse = np.sqrt(n_units * differences.var(axis=0, ddof=1))
    dse[best] = 0.0
    if method == "stacking":
        weights = stacking_weights(pointwise)
    else:
        weights = pseudo_bma_weights(pointwise, bootstrap if method == "BB-pseudo-BMA" else 0, seed)
    table = pd.DataFrame({
        "rank": np.argsort(order),
        "elpd": elpd,
        "p": [results[name].p for name in names],
        "elpd_diff": differences.sum(axis=0),
        "dse": dse,
        "weight": weights,
        "se": [results[name].se for name in names],
        "warning": [bool(results[name].warning) for name in names],
    }, index=pd.Index(names, name="model")).iloc[order]
    first = results[names[0]]
    table.attrs.update({"ic": ic, "level": first.level, "group": first.group, "method": method})
    return table
