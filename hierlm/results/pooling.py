"""No pooling, partial pooling, complete pooling: how far group estimates shrink.

For each level j of a grouping factor and each coefficient c that varies by
that factor (the columns of every block on the factor), the table puts three
estimates side by side:

* **no pooling**: a separate least-squares fit per level. The response minus
  the fixed part of every *other* fixed-effect column,
  ``y_i - sum_{c' not in block} x_ic' beta_c'``, is regressed on the block's
  columns ``z_i`` using the level's rows only. For ``(Days | Subject)`` this is
  the classic per-subject OLS of Reaction on [1, Days]; for ``(1 | g)`` it is
  the level mean of ``y - x' beta`` plus the intercept. Effects of *other*
  grouping factors are not removed (with crossed or nested factors the
  estimate absorbs their average over the level). Its standard error is its
  sampling SD under the fitted model, ``sqrt(diag((Z_j'Z_j)^-1 Z_j' V_j Z_j
  (Z_j'Z_j)^-1))`` with ``V_j = sigma^2 I`` plus the variance of the effects
  nested in the level (``sigma * sqrt(diag((Z_j'Z_j)^-1))`` without nesting),
  at the point estimate (posterior mean of sigma^2 and G for Bayesian fits).
  Levels whose ``Z_j`` is rank deficient (e.g. one observation, or a
  constant slope column) get NaN.
* **partial pooling**: the model's group-specific coefficient
  ``beta_c + b_jc`` (``b_jc`` alone when c is not a fixed effect): the BLUP
  plus the fixed effect for ML/REML fits, the posterior for Bayesian fits.
* **complete pooling**: one coefficient for every level: the model's fixed
  effect (``complete="fixed"``) or the pooled OLS of y on X ignoring groups
  (``complete="ols"``); 0 for a coefficient with no fixed counterpart.

Non-Gaussian fits (GLMMs, ML or Bayesian) compare the same three on the link
scale, with per-level maximum-likelihood GLMs for no pooling, the pooled GLM
for ``complete="ols"`` and the Fisher information in the shrinkage factor
(:mod:`hierlm.results.pooling_glm`).

Two measures of shrinkage:

* ``shrinkage_factor``: the diagonal of ``Lambda_j = (G A_j + I)^-1 G A_j``,
  with ``A_j = Z_j' V_j^-1 Z_j`` the information the level's rows carry about
  its effects (``Z_j'Z_j / sigma^2`` without nested factors; see
  :mod:`hierlm.results.grouped`). ``Lambda_j`` maps the level's own
  generalised least-squares deviation to its BLUP deviation when beta and the
  variances are known. For a random intercept it is the reliability
  ``n_j tau^2 / (n_j tau^2 + sigma^2)``: 1 means no shrinkage, 0 complete
  pooling. Computed per draw (a posterior for Bayesian fits).
* ``pull``: ``(partial - complete) / (no_pooling - complete)``, the share of the
  level's own deviation that the fit keeps. It equals the shrinkage factor for
  a one-factor random-intercept model fitted by ML/REML; for vector effects
  correlations can carry it outside [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import FitError, InputTypeError
from hierlm.results.common import as_draws
from hierlm.results.display import html_report
from hierlm.results.draws import FitDraws
from hierlm.results.grouped import (
    FactorSplit,
    covariance_root,
    level_loadings,
    scaled_loadings,
    split_factor,
)
from hierlm.results.pooling_glm import glm_factor_draws, glm_no_pooling, glm_pooled
from hierlm.results.summary import interval_spec

__all__ = ["ShrinkageResult", "shrinkage", "no_pooling"]


@dataclass(frozen=True)
class ShrinkageResult:
    """Pooling comparison for one grouping factor.

    Attributes
    ----------
    group : str
        The grouping factor.
    table : pandas.DataFrame
        One row per level and coefficient (see :func:`shrinkage`).
    summary : pandas.DataFrame
        One row per coefficient: number of levels, mean / min / max shrinkage
        factor, median pull, and the spread (SD across levels) of the
        no-pooling and partial-pooling estimates.
    factor_draws : numpy.ndarray
        Shrinkage factors per draw, shape (S, n_levels, n_coefficients).
    """

    group: str
    table: pd.DataFrame
    summary: pd.DataFrame
    factor_draws: np.ndarray

    def lines(self) -> list[str]:
        """One sentence per coefficient summarising the shrinkage across levels."""
        out = []
        for coefficient, row in self.summary.iterrows():
            levels = int(row["levels"])
            if np.isclose(row["min_factor"], row["max_factor"], rtol=1e-6, atol=0.0):
                factor = f"shrinkage factor {row['mean_factor']:.3g} for each of {levels} levels"
            else:
                factor = (f"shrinkage factor {row['mean_factor']:.3g} on average (from "
                          f"{row['min_factor']:.3g} to {row['max_factor']:.3g}) over {levels} levels")
            out.append(
                f"{self.group} / {coefficient}: {factor}; partial pooling keeps a median "
                f"{100 * row['median_pull']:.0f}% of the no-pooling deviations; "
                f"SD across levels {row['sd_no_pooling']:.4g} (no pooling) -> "
                f"{row['sd_partial_pooling']:.4g} (partial pooling)."
            )
        return out

    def __repr__(self) -> str:
        levels = self.table["level"].nunique() if "level" in self.table else len(self.table)
        return "\n".join([f"Shrinkage of the levels of {self.group}", *self.lines(),
                          f"({len(self.table)} rows for {levels} levels in .table, one per "
                          "coefficient in .summary)"])

    def _repr_html_(self) -> str:
        """The sentences, the per-coefficient summary and the first rows of the table."""
        return html_report([f"Shrinkage of the levels of {self.group}", *self.lines()],
                           {"Summary": self.summary, "Levels (.table)": self.table})


def _own_columns(draws: FitDraws, split: FactorSplit) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Column names, stacked z (n, Q) and block-diagonal G draws (S, Q, Q) of the factor's blocks."""
    blocks = [draws.design.blocks[k] for k in split.own]
    columns = [c for block in blocks for c in block.columns]
    z = np.column_stack([np.asarray(block.z, dtype=float) for block in blocks])
    covariance = np.zeros((draws.n_draws, len(columns), len(columns)))
    start = 0
    for k, block in zip(split.own, blocks, strict=True):
        covariance[:, start:start + block.q, start:start + block.q] = draws.covariances[k]
        start += block.q
    return columns, z, covariance


