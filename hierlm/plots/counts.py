"""Posterior predictive checks for counts and proportions (non-Gaussian Bayesian fits).

Both read the fit's ``posterior_predictive`` group (integer replicates:
counts, or binomial successes) and ``observed_data``:

* :func:`count_frequencies` / :func:`plot_ppc_counts`: how many rows have
  each count ``0, 1, ..., K`` in the data and in each replicated data set
  (a rootogram-like bar check: observed frequencies as bars, the
  replicates' mean and 95 % interval as points with bars); counts above ``K``
  are pooled in the last class.
* :func:`group_proportions` / :func:`plot_ppc_proportions`: per level of a
  grouping factor, the observed proportion of successes (successes over
  trials) and its replicated distribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import FitError, InputTypeError
from hierlm.plots.common import figure_of

__all__ = ["count_frequencies", "group_proportions", "plot_ppc_counts", "plot_ppc_proportions"]


def _replicates(fit: Any) -> tuple[np.ndarray, np.ndarray]:
    """Observed (n,) and replicated (S, n) responses on the replicates' scale."""
    idata = getattr(fit, "idata", None)
    if idata is None or "posterior_predictive" not in idata.children:
        raise FitError("this check needs posterior predictive draws: a NUTS fit with "
                       "posterior_predictive=True (the default unless the data are huge)")
    name = str(next(iter(idata["observed_data"].data_vars)))
    observed = np.asarray(idata["observed_data"][name].values)
    replicated = np.asarray(idata["posterior_predictive"][name].values)
    return observed, replicated.reshape(-1, replicated.shape[-1])


def count_frequencies(fit: Any, max_count: int | None = None, prob: float = 0.95) -> pd.DataFrame:
    """Frequencies of each count in the data and in the replicated data sets.

    Parameters
    ----------
    fit : BayesResult
        A NUTS fit of a count or binomial model.
    max_count : int, optional
        Last class (counts above it are pooled into it); default: the largest
        observed count.
    prob : float
        Probability of the replicates' interval.

    Returns
    -------
    pandas.DataFrame
        Index ``count``; columns ``observed``, ``expected`` (mean over
        replicated data sets), ``lower``, ``upper`` (equal-tailed interval).
    """
    observed, replicated = _replicates(fit)
    if not np.all(observed == np.rint(observed)):
        raise InputTypeError("count_frequencies needs integer responses (counts or successes)")
    top = int(observed.max()) if max_count is None else int(max_count)
    classes = top + 1
    seen = np.bincount(np.minimum(observed.astype(np.int64), top), minlength=classes)
    capped = np.minimum(replicated.astype(np.int64), top)
    offsets = np.arange(capped.shape[0])[:, None] * classes
    flat = np.bincount((capped + offsets).ravel(), minlength=capped.shape[0] * classes)
    counts = flat.reshape(capped.shape[0], classes)
    tail = (1.0 - prob) / 2.0
    return pd.DataFrame({"observed": seen, "expected": counts.mean(axis=0),
                         "lower": np.quantile(counts, tail, axis=0),
                         "upper": np.quantile(counts, 1.0 - tail, axis=0)},
                        index=pd.Index(np.arange(classes), name="count"))


def group_proportions(fit: Any, group: str | None = None, prob: float = 0.95) -> pd.DataFrame:
    """Observed and replicated proportion of successes per level of a grouping factor.

    Parameters
    ----------
    fit : BayesResult
        A NUTS fit of a binomial model.
    group : str, optional
        Grouping factor; the first block's when omitted.
    prob : float
        Probability of the replicates' interval.

    Returns
    -------
    pandas.DataFrame
        Index ``level``; columns ``trials``, ``observed``, ``expected``,
        ``lower``, ``upper``.
    """
    family = getattr(fit, "family", None)
    if family is None or family.name != "binomial":
        raise InputTypeError("group_proportions is a check of binomial models")
    observed, replicated = _replicates(fit)
    design = fit.design
    blocks = [b for b in design.blocks if group is None or b.group == group]
    if not blocks:
        choices = sorted({b.group for b in design.blocks})
        raise InputTypeError(f"{group!r} is not a grouping factor of the model; choose one of {choices}")
    block = blocks[0]
    codes = np.asarray(block.codes)
    weights = getattr(design, "weights", None)
    trials = np.ones(design.n) if weights is None else np.asarray(weights, dtype=float)
    per_level = np.bincount(codes, weights=trials, minlength=block.n_levels)
    seen = np.bincount(codes, weights=observed, minlength=block.n_levels) / per_level
    sums = np.stack([np.bincount(codes, weights=row, minlength=block.n_levels) for row in replicated])
    shares = sums / per_level[None, :]
    tail = (1.0 - prob) / 2.0
    return pd.DataFrame({"trials": per_level, "observed": seen, "expected": shares.mean(axis=0),
                         "lower": np.quantile(shares, tail, axis=0),
                         "upper": np.quantile(shares, 1.0 - tail, axis=0)},
                        index=pd.Index([str(v) for v in block.levels], name=block.group))


def plot_ppc_counts(fit: Any, max_count: int | None = None, ax: Any = None) -> Any:
    """Bar check of count frequencies: observed bars, replicated mean and interval (see the module).

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = count_frequencies(fit, max_count)
    figure, axes = figure_of(ax)
    x = table.index.to_numpy()
    axes.bar(x, table["observed"], color="0.8", label="observed")
    axes.errorbar(x, table["expected"], yerr=[table["expected"] - table["lower"],
                                              table["upper"] - table["expected"]],
                  fmt="o", color="C0", label="replicated (mean, 95 %)")
    axes.set_xlabel("count" + (" (last class pooled)" if max_count is not None else ""))
    axes.set_ylabel("rows")
    axes.legend()
    return figure


def plot_ppc_proportions(fit: Any, group: str | None = None, ax: Any = None) -> Any:
    """Observed proportion of successes per level against its replicated 95 % interval.

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = group_proportions(fit, group)
    figure, axes = figure_of(ax)
    y = np.arange(len(table))
    axes.errorbar(table["expected"], y, xerr=[table["expected"] - table["lower"],
                                              table["upper"] - table["expected"]],
                  fmt="o", color="C0", label="replicated (mean, 95 %)")
    axes.scatter(table["observed"], y, color="k", marker="x", zorder=3, label="observed")
    axes.set_yticks(y, table.index)
    axes.set_xlabel("proportion of successes")
    axes.set_ylabel(str(table.index.name))
    axes.legend()
    return figure
