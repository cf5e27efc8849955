"""The tables every fit answers with, in one layout: the result protocol.

REML, ML, MAP and NUTS fits build their ``fixef``, ``varcorr``, ``ranef``,
``coef`` and ``predict`` tables here, from the fit's draws
(:class:`~hierlm.results.draws.FitDraws`) and, for point fits, its
:class:`~hierlm.results.uncertainty.PointUncertainty`. Every table that shows
an interval starts with the same columns, after its key columns:

``estimate``
    ML/REML/MAP: the estimate; NUTS: the posterior mean.
``std_error``
    ML/REML: the large-sample standard error; MAP: the Laplace approximation's;
    NUTS: the posterior SD.
``eti95_lb``, ``eti95_ub``
    The interval at ``prob`` (``hierlm.DEFAULT_PROB``, 0.95, when not given),
    named as ArviZ names intervals. ML/REML/MAP: Wald intervals (Student's t
    with Satterthwaite's or Kenward-Roger's df for REML/ML fixed effects;
    normal otherwise; on the log/atanh scale for SDs and correlations); NUTS:
    equal-tailed posterior intervals.

Engine-specific columns follow: ``df``, ``t_value``, ``p_value`` in ML/REML
``fixef``; ``vcov`` in every ``varcorr``; the convergence diagnostics
``ess_bulk``, ``ess_tail``, ``r_hat``, ``mcse_mean`` in NUTS ``fixef`` and
``varcorr`` (and ``ranef(diagnostics=True)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hierlm.design.blocks import Design
from hierlm.errors import DataError, InputTypeError
from hierlm.results.draws import FitDraws
from hierlm.results.summarised import coef_summary_body, ranef_summary_body
from hierlm.results.summary import interval_spec, summarize
from hierlm.results.uncertainty import PointUncertainty, normal_quantile, varcorr_keys, varcorr_values

__all__ = [
    "estimate_columns",
    "point_table",
    "posterior_table",
    "structure_posterior_table",
    "contrast_vector",
    "fixef_table",
    "varcorr_table",
    "ranef_table",
    "coef_table",
    "contrast_table",
]

_DIAGNOSTICS = ["ess_bulk", "ess_tail", "r_hat", "mcse_mean"]


def estimate_columns(prob: float | None = None) -> list[str]:
    """The protocol columns of an interval table: ``estimate, std_error, <lb>, <ub>``."""
    spec = interval_spec(prob)
    return ["estimate", "std_error", spec.lower, spec.upper]


def point_table(estimate: np.ndarray, std_error: np.ndarray, prob: float | None = None,
                df: np.ndarray | None = None, lower: np.ndarray | None = None,
                upper: np.ndarray | None = None) -> pd.DataFrame:
    """Estimates with standard errors and Wald intervals (normal, or t with ``df``).

    Parameters
    ----------
    estimate, std_error : numpy.ndarray
        Point estimates and their standard errors.
    prob : float, optional
        Interval probability (``hierlm.DEFAULT_PROB`` when None).
    df : numpy.ndarray, optional
        Degrees of freedom of a t interval per row (infinite: normal).
    lower, upper : numpy.ndarray, optional
        Interval bounds computed elsewhere (e.g. on a link scale); replace the Wald bounds.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`estimate_columns`.
    """
    spec = interval_spec(prob)
    estimate = np.asarray(estimate, dtype=float)
    std_error = np.asarray(std_error, dtype=float)
    if lower is None or upper is None:
        half = normal_quantile(spec.prob, df) * std_error
        lower, upper = estimate - half, estimate + half
    return pd.DataFrame({"estimate": estimate, "std_error": std_error,
                         spec.lower: np.asarray(lower, dtype=float),
                         spec.upper: np.asarray(upper, dtype=float)})


def posterior_table(samples: np.ndarray, chains: int = 1, prob: float | None = None,
                    diagnostics: bool = True) -> pd.DataFrame:
    """Posterior summaries in the protocol layout, from (S,) or (S, k) chain-major draws.

    The numbers are those of :func:`hierlm.results.summary.summarize` (mean as
    ``estimate``, SD as ``std_error``), followed by the diagnostics when asked.
    """
    spec = interval_spec(prob)
    table = summarize(samples, chains=chains, prob=spec.prob, kind=spec.kind, diagnostics=diagnostics,
                      median=False)  # not a column of the protocol table
    table = table.rename(columns={"mean": "estimate", "sd": "std_error"})
    extra = [c for c in _DIAGNOSTICS if c in table.columns]
    return table[estimate_columns(spec.prob) + extra]



def structure_posterior_table(keys: list[tuple[str, str]], columns: list[np.ndarray],
                              chains: int = 1, prob: float | None = None) -> pd.DataFrame:
    """Posterior rows of covariance-structure parameters: ``structure``, ``parameter``, summaries.

    ``keys`` holds one ``(structure, parameter)`` label per column of draws in ``columns``
    (chain-major); with none, an empty table with the two label columns.
    """
    if not columns:
        return pd.DataFrame(columns=["structure", "parameter"])
    body = posterior_table(np.column_stack(columns), chains, prob)
    head = pd.DataFrame(keys, columns=["structure", "parameter"])
    return pd.concat([head, body.reset_index(drop=True)], axis=1)

def _uncertainty(fit: Any) -> PointUncertainty | None:
    """The fit's :class:`PointUncertainty` (None for posterior draws or a bare FitDraws)."""
    method = getattr(fit, "_point_uncertainty", None)
    return method() if callable(method) else None