def _nested_loading(draws: FitDraws, split: FactorSplit, rows: np.ndarray,
                    roots: dict[int, np.ndarray]) -> np.ndarray | None:
    """``U_j R`` of the blocks nested in the factor for one level, per draw; None without nesting."""
    if not split.nested:
        return None
    loadings = level_loadings(draws.design, split.nested, rows)
    return scaled_loadings(loadings, [roots.get(k) for k in range(len(draws.design.blocks))])  # type: ignore[misc]


def _information(z_level: np.ndarray, nested: np.ndarray | None, variance: np.ndarray,
                 precision: np.ndarray | None = None) -> np.ndarray:
    """``Z_j' V_j^-1 Z_j`` per draw (S, Q, Q), ``V_j = sigma^2 Omega_j + B B'``.

    ``B`` is the nested loading; ``precision`` is ``Omega_j^-1`` of a residual structure
    (None: ``Omega_j = I``).
    """
    weighted = z_level if precision is None else precision @ z_level  # Omega^-1 Z
    ztz = z_level.T @ weighted
    if nested is None:
        return ztz[None, :, :] / variance[:, None, None]
    m = nested.shape[2]
    ztb = np.einsum("nq,snm->sqm", weighted, nested)
    weighted_nested = nested if precision is None else np.einsum("nk,skm->snm", precision, nested)
    inner = variance[:, None, None] * np.eye(m) + np.einsum("snm,snk->smk", nested, weighted_nested)
    correction = ztb @ np.linalg.solve(inner, np.swapaxes(ztb, 1, 2))
    return np.asarray((ztz[None] - correction) / variance[:, None, None])


def _level_precisions(fit: Any, design: Any, split: FactorSplit) -> list[np.ndarray] | None:
    """``Omega_j^-1`` of each level's rows under the fit's residual structure (None: independent).

    The random effects of a model with a residual structure are per residual group, so a
    level's rows are one group's and their block of ``Omega^-1`` is the inverse of theirs.
    """
    residual = getattr(design, "residual", None)
    if residual is None:
        return None
    kernel = getattr(fit, "kernel", None)
    if kernel is None or not hasattr(kernel, "residual_precision"):
        raise FitError(f"shrinkage() with residual={residual.describe()!r} needs the fitted "
                       "residual correlation, which only ML/REML fits carry so far.")
    precision = kernel.residual_precision(np.asarray(fit.theta, dtype=float))
    return [np.asarray(precision[rows][:, rows].todense()) for rows in split.rows]


