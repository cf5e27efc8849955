"""Prediction of new visits under a residual structure: the BLUP of the residual.

For a subject ``g`` with observed rows ``O`` the marginal covariance is
``V = Z G Z' + sigma^2 M S M`` (:mod:`hierlm.design.residual`). A new visit ``n``
of the same subject is predicted by its conditional mean given ``y_O`` at the
estimates,

``y_n_hat = x_n' beta + V_nO V_OO^-1 (y_O - X_O beta)``
``        = x_n' beta + z_n' b + Omega_nO Omega_OO^-1 e_O``

(``b`` the conditional modes, ``e_O = y_O - X_O beta - Z_O b`` the conditional
residuals: the kriging of the residual, ``E[e_n | e_O]``). With
``c_n = x_n - X_O' V_OO^-1 V_On`` the error of the plug-in predictor has variance

* ``c_n' Var(beta) c_n`` for ``kind="mean"`` (the conditional mean's estimation part);
* ``V_nn - V_nO V_OO^-1 V_On + c_n' Var(beta) c_n`` for ``kind="response"`` (a new
  observation; exact for the GLS ``beta``, whose error is uncorrelated with the
  conditional one), the variance parameters taken as known, as in every plug-in
  interval.

Rows at a visit the subject was observed at are that fitted visit: they keep the
prediction of :func:`hierlm.results.prediction.predict` (``x' beta + z' b`` and its
PEV; with ``cs(group)``, which has no times, every row of a known subject is a new
visit). Rows of subjects the fit never saw get the population prediction ``x_n' beta`` with
``x_n' Var(beta) x_n`` (``kind="mean"``; plus ``z_n' G z_n`` when their effects vary,
``new_levels="sample"``) and ``+ sigma^2 Omega_nn`` for ``kind="response"``. The
structure places the new times (:meth:`~hierlm.design.residual.base.ResidualStructure.covariance_at`):
``car1`` any time, ``ar1`` any integer time, ``toep`` lags it estimated, the
structures with a parameter per time only the times they were fitted at; it
names a time it cannot place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import DataError
from hierlm.results.tables import point_table

__all__ = ["VisitParameters", "VisitConditional", "VisitRows", "visit_rows",
           "visit_conditional", "engine_visit_parameters", "visit_parameters_of",
           "row_residual_variance", "predict_visits", "visit_table"]


def _codes_of(values: pd.Series, labels: tuple[str, ...], column: str, what: str) -> np.ndarray:
    index = {label: k for k, label in enumerate(labels)}
    out = np.full(len(values), -1, dtype=np.int64)
    for row, value in enumerate(values.astype(str)):
        if value in index:
            out[row] = index[value]
        elif what == "variance":
            raise DataError(f"New data has {column}={value!r}, a level of variance={column!r} "
                            f"the fit never saw ({', '.join(labels)}); its residual SD is unknown.")
    return out


@dataclass(frozen=True, eq=False)
class VisitParameters:
    """The parameters a new-visit prediction is evaluated at (one fit, or one posterior draw).

    Attributes
    ----------
    beta : numpy.ndarray
        Fixed effects.
    sigma2 : float
        Residual variance.
    struct : numpy.ndarray
        The residual structure's parameters on the ML/REML engine's scale.
    ratios : numpy.ndarray
        The ``variance=`` log SD ratios (empty without ``variance=``).
    covariances : list of numpy.ndarray
        ``G_b`` of each random-effect block.
    """

    beta: np.ndarray
    sigma2: float
    struct: np.ndarray
    ratios: np.ndarray
    covariances: list[np.ndarray]


@dataclass(frozen=True, eq=False)
class VisitConditional:
    """The conditional Gaussian of the new rows at one set of parameters.

    Attributes
    ----------
    estimate : numpy.ndarray
        ``x_n' beta + V_nO V_OO^-1 (y_O - X_O beta)`` (known subjects), ``x_n' beta``
        (unseen ones, or ``include_random=False``), per new row.
    c : numpy.ndarray
        ``(n, p)``: the rows of ``x_n - X_O' V_OO^-1 V_On``, the estimate's
        sensitivity to beta (its variance ``c' Var(beta) c``).
    sets : list of numpy.ndarray
        Rows predicted together (one known subject's new visits, one unseen row).
    random_cov : list of numpy.ndarray
        Per set, the covariance of unseen subjects' group effects ``Z G Z'``
        (``new_levels="sample"``), zeros otherwise: part of ``kind="mean"``.
    residual_cov : list of numpy.ndarray
        Per set, the conditional residual covariance
        ``V_nn - V_nO V_OO^-1 V_On`` (known subjects) or ``sigma^2 M Omega M``:
        added for ``kind="response"``.
    observed_visit : numpy.ndarray
        Rows at a visit their subject was observed at (they keep the fitted
        visit's prediction).
    """

    estimate: np.ndarray
    c: np.ndarray
    sets: list[np.ndarray]
    random_cov: list[np.ndarray]
    residual_cov: list[np.ndarray]
    observed_visit: np.ndarray


@dataclass(frozen=True, eq=False)
class VisitRows:
    """What the new rows are: their design, subject, time and ``variance=`` level.

    Built once by :func:`visit_rows` and evaluated at any parameters by
    :func:`visit_conditional`.
    """

    residual: Any
    fitted: Any
    design: Any
    groups: np.ndarray
    times: np.ndarray
    variance_codes: np.ndarray | None


def visit_rows(residual: Any, fitted_design: Any, new_data: pd.DataFrame, design: Any) -> VisitRows:
    """The new rows' subjects, times and ``variance=`` levels (see :func:`predict_visits`).

    Raises
    ------
    DataError
        For a missing time or group column, or an unseen level of ``variance=``.
    """
    spec = residual.spec
    columns = [c for c in (spec.time, spec.group, residual.variance_column) if c]
    if spec.name == "independent" and spec.group == "row":
        columns = [c for c in columns if c != "row"]
    missing = [c for c in columns if c not in new_data.columns]
    if missing:
        raise DataError(f"predict(new_data) with residual={residual.describe()!r} needs the "
                        f"column(s) {', '.join(map(repr, missing))} in new_data.")
    n_new = len(new_data)
    if spec.group == "row" or spec.name == "independent" and spec.time is None:
        groups_new = np.full(n_new, -1, dtype=np.int64)  # variance= alone: rows are independent
    else:
        groups_new = _codes_of(new_data[spec.group], residual.group_labels, spec.group, "group")
    if spec.time is not None:
        times_new = new_data[spec.time].to_numpy(dtype=float)
    else:
        times_new = np.zeros(n_new)  # cs(group): the position does not matter
    codes = None
    if residual.variance_function is not None:
        codes = _codes_of(new_data[residual.variance_column], residual.variance_labels,
                          residual.variance_column, "variance")
    return VisitRows(residual, fitted_design, design, groups_new, times_new, codes)


def visit_conditional(rows: VisitRows, params: VisitParameters, include_random: bool = True,
                      new_levels: str = "sample") -> VisitConditional:
    """The new rows' conditional Gaussian given the subjects' observed visits, at ``params``.

    The one definition of the new-visit predictor: ML/REML fits evaluate it at
    their estimates, Bayesian fits at every posterior draw.

    Raises
    ------
    DataError
        For a time the structure cannot place.
    """
    residual, fitted, design = rows.residual, rows.fitted, rows.design
    structure = residual.structure
    struct, beta, sigma2 = params.struct, np.asarray(params.beta, dtype=float), params.sigma2
    x_new = np.asarray(design.X, dtype=float)
    x_old = np.asarray(fitted.X, dtype=float)
    y_old = np.asarray(fitted.y, dtype=float)
    groups_new, times_new = rows.groups, rows.times
    n_new = groups_new.size
    function = residual.variance_function
    sd_new = np.ones(n_new)
    sd_old = np.ones(fitted.n)
    if function is not None:
        sd_new = function.multipliers(params.ratios, rows.variance_codes)
        sd_old = function.multipliers(params.ratios, residual.variance_codes)
    blocks_new, blocks_old = design.blocks, fitted.blocks

    def random_part(rows_a: np.ndarray, rows_b: np.ndarray, new_a: bool, new_b: bool) -> np.ndarray:
        out = np.zeros((rows_a.size, rows_b.size))
        for block_n, block_o, cov in zip(blocks_new, blocks_old, params.covariances, strict=True):
            za = np.asarray((block_n if new_a else block_o).z, dtype=float)[rows_a]
            zb = np.asarray((block_n if new_b else block_o).z, dtype=float)[rows_b]
            out += za @ cov @ zb.T
        return out

    estimate = x_new @ beta
    c = x_new.copy()
    sets, random_cov, residual_cov = [], [], []
    observed_visit = np.zeros(n_new, dtype=bool)
    for row_set in _subjects(groups_new):
        g = int(groups_new[row_set[0]])
        t_n = times_new[row_set]
        if g < 0 or not include_random:
            cov_nn = sigma2 * np.outer(sd_new[row_set], sd_new[row_set]) \
                * structure.covariance_at(struct, t_n)
            sample = g < 0 and include_random and new_levels == "sample"
            sets.append(row_set)
            random_cov.append(random_part(row_set, row_set, True, True) if sample
                              else np.zeros((row_set.size, row_set.size)))
            residual_cov.append(cov_nn)
            continue
        observed = np.flatnonzero(residual.group_codes == g)
        t_o = residual.times[observed]
        # cs(group) has no times: every row of a known subject is a new visit
        seen = (np.zeros(t_n.size, dtype=bool) if residual.spec.time is None
                else np.isclose(t_n[:, None], t_o[None, :], rtol=0.0, atol=1e-9).any(axis=1))
        observed_visit[row_set[seen]] = True
        if seen.all():
            continue
        row_set, t_n = row_set[~seen], t_n[~seen]
        sd = np.concatenate([sd_old[observed], sd_new[row_set]])
        omega = np.outer(sd, sd) * structure.covariance_at(struct, np.concatenate([t_o, t_n]))
        m = observed.size
        v = sigma2 * omega
        v[:m, :m] += random_part(observed, observed, False, False)
        v[m:, :m] += random_part(row_set, observed, True, False)
        v[:m, m:] = v[m:, :m].T
        v[m:, m:] += random_part(row_set, row_set, True, True)
        weights = np.linalg.solve(v[:m, :m], v[:m, m:])  # V_OO^-1 V_On
        estimate[row_set] += weights.T @ (y_old[observed] - x_old[observed] @ beta)
        c[row_set] = x_new[row_set] - weights.T @ x_old[observed]
        conditional = v[m:, m:] - v[m:, :m] @ weights
        sets.append(row_set)
        random_cov.append(np.zeros((row_set.size, row_set.size)))
        residual_cov.append(0.5 * (conditional + conditional.T))
    return VisitConditional(estimate, c, sets, random_cov, residual_cov, observed_visit)


def engine_visit_parameters(fit: Any) -> VisitParameters:
    """An ML/REML fit's estimates as :class:`VisitParameters`."""
    residual = fit.design.residual
    theta = np.asarray(fit.theta, dtype=float)
    params = theta[len(theta) - residual.n_params:]
    n_struct = residual.structure.n_params
    return VisitParameters(np.asarray(fit.solution.beta, dtype=float), float(fit.sigma) ** 2,
                           params[:n_struct], params[n_struct:], list(fit.covariances()))


def visit_parameters_of(fit: Any) -> VisitParameters:
    """A point fit's estimates as :class:`VisitParameters` (MAP fits carry their own map)."""
    own = getattr(fit, "_visit_parameters", None)
    return own() if callable(own) else engine_visit_parameters(fit)


def row_residual_variance(residual: Any, params: VisitParameters, times: np.ndarray | None = None,
                          variance_codes: np.ndarray | None = None) -> np.ndarray:
    """Each row's own residual variance ``sigma^2 m_i^2 S_(t_i, t_i)`` (the diagonal of ``sigma^2 M S M``).

    Parameters
    ----------
    residual : ResidualDesign
        The fit's residual structure.
    params : VisitParameters
        The parameters (a point fit's estimates).
    times, variance_codes : numpy.ndarray, optional
        Rows' times and ``variance=`` levels; None: the fitted rows' (their slots).

    Returns
    -------
    numpy.ndarray
        One variance per row: ``sigma^2`` only for homogeneous structures
        without ``variance=``; otherwise the variance at the row's time and level.
    """
    structure = residual.structure
    if times is None:
        diagonal = np.diag(structure.over_times(np.asarray(params.struct, dtype=float))[0])
        scale = diagonal[np.asarray(residual.slots, dtype=np.int64)]
        codes = residual.variance_codes
    else:
        times = np.asarray(times, dtype=float)
        distinct, where = np.unique(times, return_inverse=True)
        scale = np.diag(structure.covariance_at(params.struct, distinct))[where]
        codes = variance_codes
    if residual.variance_function is not None and codes is not None:
        scale = scale * residual.variance_function.multipliers(params.ratios, codes) ** 2
    return float(params.sigma2) * np.asarray(scale, dtype=float)


def predict_visits(fit: Any, new_data: pd.DataFrame, design: Any, base: pd.DataFrame,
                   include_random: bool = True, kind: str = "mean", prob: float | None = None,
                   new_levels: str = "sample") -> pd.DataFrame:
    """Predict ``new_data`` rows of an ML/REML fit with a residual structure (see module docstring).

    Parameters
    ----------
    fit : LmmResult
        An ML/REML fit with ``residual=`` (or ``variance=``).
    new_data : pandas.DataFrame
        The rows to predict, with the structure's time and group columns.
    design : Design
        ``fit.model.new_design(new_data)``.
    base : pandas.DataFrame
        The prediction without the residual correlation (:func:`hierlm.results.prediction.predict`):
        rows at a visit the subject was observed at keep it (the fitted visit's
        ``x' beta + z' b`` and its PEV).
    include_random : bool
        Condition on the subject's observed visits (True) or predict ``x' beta`` (False).
    kind : {"mean", "response"}
        The conditional mean or a new observation.
    prob : float, optional
        Interval probability.
    new_levels : {"sample", "population"}
        Unseen subjects: their random effects vary in the standard error, or not.

    Returns
    -------
    pandas.DataFrame
        ``estimate``, ``std_error`` and the normal interval, indexed as ``new_data``.

    Raises
    ------
    DataError
        For a missing time or group column, a time the structure cannot place, or an
        unseen level of ``variance=``.
    """
    rows = visit_rows(fit.design.residual, fit.design, new_data, design)
    return visit_table(rows, visit_parameters_of(fit), np.asarray(fit.vcov().to_numpy(), dtype=float),
                       base, include_random, kind, prob, new_levels)


def visit_table(rows: VisitRows, params: VisitParameters, vcov_beta: np.ndarray, base: pd.DataFrame,
                include_random: bool = True, kind: str = "mean", prob: float | None = None,
                new_levels: str = "sample") -> pd.DataFrame:
    """The plug-in prediction table of a point fit at ``params`` (see :func:`predict_visits`)."""
    got = visit_conditional(rows, params, include_random, new_levels)
    variance = np.einsum("np,pq,nq->n", got.c, vcov_beta, got.c)
    for row_set, random_cov, residual_cov in zip(got.sets, got.random_cov, got.residual_cov,
                                                 strict=True):
        variance[row_set] += np.diag(random_cov)
        if kind == "response":
            variance[row_set] += np.diag(residual_cov)
    table = point_table(got.estimate, np.sqrt(np.maximum(variance, 0.0)), prob)
    table.index = base.index
    observed_visit = got.observed_visit
    table.loc[observed_visit] = base.loc[observed_visit, table.columns].to_numpy()
    if kind == "response" and observed_visit.any():  # the visit's own residual variance, not sigma^2
        at = np.flatnonzero(observed_visit)
        codes = None if rows.variance_codes is None else rows.variance_codes[at]
        own = row_residual_variance(rows.residual, params, rows.times[at], codes)
        mean_part = np.maximum(base["std_error"].to_numpy()[at] ** 2 - params.sigma2, 0.0)
        fixed = point_table(base["estimate"].to_numpy()[at], np.sqrt(mean_part + own), prob)
        table.iloc[at, [table.columns.get_loc(c) for c in fixed.columns]] = fixed.to_numpy()
    table.attrs["std_error"] = ("plug-in conditional (kriging) variance given the subject's "
                                "observed visits; see hierlm.results.new_visits")
    return table


def _subjects(groups: np.ndarray) -> list[np.ndarray]:
    """Rows of each known group together; every row of an unseen group on its own."""
    out = [np.flatnonzero(groups == g) for g in np.unique(groups[groups >= 0])]
    return out + [np.array([row]) for row in np.flatnonzero(groups < 0)]
