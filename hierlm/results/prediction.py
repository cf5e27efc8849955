"""Predictions from a fit: the mean of the response, or new responses.

For draw s and row i the mean is ``mu_i^s = x_i' beta^s + sum_k z_ki' b_k^s[level]``
(``include_random=False`` drops the group effects: the population-level
prediction). ``kind="response"`` adds residual noise ``e ~ N(0, sigma_s^2)``,
giving draws of the posterior predictive distribution.

Rows whose grouping level the model never saw (code -1 in a design from
``Model.new_design``):

* Bayesian fits draw the new level's effects from the population,
  ``b_new^s ~ N(0, G^s)``, one draw per new level and posterior draw (seeded),
  so the prediction carries the between-group spread. Rows of the same new
  level share the draw when ``new_level_labels`` says which rows belong
  together; otherwise every such row is its own new level (the per-row
  summaries are the same either way, only the joint draws differ).
  ``new_levels="population"`` uses ``b = 0`` instead.
* Point fits (ML/REML/MAP) predict at ``b = 0``, the population prediction.

Point fits' standard error is ``sqrt(PEV_i + v_i (+ sigma_i^2 for kind="response"))``
(``sigma_i^2 = sigma^2``; with ``residual=`` the fitted row's own residual variance,
its time's and ``variance=`` level's, :func:`hierlm.results.new_visits.row_residual_variance`):
``PEV_i`` the prediction error variance of ``x_i' beta-hat + z_i' b-hat``
from the mixed-model equations at the estimates (Henderson's; it includes
the covariance between beta-hat and the conditional modes; see
:mod:`hierlm.results.uncertainty`), ``v_i = sum_k z_ki' G_k z_ki`` over the
blocks whose level is new (with ``new_levels="sample"``), and the interval is
normal, ``mu_i +- z * se``. The uncertainty of G and sigma themselves is
ignored, as in every plug-in interval. ``attrs["std_error"]`` says how the
estimation part was computed. A bare
:class:`~hierlm.results.draws.FitDraws` of a point fit carries no ``V_beta``
or ``C_k``: its ``kind="mean"`` standard error is NaN and its
``kind="response"`` interval the plug-in ``sqrt(sigma^2 + v_i)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hierlm.design.blocks import Design
from hierlm.errors import DataError, InputTypeError
from hierlm.results.common import as_draws, row_random_variance
from hierlm.results.draws import FitDraws
from hierlm.results.grouped import covariance_root
from hierlm.results.tables import point_table, posterior_table
from hierlm.results.uncertainty import target_z

__all__ = ["predict", "predictive_draws"]


def _check_compatible(draws: FitDraws, design: Design) -> None:
    """Raise DataError unless ``design`` was built with the fit's spec."""
    fitted = draws.design
    if tuple(design.fixed_names) != tuple(fitted.fixed_names):
        raise DataError(
            f"The new design has fixed-effect columns {list(design.fixed_names)}, the fit "
            f"{list(fitted.fixed_names)}; build it with model.new_design(new_data)."
        )
    same_blocks = len(design.blocks) == len(fitted.blocks) and all(
        a.group == b.group and a.columns == b.columns and a.levels == b.levels
        for a, b in zip(design.blocks, fitted.blocks, strict=False)
    )
    if not same_blocks:
        raise DataError(
            "The new design's random-effect blocks (groups, columns or levels) differ from the "
            "fit's; build it with model.new_design(new_data)."
        )


def _new_level_ids(codes: np.ndarray, labels: Sequence[object] | None, group: str) -> np.ndarray:
    """Index of the new level of each unknown row (-1 for known rows)."""
    unknown = codes < 0
    ids = np.full(codes.size, -1)
    if labels is None:
        ids[unknown] = np.arange(int(unknown.sum()))
        return ids
    values = np.asarray(labels, dtype=object)
    if values.shape != codes.shape:
        raise InputTypeError(
            f"new_level_labels[{group!r}] has {values.size} entries; the new data has {codes.size} rows."
        )
    _, inverse = np.unique(values[unknown].astype(str), return_inverse=True)
    ids[unknown] = inverse
    return ids


