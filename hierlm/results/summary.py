"""Summaries of draws shared by every Bayesian table of ``hierlm.results``.

A quantity computed per draw (a fixed effect, an ICC, a shrinkage factor...)
is an array whose first axis has one entry per draw. :func:`summarize` turns
it into the columns of a posterior table: mean, sd, median, the interval at
``hierlm.DEFAULT_PROB`` (0.95) and of kind ``hierlm.core.DEFAULT_KIND``
(equal-tailed) unless ``prob``/``kind`` are given, and, when the draws come
from several chains, the convergence diagnostics ess_bulk, ess_tail, r_hat
and mcse_mean computed by ``arviz_stats``. Interval columns are named as
ArviZ names them (``eti95_lb``, ``eti95_ub``), so hierlm tables and
``arviz_stats.summary`` read alike.

ArviZ is imported only when a diagnostic or an HDI is computed, so fits and
tables that need neither stay free of its import time.

For a point fit (one "draw") the same helpers return the value itself under
the column ``estimate``; see :func:`point_or_posterior`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierlm.core.defaults import DEFAULT_KIND, DEFAULT_PROB
from hierlm.errors import InputTypeError

__all__ = [
    "IntervalSpec",
    "interval_spec",
    "summarize",
    "point_or_posterior",
]


@dataclass(frozen=True)
class IntervalSpec:
    """Probability and kind of a credible interval, with its column labels.

    Attributes
    ----------
    prob : float
        Probability mass inside the interval, in (0, 1).
    kind : str
        ``"eti"`` (equal-tailed) or ``"hdi"`` (highest density).
    """

    prob: float
    kind: str

    @property
    def lower(self) -> str:
        """Column name of the lower bound, ArviZ style (``eti95_lb``)."""
        return f"{self.kind}{round(self.prob * 100):d}_lb"

    @property
    def upper(self) -> str:
        """Column name of the upper bound, ArviZ style (``eti95_ub``)."""
        return f"{self.kind}{round(self.prob * 100):d}_ub"

    def bounds(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return lower and upper interval bounds over the first axis of ``samples``."""
        moved = np.moveaxis(np.asarray(samples, dtype=float), 0, -1)
        if self.kind == "eti":
            tail = (1.0 - self.prob) / 2.0
            lower, upper = np.quantile(moved, [tail, 1.0 - tail], axis=-1)
            return np.asarray(lower), np.asarray(upper)
        from arviz_stats.base.array import array_stats  # heavy; only HDIs need it

        limits = np.asarray(array_stats.hdi(moved, self.prob, axis=-1))
        return limits[..., 0], limits[..., 1]


def interval_spec(prob: float | None = None, kind: str | None = None) -> IntervalSpec:
    """Resolve an interval request against the package defaults.

    Parameters
    ----------
    prob : float, optional
        Probability inside the interval; ``hierlm.DEFAULT_PROB`` (0.95) when None.
    kind : {"eti", "hdi"}, optional
        Interval kind; ``hierlm.core.DEFAULT_KIND`` (``"eti"``) when None.

    Returns
    -------
    IntervalSpec

    Raises
    ------
    InputTypeError
        If ``prob`` is not in (0, 1) or ``kind`` is unknown.
    """
    prob = DEFAULT_PROB if prob is None else prob
    kind = DEFAULT_KIND if kind is None else kind
    if isinstance(prob, bool) or not isinstance(prob, (int, float, np.number)) \
            or not 0.0 < float(prob) < 1.0:
        raise InputTypeError(f"prob must be a number strictly between 0 and 1, got {prob!r}.")
    if kind not in ("eti", "hdi"):
        raise InputTypeError(f"Interval kind must be 'eti' or 'hdi', got {kind!r}.")
    return IntervalSpec(float(prob), kind)


def _by_chain(samples: np.ndarray, chains: int) -> np.ndarray:
    """Reshape (S, k) chain-major draws to (k, chains, S // chains)."""
    n_draws = samples.shape[0]
    per_chain = n_draws // chains
    return np.moveaxis(samples.reshape(chains, per_chain, -1), -1, 0)


