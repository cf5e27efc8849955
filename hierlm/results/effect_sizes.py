"""Effect sizes of mixed models by model comparison, and variance proportions.

Following the lecture notes' section 8 ("Effect sizes in mixed models"), for
a *full* and a *reduced* fit that differ only in their fixed part (same rows,
same random part):

``r2_full``, ``r2_reduced``
    Marginal R² of Nakagawa & Schielzeth (2013) of each model
    (:func:`hierlm.results.explained.nakagawa_r2_draws`).
``f2``
    Cohen's local effect size of the added predictors,
    ``f² = (R²_full - R²_reduced) / (1 - R²_full)`` (Selya et al. 2012).
``rel_change[<component>]``
    For every variance component, the residual included:
    ``(tau²_reduced - tau²_full) / tau²_reduced``, the share of that variance
    "explained" by the added predictors (negative when it grows).
``d_tau[<component>]``
    Standardised change of an SD, ``(tau_full - tau_reduced) / sigma_ref``,
    with ``sigma_ref`` the reduced model's residual SD by default
    (``sigma_ref="full"``: the full model's; ``"total"``: the reduced model's
    total SD ``sqrt(sum tau² + sigma²)``; or a number).
``share_full[<component>]``, ``share_reduced[<component>]``
    The variance proportions of each model, ``tau²_c / (sum_m tau²_m + sigma²)``
    (intercept, slope and residual shares; :func:`variance_shares`).

Components are named after lme4's bars: the grouping factor for a random
intercept (``Subject``), ``term|group`` for a random slope (``age|Subject``),
and ``Residual``. A slope variance is per unit of its covariate squared, so
its share depends on the covariate's scale (the notes' definition; the
design-averaged alternative is :func:`hierlm.results.icc`).

Every quantity is computed per draw: ML/REML fits give the plug-in estimate
(column ``estimate``; ``n_boot=`` adds parametric-bootstrap standard errors
and percentile intervals, simulating from the full fit and refitting both
models to each simulated response), Bayesian fits pair the i-th draws of the
two posteriors and give posterior mean, SD and equal-tailed interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.blocks import Design
from hierlm.errors import FitError, HierlmWarning, IncompatibleFitsError, InputTypeError
from hierlm.results.common import as_draws
from hierlm.results.draws import FitDraws
from hierlm.results.explained import nakagawa_r2_draws
from hierlm.results.structures import require_single_residual_variance
from hierlm.results.summary import interval_spec

__all__ = ["component_labels", "component_variances", "variance_shares", "effect_sizes",
           "check_comparable"]


def component_labels(design: Design) -> list[str]:
    """Names of the variance components: ``group`` (intercepts), ``term|group`` (slopes), ``Residual``."""
    labels = []
    for label, block in zip(design.block_labels(), design.blocks, strict=True):
        labels += [label if term == "Intercept" else f"{term}|{label}" for term in block.columns]
    return labels + ["Residual"]


def component_variances(draws: FitDraws) -> np.ndarray:
    """Variance of each component per draw, ``(S, m)``: the diagonals of every G, then sigma²."""
    columns = [np.diagonal(cov, axis1=1, axis2=2) for cov in draws.covariances]
    return np.column_stack(columns + [draws.sigma[:, None] ** 2])


def _summary(values: np.ndarray, point: bool, chains: int, prob: float | None,
             index: list[str], name: str) -> pd.DataFrame:
    """``estimate`` (point) or posterior mean, SD and equal-tailed interval per column of (S, k)."""
    if point:
        table = pd.DataFrame({"estimate": values[0]}, index=pd.Index(index, name=name))
    else:
        spec = interval_spec(prob, "eti")
        lower, upper = spec.bounds(values)
        table = pd.DataFrame({"estimate": values.mean(axis=0), "std_error": values.std(axis=0, ddof=1),
                              "lower": lower, "upper": upper}, index=pd.Index(index, name=name))
        table.attrs["prob"] = spec.prob
        table.attrs["chains"] = chains
    return table


def variance_shares(fit: Any, prob: float | None = None) -> pd.DataFrame:
    """Each variance component's share of the total variance, as in the notes' section 8.2.

    ``share_c = tau²_c / (sum_m tau²_m + sigma²)`` over the random intercept
    and slope variances of every block and the residual variance (a random
    intercept model's intercept share is its ICC).

    Parameters
    ----------
    fit : fit result or FitDraws
        Any hierlm fit.
    prob : float, optional
        Interval probability of posterior summaries.

    Returns
    -------
    pandas.DataFrame
        Indexed by component; ``estimate`` (the share; posterior fits also
        ``std_error``, ``lower``, ``upper``), then ``variance`` (the estimate
        or posterior mean of tau²).
    """
    require_single_residual_variance(fit, "Variance shares")
    draws = as_draws(fit)
    variances = component_variances(draws)
    shares = variances / variances.sum(axis=1, keepdims=True)
    table = _summary(shares, draws.point, draws.n_chains, prob, component_labels(draws.design),
                     "component")
    table["variance"] = variances.mean(axis=0)
    return table


def _first_difference(full: Design, reduced: Design) -> str | None:
    """Why the random parts differ, or None."""
    if len(full.blocks) != len(reduced.blocks):
        return f"{len(full.blocks)} random-effect blocks against {len(reduced.blocks)}"
    for a, b in zip(full.blocks, reduced.blocks, strict=True):
        if a.group != b.group or tuple(a.columns) != tuple(b.columns):
            return f"({' + '.join(a.columns)} | {a.group}) against ({' + '.join(b.columns)} | {b.group})"
        if a.correlated != b.correlated:
            return f"the block of {a.group} is correlated in one fit only"
        if tuple(a.levels) != tuple(b.levels) or not np.array_equal(a.codes, b.codes):
            return f"the levels of {a.group} differ"
        if not np.allclose(a.z, b.z):
            return f"the columns {list(a.columns)} of {a.group} take different values"
    return None


def check_comparable(full: Any, reduced: Any) -> tuple[FitDraws, FitDraws]:
    """The two fits' draws, after checking that they differ in their fixed part only.

    Raises
    ------
    FitError
        For a fit whose residual variance is not one number (heterogeneous
        residual structures, ``variance=``).
    IncompatibleFitsError
        For fits of different kinds or methods, on different rows, with
        different random parts, with the same fixed part, or with the full
        model having fewer fixed effects than the reduced one.
    """
    for fit in (full, reduced):
        require_single_residual_variance(fit, "Effect sizes")
    a, b = as_draws(full), as_draws(reduced)
    method_a, method_b = getattr(full, "method", None), getattr(reduced, "method", None)
    if a.point != b.point or method_a != method_b:
        raise IncompatibleFitsError(f"The full fit is {method_a!r} and the reduced fit {method_b!r}; "
                                    "fit both models by the same method.")
    da, db = a.design, b.design
    same_rows = da.n == db.n and np.array_equal(np.asarray(da.y), np.asarray(db.y)) and (
        da.row_index is None or db.row_index is None
        or np.array_equal(np.asarray(da.row_index), np.asarray(db.row_index)))
    if not same_rows:
        raise IncompatibleFitsError(f"The fits were made on different data (rows differ: {da.n} rows of "
                                    f"{da.response!r} against {db.n} of {db.response!r}); fit both "
                                    "models to the same rows.")
    why = _first_difference(da, db)
    if why is not None:
        raise IncompatibleFitsError(f"The fits have different random parts ({why}); effect sizes of "
                                    "fixed effects compare models that share their random part.")
    if tuple(da.fixed_names) == tuple(db.fixed_names) and np.allclose(da.X, db.X):
        raise IncompatibleFitsError("The two fits have the same fixed part; drop the predictor of "
                                    "interest from the reduced model.")
    if da.p < db.p:
        raise IncompatibleFitsError(f"The full fit has {da.p} fixed effects and the reduced fit {db.p}; "
                                    "pass the larger model first: effect_sizes(full, reduced).")
    return a, b


def _sigma_ref(choice: str | float, full: FitDraws, reduced: FitDraws,
               var_reduced: np.ndarray) -> np.ndarray:
    if isinstance(choice, str):
        if choice == "reduced":
            return reduced.sigma
        if choice == "full":
            return full.sigma
        if choice == "total":
            return np.sqrt(var_reduced.sum(axis=1))
        raise InputTypeError(f"sigma_ref={choice!r}: choose 'reduced', 'full', 'total' or a number.")
    if isinstance(choice, bool) or not isinstance(choice, (int, float, np.number)) or not choice > 0:
        raise InputTypeError(f"sigma_ref must be 'reduced', 'full', 'total' or a positive number, "
                             f"not {choice!r}.")
    return np.full(reduced.sigma.shape, float(choice))


def _quantities(full: FitDraws, reduced: FitDraws, sigma_ref: str | float) -> dict[str, np.ndarray]:
    """Every effect size per (paired) draw."""
    labels = component_labels(full.design)
    r2_full, _ = nakagawa_r2_draws(full)
    r2_reduced, _ = nakagawa_r2_draws(reduced)
    var_full, var_reduced = component_variances(full), component_variances(reduced)
    out = {"r2_full": r2_full, "r2_reduced": r2_reduced,
           "f2": (r2_full - r2_reduced) / (1.0 - r2_full)}
    with np.errstate(divide="ignore", invalid="ignore"):
        for c, label in enumerate(labels):
            out[f"rel_change[{label}]"] = (var_reduced[:, c] - var_full[:, c]) / var_reduced[:, c]
        ref = _sigma_ref(sigma_ref, full, reduced, var_reduced)
        for c, label in enumerate(labels[:-1]):
            out[f"d_tau[{label}]"] = (np.sqrt(var_full[:, c]) - np.sqrt(var_reduced[:, c])) / ref
    for name, variances in (("full", var_full), ("reduced", var_reduced)):
        shares = variances / variances.sum(axis=1, keepdims=True)
        for c, label in enumerate(labels):
            out[f"share_{name}[{label}]"] = shares[:, c]
    return out


def _paired(full: FitDraws, reduced: FitDraws) -> tuple[FitDraws, FitDraws, int]:
    """Both posteriors cut to the same number of draws (the first S of each), and their chains."""
    size = min(full.n_draws, reduced.n_draws)
    if full.n_draws == reduced.n_draws:
        return full, reduced, full.n_chains if full.n_chains == reduced.n_chains else 1

    def cut(d: FitDraws) -> FitDraws:
        return FitDraws(beta=d.beta[:size], sigma=d.sigma[:size],
                        covariances=tuple(c[:size] for c in d.covariances),
                        effects=tuple(e[:size] for e in d.effects), design=d.design, point=False)

    return cut(full), cut(reduced), 1


def _simulate(fit: Any, rng: np.random.Generator) -> np.ndarray:
    """A response drawn from an ML/REML fit: new group effects and residuals."""
    design = fit.design
    y = np.asarray(design.X, dtype=float) @ np.asarray(fit.beta, dtype=float)
    for block, cov in zip(design.blocks, fit.covariances(), strict=True):
        values, vectors = np.linalg.eigh(cov)
        effects = rng.standard_normal((block.n_levels, block.q)) @ (vectors * np.sqrt(
            np.clip(values, 0.0, None))).T
        y = y + np.sum(np.asarray(block.z, dtype=float) * effects[np.asarray(block.codes)], axis=1)
    return y + fit.sigma * rng.standard_normal(design.n)


def _bootstrap(full: Any, reduced: Any, n_boot: int, seed: int | None,
               compute: Callable[[FitDraws, FitDraws], dict[str, np.ndarray]]) -> pd.DataFrame:
    """Replicates of the quantities: simulate from ``full``, refit both models."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise InputTypeError(f"n_boot must be an integer of at least 2, got {n_boot!r}.")
    if not (hasattr(full, "refit") and hasattr(reduced, "refit")):
        raise FitError("n_boot= bootstraps ML/REML fits; Bayesian fits have posterior intervals already.")
    rng = np.random.default_rng(seed)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        for _ in range(int(n_boot)):
            y = _simulate(full, rng)
            a = full.refit(newresp=y, start=full.theta, warn=False)
            b = reduced.refit(newresp=y, start=reduced.theta, warn=False)
            rows.append({k: float(v[0]) for k, v in compute(a.draws(), b.draws()).items()})
    return pd.DataFrame(rows)


def effect_sizes(full: Any, reduced: Any, sigma_ref: str | float = "reduced",
                 n_boot: int | None = None, random_seed: int | None = None,
                 prob: float | None = None) -> pd.DataFrame:
    """Effect sizes of the fixed effects that ``full`` adds to ``reduced`` (module docstring).

    Parameters
    ----------
    full, reduced : fit result
        Two fits by the same method, on the same rows, with the same random
        part, ``full`` having the larger fixed part.
    sigma_ref : {"reduced", "full", "total"} or float
        Reference SD of ``d_tau``.
    n_boot : int, optional
        ML/REML fits: parametric-bootstrap replicates for standard errors and
        percentile intervals (each replicate refits both models).
    random_seed : int, optional
        Seed of the bootstrap.
    prob : float, optional
        Interval probability (``hierlm.DEFAULT_PROB`` when None).

    Returns
    -------
    pandas.DataFrame
        One row per quantity (index ``quantity``): ML/REML ``estimate`` (with
        ``n_boot``: also ``std_error``, ``lower``, ``upper``), Bayesian fits
        ``estimate`` (posterior mean), ``std_error`` (posterior SD), ``lower``,
        ``upper``.

    Raises
    ------
    IncompatibleFitsError
        When the two fits are not a full and a reduced model of the same data
        and random part (the message says which condition fails).
    """
    draws_full, draws_reduced = check_comparable(full, reduced)
    _sigma_ref(sigma_ref, draws_full, draws_reduced, component_variances(draws_reduced))  # validate

    def compute(a: FitDraws, b: FitDraws) -> dict[str, np.ndarray]:
        return _quantities(a, b, sigma_ref)

    if draws_full.point:
        values = compute(draws_full, draws_reduced)
        table = pd.DataFrame({"estimate": [float(v[0]) for v in values.values()]},
                             index=pd.Index(list(values), name="quantity"))
        if n_boot is not None:
            spec = interval_spec(prob, "eti")
            reps = _bootstrap(full, reduced, n_boot, random_seed, compute)
            tail = (1.0 - spec.prob) / 2.0
            table["std_error"] = reps.std(ddof=1)
            table["lower"] = reps.quantile(tail)
            table["upper"] = reps.quantile(1.0 - tail)
            table.attrs.update(prob=spec.prob, n_boot=int(n_boot))
        return table
    if n_boot is not None:
        raise FitError("n_boot= bootstraps ML/REML fits; Bayesian fits have posterior intervals already.")
    paired_full, paired_reduced, chains = _paired(draws_full, draws_reduced)
    values = compute(paired_full, paired_reduced)
    return _summary(np.column_stack(list(values.values())), False, chains, prob, list(values),
                    "quantity")
