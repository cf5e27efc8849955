"""Predictive information criteria: WAIC and PSIS-LOO, per observation or per group.

Both estimate the expected log predictive density (elpd) of new data from the
pointwise log-likelihood ``ll[s, i]`` (draw s, unit i).

**WAIC** (Watanabe 2010, in the form of Vehtari, Gelman & Gabry 2017, Stat.
Comput. 27: 1413-1432, eqs. 3-5 and 22-23):

    lppd_i   = log( (1/S) sum_s exp(ll[s, i]) )
    p_waic_i = var_s ll[s, i]                     (sample variance, divisor S - 1)
    elpd_i   = lppd_i - p_waic_i
    elpd_waic = sum_i elpd_i,  p_waic = sum_i p_waic_i,  SE = sqrt(n var_i(elpd_i))

with a warning when some ``p_waic_i > 0.4``, where the paper finds WAIC
unreliable. ArviZ 1.x has no WAIC; this is hierlm's own.

**PSIS-LOO** comes from ``arviz_stats.loo`` (Pareto-smoothed importance
sampling; Pareto k > ``good_k`` flags unreliable points). With draws from
several chains the relative efficiency passed to it is the mean over units of
the ESS of ``exp(ll[:, i])`` divided by S (R's ``loo::relative_eff`` per unit,
averaged because ``arviz_stats`` takes one value); with one chain it is 1.

**Units.** ``level="observation"`` uses ``log N(y_i | mu_i^s, sigma_s^2)`` with
the group effects of draw s in ``mu`` (leave one observation out).
``level="group"`` uses the marginal log-likelihood of every level of one
grouping factor, the factor's effects (and effects nested in it) integrated
out analytically (:func:`hierlm.results.grouped.group_loglik`): leave one
whole group out, the question "how well does the model predict a new
group?". Both can be passed in precomputed (``log_lik=``), e.g. the per-group
marginal log-likelihood a marginal-formulation fit stored while sampling.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import logsumexp

from hierlm.core.warn import PACKAGE_DIR
from hierlm.errors import FitError, HierlmWarning, InputTypeError
from hierlm.families import get_family
from hierlm.results.common import as_draws, chains_of
from hierlm.results.display import html_report
from hierlm.results.draws import FitDraws
from hierlm.results.grouped import group_loglik, split_factor

__all__ = ["ElpdResult", "family_loglik", "level_sums", "pointwise_loglik", "log_likelihood", "waic",
           "loo", "P_WAIC_LIMIT"]

P_WAIC_LIMIT = 0.4
_LEVELS = ("observation", "group")


@dataclass(frozen=True)
class ElpdResult:
    """An elpd estimate (WAIC or PSIS-LOO) with its pointwise values.

    Attributes
    ----------
    kind : str
        ``"waic"`` or ``"loo"``.
    level : str
        ``"observation"`` or ``"group"``.
    group : str or None
        Grouping factor of a group-level estimate.
    elpd, se, p : float
        Estimated elpd, its standard error, effective number of parameters.
    pointwise : pandas.DataFrame
        One row per unit: ``elpd`` and ``p`` (and ``pareto_k`` for LOO).
    n_draws : int
        Number of posterior draws used.
    warning : str
        Empty, or why the estimate may be unreliable.
    note : str
        Empty, or what one unit is when it is not an observation or a level of
        a grouping factor (a residual group's joint density with ``residual=``).
    y : numpy.ndarray or None
        The response the estimate refers to (used by ``compare`` to refuse
        fits on different data).
    """

    kind: str
    level: str
    group: str | None
    elpd: float
    se: float
    p: float
    pointwise: pd.DataFrame
    n_draws: int
    warning: str = ""
    y: np.ndarray | None = field(default=None, repr=False)
    note: str = ""

    @property
    def n_points(self) -> int:
        """Number of units (observations or groups)."""
        return len(self.pointwise)

    @property
    def ic(self) -> float:
        """The criterion on the deviance scale, ``-2 elpd`` (WAIC or LOOIC)."""
        return -2.0 * self.elpd

    def __repr__(self) -> str:
        unit = "observations" if self.level == "observation" else f"levels of {self.group}"
        name = "WAIC" if self.kind == "waic" else "PSIS-LOO"
        criterion = "looic" if self.kind == "loo" else "waic"
        lines = [
            f"{name} from {self.n_draws} draws, {self.n_points} {unit}",
            f"  elpd_{self.kind:<4} = {self.elpd:.2f} (SE {self.se:.2f})",
            f"  p_{self.kind:<7} = {self.p:.2f}",
            f"  {criterion:<9} = {self.ic:.2f}",
        ]
        if self.kind == "loo" and "pareto_k" in self.pointwise:
            k = self.pointwise["pareto_k"].to_numpy()
            lines.append(f"  Pareto k: max {np.nanmax(k):.2f}, {int((k > 0.7).sum())} above 0.7")
        if self.note:
            lines.append(f"  Unit: {self.note}")
        if self.warning:
            lines.append(f"  Warning: {self.warning}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The estimate's lines and the first pointwise rows, for notebooks."""
        lines = [line.strip() for line in repr(self).split("\n")]
        return html_report(lines, {"Pointwise": self.pointwise})


def family_loglik(family: Any, y: np.ndarray, weights: np.ndarray | None, mu: np.ndarray,
                  dispersion: np.ndarray | None) -> np.ndarray:
    """Pointwise log-likelihood (S, n) of means ``mu`` (S, n) from a family's ``log_likelihood``.

    Parameters
    ----------
    family : Family
        The response family (:mod:`hierlm.families`).
    y, weights : numpy.ndarray
        The response as the design stores it and the prior weights (None: ones).
    mu : numpy.ndarray
        Means on the response scale, one row per draw.
    dispersion : numpy.ndarray or None
        Draws (S,) of sigma or theta; None for families without one.
    """
    if dispersion is None or not family.has_dispersion:
        return np.asarray(family.log_likelihood(y, mu, weights))
    out = np.empty_like(mu)
    for s in range(mu.shape[0]):
        out[s] = family.log_likelihood(y, mu[s], weights, float(dispersion[s]))
    return out


def level_sums(values: np.ndarray, codes: np.ndarray, n_levels: int) -> np.ndarray:
    """Sum (S, n) pointwise values within each level: (S, n_levels); codes (n,) in 0..n_levels-1."""
    codes = np.asarray(codes, dtype=np.int64)
    indicator = sp.csr_matrix((np.ones(codes.size), (codes, np.arange(codes.size))),
                              shape=(n_levels, codes.size))
    return np.asarray((indicator @ np.asarray(values, dtype=float).T).T)


def pointwise_loglik(draws: FitDraws) -> np.ndarray:
    """Log-likelihood of each observation given each draw, shape (S, n).

    Parameters
    ----------
    draws : FitDraws
        Parameter draws, including the group effects.

    Returns
    -------
    numpy.ndarray
        ``log N(y_i | mu_i^s, sigma_s^2)`` with ``mu`` including group effects.
    """
    mu = draws.linear_predictor(include_random=True)
    weights = getattr(draws.design, "weights", None)
    if not draws.is_gaussian or (weights is not None and np.any(np.asarray(weights) != 1.0)):
        dispersion = draws.sigma if draws.is_gaussian else draws.dispersion
        family = draws.family if draws.family is not None else get_family("gaussian")
        return family_loglik(family, np.asarray(draws.design.y, dtype=float), weights,
                             family.link.inverse(mu), dispersion)
    sigma = draws.sigma[:, None]
    standardized = (np.asarray(draws.design.y, dtype=float)[None, :] - mu) / sigma
    return np.asarray(-0.5 * standardized**2 - np.log(sigma) - 0.5 * np.log(2.0 * np.pi))


def _default_group(draws: FitDraws, group: str | None) -> str:
    if group is not None:
        return group
    groups = list(dict.fromkeys(block.group for block in draws.design.blocks))
    if len(groups) != 1:
        raise InputTypeError(
            f"level='group' needs group=...: the model has the grouping factors {groups}."
        )
    return groups[0]


def log_likelihood(fit: object, level: str = "observation",
                   group: str | None = None) -> tuple[np.ndarray, list[str], str | None]:
    """Per-draw log-likelihood of each unit of a fit.

    Parameters
    ----------
    fit : FitDraws or fit result
        A Bayesian fit (or its draws).
    level : {"observation", "group"}
        Units: observations, or levels of a grouping factor.
    group : str, optional
        The grouping factor for ``level="group"``; needed only when the
        model has more than one.

    Returns
    -------
    log_lik : numpy.ndarray
        Shape (S, n_units).
    labels : list of str
        Unit labels (row index, or level labels).
    group : str or None
        The grouping factor used.

    Raises
    ------
    FitError
        If the fit holds a point estimate rather than posterior draws.
    InputTypeError
        If ``level`` is unknown or ``group`` is needed and missing.
    """
    if level not in _LEVELS:
        raise InputTypeError(f"level must be 'observation' or 'group', got {level!r}.")
    draws = as_draws(fit)
    if draws.point:
        raise FitError(
            "WAIC and LOO need posterior draws, but this fit holds a point estimate (ML/REML/MAP); "
            "fit with method='nuts'."
        )
    residual = getattr(draws.design, "residual", None)
    if residual is not None:  # the pointwise densities below assume independent residuals
        _refuse_correlated(residual, level, group)
        raise FitError(f"With residual={residual.spec.text!r} the log-likelihood per "
                       f"{residual.spec.group} is the one the fit stored: pass the fit itself "
                       "(fit.loo(level='group'), hl.compare({...}, level='group')).")
    if level == "observation":
        design = draws.design
        labels = [str(v) for v in (design.row_index if len(design.row_index) == design.n
                                   else range(design.n))]
        return pointwise_loglik(draws), labels, None
    factor = _default_group(draws, group)
    split = split_factor(draws.design, factor)
    if not draws.is_gaussian:
        # no closed-form marginal: the level's pointwise log-likelihoods, its effects of the draw kept
        block = draws.design.blocks[split.own[0]]
        return level_sums(pointwise_loglik(draws), block.codes, block.n_levels), list(split.levels), factor
    return group_loglik(draws, factor), list(split.levels), factor


def _refuse_correlated(residual: Any, level: str, group: str | None) -> None:
    """Refuse units other than the residual groups when residuals are correlated within them."""
    if level == "observation":
        raise FitError(
            f"LOO/WAIC per observation is not defined with residual={residual.spec.text!r}: the "
            f"residuals of one {residual.spec.group} are correlated, so its observations are not "
            f"conditionally independent. Use level='group' (leave one {residual.spec.group} out; "
            "its joint log density is the pointwise log-likelihood).")
    if group is not None and group != residual.spec.group:
        raise FitError(f"With residual={residual.spec.text!r} the units are the residual groups "
                       f"{residual.spec.group!r}, not {group!r}.")


def _as_chain_draw(log_lik: np.ndarray, chains: int) -> np.ndarray:
    """Return log_lik as (chains, draws, n); (S, n) input is split chain-major."""
    values = np.asarray(log_lik, dtype=float)
    if values.ndim == 3:
        return values
    if values.ndim != 2:
        raise InputTypeError(
            f"log_lik must have shape (draws, units) or (chains, draws, units), got {values.shape}."
        )
    if chains < 1 or values.shape[0] % chains:
        raise InputTypeError(f"chains={chains} does not split {values.shape[0]} draws into equal chains.")
    return values.reshape(chains, values.shape[0] // chains, values.shape[1])


def _resolve(source: object, level: str, group: str | None, chains: int | None,
             labels: list[str] | None) -> tuple[np.ndarray, list[str], str | None, np.ndarray | None]:
    """Turn a fit or an array into (chains, draws, n) log-likelihood, labels, group, y."""
    # an array of log-likelihoods (an xarray.DataArray is recognised by its dims, without importing xarray)
    if isinstance(source, np.ndarray | list) or (hasattr(source, "dims") and hasattr(source, "values")):
        values = _as_chain_draw(np.asarray(source), chains or 1)
        names = labels if labels is not None else [str(i) for i in range(values.shape[-1])]
        return values, names, group, None
    residual = getattr(getattr(source, "design", None), "residual", None)
    grouped = getattr(source, "_grouped_loglik", None)
    if residual is not None and grouped is not None:  # correlated residuals: one unit per group
        _refuse_correlated(residual, level, group)
        values, names, factor = grouped(f"level={level!r}")
        return values, names, factor, np.asarray(source.design.y, dtype=float)  # type: ignore[attr-defined]
    draws = as_draws(source)
    log_lik, names, factor = log_likelihood(draws, level, group)
    y = np.asarray(draws.design.y, dtype=float)
    return _as_chain_draw(log_lik, chains or chains_of(draws)), names, factor, y


def waic(source: object, level: str = "observation", group: str | None = None,
         chains: int | None = None, labels: list[str] | None = None) -> ElpdResult:
    """Widely applicable information criterion (WAIC), elpd scale.

    Parameters
    ----------
    source : numpy.ndarray, FitDraws or fit result
        Pointwise log-likelihood, shape (S, n) or (chains, draws, n), or a
        Bayesian fit from which to compute it.
    level : {"observation", "group"}
        Units, when ``source`` is a fit.
    group : str, optional
        Grouping factor for ``level="group"``.
    chains : int, optional
        Number of chains of (S, n) draws (only used by LOO's relative efficiency).
    labels : list of str, optional
        Unit labels for an array ``source``.

    Returns
    -------
    ElpdResult
        With a :class:`~hierlm.errors.HierlmWarning` issued (and recorded in
        ``warning``) when some ``p_waic_i`` exceeds 0.4.
    """
    values, names, factor, y = _resolve(source, level, group, chains, labels)
    flat = values.reshape(-1, values.shape[-1])
    n_draws, n_points = flat.shape
    lppd = logsumexp(flat, axis=0) - np.log(n_draws)
    penalty = flat.var(axis=0, ddof=1)
    elpd_i = lppd - penalty
    message = ""
    flagged = int((penalty > P_WAIC_LIMIT).sum())
    if flagged:
        message = (f"{flagged} of {n_points} points have p_waic > {P_WAIC_LIMIT}; WAIC may be "
                   "unreliable there (Vehtari, Gelman & Gabry 2017), prefer loo().")
        warnings.warn(message, HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))
    return ElpdResult(
        kind="waic", level=level, group=factor,
        elpd=float(elpd_i.sum()), se=float(np.sqrt(n_points * elpd_i.var(ddof=1))),
        p=float(penalty.sum()),
        pointwise=pd.DataFrame({"elpd": elpd_i, "p": penalty}, index=pd.Index(names, name="unit")),
        n_draws=n_draws, warning=message, y=y,
    )


def relative_efficiency(values: np.ndarray) -> np.ndarray:
    """ESS of ``exp(log_lik)`` per unit over the number of draws, for (chains, draws, n) input."""
    chains, per_chain, _ = values.shape
    if chains == 1:
        return np.ones(values.shape[-1])
    from arviz_stats.base.array import array_stats  # heavy; imported when an ESS is needed

    likelihood = np.exp(values - values.max(axis=(0, 1), keepdims=True))
    ess = array_stats.ess(np.moveaxis(likelihood, -1, 0), method="mean")
    return np.asarray(np.clip(ess / (chains * per_chain), 1e-3, None))


def loo(source: object, level: str = "observation", group: str | None = None,
        chains: int | None = None, labels: list[str] | None = None,
        reff: float | None = None) -> ElpdResult:
    """Pareto-smoothed importance-sampling leave-one-out cross-validation (``arviz_stats.loo``).

    Parameters
    ----------
    source : numpy.ndarray, FitDraws or fit result
        Pointwise log-likelihood, shape (S, n) or (chains, draws, n), or a
        Bayesian fit from which to compute it.
    level : {"observation", "group"}
        Leave out one observation or one level of ``group``.
    group : str, optional
        Grouping factor for ``level="group"``.
    chains : int, optional
        Number of chains of (S, n) draws, for the relative efficiency.
    labels : list of str, optional
        Unit labels for an array ``source``.
    reff : float, optional
        The relative efficiency PSIS uses (default: the mean over these units,
        :func:`relative_efficiency`); given when units come in batches.

    Returns
    -------
    ElpdResult
        ``pointwise`` has the columns elpd, p and pareto_k; ``warning`` is set
        when some Pareto k exceeds ArviZ's ``good_k``.
    """
    values, names, factor, y = _resolve(source, level, group, chains, labels)
    flat = values.reshape(-1, values.shape[-1])
    lppd = logsumexp(flat, axis=0) - np.log(flat.shape[0])
    # a unit whose log-likelihood does not vary over draws needs no importance
    # sampling (its LOO density is the value itself) and would break PSIS
    varying = np.ptp(flat, axis=0) > 0
    elpd_i = lppd.copy()
    pareto_k = np.zeros(flat.shape[1])
    good_k = 0.7
    if varying.any():
        from arviz_base import from_dict  # heavy; imported when PSIS runs
        from arviz_stats import loo as arviz_loo

        tree = from_dict({"log_likelihood": {"y": values[..., varying]}}, dims={"y": ["unit"]})
        if reff is None:
            reff = float(relative_efficiency(values[..., varying]).mean())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # replaced by the message below
            result = arviz_loo(tree, pointwise=True, reff=reff)
        elpd_i[varying] = np.asarray(result.elpd_i).ravel()
        pareto_k[varying] = np.asarray(result.pareto_k).ravel()
        good_k = float(result.good_k)
    message = ""
    bad = int((~(pareto_k <= good_k)).sum())  # NaN k (failed tail fit) counts as bad
    if bad:
        message = (f"{bad} of {len(pareto_k)} points have Pareto k > {good_k:.2f}; "
                   "their LOO estimates are unreliable (consider exact refits or K-fold CV).")
        warnings.warn(message, HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))
    n_points = elpd_i.size
    return ElpdResult(
        kind="loo", level=level, group=factor,
        elpd=float(elpd_i.sum()),
        se=float(np.sqrt(n_points * elpd_i.var(ddof=1))) if n_points > 1 else 0.0,
        p=float((lppd - elpd_i).sum()),
        pointwise=pd.DataFrame({"elpd": elpd_i, "p": lppd - elpd_i, "pareto_k": pareto_k},
                               index=pd.Index(names, name="unit")),
        n_draws=flat.shape[0], warning=message, y=y,
    )
