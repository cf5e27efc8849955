"""Reference grids: every combination of the factors of a model, covariates at chosen values.

As the R package emmeans builds them (Lenth 2016, J. Stat. Softw. 69(1)):
the grid crosses the levels of every factor of the fixed part with the value
(or values) of every covariate, by default its mean over the fitted rows, or
the values given in ``at=``. Each row of the grid becomes a row of the fixed
effect matrix through the model's frozen spec (the training levels,
contrasts and transform state), so an estimated marginal mean is a weighted
average of grid rows: ``L beta`` with ``L`` the average of their ``x``.

:func:`fixed_variables` tells the factors from the covariates;
:func:`reference_grid` builds the grid. Also used by the marginaleffects-style
helpers (:mod:`hierlm.results.marginal_effects`) for their default grids.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import FitError, GridError

__all__ = ["FixedVariables", "ReferenceGrid", "fixed_variables", "fixed_matrix", "reference_grid"]


@dataclass(frozen=True)
class FixedVariables:
    """The data columns the fixed part reads, split into factors and covariates.

    Attributes
    ----------
    factors : dict
        Factor name -> its levels, in the model's level order.
    covariates : dict
        Covariate name -> its mean over the fitted rows.
    data : pandas.DataFrame
        The fitted rows (``Model.data``).
    """

    factors: dict[str, list[Any]]
    covariates: dict[str, float]
    data: pd.DataFrame


def _model_of(fit: Any) -> Any:
    model = getattr(fit, "model", None)
    if model is None or not hasattr(model, "spec"):
        raise FitError("A reference grid needs the formula's spec: fit a hierlm.Model "
                       "(hierlm.Model(formula, data).fit()), not a bare Design.")
    return model


def _is_factor(column: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def fixed_variables(fit: Any) -> FixedVariables:
    """Factors (with their levels) and covariates (with their means) of a fit's fixed part.

    Raises
    ------
    FitError
        For a fit without its Model.
    """
    from hierlm.design.transforms import FORMULA_CONTEXT

    model = _model_of(fit)
    spec = model.spec.fixed_spec
    if model.design.rowless:  # data held by an engine: levels from the spec, means by a query
        return _engine_variables(model)
    data = model.data
    names = [str(v) for v in sorted(spec.required_variables, key=str)
             if str(v) not in FORMULA_CONTEXT and str(v) in data.columns]
    order = [c for c in data.columns if c in names]
    states = {str(k): v for k, v in spec.encoder_state.items()}
    factors: dict[str, list[Any]] = {}
    covariates: dict[str, float] = {}
    for name in order:
        column = data[name]
        state = states.get(name)
        kind = getattr(state[0], "value", state[0]) if state is not None else None
        if kind == "categorical" or _is_factor(column):
            if state is not None and "categories" in state[1]:
                levels = list(state[1]["categories"])
            elif isinstance(column.dtype, pd.CategoricalDtype):
                levels = list(column.cat.remove_unused_categories().cat.categories)
            else:
                levels = sorted(pd.unique(column.dropna()).tolist())
            factors[name] = levels
        else:
            covariates[name] = float(np.mean(column.to_numpy(dtype=float)))
    return FixedVariables(factors=factors, covariates=covariates, data=data)


def _engine_variables(model: Any) -> FixedVariables:
    """:func:`fixed_variables` of a model on engine data (:mod:`hierlm.sources`).

    The factors' levels are the frozen spec's; each covariate's mean over the
    model's rows is an aggregate query run by the engine.
    """
    from hierlm.design.transforms import FORMULA_CONTEXT

    spec = model.spec.fixed_spec
    plan = model.design.summary.source
    schema = plan.source.schema()
    required = {str(v) for v in spec.required_variables} - set(FORMULA_CONTEXT)
    states = {str(k): v for k, v in spec.encoder_state.items()}
    factors: dict[str, list[Any]] = {}
    numeric: list[str] = []
    for name in [c for c in schema if c in required]:
        state = states.get(name)
        kind = getattr(state[0], "value", state[0]) if state is not None else None
        if kind == "categorical" or schema[name] in ("string", "bool"):
            factors[name] = (list(state[1]["categories"]) if state is not None
                             and "categories" in state[1]
                             else list(model.spec.frame.levels.get(name, ())))
        else:
            numeric.append(name)
    return FixedVariables(factors=factors, covariates=plan.column_means(numeric), data=model.data)


def fixed_matrix(fit: Any, frame: pd.DataFrame) -> np.ndarray:
    """Fixed-effect matrix of ``frame``'s rows with the model's frozen spec, ``(rows, p)``."""
    from hierlm.design.transforms import FORMULA_CONTEXT

    model = _model_of(fit)
    matrix = np.asarray(model.spec.fixed_spec.get_model_matrix(frame, context=FORMULA_CONTEXT),
                        dtype=float)
    p = len(fit.design.fixed_names)
    if matrix.shape != (len(frame), p):
        raise GridError(f"The grid gives {matrix.shape[1]} fixed-effect columns, the model has {p}; "
                        "a variable of the grid takes values the model cannot encode.")
    return matrix


@dataclass(frozen=True)
class ReferenceGrid:
    """A reference grid and its fixed-effect matrix.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per combination; the first factor varies fastest (emmeans's order).
    X : numpy.ndarray
        ``(rows, p)`` fixed-effect matrix of the grid.
    variables : list of str
        The grid's dimensions, in ``frame`` column order.
    """

    frame: pd.DataFrame
    X: np.ndarray
    variables: list[str]

    def cells(self, keys: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
        """Combinations of ``keys`` and the equal-weight averaging matrix over the other dimensions.

        Returns
        -------
        cells : pandas.DataFrame
            One row per combination of ``keys`` (first key fastest).
        weights : numpy.ndarray
            ``(cells, grid rows)``: row c averages the grid rows of cell c.
        """
        keys = list(keys)
        if not keys:
            return pd.DataFrame(index=[0]), np.full((1, len(self.frame)), 1.0 / len(self.frame))
        levels = [list(pd.unique(self.frame[k])) for k in keys]
        combos = [tuple(reversed(c)) for c in itertools.product(*reversed(levels))]
        cells = pd.DataFrame(combos, columns=keys)
        for key in keys:
            if isinstance(self.frame[key].dtype, pd.CategoricalDtype):
                cells[key] = pd.Categorical(cells[key], categories=self.frame[key].cat.categories)
        weights = np.zeros((len(cells), len(self.frame)))
        values = self.frame[keys].astype(object).to_numpy()
        for c, combo in enumerate(combos):
            rows = np.all(values == np.array(combo, dtype=object)[None, :], axis=1)
            weights[c, rows] = 1.0 / rows.sum()
        return cells, weights


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray, pd.Series)):
        return [value]
    return list(value)


def reference_grid(fit: Any, keys: Sequence[str] = (),
                   at: Mapping[str, Any] | None = None) -> ReferenceGrid:
    """Every factor's levels crossed with the covariates' values (their means, or ``at``).

    Parameters
    ----------
    fit : fit result
        A fit made through :class:`hierlm.Model`.
    keys : sequence of str
        Variables the caller will tabulate (specs and by). A factor, or a
        covariate given several values in ``at``.
    at : dict, optional
        Covariate -> value or list of values (the grid's values instead of the
        mean); factor -> the levels to keep.

    Raises
    ------
    GridError
        For a key that is not a factor of the fixed part (nor a covariate with
        values in ``at``), or ``at`` naming a column that is neither.
    """
    variables = fixed_variables(fit)
    at = dict(at or {})
    if not isinstance(at, Mapping):
        raise GridError(f"at= must be a dict column -> value(s), not {type(at).__name__}.")
    known = list(variables.factors) + list(variables.covariates)
    for name in at:
        if name not in known:
            in_data = isinstance(variables.data, pd.DataFrame) and name in variables.data
            what = ("a column of the data but not of the model's fixed part" if in_data
                    else "not a column of the model")
            raise GridError(f"at= names {name!r}, which is {what}; covariates of the model: "
                            f"{list(variables.covariates) or 'none'}, factors: "
                            f"{list(variables.factors) or 'none'}.")
    for key in keys:
        if key in variables.factors:
            continue
        if key in variables.covariates:
            if key in at and len(_as_list(at[key])) >= 1:
                continue
            raise GridError(f"{key!r} is a covariate, not a factor of the model; give its values "
                            f"with at={{{key!r}: [...]}} or use slopes() for its effect.")
        raise GridError(f"{key!r} is not a factor of the model; its factors are "
                        f"{list(variables.factors) or 'none'} (covariates: "
                        f"{list(variables.covariates) or 'none'}).")
    columns: dict[str, list[Any]] = {}
    for name, levels in variables.factors.items():
        chosen = _as_list(at[name]) if name in at else levels
        unknown = [v for v in chosen if v not in levels]
        if unknown:
            raise GridError(f"at= gives level(s) {unknown} of factor {name!r}; its levels are {levels}.")
        columns[name] = chosen
    for name, mean in variables.covariates.items():
        values = _as_list(at[name]) if name in at else [mean]
        try:
            columns[name] = [float(v) for v in values]
        except (TypeError, ValueError):
            raise GridError(f"at= gives {at[name]!r} for covariate {name!r}; it needs numbers.") from None
    names = list(columns)
    combos = [tuple(reversed(c)) for c in itertools.product(*reversed([columns[n] for n in names]))]
    frame = pd.DataFrame(combos, columns=names) if names else pd.DataFrame(index=[0])
    for name in variables.factors if isinstance(variables.data, pd.DataFrame) else ():
        data_column = variables.data[name]
        if isinstance(data_column.dtype, pd.CategoricalDtype):
            frame[name] = pd.Categorical(frame[name], categories=data_column.cat.categories)
    return ReferenceGrid(frame=frame, X=fixed_matrix(fit, frame), variables=names)
