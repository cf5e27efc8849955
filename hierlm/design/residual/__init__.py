"""Residual covariance structures: correlated, heteroscedastic errors within a group.

``hl.Model("weight ~ week", pigs, residual="ar1(week | id)")`` lets the
residuals of one group (a pig, a patient) be correlated, with the structure
indexed by the time (or position) value, as nlme's ``gls``/``lme`` with
``correlation=`` and ``weights=varIdent(...)`` and mmrm do. The residual
covariance of group ``i`` is ``sigma^2 M_i S_i M_i`` with

* ``S_i`` the structure's relative covariance over the group's times
  (a submatrix of the matrix over every distinct time, so dropped visits
  and unbalanced data are handled by the time values, not row positions;
  ``car1`` builds it from the times themselves);
* ``M_i`` the diagonal of per-row SD ratios of ``variance=`` (nlme's
  ``varIdent``: the first level is 1), or the identity.

Structures (name, parameters):

====== ==========================================================
cs     compound symmetry: ``rho``
csh    ``cs`` with one SD ratio per time
un     unstructured: every variance and covariance over the times
ar1    AR(1) in the (integer) time: ``rho^|t - s|``
arh1   ``ar1`` with one SD ratio per time
toep   Toeplitz in the integer time lag: ``rho1 ... rhoK``
toeph  ``toep`` with one SD ratio per time
car1   continuous-time AR(1): ``phi^|t - s|``, ``0 < phi < 1``
====== ==========================================================

Each structure is one class of :mod:`hierlm.design.residual.structures`
answering the protocol of :class:`ResidualStructure`, registered in
:data:`RESIDUAL_STRUCTURES`; the variance function ``variance=`` is a
:class:`~hierlm.design.residual.variance.VarIdent`, composable with any of
them. Structures can be given as objects: ``residual=AR1("week", "id")``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierlm.design.dtypes import is_bool, is_numeric
from hierlm.design.residual import structures

# the structure classes and their registry, re-exported: ``hl.residual.AR1("week", "id")``
from hierlm.design.residual.structures import *  # noqa: F403
from hierlm.design.residual.structures import RESIDUAL_STRUCTURES, ResidualStructure
from hierlm.design.residual.variance import VarIdent
from hierlm.errors import DataError, FormulaError

# the structures and their registry (listed once, in ``structures.__all__``), then this module's
__all__ = [
    *structures.__all__,
    "VarIdent",
    "ResidualSpec",
    "ResidualDesign",
    "parse_residual",
    "residual_text",
    "variance_column",
    "build_residual",
]

#: Residual structure names and what they mean.
_SPEC = re.compile(r"^\s*([A-Za-z0-9_]+)\s*\(\s*(?:([^|()]+?)\s*\|\s*)?([^|()]+?)\s*\)\s*$")


@dataclass(frozen=True)
class ResidualSpec:
    """A residual structure as written: name, time column (or None) and group column."""

    name: str
    time: str | None
    group: str

    def structure(self) -> ResidualStructure:
        """The structure object (not yet bound to the data's times)."""
        return RESIDUAL_STRUCTURES[self.name](self.time, self.group)

    @property
    def text(self) -> str:
        """The structure written back, e.g. ``"ar1(week | id)"``."""
        if self.name == "independent" and self.group == "row":
            return "independent"
        return f"{self.name}({self.time} | {self.group})" if self.time else f"{self.name}({self.group})"


def residual_text(residual: str | ResidualStructure | None) -> str | None:
    """``residual=`` as text: a structure object (``AR1("week", "id")``) written out.

    Raises
    ------
    FormulaError
        For an object without a group column, or one that is neither text nor a structure.
    """
    if residual is None or isinstance(residual, str):
        return residual
    if isinstance(residual, ResidualStructure):
        if residual.group is None:
            raise FormulaError(f"residual={residual!r} has no group column; write e.g. "
                               f"{type(residual).__name__}('week', 'id').")
        if residual.needs_time and residual.time is None:
            raise FormulaError(f"residual={residual!r}: {residual.name} needs a time column, "
                               f"e.g. {type(residual).__name__}('week', '{residual.group}').")
        return residual.text()
    raise FormulaError(f"residual= must be a string such as 'ar1(week | id)' or a structure "
                       f"object such as hierlm.residual.AR1('week', 'id'), not "
                       f"{type(residual).__name__}.")


def variance_column(variance: str | VarIdent | None) -> str | None:
    """``variance=`` as a column name (a :class:`VarIdent` object gives its column)."""
    return variance.column if isinstance(variance, VarIdent) else variance


def parse_residual(text: str | ResidualStructure) -> ResidualSpec:
    """Parse ``"ar1(week | id)"``, ``"cs(id)"`` or a structure object.

    Raises
    ------
    FormulaError
        For a malformed text, an unknown name (the valid ones are listed), or
        a structure that needs a time variable and has none.
    """
    text = residual_text(text)  # type: ignore[assignment]
    assert isinstance(text, str)
    match = _SPEC.match(text)
    if match is None:
        raise FormulaError(f"Cannot read residual={text!r}; write 'name(time | group)', e.g. "
                           "'ar1(week | id)', or 'cs(group)'.")
    name, time, group = match.group(1), match.group(2), match.group(3)
    if name not in RESIDUAL_STRUCTURES:
        raise FormulaError(f"Unknown residual structure {name!r}; choose one of: "
                           + "; ".join(f"{k}: {cls.description}"
                                     for k, cls in RESIDUAL_STRUCTURES.items()) + ".")
    if time is None and RESIDUAL_STRUCTURES[name].needs_time:
        raise FormulaError(f"residual={text!r}: {name} needs a time variable, e.g. "
                           f"'{name}(week | {group})'.")
    for column in filter(None, (time, group)):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", column):
            raise FormulaError(f"residual={text!r}: {column!r} is not a column name.")
    return ResidualSpec(name, time, group)


@dataclass(frozen=True, eq=False)
class ResidualDesign:
    """Per-row indices of a residual structure, for the engines.

    Attributes
    ----------
    spec : ResidualSpec
        As written.
    structure : ResidualStructure
        The structure over the distinct times.
    group_codes : numpy.ndarray
        Group of each row (0 .. G-1).
    group_labels : tuple of str
        Labels of the groups.
    slots : numpy.ndarray
        Index of each row's time among the distinct times.
    times : numpy.ndarray
        Each row's time value (position within its group for ``cs(group)``).
    variance_codes : numpy.ndarray or None
        Level of ``variance=`` (nlme's ``varIdent``) of each row.
    variance_labels : tuple of str
        Its levels; the first has SD ratio 1.
    variance_column : str or None
        The ``variance=`` column.
    variance_function : VarIdent or None
        The variance function of ``variance=``, bound to its levels.
    """

    spec: ResidualSpec
    structure: ResidualStructure
    group_codes: np.ndarray
    group_labels: tuple[str, ...]
    slots: np.ndarray
    times: np.ndarray
    variance_codes: np.ndarray | None = None
    variance_labels: tuple[str, ...] = ()
    variance_column: str | None = None
    variance_function: VarIdent | None = None

    @property
    def n_variance(self) -> int:
        """Number of ``variance=`` SD ratios estimated (levels minus one)."""
        return 0 if self.variance_function is None else self.variance_function.n_params

    @property
    def n_params(self) -> int:
        """Structure parameters plus ``variance=`` ratios."""
        return self.structure.n_params + self.n_variance

    def names(self) -> tuple[str, ...]:
        """Parameter names of the structure and the ``variance=`` ratios."""
        extra = () if self.variance_function is None else self.variance_function.names()
        return self.structure.names() + extra

    def start(self) -> np.ndarray:
        """Starting parameters."""
        return np.concatenate([self.structure.start(), np.zeros(self.n_variance)])

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The optimiser's box of the structure and ``variance=`` parameters."""
        lower, upper = self.structure.box()
        if self.variance_function is None:
            return lower, upper
        extra_lower, extra_upper = self.variance_function.box()
        return np.concatenate([lower, extra_lower]), np.concatenate([upper, extra_upper])

    def describe(self) -> str:
        """Label for tables, e.g. ``"ar1(week | id)"`` (+ ``variance = Sex``)."""
        if self.spec.name == "independent":
            return f"independent, variance = {self.variance_column}"
        text = self.spec.text
        return text + (f", variance = {self.variance_column}" if self.variance_column else "")


def _labels(values: np.ndarray) -> tuple[str, ...]:
    """Each time as text: whole numbers without a decimal point (``3.0`` -> ``"3"``)."""
    return tuple(str(int(v)) if v.is_integer() else str(v)
                 for v in np.asarray(values, dtype=float).tolist())


def _positions(group_codes: np.ndarray) -> np.ndarray:
    """Position of each row within its group, in row order (0, 1, ...; pandas' cumcount)."""
    order = np.argsort(group_codes, kind="stable")
    sorted_codes = group_codes[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_codes[1:] != sorted_codes[:-1])))
    first = np.repeat(starts, np.diff(np.append(starts, sorted_codes.size)))
    positions = np.empty(group_codes.size, dtype=np.int64)
    positions[order] = np.arange(group_codes.size) - first
    return positions