def _draws(fit: Any) -> FitDraws:
    return fit if isinstance(fit, FitDraws) else fit.draws()


def contrast_vector(design: Design, L: Any) -> np.ndarray:
    """A contrast as a vector over the fixed effects, from an array or a name -> weight mapping.

    Raises
    ------
    InputTypeError
        For unknown names, a vector of the wrong length or non-numeric input.
    """
    names = list(design.fixed_names)
    if isinstance(L, Mapping):
        unknown = [k for k in L if k not in names]
        if unknown:
            raise InputTypeError(f"Unknown fixed effects {unknown}; the model has {names}.")
        return np.array([float(L.get(k, 0.0)) for k in names])
    try:
        vec = np.asarray(L, dtype=float).ravel()
    except (TypeError, ValueError):
        raise InputTypeError(f"L must be a numeric vector or a dict, got {L!r}.") from None
    if vec.size != len(names):
        raise InputTypeError(f"The contrast L has {vec.size} entries; the model has "
                             f"{len(names)} fixed effects {names}.")
    return vec


def fixef_table(fit: Any, prob: float | None = None) -> pd.DataFrame:
    """Fixed effects, one row per term (index ``term``), in the protocol layout."""
    draws = _draws(fit)
    if draws.point:
        unc = _uncertainty(fit)
        se = np.sqrt(np.diag(unc.vcov_beta)) if unc is not None else np.full(draws.design.p, np.nan)
        table = point_table(draws.beta[0], se, prob)
    else:
        table = posterior_table(draws.beta, draws.n_chains, prob)
    table.index = pd.Index(list(draws.design.fixed_names), name="term")
    return table


def contrast_table(fit: Any, L: Any, rhs: float = 0.0, prob: float | None = None) -> dict[str, float]:
    """Estimate, standard error, interval of ``L' beta`` and the probability that it exceeds ``rhs``.

    ``prob_greater`` is the posterior probability of ``L' beta > rhs``: the
    share of draws for NUTS, the normal (Laplace) approximation for point fits.
    """
    draws = _draws(fit)
    vec = contrast_vector(draws.design, L)
    values = draws.beta @ vec
    if draws.point:
        unc = _uncertainty(fit)
        se = float(np.sqrt(vec @ unc.vcov_beta @ vec)) if unc is not None else float("nan")
        row = point_table(values, np.array([se]), prob).iloc[0]
        from scipy import stats

        greater = float(stats.norm.sf((rhs - values[0]) / se)) if se > 0 else float(values[0] > rhs)
    else:
        row = posterior_table(values, draws.n_chains, prob, diagnostics=False).iloc[0]
        greater = float(np.mean(values > rhs))
    return {**{str(k): float(v) for k, v in row.items()}, "prob_greater": greater}


def varcorr_table(fit: Any, prob: float | None = None) -> pd.DataFrame:
    """SDs, correlations and the residual SD in the rows of lme4's ``as.data.frame(VarCorr(fit))``.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, term1, term2`` (``term2`` None on SD rows), the
        protocol columns of the SD or correlation, then ``vcov`` (the variance
        or covariance; NUTS: its posterior mean) and, for NUTS, the diagnostics.
    """
    draws = _draws(fit)
    design = draws.design
    sdcor, vcov = varcorr_values(design, draws.covariances, draws.sigma)
    spec = interval_spec(prob)
    if draws.point:
        unc = _uncertainty(fit)
        if unc is None:
            body = point_table(sdcor[0], np.full(sdcor.shape[1], np.nan), spec.prob)
        else:
            estimate, se, lower, upper = unc.varcorr_intervals(design, spec.prob)
            body = point_table(estimate, se, spec.prob, lower=lower, upper=upper)
    else:
        body = posterior_table(sdcor, draws.n_chains, spec.prob)
    body.insert(4, "vcov", vcov.mean(axis=0))
    keys = varcorr_keys(design)
    head = pd.DataFrame({name: pd.Series([row[i] for row in keys], dtype=object)
                         for i, name in enumerate(["group", "term1", "term2"])})
    table = pd.concat([head, body.reset_index(drop=True)], axis=1)
    return table if draws.is_gaussian else _family_rows(draws, table, spec.prob)


