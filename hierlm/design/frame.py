"""The model frame: the kind of each data column, and new data converted to the same kinds.

R's rules, as lme4's model frame applies them:

* numbers are used in double precision: every numeric column a formula reads
  reaches formulaic as float64, so a product of two int8 or int32 columns
  cannot overflow;
* text (``object`` of str, pandas ``str``/``string`` dtype) is a factor with its
  levels sorted; a categorical keeps its categories; ``bool`` is logical;
* grouping factors are labels: integer IDs are compared exactly (never
  through float, where IDs above 2**53 would collapse);
* anything a model cannot take (datetime, timedelta, period, interval,
  complex numbers, an object column mixing numbers and text such as 5 and
  '5') raises a :class:`~hierlm.errors.DataError` naming the column and what
  to convert it to.

New data must give each column the kind it had when the model was fitted, as
lme4's ``.checkMFClasses`` demands: a factor given as numbers, a number
given as text or as ``bool`` is refused, never re-encoded. Factor columns of
new data are recoded onto the fitted levels, so formulaic sees exactly the
categories it learnt.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import numbers
import re
import warnings
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula
from formulaic.errors import DataMismatchWarning, FormulaicError

from hierlm.design.checks import column_of
from hierlm.design.dtypes import is_bool, is_complex, is_datetime, is_numeric, is_timedelta
from hierlm.design.transforms import FORMULA_CONTEXT
from hierlm.errors import DataError, FormulaError
from hierlm.formula import BarTerm, ParsedFormula
from hierlm.formula.parser import describe_formulaic_error

__all__ = [
    "NUMERIC",
    "LOGICAL",
    "FACTOR",
    "LABELS",
    "column_kind",
    "grouping_kind",
    "FrameSpec",
    "column_kinds",
    "learn_columns",
    "learn_frame",
    "ModelFrame",
    "group_labels",
    "quote_dotted_names",
    "quote_formula",
    "label_arguments",
    "required_columns",
    "new_model_matrix",
]

NUMERIC, LOGICAL, FACTOR, LABELS = "numeric", "logical", "factor", "labels"

_DESCRIPTION = {NUMERIC: "numeric", LOGICAL: "logical", FACTOR: "a factor"}
_CONVERT = {
    NUMERIC: "convert it with pandas.to_numeric(column)",
    LOGICAL: "convert it with column.astype(bool)",
    FACTOR: "convert it with column.astype(str) or pandas.Categorical(column)",
}


def _value_type(value: Any) -> str:
    """``"text"``, ``"bool"``, ``"number"`` or the type's name of one value of an object column."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Real):
        return "number"
    return type(value).__name__


def _object_types(column: pd.Series) -> set[str]:
    """The types of the values of an object column (see :func:`_value_type`)."""
    return {_value_type(value) for value in pd.unique(column.dropna())}


def _mixed_message(column: pd.Series, name: str, kinds: set[str]) -> str:
    """Explain an object column whose values are of several types."""
    examples = []
    for kind in sorted(kinds):
        for value in pd.unique(column.dropna()):
            if _value_type(value) == kind:
                examples.append(repr(value))
                break
    text = {str(v) for v in pd.unique(column.dropna())}
    clash = len(text) < len(pd.unique(column.dropna()))
    detail = " Some of them print the same (e.g. 5 and '5'), so as labels they would merge." if clash else ""
    return (f"Column {name!r} mixes values of different types ({', '.join(sorted(kinds))}: e.g. "
            f"{', '.join(examples)}).{detail} Make it one type: column.astype(str) for labels, "
            "or pandas.to_numeric(column) for numbers.")


def _refuse(column: pd.Series, name: str, where: str) -> DataError:
    """The error for a column whose dtype no model term can take."""
    dtype = column.dtype
    if is_datetime(dtype):
        hint = ("convert it to a number, e.g. days since the start: "
                f"(data[{name!r}] - data[{name!r}].min()).dt.days, or to text for a factor")
    elif is_timedelta(dtype):
        hint = f"convert it to a number, e.g. data[{name!r}].dt.total_seconds() / 86400 for days"
    elif is_complex(dtype):
        hint = "use its real and imaginary parts as two numeric columns"
    else:
        hint = "convert it to numbers (pandas.to_numeric) or to text (column.astype(str))"
    return DataError(f"Column {name!r} used in {where} has dtype {dtype}, which a model cannot "
                     f"use; {hint}.")