def summarize(
    samples: np.ndarray,
    chains: int = 1,
    prob: float | None = None,
    kind: str | None = None,
    diagnostics: bool = True,
    median: bool = True,
) -> pd.DataFrame:
    """Posterior summary of draws of one or more scalar quantities.

    Parameters
    ----------
    samples : numpy.ndarray
        Shape (S,) or (S, k): S draws of k quantities, chain-major when the
        draws come from several chains (chain 0's draws first).
    chains : int
        Number of chains the S draws are split into (equal lengths).
    prob, kind : optional
        Interval probability and kind (package defaults when None).
    diagnostics : bool
        Add ess_bulk, ess_tail, r_hat and mcse_mean (Vehtari, Gelman, Simpson,
        Carpenter & Buerkner 2021, computed by ``arviz_stats``): bulk ESS of
        the rank-normalised draws, tail ESS as the smaller ESS of the 5% and
        95% quantiles (the definition of R's ``posterior`` package),
        rank-normalised split R-hat, which needs at least two chains (NaN
        otherwise), and the Monte Carlo standard error of the mean.
    median : bool
        Include the median (False skips its partial sort, for tables that do not show it).

    Returns
    -------
    pandas.DataFrame
        One row per quantity (k rows), columns mean, sd, median, the two
        interval bounds and, optionally, ess_bulk, ess_tail, r_hat, mcse_mean.

    Raises
    ------
    InputTypeError
        If ``chains`` does not divide the number of draws.
    """
    values = np.asarray(samples, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    values = values.reshape(values.shape[0], -1)
    n_draws = values.shape[0]
    if chains < 1 or n_draws % chains:
        raise InputTypeError(f"chains={chains} does not split {n_draws} draws into equal chains.")
    spec = interval_spec(prob, kind)
    lower, upper = spec.bounds(values)
    table = pd.DataFrame({
        "mean": values.mean(axis=0),
        "sd": values.std(axis=0, ddof=1) if n_draws > 1 else np.full(values.shape[1], np.nan),
        "median": np.median(values, axis=0) if median else np.full(values.shape[1], np.nan),
        spec.lower: lower,
        spec.upper: upper,
    })
    if diagnostics:
        from arviz_stats.base.array import array_stats  # heavy; imported when diagnostics are asked

        per_chain = _by_chain(values, chains)
        enough = n_draws // chains >= 4
        with np.errstate(invalid="ignore", divide="ignore"):
            table["ess_bulk"] = array_stats.ess(per_chain, method="bulk") if enough else np.nan
            table["ess_tail"] = (array_stats.ess(per_chain, method="tail", prob=(0.05, 0.95))
                                 if enough else np.nan)
            table["r_hat"] = array_stats.rhat(per_chain) if enough and chains > 1 else np.nan
            table["mcse_mean"] = array_stats.mcse(per_chain, method="mean") if enough else np.nan
    return table


def point_or_posterior(
    samples: np.ndarray,
    point: bool,
    chains: int = 1,
    prob: float | None = None,
    diagnostics: bool | None = None,
) -> pd.DataFrame:
    """Summarise per-draw values the way the fit calls for.

    Parameters
    ----------
    samples : numpy.ndarray
        Shape (S,) or (S, k).
    point : bool
        True for a point fit (S = 1): the table has the single column
        ``estimate``. False: a posterior summary (:func:`summarize`).
    chains, prob
        Passed to :func:`summarize` for posterior draws.
    diagnostics : bool, optional
        Add ess_bulk, ess_tail, r_hat, mcse_mean; by default when the draws come from
        more than one chain.

    Returns
    -------
    pandas.DataFrame
        One row per quantity.
    """
    values = np.asarray(samples, dtype=float)
    if point:
        flat = values.reshape(values.shape[0], -1) if values.ndim > 1 else values[:, None]
        return pd.DataFrame({"estimate": flat[0]})
    if diagnostics is None:
        diagnostics = chains > 1
    return summarize(values, chains=chains, prob=prob, diagnostics=diagnostics)