def no_pooling(draws: FitDraws, group: str, precisions: list[np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-level least-squares estimates of the coefficients that vary by ``group``.

    The fixed part of the other fixed-effect columns is removed with the
    posterior mean (or point estimate) of beta; see the module docstring.

    Parameters
    ----------
    draws : FitDraws
        Parameter draws of a fit.
    group : str
        Grouping factor.
    precisions : list of numpy.ndarray, optional
        Per level, ``Omega_j^-1`` of its rows under a residual structure: the estimates are
        then generalised least squares, as the fit weights the rows.

    Returns
    -------
    estimate, se : numpy.ndarray
        Shape (n_levels, Q), NaN for levels where the columns are not
        identified. The SE is the sampling SD of the estimate under the
        fitted model (residual variance plus the variance of effects nested
        in the level), at the posterior mean (or point estimate) of
        sigma^2 and G.
    n : numpy.ndarray
        Rows per level, shape (n_levels,).
    """
    design = draws.design
    split = split_factor(design, group)
    columns, z, _ = _own_columns(draws, split)
    beta_bar = draws.beta.mean(axis=0)
    other = np.array([name not in columns for name in design.fixed_names])
    offset = np.asarray(design.X, dtype=float)[:, other] @ beta_bar[other]
    target = np.asarray(design.y, dtype=float) - offset
    variance = np.array([np.mean(draws.sigma**2)])
    roots = {k: covariance_root(draws.covariances[k].mean(axis=0, keepdims=True)) for k in split.nested}
    n_levels, q = len(split.levels), len(columns)
    estimate = np.full((n_levels, q), np.nan)
    se = np.full((n_levels, q), np.nan)
    for level, rows in enumerate(split.rows):
        z_level = z[rows]
        if rows.size < q or np.linalg.matrix_rank(z_level) < q:
            continue
        # least squares, generalised by Omega_j of a residual structure (as the fit weights rows)
        weighted = z_level if precisions is None else precisions[level] @ z_level
        information = z_level.T @ weighted
        estimate[level] = np.linalg.solve(information, weighted.T @ target[rows])
        inverse = np.linalg.inv(information)
        spread = variance[0] * information
        nested = _nested_loading(draws, split, rows, roots)
        if nested is not None:
            projected = weighted.T @ nested[0]
            spread = spread + projected @ projected.T
        se[level] = np.sqrt(np.diag(inverse @ spread @ inverse))
    counts = (design.level_counts(split.own[0]).astype(np.int64) if design.rowless
              else np.array([rows.size for rows in split.rows]))  # row-less: counted by the engine
    return estimate, se, counts


def _factor_draws(draws: FitDraws, split: FactorSplit,
                  precisions: list[np.ndarray] | None = None) -> np.ndarray:
    """Diagonal of ``Lambda_j = (G A_j + I)^-1 G A_j``, ``A_j = Z_j' V_j^-1 Z_j``, per draw: (S, J, Q)."""
    _, z, covariance = _own_columns(draws, split)
    variance = draws.sigma**2
    roots = {k: covariance_root(draws.covariances[k]) for k in split.nested}
    q = z.shape[1]
    out = np.empty((draws.n_draws, len(split.levels), q))
    for level, rows in enumerate(split.rows):
        information = _information(z[rows], _nested_loading(draws, split, rows, roots), variance,
                                   None if precisions is None else precisions[level])
        weighted = covariance @ information
        factor = np.linalg.solve(weighted + np.eye(q), weighted)
        out[:, level, :] = np.diagonal(factor, axis1=-2, axis2=-1)
    return out


def shrinkage(fit: object, group: str, complete: str = "fixed", prob: float | None = None) -> ShrinkageResult:
    """Compare no-pooling, partial-pooling and complete-pooling estimates per level.

    Parameters
    ----------
    fit : FitDraws or fit result
        Works on ML/REML fits (BLUPs) and Bayesian fits (posterior draws).
    group : str
        Grouping factor, e.g. ``"Subject"``.
    complete : {"fixed", "ols"}
        Complete-pooling estimate: the model's fixed effect or the pooled OLS
        of y on the fixed-effect columns (a pooled GLM for non-Gaussian fits).
    prob : float, optional
        Interval probability for Bayesian fits (ArviZ default when None).

    Returns
    -------
    ShrinkageResult
        ``table`` has columns group, level, coefficient, n, no_pooling,
        no_pooling_se, partial_pooling (estimate or posterior mean), for
        Bayesian fits partial_pooling_sd and the interval bounds,
        complete_pooling, shrinkage_factor (for Bayesian fits the posterior
        mean, with its interval bounds factor_lb, factor_ub) and pull.

    Raises
    ------
    ColumnNotFoundError
        If ``group`` is not a grouping factor of the model.
    InputTypeError
        If ``complete`` is not one of the two options.
    """
    if complete not in ("fixed", "ols"):
        raise InputTypeError(f"complete must be 'fixed' or 'ols', got {complete!r}.")
    draws = as_draws(fit)
    design = draws.design
    split = split_factor(design, group)
    columns, _, _ = _own_columns(draws, split)
    levels = list(split.levels)
    n_levels, q = len(levels), len(columns)

    glm = not draws.is_gaussian
    precisions = None
    if glm:
        _, own_z, own_covariance = _own_columns(draws, split)
        own, own_se = glm_no_pooling(draws, split, columns, own_z)
        counts = np.array([rows.size for rows in split.rows])
    else:
        precisions = _level_precisions(fit, design, split)
        own, own_se, counts = no_pooling(draws, group, precisions)
    fixed_index = [design.fixed_names.index(c) if c in design.fixed_names else -1 for c in columns]
    fixed_draws = np.column_stack([
        draws.beta[:, i] if i >= 0 else np.zeros(draws.n_draws) for i in fixed_index
    ])
    effects = np.concatenate([draws.effects[k] for k in split.own], axis=2)
    partial_draws = fixed_draws[:, None, :] + effects
    partial = partial_draws.mean(axis=0)
    if complete == "fixed":
        pooled = fixed_draws.mean(axis=0)
    else:
        ols = glm_pooled(draws) if glm else np.linalg.lstsq(
            np.asarray(design.X, dtype=float), np.asarray(design.y, dtype=float), rcond=None)[0]
        pooled = np.array([ols[i] if i >= 0 else 0.0 for i in fixed_index])
    factors = (glm_factor_draws(draws, split, own_z, own_covariance) if glm
               else _factor_draws(draws, split, precisions))
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = (partial - pooled) / (own - pooled)

    table = pd.DataFrame({
        "group": group,
        "level": np.repeat(levels, q),
        "coefficient": np.tile(columns, n_levels),
        "n": np.repeat(counts, q),
        "no_pooling": own.ravel(),
        "no_pooling_se": own_se.ravel(),
        "partial_pooling": partial.ravel(),
    })
    if not draws.point:
        spec = interval_spec(prob)
        flat = partial_draws.reshape(draws.n_draws, -1)
        lower, upper = spec.bounds(flat)
        table["partial_pooling_sd"] = flat.std(axis=0, ddof=1)
        table[spec.lower] = lower
        table[spec.upper] = upper
    table["complete_pooling"] = np.tile(pooled, n_levels)
    table["shrinkage_factor"] = factors.mean(axis=0).ravel()
    if not draws.point:
        factor_lower, factor_upper = interval_spec(prob).bounds(factors.reshape(draws.n_draws, -1))
        table["factor_lb"] = factor_lower
        table["factor_ub"] = factor_upper
    table["pull"] = pull.ravel()

    summary = pd.DataFrame({
        "levels": np.full(q, n_levels),
        "mean_factor": factors.mean(axis=0).mean(axis=0),
        "min_factor": factors.mean(axis=0).min(axis=0),
        "max_factor": factors.mean(axis=0).max(axis=0),
        "median_pull": np.nanmedian(np.where(np.isfinite(pull), pull, np.nan), axis=0),
        "sd_no_pooling": np.nanstd(own, axis=0, ddof=1),
        "sd_partial_pooling": partial.std(axis=0, ddof=1),
    }, index=pd.Index(columns, name="coefficient"))
    return ShrinkageResult(group=group, table=table, summary=summary, factor_draws=factors)