def column_kind(column: pd.Series, name: str, where: str = "the formula") -> str:
    """Kind of a column a formula term reads: ``"numeric"``, ``"logical"`` or ``"factor"``.

    Parameters
    ----------
    column : pandas.Series
        The column (missing values allowed; they are ignored).
    name : str
        Its name, for messages.
    where : str
        Where it is used, for messages.

    Returns
    -------
    str

    Raises
    ------
    DataError
        For dtypes a model cannot take and for object columns mixing types.
    """
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return FACTOR
    if is_bool(dtype):
        return LOGICAL
    if is_complex(dtype):
        raise _refuse(column, name, where)
    if is_numeric(dtype) and not is_timedelta(dtype):
        return NUMERIC
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return FACTOR
    if pd.api.types.is_object_dtype(dtype):
        kinds = _object_types(column)
        if len(kinds) > 1:
            raise DataError(_mixed_message(column, name, kinds))
        kind = next(iter(kinds), "text")
        if kind == "text":
            return FACTOR
        if kind == "bool":
            return LOGICAL
        if kind == "number":
            return NUMERIC
    raise _refuse(column, name, where)


def grouping_kind(column: pd.Series, name: str, where: str) -> str:
    """Kind of a grouping column: as :func:`column_kind`, or ``"labels"`` for dates and times.

    A grouping factor only needs labels, so datetime and timedelta columns are
    accepted (each distinct value is a level, as R's ``factor`` of a Date).
    """
    dtype = column.dtype
    if is_datetime(dtype) or is_timedelta(dtype) \
            or isinstance(dtype, pd.PeriodDtype):
        return LABELS
    return column_kind(column, name, where)


def _as_float(column: pd.Series) -> pd.Series:
    """A numeric column as float64 (R's double), same index."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iuf":  # numpy numbers: no missing markers
        if dtype == np.float64:
            return column
        return pd.Series(column.to_numpy(dtype=np.float64), index=column.index, name=column.name)
    return pd.Series(pd.to_numeric(column).to_numpy(dtype=np.float64, na_value=np.nan),
                     index=column.index, name=column.name)


def _as_bool(column: pd.Series) -> pd.Series:
    return pd.Series(column.to_numpy(dtype=bool, na_value=False), index=column.index, name=column.name)


def _as_factor(column: pd.Series) -> pd.Series:
    """Text as a categorical with sorted levels; a categorical unchanged."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column
    values = column.astype(object).where(column.notna(), None)
    levels = sorted({str(v) for v in values if v is not None})
    return pd.Series(pd.Categorical(values, categories=levels), index=column.index, name=column.name)


_CONVERTERS = {NUMERIC: _as_float, LOGICAL: _as_bool, FACTOR: _as_factor}


def column_kinds(data: pd.DataFrame, names: Iterable[str], where: str,
                 columns: Mapping[str, pd.Series] | None = None) -> dict[str, str]:
    """Kind of each column formula terms read (:func:`column_kind`), as the user gave it.

    ``columns``: those of ``data`` already read (:func:`~hierlm.design.checks.read_columns`).
    """
    return {name: column_kind(column_of(data, columns, name), name, where) for name in names}


def learn_columns(data: pd.DataFrame, kinds: Mapping[str, str],
                  columns: Mapping[str, pd.Series] | None = None) -> dict[str, pd.Series]:
    """The columns formula terms read, converted as :func:`learn_frame` converts them.

    Returns column -> Series: the column of ``data`` itself (the same object
    as in ``columns``) when it needs no conversion (float64, categorical).
    """
    converted: dict[str, pd.Series] = {}
    for name, kind in kinds.items():
        column = column_of(data, columns, name)
        converted[name] = column if isinstance(column.dtype, pd.CategoricalDtype) \
            else _CONVERTERS[kind](column)
    return converted