def predictive_draws(
    fit: object,
    design: Design | None = None,
    include_random: bool = True,
    kind: str = "mean",
    new_levels: str = "sample",
    new_level_labels: Mapping[str, Sequence[object]] | None = None,
    seed: int | np.random.Generator | None = None,
    scale: str = "response",
) -> np.ndarray:
    """Draws of the predicted mean or of new responses, shape (S, n).

    Parameters
    ----------
    fit : FitDraws or fit result
        A hierlm fit or its draws.
    design : Design, optional
        Rows to predict (``model.new_design(new_data)``); the fit's own rows when None.
    include_random : bool
        Add the group effects (True) or predict at the population level.
    kind : {"mean", "response"}
        The mean ``mu``, or ``mu`` plus residual noise (posterior predictive).
    new_levels : {"sample", "population"}
        For rows of unseen levels: draw their effects from N(0, G) (Bayesian
        fits only) or use 0.
    new_level_labels : dict, optional
        Grouping factor -> label of each row, so rows of one new level share
        their effect draw.
    seed : int or numpy.random.Generator, optional
        Seed of the random draws (new levels, residual noise).
    scale : {"response", "link"}
        Non-Gaussian families: the mean on the response scale (the inverse
        link of the linear predictor, per draw) or the linear predictor
        itself. The offset of the rows is part of the linear predictor.

    Returns
    -------
    numpy.ndarray
        Shape (S, n). For point fits with ``kind="response"`` this is the
        mean (S = 1); use :func:`predict` for the plug-in interval.

    Raises
    ------
    InputTypeError
        If ``kind`` or ``new_levels`` is unknown.
    DataError
        If ``design`` was not built with the fit's spec.
    """
    if kind not in ("mean", "response"):
        raise InputTypeError(f"kind must be 'mean' or 'response', got {kind!r}.")
    if new_levels not in ("sample", "population"):
        raise InputTypeError(f"new_levels must be 'sample' or 'population', got {new_levels!r}.")
    if scale not in ("response", "link"):
        raise InputTypeError(f"type must be 'response' or 'link', got {scale!r}.")
    draws = as_draws(fit)
    if kind == "response" and not draws.is_gaussian:
        raise InputTypeError(
            "kind='response' (new observations) is defined for Gaussian models here; for other "
            "families the posterior predictive draws are in fit.idata['posterior_predictive'].")
    target = draws.design if design is None else design
    if design is not None:
        _check_compatible(draws, target)
    rng = np.random.default_rng(seed)
    mean = draws.linear_predictor(target, include_random=include_random)
    if draws.point:
        return _to_scale(draws, mean, scale)
    labels = dict(new_level_labels or {})
    if include_random and new_levels == "sample":
        for block, covariance in zip(target.blocks, draws.covariances, strict=True):
            codes = np.asarray(block.codes)
            if not (codes < 0).any():
                continue
            ids = _new_level_ids(codes, labels.get(block.group), block.group)
            unknown = ids >= 0
            n_new = int(ids.max()) + 1
            innovations = rng.standard_normal((draws.n_draws, n_new, block.q))
            effects = np.einsum("sqr,slr->slq", covariance_root(covariance), innovations)
            z = np.asarray(block.z, dtype=float)[unknown]
            mean[:, unknown] += np.einsum("snq,nq->sn", effects[:, ids[unknown], :], z)
    if kind == "response":
        mean = mean + draws.sigma[:, None] * rng.standard_normal(mean.shape)
    return _to_scale(draws, mean, scale)


def _to_scale(draws: FitDraws, eta: np.ndarray, scale: str) -> np.ndarray:
    """The inverse link of the linear predictor (non-Gaussian families, ``scale="response"``)."""
    if draws.is_gaussian or scale == "link":
        return eta
    return np.asarray(draws.family.link.inverse(eta))


def _point_variance(
    fit: object,
    draws: FitDraws,
    target: Design,
    include_random: bool,
    kind: str,
    new_levels: str,
) -> tuple[np.ndarray, str]:
    """Variance of a point fit's prediction per row, and how the estimation part was computed."""
    method = getattr(fit, "_point_uncertainty", None)
    uncertainty = method() if callable(method) else None
    how = "none (a bare FitDraws has no standard errors)"
    if uncertainty is not None:
        z = target_z(target)
        if not include_random:
            z = sp.csr_matrix(z.shape)  # x' beta only
        variance, how = uncertainty.prediction_variance(draws.design, np.asarray(target.X, dtype=float), z)
    elif kind == "mean":
        return np.full(target.n, np.nan), how
    else:
        variance = np.zeros(target.n)
    if include_random and new_levels == "sample":
        for block, covariance in zip(target.blocks, draws.covariances, strict=True):
            unknown = np.asarray(block.codes) < 0
            if unknown.any():
                z_new = np.asarray(block.z, dtype=float)[unknown]
                variance[unknown] += row_random_variance(covariance, z_new)[0]
    if kind == "response":
        variance += _residual_variance(fit, draws, target)
    return variance, how