def _family_rows(draws: Any, table: pd.DataFrame, prob: float) -> pd.DataFrame:
    """Non-Gaussian ``varcorr``: no ``Residual`` row; a ``Dispersion`` row (e.g. ``theta``) if any."""
    table = table[table["group"] != "Residual"].reset_index(drop=True)
    if draws.dispersion is None:
        return table
    values = np.asarray(draws.dispersion, dtype=float)[:, None]
    if draws.point:
        body = point_table(values[0], np.full(1, np.nan), prob)
    else:
        body = posterior_table(values, draws.n_chains, prob)
    body.insert(4, "vcov", np.nan)
    head = pd.DataFrame({"group": ["Dispersion"], "term1": [draws.family.dispersion_name],
                         "term2": pd.Series([None], dtype=object)})
    row = pd.concat([head, body.reset_index(drop=True)], axis=1)
    return pd.concat([table, row], ignore_index=True)


def _long(group: str, levels: list[Any], terms: list[str], body: pd.DataFrame) -> pd.DataFrame:
    """Prefix term-major rows (all levels of the first term, then the next) with their keys."""
    head = pd.DataFrame({"group": group, "level": pd.Series(levels * len(terms), dtype=object),
                         "term": np.repeat(terms, len(levels))})
    return pd.concat([head, body.reset_index(drop=True)], axis=1)


def _summarise_levels(values: np.ndarray, variance: np.ndarray | None, point: bool, chains: int,
                      prob: float | None, diagnostics: bool) -> pd.DataFrame:
    """Protocol table of (S, levels, terms) values, rows term-major; ``variance`` (levels, terms)."""
    by_term = np.swapaxes(values, 1, 2).reshape(values.shape[0], -1)
    if point:
        se = (np.sqrt(np.clip(variance.T.ravel(), 0.0, None)) if variance is not None
              else np.full(by_term.shape[1], np.nan))
        return point_table(by_term[0], se, prob)
    return posterior_table(by_term, chains, prob, diagnostics)


def _chunk_table(draws: Any, prob: float | None, diagnostics: bool) -> Any:
    """The posterior table of (S, k) draws of one chunk of levels of a summarised fit."""
    return lambda values: posterior_table(values, draws.n_chains, prob, diagnostics)


def _require_group_effects(design: Any, what: str) -> None:
    """Refuse per-level tables of a model without random-effect terms (a GLS/MMRM model)."""
    if not design.blocks:
        raise DataError(f"{what}: the model has no random-effect terms, so there are no group "
                        "effects (its within-group correlation is in the residual structure: "
                        "see fit.residual_covariance()).")