def _repeated_rows(group_codes: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Rows whose (group, time) pair an earlier row already has, in row order."""
    order = np.lexsort((np.arange(times.size), times, group_codes))  # stable: first one first
    same = (np.diff(group_codes[order]) == 0) & (np.diff(times[order]) == 0)
    return np.sort(order[1:][same])


def _has_repeats(group_codes: np.ndarray, slots: np.ndarray, n_times: int) -> bool:
    """True when some group has a time twice (``slots``: each row's index among ``n_times``)."""
    pairs = np.sort(group_codes.astype(np.int64) * n_times + slots)
    return bool(np.any(pairs[1:] == pairs[:-1]))


def _all_integer(values: np.ndarray) -> bool:
    """``numpy.allclose(values, numpy.rint(values))`` for finite values (without its overhead)."""
    rounded = np.rint(values)
    return bool(np.all(np.abs(values - rounded) <= 1e-8 + 1e-5 * np.abs(rounded)))


def build_residual(spec: ResidualSpec, frame: object, group_codes: np.ndarray,
                   group_labels: tuple[str, ...], variance: str | None = None,
                   variance_codes: np.ndarray | None = None,
                   variance_labels: tuple[str, ...] = (), columns: object = None) -> ResidualDesign:
    """Index the rows of a data frame for a residual structure.

    Parameters
    ----------
    spec : ResidualSpec
        The parsed structure.
    frame : pandas.DataFrame
        The model's rows (after missing-value handling).
    group_codes, group_labels : numpy.ndarray, tuple of str
        The residual group of each row, coded.
    variance : str, optional
        The ``variance=`` column.
    variance_codes, variance_labels : numpy.ndarray and tuple of str, optional
        Its level of each row and its levels (the first has SD ratio 1).
    columns : dict, optional
        Columns of ``frame`` already read (:func:`hierlm.design.checks.read_columns`).

    Raises
    ------
    DataError
        For a time that repeats within a group, non-numeric times where the
        structure needs numbers, non-integer times for ``ar1``/``toep``, or
        ``un`` with more times than groups can identify.
    """
    data = frame  # a DataFrame; typed loosely to keep pandas out of the signature
    assert isinstance(data, pd.DataFrame)
    n = len(data)
    if spec.time is None:  # the position in the group: the slots are the positions themselves
        positions = _positions(np.asarray(group_codes))
        times = positions.astype(float)
        distinct = np.arange(int(positions.max()) + 1 if n else 0, dtype=float)
        slots = positions
    else:
        read = columns if isinstance(columns, dict) else {}
        column = read[spec.time] if spec.time in read else data[spec.time]
        if not is_numeric(column) or is_bool(column):
            kind = RESIDUAL_STRUCTURES[spec.name]
            if kind.integer_time or kind.numeric_time:
                raise DataError(f"residual={spec.text!r}: the time {spec.time!r} must be numeric "
                                f"for {spec.name} (it is {column.dtype}).")
            codes, uniques = pd.factorize(column, sort=True)
            times = codes.astype(float)
            labels_from = np.asarray(uniques, dtype=object)
        else:
            times = column.to_numpy(dtype=float)
            labels_from = None
        distinct = np.unique(times)  # the checks below look at the distinct values where they can
        if not np.all(np.isfinite(distinct)):
            raise DataError(f"residual={spec.text!r}: the time {spec.time!r} has missing or "
                            "non-finite values.")
        slots = np.searchsorted(distinct, times)
        if _has_repeats(np.asarray(group_codes), slots, distinct.size):
            row = int(_repeated_rows(np.asarray(group_codes), times)[0])
            raise DataError(
                f"residual={spec.text!r}: time {spec.time}={_labels(times[[row]])[0]} repeats "
                f"within {spec.group}={group_labels[group_codes[row]]!r}; each group needs "
                "distinct times (aggregate the rows, or use another time variable).")
        if RESIDUAL_STRUCTURES[spec.name].integer_time and not _all_integer(distinct):
            raise DataError(f"residual={spec.text!r}: {spec.name} needs integer times; "
                            f"{spec.time!r} has fractional values (use car1 for continuous time).")
    if spec.time is not None and labels_from is not None:
        time_labels = tuple(str(v) for v in labels_from)
    else:
        time_labels = _labels(distinct)
    structure = spec.structure().bind(distinct, time_labels)
    n_groups = len(group_labels)
    if spec.name == "un" and structure.n_params + 1 > n:
        raise DataError(f"residual={spec.text!r}: un over {distinct.size} times has "
                        f"{structure.n_params + 1} variance parameters but only {n} rows; use a "
                        "structure with fewer parameters (e.g. csh or arh1).")
    if spec.name == "un" and n_groups <= distinct.size:
        raise DataError(f"residual={spec.text!r}: un over {distinct.size} times needs more groups "
                        f"than times to be identified, and {spec.group!r} has {n_groups}.")
    function = None if variance is None else VarIdent(variance).bind(variance_labels)
    return ResidualDesign(spec, structure, np.asarray(group_codes, dtype=np.int64), group_labels,
                          slots.astype(np.int64), times, variance_codes, variance_labels, variance,
                          function)