def _residual_variance(fit: object, draws: FitDraws, target: Design) -> np.ndarray | float:
    """A new observation's residual variance: ``sigma^2``, or each fitted row's own with ``residual=``.

    With a residual structure the rows' variances differ by time and ``variance=``
    level (``sigma^2 m_i^2 S_(t_i, t_i)``, :func:`hierlm.results.new_visits.row_residual_variance`);
    new rows are handled by :func:`hierlm.results.new_visits.visit_table`.
    """
    residual = draws.design.residual
    point_fit = callable(getattr(fit, "_visit_parameters", None)) or hasattr(fit, "solution")
    if residual is None or target is not draws.design or not point_fit:
        return float(draws.sigma[0] ** 2)
    from hierlm.results.new_visits import row_residual_variance, visit_parameters_of

    return row_residual_variance(residual, visit_parameters_of(fit))


def predict(
    fit: object,
    design: Design | None = None,
    include_random: bool = True,
    kind: str = "mean",
    summary: bool = True,
    prob: float | None = None,
    new_levels: str = "sample",
    new_level_labels: Mapping[str, Sequence[object]] | None = None,
    seed: int | np.random.Generator | None = None,
    scale: str = "response",
) -> pd.DataFrame | np.ndarray:
    """Predict the mean response or new responses, summarised per row.

    Parameters
    ----------
    fit : FitDraws or fit result
        A hierlm fit or its draws.
    design : Design, optional
        Rows to predict (``model.new_design(new_data)``); the fit's own rows when None.
    include_random : bool
        Include group effects (conditional prediction) or not (population level).
    kind : {"mean", "response"}
        Predict the mean or a new observation.
    summary : bool
        Return a per-row table (True) or the draws, shape (S, n) (False).
    prob : float, optional
        Interval probability (``hierlm.DEFAULT_PROB`` when None).
    new_levels : {"sample", "population"}
        Rows of unseen grouping levels: their effects vary as N(0, G)
        ("sample") or are 0 ("population"); see the module docstring.
    new_level_labels : dict, optional
        Grouping factor -> label of each row, for shared new-level draws.
    seed : int or numpy.random.Generator, optional
        Seed of the random draws.
    scale : {"response", "link"}
        Non-Gaussian families: predict the mean (inverse link) or the linear
        predictor; point fits get the delta-method standard error on the
        response scale (the interval is the inverse link of the link-scale
        interval).

    Returns
    -------
    pandas.DataFrame or numpy.ndarray
        Indexed by the rows of the design, with the protocol columns of
        :mod:`hierlm.results.tables`: ``estimate``, ``std_error`` and the
        interval bounds (the same on every fit).
    """
    draws = as_draws(fit)
    target = draws.design if design is None else design
    values = predictive_draws(draws, design, include_random, kind, new_levels, new_level_labels, seed,
                              scale)
    if not summary:
        return values
    index = pd.Index(target.row_index if len(target.row_index) == target.n else np.arange(target.n))
    if draws.point:
        variance, how = _point_variance(fit, draws, target, include_random, kind, new_levels)
        if draws.is_gaussian or scale == "link":
            table = point_table(values[0], np.sqrt(variance), prob)
        else:
            eta = draws.linear_predictor(target, include_random=include_random)[0]
            link = point_table(eta, np.sqrt(variance), prob)
            table = point_table(values[0], np.sqrt(variance) * draws.family.link.mu_eta(eta), prob)
            bounds = [c for c in link.columns if c not in ("estimate", "std_error")]
            for column in bounds:
                table[column] = draws.family.link.inverse(link[column].to_numpy())
            how += "; response scale: delta method, interval the inverse link of the link-scale one"
        table.attrs["std_error"] = how
    else:
        table = posterior_table(values, draws.n_chains, prob, diagnostics=False)
    table.index = index
    return table