def ranef_table(fit: Any, prob: float | None = None, wide: bool = False,
                diagnostics: bool = False) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Group effects: conditional modes (point fits) or posterior summaries (NUTS).

    Parameters
    ----------
    fit : fit result
        Any hierlm fit.
    prob : float, optional
        Interval probability.
    wide : bool
        False: one row per (group, level, term), term-major as lme4's
        ``as.data.frame(ranef(fit))``, with the protocol columns (ML/REML/MAP:
        ``std_error`` is the conditional SD, lme4's ``condVar``). True: a dict
        grouping factor -> DataFrame of estimates (levels x terms), as lme4's ``ranef``.
    diagnostics : bool
        NUTS: add the convergence diagnostics (slow with many levels).

    Returns
    -------
    pandas.DataFrame or dict of pandas.DataFrame
    """
    draws = _draws(fit)
    _require_group_effects(draws.design, "ranef()")
    unc = _uncertainty(fit) if draws.point else None
    parts: list[pd.DataFrame] = []
    wide_parts: dict[str, pd.DataFrame] = {}
    for k, block in enumerate(draws.design.blocks):
        levels = list(block.levels)
        if wide:
            frame = pd.DataFrame(draws.effect_means()[k], index=pd.Index(levels, name=block.group),
                                 columns=list(block.columns))
            previous = wide_parts.get(block.group)
            wide_parts[block.group] = frame if previous is None else pd.concat([previous, frame], axis=1)
            continue
        if draws.effect_summary is not None:  # Rao-Blackwellised summaries (hierlm.results.summarised)
            body = ranef_summary_body(draws, k, _chunk_table(draws, prob, diagnostics))
            parts.append(_long(block.group, levels, list(block.columns), body))
            continue
        effects = draws.effects[k]
        variance = np.diagonal(unc.cond_var[k], axis1=1, axis2=2) if unc is not None else None
        body = _summarise_levels(effects, variance, draws.point, draws.n_chains, prob, diagnostics)
        parts.append(_long(block.group, levels, list(block.columns), body))
    if wide:
        return wide_parts
    return pd.concat(parts, ignore_index=True)


def coef_table(fit: Any, prob: float | None = None,
               wide: bool = False) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Per-level coefficients: each fixed effect plus the level's effect on that term (lme4's ``coef``).

    For every grouping factor the coefficients are all fixed effects followed
    by the terms that vary only by the group. Point fits' standard error is
    the prediction error variance of ``beta_t + b_lt`` (Henderson's, with the
    covariance between the fixed effect and the conditional mode; see
    :mod:`hierlm.results.uncertainty`); NUTS summarises ``beta_t + b_lt`` per draw.

    Parameters
    ----------
    fit : fit result
        Any hierlm fit.
    prob : float, optional
        Interval probability.
    wide : bool
        False: one row per (group, level, term) with the protocol columns.
        True: a dict grouping factor -> DataFrame of estimates (levels x coefficients).

    Returns
    -------
    pandas.DataFrame or dict of pandas.DataFrame
    """
    draws = _draws(fit)
    design = draws.design
    _require_group_effects(design, "coef()")
    unc = _uncertainty(fit) if draws.point else None
    fixed = list(design.fixed_names)
    offsets = np.concatenate([[0], np.cumsum([b.n_levels * b.q for b in design.blocks])]).astype(int)
    parts: list[pd.DataFrame] = []
    wide_parts: dict[str, pd.DataFrame] = {}
    how = ""
    for group in dict.fromkeys(block.group for block in design.blocks):
        ks = [k for k, block in enumerate(design.blocks) if block.group == group]
        first = design.blocks[ks[0]]
        terms = fixed + [c for k in ks for c in design.blocks[k].columns if c not in fixed]
        levels = first.n_levels
        if draws.effect_summary is not None:  # Rao-Blackwellised summaries (hierlm.results.summarised)
            if wide:
                wide_parts[group] = coef_summary_body(draws, ks, terms, None).set_axis(
                    pd.Index(list(first.levels), name=group))
                continue
            body = coef_summary_body(draws, ks, terms, _chunk_table(draws, prob, False))
            parts.append(_long(group, list(first.levels), terms, body))
            continue
        values = np.zeros((draws.n_draws, levels, len(terms)))
        # the coefficient of level l and term t is x' beta + z' b with x, z unit vectors
        x = np.zeros((levels, len(terms), design.p))
        rows, cols = [], []
        for t, term in enumerate(terms):
            if term in fixed:
                j = fixed.index(term)
                values[:, :, t] += draws.beta[:, j][:, None]
                x[:, t, j] = 1.0
            for k in ks:
                block = design.blocks[k]
                if term in block.columns:
                    i = list(block.columns).index(term)
                    values[:, :, t] += draws.effects[k][:, :, i]
                    rows.append(np.arange(levels) * len(terms) + t)
                    cols.append(offsets[k] + np.arange(levels) * block.q + i)
        variance = None
        if unc is not None:
            row_index = np.concatenate(rows) if rows else np.zeros(0, int)
            z = sp.csr_matrix((np.ones(row_index.size), (row_index, np.concatenate(cols) if cols
                                                          else np.zeros(0, int))),
                              shape=(levels * len(terms), offsets[-1]))
            flat, how = unc.prediction_variance(design, x.reshape(-1, design.p), z)
            variance = flat.reshape(levels, len(terms))
        if wide:
            wide_parts[group] = pd.DataFrame(values.mean(axis=0), columns=terms,
                                             index=pd.Index(list(first.levels), name=group))
            continue
        body = _summarise_levels(values, variance, draws.point, draws.n_chains, prob, diagnostics=False)
        parts.append(_long(group, list(first.levels), terms, body))
    if wide:
        return wide_parts
    table = pd.concat(parts, ignore_index=True)
    if unc is not None:
        table.attrs["std_error"] = how
    return table
