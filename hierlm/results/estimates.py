"""Bayesian, REML and GEE estimates of one model, side by side.

One row per parameter, in lme4's vocabulary: every fixed effect, then per
random-effect block the SD of each term and the correlation of each pair, then
the residual SD (``sigma``), and the intraclass correlation (``icc``, adjusted
for random slopes, see :mod:`hierlm.results.intraclass`). Columns:

* posterior: ``post_mean``, ``post_sd`` and the interval (ArviZ default
  probability, named ``eti89_lb``/``eti89_ub``), plus ``r_hat`` when the
  draws come from several chains;
* frequentist: ``estimate``; for fixed effects also ``std_error`` and the
  Wald interval ``estimate +- q * std_error`` at the same probability, ``q``
  the t quantile with the fit's Satterthwaite df when the fit reports them
  (``fixef()["df"]``), else the normal quantile. Variance components get the
  point estimate only (their sampling distribution is skewed; use profile
  intervals or the posterior);
* GEE (``gee=True``): a marginal model of the same fixed part fitted by
  generalised estimating equations with an exchangeable working correlation
  within the levels of one grouping factor (statsmodels' ``GEE``, Gaussian
  family), with the model-based (``gee_se_naive``) and sandwich
  (``gee_se_robust``) standard errors; the ``icc`` row holds the estimated
  exchangeable correlation. For a linear model the GEE coefficients are
  population-averaged effects, equal in expectation to the mixed model's
  fixed effects; the robust SEs stay valid when the working correlation is
  wrong, the naive ones do not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from scipy.stats import t as student_t

from hierlm.errors import DataError, InputTypeError
from hierlm.results.common import as_draws, block_labels, chains_of, mean_random_variance
from hierlm.results.draws import FitDraws
from hierlm.results.summary import interval_spec, summarize

__all__ = ["compare_estimates", "parameter_draws", "gee_fit"]


def parameter_draws(draws: FitDraws) -> tuple[pd.DataFrame, np.ndarray]:
    """Every reported parameter of a fit, one column per parameter, per draw.

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.

    Returns
    -------
    labels : pandas.DataFrame
        One row per parameter: kind (fixed, sd, cor, sigma), group, term1, term2.
    values : numpy.ndarray
        Shape (S, n_parameters).
    """
    design = draws.design
    rows: list[dict[str, Any]] = []
    columns: list[np.ndarray] = []
    for k, name in enumerate(design.fixed_names):
        rows.append({"kind": "fixed", "group": "", "term1": name, "term2": ""})
        columns.append(draws.beta[:, k])
    for label, block, cov in zip(block_labels(design), design.blocks, draws.covariances, strict=True):
        sd = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
        for i, term in enumerate(block.columns):
            rows.append({"kind": "sd", "group": label, "term1": term, "term2": ""})
            columns.append(sd[:, i])
        if block.correlated:
            for i in range(block.q):
                for j in range(i + 1, block.q):
                    with np.errstate(invalid="ignore", divide="ignore"):
                        columns.append(cov[:, i, j] / (sd[:, i] * sd[:, j]))
                    rows.append({"kind": "cor", "group": label, "term1": block.columns[i],
                                 "term2": block.columns[j]})
    rows.append({"kind": "sigma", "group": "Residual", "term1": "", "term2": ""})
    columns.append(draws.sigma)
    return pd.DataFrame(rows), np.column_stack(columns)


def gee_fit(draws: FitDraws, group: str | None = None) -> tuple[pd.DataFrame, float]:
    """Fit the fixed part by GEE with an exchangeable working correlation.

    Parameters
    ----------
    draws : FitDraws
        Any fit of the model (only its design is used).
    group : str, optional
        Clustering factor; the model's only grouping factor when None.

    Returns
    -------
    table : pandas.DataFrame
        Indexed by fixed-effect name: gee_estimate, gee_se_naive, gee_se_robust.
    correlation : float
        The estimated exchangeable working correlation.

    Raises
    ------
    InputTypeError
        If the cluster factor is ambiguous or unknown.
    """
    import statsmodels.api as sm

    design = draws.design
    groups = list(dict.fromkeys(block.group for block in design.blocks))
    if group is None:
        if len(groups) != 1:
            raise InputTypeError(f"GEE needs one clustering factor: pass gee_group= (one of {groups}).")
        group = groups[0]
    if group not in groups:
        raise InputTypeError(f"gee_group={group!r} is not a grouping factor of the model ({groups}).")
    codes = next(np.asarray(b.codes) for b in design.blocks if b.group == group)
    model = sm.GEE(np.asarray(design.y, dtype=float), np.asarray(design.X, dtype=float), groups=codes,
                   family=sm.families.Gaussian(), cov_struct=sm.cov_struct.Exchangeable())
    result = model.fit()
    table = pd.DataFrame({
        "gee_estimate": np.asarray(result.params),
        "gee_se_naive": np.asarray(result.standard_errors(cov_type="naive")),
        "gee_se_robust": np.asarray(result.standard_errors(cov_type="robust")),
    }, index=pd.Index(design.fixed_names))
    return table, float(np.asarray(result.cov_struct.dep_params).ravel()[0])


def _frequentist_fixef(fit: Any, draws: FitDraws) -> pd.DataFrame:
    """Estimate, SE and df of each fixed effect from a frequentist fit."""
    names = list(draws.design.fixed_names)
    table = pd.DataFrame({"estimate": draws.beta[0]}, index=pd.Index(names))
    fixef = getattr(fit, "fixef", None)
    reported = fixef() if callable(fixef) else None
    if isinstance(reported, pd.DataFrame) and "std_error" in reported:
        table["std_error"] = reported.loc[names, "std_error"].to_numpy(dtype=float)
        table["df"] = reported.loc[names, "df"].to_numpy(dtype=float) if "df" in reported else np.inf
        return table
    vcov = getattr(fit, "vcov", None)
    matrix = vcov() if callable(vcov) else None
    if matrix is None:
        table["std_error"] = np.nan
    else:
        table["std_error"] = np.sqrt(np.diag(np.asarray(matrix, dtype=float)))
    table["df"] = np.inf
    return table


def compare_estimates(bayes_fit: object, freq_fit: object, gee: bool = False,
                      gee_group: str | None = None, prob: float | None = None) -> pd.DataFrame:
    """Put posterior, ML/REML and (optionally) GEE estimates of one model side by side.

    Parameters
    ----------
    bayes_fit : fit result or FitDraws
        A Bayesian fit (posterior draws).
    freq_fit : fit result or FitDraws
        An ML/REML (or MAP) fit of the same model and data. Standard errors
        come from its ``fixef()`` (or ``vcov()``) when it has them.
    gee : bool
        Add GEE columns (exchangeable working correlation).
    gee_group : str, optional
        GEE clustering factor when the model has several.
    prob : float, optional
        Probability of both intervals (ArviZ default when None).

    Returns
    -------
    pandas.DataFrame
        One row per parameter (see the module docstring).

    Raises
    ------
    InputTypeError
        If the first fit is not Bayesian or the second is not a point fit.
    DataError
        If the two fits are not of the same model and data.
    """
    posterior = as_draws(bayes_fit)
    point = as_draws(freq_fit)
    if posterior.point:
        raise InputTypeError("bayes_fit holds a point estimate; pass a fit with posterior draws first.")
    if not point.point:
        raise InputTypeError("freq_fit holds posterior draws; pass the ML/REML fit second.")
    same = (posterior.design.fixed_names == point.design.fixed_names
            and [b.term for b in posterior.design.blocks] == [b.term for b in point.design.blocks]
            and posterior.design.y.shape == point.design.y.shape
            and np.allclose(posterior.design.y, point.design.y, equal_nan=True))
    if not same:
        raise DataError("The two fits differ in formula or data; compare fits of one model on one data set.")
    spec = interval_spec(prob)
    labels, post_values = parameter_draws(posterior)
    _, point_values = parameter_draws(point)
    factors = list(dict.fromkeys(block.group for block in posterior.design.blocks))
    if len(factors) == 1:
        # one grouping factor: its (adjusted) ICC is one more parameter
        labels = pd.concat([labels, pd.DataFrame([{"kind": "icc", "group": factors[0],
                                                   "term1": "", "term2": ""}])], ignore_index=True)
        post_values = np.column_stack([post_values, _icc_draws(posterior)])
        point_values = np.column_stack([point_values, _icc_draws(point)])
    table = labels.copy()
    chains = chains_of(posterior)
    summary = summarize(post_values, chains=chains, prob=spec.prob, kind=spec.kind)
    table["post_mean"] = summary["mean"].to_numpy()
    table["post_sd"] = summary["sd"].to_numpy()
    table[spec.lower] = summary[spec.lower].to_numpy()
    table[spec.upper] = summary[spec.upper].to_numpy()
    if chains > 1:
        table["r_hat"] = summary["r_hat"].to_numpy()
    table["estimate"] = point_values[0]
    fixed = _frequentist_fixef(freq_fit, point)
    is_fixed = (table["kind"] == "fixed").to_numpy()
    se = np.full(len(table), np.nan)
    se[is_fixed] = fixed["std_error"].to_numpy()
    df = np.full(len(table), np.nan)
    df[is_fixed] = fixed["df"].to_numpy()
    quantile = np.where(np.isfinite(df), student_t.ppf(0.5 + spec.prob / 2, np.where(np.isfinite(df), df, 1)),
                        norm.ppf(0.5 + spec.prob / 2))
    table["std_error"] = se
    label = f"ci{round(spec.prob * 100):d}"
    table[f"{label}_lb"] = table["estimate"] - quantile * se
    table[f"{label}_ub"] = table["estimate"] + quantile * se
    if gee:
        gee_table, correlation = gee_fit(point, gee_group)
        for column in gee_table.columns:
            values = np.full(len(table), np.nan)
            values[is_fixed] = gee_table[column].to_numpy()
            table[column] = values
        table.loc[table["kind"] == "icc", "gee_estimate"] = correlation
    return table


def _icc_draws(draws: FitDraws) -> np.ndarray:
    """Per-draw ICC of a one-factor model (design-averaged random variance)."""
    variance = mean_random_variance(draws).sum(axis=1)
    return np.asarray(variance / (variance + draws.sigma**2))
