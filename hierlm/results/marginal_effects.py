"""Predictions, comparisons and slopes, as the R package marginaleffects computes them.

Each helper builds counterfactual copies of the rows of interest (``newdata``:
the fitted rows by default, a data frame, or a :func:`datagrid`), turns them
into linear functions of the fixed and group effects with the model's spec
(:class:`~hierlm.results.linear.LinearFunction`) and evaluates those on the
fit with :func:`~hierlm.results.linear.estimate_linear`:

* :func:`predictions`: the mean ``x' beta (+ z' b)`` of every row;
* :func:`comparisons`: the change of that mean when ``variable`` moves, per
  row: each level against the reference level for a factor, ``x + step``
  against ``x`` for a covariate;
* :func:`slopes`: the derivative of the mean with respect to a covariate
  (central difference of width ``eps``, exact for a model linear in it).

``by=`` averages the rows within the groups of one or more columns of
``newdata`` (``by=True``: over all rows), as marginaleffects's ``by``.
``include_random=True`` (the default, marginaleffects's ``re.form = NULL``)
adds the group effects of each row's levels; rows of a level the model never
saw get the population prediction. ML/REML fits: delta-method standard
errors (the prediction error variance of the mixed-model equations when the
group effects are included) and Satterthwaite's df; Bayesian fits: summaries
of the draws. ``predictions(interval="prediction")`` is the interval of a new
observation (the residual variance added).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import ColumnNotFoundError, FitError, GridError, InputTypeError
from hierlm.results.linear import LinearFunction, comparison_table, estimate_linear, interval_table
from hierlm.results.refgrid import fixed_variables

__all__ = ["datagrid", "predictions", "comparisons", "slopes"]


def _model(fit: Any) -> Any:
    model = getattr(fit, "model", None)
    if model is None or not hasattr(model, "new_design"):
        raise FitError("Predictions on new rows need the Model; fit through hierlm.Model(...).fit().")
    return model


def datagrid(fit: Any, **values: Any) -> pd.DataFrame:
    """A grid of rows: the given columns crossed, every other column at its mean or mode.

    Parameters
    ----------
    fit : fit result
        A fit made through :class:`hierlm.Model`.
    **values
        Column -> value or list of values (lists are crossed).

    Returns
    -------
    pandas.DataFrame
        One row per combination, with every column the model reads (numeric
        ones at their mean, factors and grouping factors at their most
        frequent level), as marginaleffects's ``datagrid``.

    Raises
    ------
    ColumnNotFoundError
        For a column the model does not read.
    """
    model = _model(fit)
    data = model.data
    names = [v for v in model.spec.variables() if v != model.spec.response and v in data.columns]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ColumnNotFoundError(f"datagrid: {unknown} are not columns the model reads; it reads {names}.")
    columns: dict[str, list[Any]] = {}
    for name in names:
        if name in values:
            given = values[name]
            listed = isinstance(given, (list, tuple, np.ndarray, pd.Series))
            columns[name] = list(given) if listed else [given]
        elif pd.api.types.is_numeric_dtype(data[name]) and not pd.api.types.is_bool_dtype(data[name]):
            columns[name] = [float(data[name].mean())]
        else:
            columns[name] = [data[name].mode(dropna=True).iloc[0]]
    index = pd.MultiIndex.from_product([columns[n] for n in names], names=names)
    grid = index.to_frame(index=False)
    for name in names:
        if isinstance(data[name].dtype, pd.CategoricalDtype):
            grid[name] = pd.Categorical(grid[name], categories=data[name].cat.categories)
    return grid


def _rows(fit: Any, newdata: pd.DataFrame | Mapping[str, Any] | None) -> pd.DataFrame:
    if newdata is None:
        return _model(fit).data.reset_index(drop=True)
    if isinstance(newdata, Mapping):
        return datagrid(fit, **dict(newdata))
    if not isinstance(newdata, pd.DataFrame):
        raise InputTypeError(f"newdata must be a DataFrame, a dict for datagrid(), or None; "
                             f"not {type(newdata).__name__}.")
    return newdata.reset_index(drop=True)


def _function(fit: Any, frame: pd.DataFrame, include_random: bool) -> LinearFunction:
    import warnings

    from hierlm.errors import HierlmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # new levels: population prediction, documented
        design = _model(fit).new_design(frame)
    return LinearFunction.from_design(design, include_random)


def _by_weights(frame: pd.DataFrame, by: bool | str | Sequence[str] | None,
                repeat: int = 1) -> tuple[pd.DataFrame | None, np.ndarray | None]:
    """Group keys and the averaging matrix of ``by`` over ``repeat`` stacked copies of ``frame``."""
    if by is None or by is False:
        return None, None
    n = len(frame) * repeat
    if by is True:
        return pd.DataFrame(index=[0]), np.full((1, n), 1.0 / n)
    keys = [by] if isinstance(by, str) else list(by)
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise ColumnNotFoundError(f"by={missing} names columns that newdata does not have; "
                                  f"it has {list(frame.columns)}.")
    stacked = pd.concat([frame[keys]] * repeat, ignore_index=True)
    groups = stacked.groupby(keys, sort=True, observed=True).indices
    labels, rows = [], []
    for key, members in groups.items():
        weights = np.zeros(n)
        weights[members] = 1.0 / len(members)
        rows.append(weights)
        labels.append(key if isinstance(key, tuple) else (key,))
    return pd.DataFrame(labels, columns=keys), np.vstack(rows)


def _columns(fit: Any, frame: pd.DataFrame) -> pd.DataFrame:
    model = _model(fit)
    keep = [c for c in frame.columns if c in model.spec.variables() and c != model.spec.response]
    return frame[keep].reset_index(drop=True)


def predictions(fit: Any, newdata: pd.DataFrame | Mapping[str, Any] | None = None,
                by: bool | str | Sequence[str] | None = None, include_random: bool = True,
                ddf: str = "satterthwaite", prob: float | None = None, interval: str = "confidence",
                seed: int | None = None) -> pd.DataFrame:
    """The predicted mean of each row (or its average within ``by`` groups), with uncertainty.

    Parameters
    ----------
    fit : fit result
        REML, ML, MAP or NUTS fit made through :class:`hierlm.Model`.
    newdata : DataFrame or dict, optional
        Rows to predict; a dict is passed to :func:`datagrid`; the fitted rows when None.
    by : str, list of str or True, optional
        Average the predictions within groups of these columns (True: all rows).
    include_random : bool
        Add each row's group effects.
    ddf : {"satterthwaite", "kenward-roger"}
        Denominator df of ML/REML fits (Kenward-Roger: fixed part only).
    prob : float, optional
        Interval probability.
    interval : {"confidence", "prediction"}
        The uncertainty of the mean, or of a new observation of the row (adds
        the residual variance; posterior draws get residual noise).
    seed : int, optional
        Seed of the noise draws of ``interval="prediction"`` on posterior fits.

    Returns
    -------
    pandas.DataFrame
        The row's (or group's) columns, then ``estimate``, ``std_error``,
        ``df`` (point fits), ``lower``, ``upper``.
    """
    _check_flag(include_random)
    if interval not in ("confidence", "prediction"):
        raise InputTypeError(f"interval must be 'confidence' or 'prediction', not {interval!r}.")
    if interval == "prediction" and by not in (None, False):
        raise InputTypeError("interval='prediction' is for single new observations; drop by=.")
    frame = _rows(fit, newdata)
    function = _function(fit, frame, include_random)
    keys, weights = _by_weights(frame, by)
    if weights is not None:
        function = function.combine(weights)
    est = estimate_linear(fit, function, ddf, observation_noise=interval == "prediction", seed=seed)
    body = interval_table(est, prob)
    head = _columns(fit, frame) if keys is None else keys
    return pd.concat([head.reset_index(drop=True), body], axis=1)


def _check_flag(include_random: object) -> None:
    if not isinstance(include_random, (bool, np.bool_)):
        raise InputTypeError(f"include_random must be True or False, not {include_random!r}.")


def _variable(fit: Any, variable: str) -> tuple[str, list[Any] | None]:
    """``("factor", levels)`` or ``("covariate", None)`` for a variable of the fixed part."""
    variables = fixed_variables(fit)
    if variable in variables.factors:
        return "factor", variables.factors[variable]
    if variable in variables.covariates:
        return "covariate", None
    raise GridError(f"{variable!r} is not a variable of the model's fixed part; it has factors "
                    f"{list(variables.factors) or 'none'} and covariates "
                    f"{list(variables.covariates) or 'none'}.")


def _set(frame: pd.DataFrame, variable: str, value: Any) -> pd.DataFrame:
    out = frame.copy()
    if isinstance(frame[variable].dtype, pd.CategoricalDtype):
        out[variable] = pd.Categorical([value] * len(out), categories=frame[variable].cat.categories)
    else:
        out[variable] = value
    return out


def _contrast_rows(fit: Any, frame: pd.DataFrame, variable: str, step: float,
                   include_random: bool) -> tuple[list[str], LinearFunction]:
    kind, levels = _variable(fit, variable)
    if kind == "factor":
        assert levels is not None
        lo = _function(fit, _set(frame, variable, levels[0]), include_random)
        parts, labels = [], []
        for level in levels[1:]:
            parts.append(_function(fit, _set(frame, variable, level), include_random) - lo)
            labels.append(f"{level} - {levels[0]}")
        return labels, _stack(parts)
    x = frame[variable].to_numpy(dtype=float)
    hi = frame.copy()
    hi[variable] = x + step
    low = frame.copy()
    low[variable] = x
    return [f"+{step:g}"], _function(fit, hi, include_random) - _function(fit, low, include_random)


def _stack(parts: list[LinearFunction]) -> LinearFunction:
    import scipy.sparse as sp

    fixed = np.vstack([p.fixed for p in parts])
    if parts[0].random is None:
        return LinearFunction(fixed, None)
    random = tuple(sp.csr_matrix(sp.vstack([p.random[k] for p in parts if p.random is not None]))
                   for k in range(len(parts[0].random)))
    return LinearFunction(fixed, random)


def _effect_table(fit: Any, frame: pd.DataFrame, labels: list[str], function: LinearFunction,
                  variable: str, by: bool | str | Sequence[str] | None, ddf: str,
                  prob: float | None) -> pd.DataFrame:
    repeat = len(labels)
    keys, weights = _by_weights(frame, by, repeat)
    contrast = np.repeat(labels, len(frame))
    if weights is not None:
        assert keys is not None
        # average within (contrast, by group)
        rows, heads = [], []
        for label in labels:
            mask = contrast == label
            for g in range(weights.shape[0]):
                w = np.where(mask, weights[g], 0.0)
                if w.sum() > 0:
                    rows.append(w / w.sum())
                    heads.append({"term": variable, "contrast": label, **keys.iloc[g].to_dict()})
        function = function.combine(np.vstack(rows))
        head = pd.DataFrame(heads)
    else:
        head = pd.concat([pd.DataFrame({"term": variable, "contrast": contrast}),
                          pd.concat([_columns(fit, frame)] * repeat, ignore_index=True)], axis=1)
    est = estimate_linear(fit, function, ddf)
    tests = comparison_table(est, "none", prob=prob)
    body = interval_table(est, prob)
    for column in tests.columns:
        if column not in body.columns:
            body[column] = tests[column].to_numpy()
    return pd.concat([head.reset_index(drop=True), body], axis=1)


def comparisons(fit: Any, variable: str, newdata: pd.DataFrame | Mapping[str, Any] | None = None,
                by: bool | str | Sequence[str] | None = None, include_random: bool = True,
                step: float = 1.0, ddf: str = "satterthwaite", prob: float | None = None) -> pd.DataFrame:
    """Change of the predicted mean when ``variable`` changes, per row or averaged ``by`` groups.

    Parameters
    ----------
    fit : fit result
        A fit made through :class:`hierlm.Model`.
    variable : str
        A factor (each level against the first) or a covariate (``x + step`` against ``x``).
    newdata, by, include_random, ddf, prob
        As :func:`predictions`.
    step : float
        Change of a covariate.

    Returns
    -------
    pandas.DataFrame
        ``term``, ``contrast``, the row's (or group's) columns, then
        ``estimate, std_error, df, lower, upper, t_value, p_value`` (point
        fits) or ``estimate, std_error, lower, upper, prob_direction``.
    """
    _check_flag(include_random)
    frame = _rows(fit, newdata)
    labels, function = _contrast_rows(fit, frame, variable, float(step), include_random)
    return _effect_table(fit, frame, labels, function, variable, by, ddf, prob)


def slopes(fit: Any, variable: str, newdata: pd.DataFrame | Mapping[str, Any] | None = None,
           by: bool | str | Sequence[str] | None = None, include_random: bool = True,
           eps: float | None = None, ddf: str = "satterthwaite", prob: float | None = None) -> pd.DataFrame:
    """Derivative of the predicted mean with respect to a covariate, per row or averaged.

    Parameters
    ----------
    fit : fit result
        A fit made through :class:`hierlm.Model`.
    variable : str
        A covariate of the fixed part.
    newdata, by, include_random, ddf, prob
        As :func:`predictions`.
    eps : float, optional
        Width of the central difference (default ``1e-4`` times the
        covariate's range, as marginaleffects).

    Returns
    -------
    pandas.DataFrame
        As :func:`comparisons`, with ``contrast`` ``"dY/dX"``.

    Raises
    ------
    GridError
        When ``variable`` is a factor (use :func:`comparisons`) or not in the model.
    """
    _check_flag(include_random)
    kind, _ = _variable(fit, variable)
    if kind == "factor":
        raise GridError(f"{variable!r} is a factor; its effects are comparisons(fit, {variable!r}).")
    frame = _rows(fit, newdata)
    data = _model(fit).data[variable].to_numpy(dtype=float)
    width = float(eps) if eps is not None else 1e-4 * max(float(np.ptp(data)), 1e-8)
    x = frame[variable].to_numpy(dtype=float)
    hi, lo = frame.copy(), frame.copy()
    hi[variable] = x + width / 2.0
    lo[variable] = x - width / 2.0
    function = (_function(fit, hi, include_random) - _function(fit, lo, include_random)).scaled(1.0 / width)
    return _effect_table(fit, frame, ["dY/dX"], function, variable, by, ddf, prob)