def learn_frame(data: pd.DataFrame, kinds: Mapping[str, str],
                columns: Mapping[str, pd.Series] | None = None) -> pd.DataFrame:
    """Convert the columns formula terms read to what formulaic gets (see the module docstring).

    Numbers become float64, logicals bool, text a categorical with sorted
    levels; a column that is categorical already (a factor, or a column given
    a reference level) is kept as it is.

    Parameters
    ----------
    data : pandas.DataFrame
        Training data (not modified).
    kinds : dict
        Column -> kind, from :func:`column_kinds`.
    columns : dict, optional
        Those of ``data`` already read (:func:`~hierlm.design.checks.read_columns`).

    Returns
    -------
    pandas.DataFrame
        A shallow copy of ``data`` with those columns converted.
    """
    return ModelFrame(data, kinds, columns).frame


class ModelFrame:
    """The model frame's converted columns, and the frame itself built only when asked for.

    Most models read only their columns (:attr:`columns`); formulaic's
    materializer needs the frame (:attr:`frame`, the :func:`learn_frame` of
    ``data``), which costs a copy of the frame and is built on first use.

    Parameters
    ----------
    data : pandas.DataFrame
        Training data (not modified).
    kinds : dict
        Column -> kind, from :func:`column_kinds`.
    columns : dict, optional
        Those of ``data`` already read (:func:`~hierlm.design.checks.read_columns`).
    """

    def __init__(self, data: pd.DataFrame, kinds: Mapping[str, str],
                 columns: Mapping[str, pd.Series] | None = None) -> None:
        originals = {name: column_of(data, columns, name) for name in kinds}
        self.data = data
        self.n_rows = len(data)
        #: column -> converted Series, for every column of ``kinds``
        self.columns = learn_columns(data, kinds, originals)
        self._changed = [name for name in kinds if self.columns[name] is not originals[name]]
        self._frame: pd.DataFrame | None = None

    @property
    def frame(self) -> pd.DataFrame:
        """A shallow copy of ``data`` with the converted columns (built once)."""
        if self._frame is None:
            frame = self.data.copy(deep=False)
            for name in self._changed:  # (float64 and categorical columns pass through as they are)
                frame[name] = self.columns[name]
            self._frame = frame
        return self._frame


@dataclass(frozen=True)
class FrameSpec:
    """The kinds (and factor levels) of the columns a fitted model reads.

    Attributes
    ----------
    kinds : dict
        Column -> ``"numeric"``, ``"logical"`` or ``"factor"``, as the user gave it.
    levels : dict
        Column -> its categories as formulaic saw them, in order, for every
        column that reached formulaic as a categorical (factors, and numeric
        columns given a reference level).
    uses : dict
        Column -> the part of the formula that reads it, for messages.
    """

    kinds: Mapping[str, str] = field(default_factory=dict)
    levels: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    uses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def learn(cls, frame: pd.DataFrame | Mapping[str, pd.Series], kinds: Mapping[str, str],
              uses: Mapping[str, str] | None = None) -> FrameSpec:
        """Record the kinds and the final factor levels (after references and unused levels).

        ``frame``: the model frame, or its columns (:attr:`ModelFrame.columns`).
        ``uses`` names, per column, the part of the formula that reads it
        (``"the fixed part"``, ``"the bar (f | g)"``), for messages.
        """
        read = {name: frame[name] for name in kinds}
        levels = {name: tuple(column.cat.categories) for name, column in read.items()
                  if isinstance(column.dtype, pd.CategoricalDtype)}
        return cls(kinds=dict(kinds), levels=levels, uses=dict(uses or {}))

    def prepare(self, data: pd.DataFrame, where: str = "the model") -> pd.DataFrame:
        """Check new data against the fitted kinds and convert it as the training data were.

        Parameters
        ----------
        data : pandas.DataFrame
            New data (not modified); columns the model does not read pass through.
        where : str
            For messages.

        Returns
        -------
        pandas.DataFrame
            A shallow copy with the model's columns converted; factor columns
            are categoricals with exactly the fitted categories.

        Raises
        ------
        DataError
            When a column changed kind (lme4: "variable 'x' was fitted with
            type 'numeric' but 'factor' was supplied"), or a factor column
            has levels the model never saw.
        """
        frame = data.copy(deep=False)
        for name, fitted in self.kinds.items():
            if name not in data.columns:
                continue
            column = data[name]
            where = self.uses.get(name, where)
            given = column_kind(column, name, where)
            if given != fitted:
                raise DataError(
                    f"Column {name!r} was {_DESCRIPTION[fitted]} when the model was fitted but is "
                    f"{_DESCRIPTION[given]} in the new data (dtype {column.dtype}); a model does not "
                    f"change a column's type: {_CONVERT[fitted]}.")
            if name in self.levels:
                frame[name] = self._recode(column, name, where)
            else:
                frame[name] = _CONVERTERS[fitted](column)
        return frame

    def _recode(self, column: pd.Series, name: str, where: str) -> pd.Series:
        """A factor column of new data as a categorical with the fitted categories."""
        categories = list(self.levels[name])
        exact = {value: value for value in categories}
        by_text: dict[str, Any] = {}
        for value in categories:
            by_text.setdefault(str(value), value)
        mapped: list[Any] = []
        unseen: list[Any] = []
        for value in column.astype(object):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                mapped.append(None)
            elif value in exact:
                mapped.append(exact[value])
            elif str(value) in by_text:
                mapped.append(by_text[str(value)])
            else:
                mapped.append(None)
                if value not in unseen:
                    unseen.append(value)
        if unseen:
            shown = ", ".join(repr(v) for v in unseen[:10])
            known = ", ".join(repr(v) for v in categories[:20])
            raise DataError(
                f"New data has level(s) {shown} of column {name!r} in {where} that the model "
                f"never saw; known levels: {known}.")
        return pd.Series(pd.Categorical(mapped, categories=categories), index=column.index,
                         name=column.name)


def _label(value: Any) -> str:
    """Text label of a level; integral floats print without a decimal point (R's as.character)."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _labels(values: Any) -> tuple[str, ...]:
    """:func:`_label` of each level (an Index or array); integer levels all at once."""
    dtype = getattr(values, "dtype", None)
    if dtype is not None and dtype.kind in "iu":  # the text of the Python int, as _label gives
        return tuple(map(str, values.tolist()))
    return tuple(_label(v) for v in values)


def group_labels(column: pd.Series, name: str | None = None,
                 where: str = "a grouping factor") -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes and level labels of one grouping column, in R's factor order.

    Categorical columns keep their category order (unused categories dropped,
    as lme4 drops them); numbers sort numerically and are compared exactly
    (integer IDs never pass through float); dates and times sort in time;
    text sorts as text.

    Raises
    ------
    DataError
        For an object column mixing types or a dtype that cannot be a label.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = np.asarray(column.array.codes, dtype=np.int64)
        categories = column.dtype.categories
        used = np.bincount(codes[codes >= 0], minlength=len(categories)) > 0
        if not used.all():  # unused categories dropped, the others renumbered in order
            codes = np.where(codes >= 0, (np.cumsum(used) - 1)[codes], -1)
            categories = categories[used]
        return codes, _labels(categories)
    name = str(column.name) if name is None else name
    kind = grouping_kind(column, name, where)
    values = column
    if kind == NUMERIC and pd.api.types.is_object_dtype(column.dtype):
        if not all(isinstance(v, (int, np.integer)) for v in pd.unique(column.dropna())):
            values = _as_float(column)
    elif kind == FACTOR:
        values = column.astype(object).where(column.notna(), None).map(
            lambda v: v if v is None else str(v))
    codes, uniques = pd.factorize(values, sort=True)
    if kind == LABELS:
        labels = tuple(str(v) for v in pd.Index(uniques).astype(str))
    else:
        labels = _labels(uniques)
    return np.asarray(codes, dtype=np.int64), labels


# A quoted piece ('...', "...", `...`) or an R-style dotted name such as my.days.
_QUOTED_OR_DOTTED = re.compile(r"""(`[^`]*`|'[^']*'|"[^"]*")|(?<![\w.])([^\W\d]\w*(?:\.\w+)+)(?![\w(])""")


def quote_dotted_names(text: str, columns: Collection[str]) -> str:
    """Backtick R-style dotted column names (``my.days``) so that formulaic reads them as names.

    formulaic takes a bare ``my.days`` as a name, but inside a Python
    expression (``log(my.days)``, ``I(my.days * 2)``) as the attribute
    ``days`` of ``my``. Only names that are columns of the data are quoted;
    ``np.log`` and ``contr.sum`` are left alone, and so is quoted text.
    """
    def quote(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"`{name}`" if name is not None and name in columns else match.group(0)

    return _QUOTED_OR_DOTTED.sub(quote, text)


def required_columns(text: str, context: Collection[str], where: str = "the formula") -> list[str]:
    """Data columns a formulaic right-hand side reads, sorted, dotted names kept whole.

    formulaic's ``required_variables`` splits a quoted ``my.days`` into ``my``;
    names written in backticks are taken from the text instead.

    Raises
    ------
    FormulaError
        If formulaic cannot parse the text.
    """
    try:
        found = _formula_columns(text)
    except (FormulaicError, SyntaxError) as error:
        raise FormulaError(f"Cannot parse {where}: {describe_formulaic_error(error)}") from None
    return sorted(found - set(context))


@functools.lru_cache(maxsize=256)
def _formula_columns(text: str) -> frozenset[str]:
    """The names a formulaic right-hand side reads as values, dotted names kept whole.

    Cached by text: parsing is a pure function of it, and a model asks for the
    columns of its formula parts several times (a parse failure raises, and is not cached).
    """
    # functions (log1p, poly) are required too, as callables; only values are columns
    found = {str(v) for v in Formula(text).required_variables
             if "value" in {getattr(role, "value", role) for role in getattr(v, "roles", {"value"})}}
    quoted = {piece[1:-1] for piece in re.findall(r"`[^`]*`", text)}
    prefixes = {name.split(".", 1)[0] for name in quoted if "." in name}
    return frozenset({name for name in found if name not in prefixes or name in quoted} | quoted)


# within(x, g) / between(log(x), `my g`): the second argument, a column name
_GROUP_ARGUMENT = re.compile(
    r"\b(?:within|between)\s*\([^,()]*(?:\([^()]*\)[^,()]*)*,\s*(`[^`]+`|[^\W\d][\w.]*)\s*\)")


def label_arguments(texts: Iterable[str]) -> set[str]:
    """Columns used only as labels by a transform: the group of ``within(x, g)`` and ``between(x, g)``.

    Such a column is a set of labels (matched as text, and a level new data
    brings is allowed), so the model frame leaves it as the user gave it.
    """
    found = set()
    for text in texts:
        for match in _GROUP_ARGUMENT.finditer(text):
            found.add(match.group(1).strip("`"))
    return found


def quote_formula(formula: ParsedFormula, terms: list[BarTerm],
                  columns: Iterable[object]) -> tuple[ParsedFormula, list[BarTerm]]:
    """The formula and bar terms with dotted column names backticked (:func:`quote_dotted_names`)."""
    pieces = (formula.response or "", formula.fixed, *formula.offsets, *(t.expr for t in terms))
    if not any("." in piece for piece in pieces):  # no piece can name a dotted column
        return formula, terms
    dotted = {str(c) for c in columns if "." in str(c)}
    if not dotted:
        return formula, terms
    response = formula.response
    if response is not None and response not in dotted:
        response = quote_dotted_names(response, dotted)
    quoted = dataclasses.replace(formula, response=response,
                                 fixed=quote_dotted_names(formula.fixed, dotted),
                                 offsets=tuple(quote_dotted_names(o, dotted) for o in formula.offsets))
    return quoted, [dataclasses.replace(t, expr=quote_dotted_names(t.expr, dotted)) for t in terms]


def new_model_matrix(spec: Any, frame: pd.DataFrame, where: str) -> np.ndarray:
    """The model matrix of new data from a frozen formulaic spec, which is left untouched.

    formulaic may update a spec's encoder state in place while encoding data
    of another kind; a copy is used so the fitted model never changes. Levels
    formulaic has not seen (it would encode them as the reference) raise.

    Raises
    ------
    DataError
        When the new data do not fit the spec, naming ``where``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataMismatchWarning)
        try:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # checked after
                matrix = copy.deepcopy(spec).get_model_matrix(frame, context=FORMULA_CONTEXT)
        except DataMismatchWarning as warning:
            text = str(warning)
            unseen = text[text.find(":") + 1:text.find(". They")].strip() if ". They" in text else text
            raise DataError(f"New data has level(s) {unseen} in {where} that the model never saw; "
                            "predict only for levels the model was fitted with.") from None
        except (FormulaicError, SyntaxError) as error:
            raise DataError(f"New data does not fit {where}: {describe_formulaic_error(error)}") from None
    return np.asarray(matrix, dtype=float)
