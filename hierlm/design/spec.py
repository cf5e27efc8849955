"""Build a frozen ModelSpec from a parsed formula and data, and matrices from the spec.

The spec records everything learnt from the training data: factor levels and
their reference, stateful-transform state (``center``, ``scale``, ``within``),
column names and the levels of each grouping factor. ``spec.design_for(new)``
builds X and the Z blocks for new data identically; grouping levels the model
never saw get code -1 and are reported per factor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError
from formulaic.model_spec import ModelSpec as FormulaicSpec

from hierlm.design import checks
from hierlm.design.blocks import Design, RandomBlock
from hierlm.design.transforms import FORMULA_CONTEXT
from hierlm.errors import DataError, FormulaError
from hierlm.formula import BarTerm, ParsedFormula, expand_bars
from hierlm.formula.parser import describe_formulaic_error

__all__ = ["GroupingSpec", "ModelSpec", "build_spec", "drop_unused_categories", "lme4_names", "group_labels"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_TREATMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\[(?:T\.)?(.+)\]$")


def lme4_names(names: list[str]) -> tuple[str, ...]:
    """Rename formulaic columns as lme4 does: ``f[T.b]`` -> ``fb``, ``x:f[T.b]`` -> ``x:fb``.

    Names of other shapes are kept. If renaming would make two names equal,
    formulaic's names are kept for all columns.
    """
    renamed = []
    for name in names:
        parts = []
        for part in name.split(":"):
            match = _TREATMENT.match(part)
            parts.append(match.group(1) + match.group(2) if match else part)
        renamed.append(":".join(parts))
    if len(set(renamed)) != len(renamed):
        return tuple(names)
    return tuple(renamed)


def group_labels(column: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes and level labels of one grouping column, in R's factor order.

    Categorical columns keep their category order (unused categories dropped,
    as lme4 drops them); numbers sort numerically; anything else sorts as text.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.cat.remove_unused_categories()
        return column.cat.codes.to_numpy(dtype=np.int64), tuple(_label(c) for c in column.cat.categories)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        uniques = np.unique(column.to_numpy(dtype=float))
        codes = np.searchsorted(uniques, column.to_numpy(dtype=float))
        return codes.astype(np.int64), tuple(_label(v) for v in uniques)
    text = column.astype(str).to_numpy(dtype=object)
    uniques = np.array(sorted(set(text)), dtype=object)
    codes = np.searchsorted(uniques, text)
    return codes.astype(np.int64), tuple(str(u) for u in uniques)


def _label(value: Any) -> str:
    """Text label of a level; integral floats print without a decimal point."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _plain(error: BaseException) -> str:
    """Error text without formulaic's colour codes, with a caret line under the culprit."""
    return describe_formulaic_error(error)


def _materialize(formula: str, data: pd.DataFrame, where: str) -> Any:
    """Run formulaic on ``formula`` with hierlm's transforms, translating its errors."""
    try:
        return model_matrix(formula, data, context=FORMULA_CONTEXT, na_action="ignore")
    except (FormulaicError, SyntaxError) as error:
        raise FormulaError(f"Cannot build {where} from {formula!r}: {_plain(error)}") from None


@dataclass(frozen=True)
class GroupingSpec:
    """What the training data taught about one random-effect block."""

    term: BarTerm
    columns: tuple[str, ...]
    formulaic_spec: FormulaicSpec
    levels: tuple[str, ...]

    @property
    def correlated(self) -> bool:
        """True when the block has correlation parameters."""
        return len(self.columns) > 1


@dataclass(frozen=True)
class ModelSpec:
    """Frozen recipe that turns a data frame into a Design, identically for new data.

    Attributes
    ----------
    formula : ParsedFormula
        The parsed formula.
    response : str
        Response column.
    fixed_spec : formulaic ModelSpec
        Spec of the fixed part (levels, contrasts, transform state).
    fixed_names : tuple of str
        lme4-style names of the fixed-effect columns.
    groupings : tuple of GroupingSpec
        One per random-effect block, in lme4 order.
    reference : dict
        Reference levels chosen by the user.
    """

    formula: ParsedFormula
    response: str
    fixed_spec: FormulaicSpec
    fixed_names: tuple[str, ...]
    groupings: tuple[GroupingSpec, ...]
    reference: Mapping[str, object] = field(default_factory=dict)

    def variables(self) -> list[str]:
        """Columns of the data the model reads (response first)."""
        return _variables(self.formula, [g.term for g in self.groupings])

    def design_for(
        self, data: pd.DataFrame, with_response: bool = False
    ) -> tuple[Design, dict[str, list[str]]]:
        """Build the Design of new data with the training spec.

        Parameters
        ----------
        data : DataFrame
            New data with every predictor and grouping column.
        with_response : bool
            Require and read the response too (otherwise y is NaN).

        Returns
        -------
        design : Design
            Matrices of the new data; unseen grouping levels have code -1.
        new_levels : dict
            Grouping factor -> labels in the new data that the model never saw.
        """
        data = checks.require_frame(data)
        response_only = set(_response_variables(self.response)) - set(
            _variables(self.formula, [g.term for g in self.groupings], with_response=False))
        names = [v for v in self.variables() if with_response or v not in response_only]
        checks.require_columns(data, names, "the model (new data)")
        missing = data[names].isna().any(axis=1)
        if missing.any():
            raise DataError(
                f"New data has missing values in {int(missing.sum())} row(s) "
                f"(columns {[c for c in names if data[c].isna().any()]}); predictions need complete rows."
            )
        checks.require_finite(data, names)
        # The reference levels are frozen in the formulaic specs (their level order), so they
        # are not re-applied: new data need not contain the reference level.
        _require_known_categories(data, self.fixed_spec, "the fixed part")
        _require_numeric_kinds(data, self.fixed_spec, "the fixed part")
        for grouping in self.groupings:
            _require_known_categories(data, grouping.formulaic_spec, f"the bar {grouping.term.source}")
            _require_numeric_kinds(data, grouping.formulaic_spec, f"the bar {grouping.term.source}")
        try:
            fixed = self.fixed_spec.get_model_matrix(data, context=FORMULA_CONTEXT)
        except FormulaicError as error:
            raise DataError(f"New data does not fit the fixed part: {_plain(error)}") from None
        blocks = []
        new_levels: dict[str, list[str]] = {}
        for grouping in self.groupings:
            try:
                z = grouping.formulaic_spec.get_model_matrix(data, context=FORMULA_CONTEXT)
            except FormulaicError as error:
                raise DataError(
                    f"New data does not fit the bar {grouping.term.source}: {_plain(error)}"
                ) from None
            labels = _combined_labels(data, grouping.term.factors)
            lookup = {label: i for i, label in enumerate(grouping.levels)}
            codes = np.array([lookup.get(label, -1) for label in labels], dtype=np.int64)
            unseen = sorted({label for label, code in zip(labels, codes, strict=True) if code < 0})
            if unseen:
                new_levels[grouping.term.group] = unseen
            blocks.append(_block(grouping, codes, np.asarray(z, dtype=float)))
        y = (_response_values(data, self.response) if with_response
             else np.full(len(data), np.nan))
        design = Design(y=y, X=np.asarray(fixed, dtype=float), fixed_names=self.fixed_names,
                        blocks=tuple(blocks), response=self.response,
                        row_index=data.index.to_numpy())
        return design, new_levels


def _require_known_categories(data: pd.DataFrame, spec: FormulaicSpec, where: str) -> None:
    """Raise a DataError naming a categorical predictor whose new data has unseen levels.

    formulaic would only warn and encode such rows as all-zero (the reference level).
    """
    for name, (kind, state) in spec.encoder_state.items():
        if getattr(kind, "value", kind) != "categorical" or name not in data.columns:
            continue
        categories = list(state.get("categories", ()))
        known = set(categories)
        unseen = [value for value in pd.unique(data[name].dropna()) if value not in known]
        if unseen:
            shown = ", ".join(repr(v) for v in unseen[:10])
            raise DataError(
                f"New data has level(s) {shown} of column {name!r} in {where} that the model "
                f"never saw; known levels: {', '.join(repr(v) for v in categories[:20])}."
            )


def _require_numeric_kinds(data: pd.DataFrame, spec: FormulaicSpec, where: str) -> None:
    """Raise a DataError naming a numeric predictor that is not numeric in new data.

    formulaic would re-encode such a column as categorical and, doing so, rewrite
    the frozen spec's encoder state in place, breaking every later prediction.
    """
    for name, (kind, _state) in spec.encoder_state.items():
        if getattr(kind, "value", kind) != "numerical" or name not in data.columns:
            continue
        if not pd.api.types.is_numeric_dtype(data[name]):
            raise DataError(
                f"Column {name!r} in {where} was numeric when the model was fitted but is "
                f"{data[name].dtype} in the new data; convert it with pandas.to_numeric."
            )


def drop_unused_categories(data: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Drop categories no row uses, as lme4's model frame does (``drop.unused.levels``).

    Otherwise an empty first category would become the treatment reference and
    its dummy columns would be all zero.
    """
    unused = [
        name for name in names
        if isinstance(data[name].dtype, pd.CategoricalDtype)
        and len(data[name].cat.categories) > data[name].nunique(dropna=True)
    ]
    if not unused:
        return data
    data = data.copy()
    for name in unused:
        data[name] = data[name].cat.remove_unused_categories()
    return data


def _response_variables(response: str) -> list[str]:
    """Data columns the response reads: itself, or those of an expression like ``log(y)``."""
    if _IDENTIFIER.match(response):
        return [response]
    try:
        names = sorted(str(v) for v in Formula(f"0 + I({response})").required_variables)
    except (FormulaicError, SyntaxError) as error:
        raise FormulaError(f"Cannot parse the response {response!r}: {_plain(error)}") from None
    return [name for name in names if name not in FORMULA_CONTEXT]


def _response_values(data: pd.DataFrame, response: str) -> np.ndarray:
    """The response as floats: a numeric column, or a transform of numeric columns."""
    if response in data.columns:
        return checks.require_numeric_response(data, response)
    for name in _response_variables(response):
        checks.require_numeric_response(data, name)
    with np.errstate(all="ignore"):
        matrix = _materialize(f"0 + I({response})", data, "the response")
    values = np.asarray(matrix, dtype=float).ravel()
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"The response {response!r} is not finite in {int(bad.sum())} row(s) "
                        f"(first at row {data.index[np.argmax(bad)]!r}); check the transform's domain.")
    return values


def _variables(formula: ParsedFormula, terms: list[BarTerm], with_response: bool = True) -> list[str]:
    """Every data column a formula reads, response first, without duplicates."""
    context = set(FORMULA_CONTEXT)
    found: list[str] = (list(_response_variables(formula.response))
                        if formula.response and with_response else [])
    try:
        texts = [formula.fixed] + [term.expr for term in terms]
        for text in texts:
            found.extend(sorted(str(v) for v in Formula(text).required_variables))
    except (FormulaicError, SyntaxError) as error:
        raise FormulaError(f"Cannot parse the formula {formula.text!r}: {_plain(error)}") from None
    for term in terms:
        found.extend(term.factors)
    unique: list[str] = []
    for name in found:
        if name not in context and name not in unique:
            unique.append(name)
    return unique


def _combined_labels(data: pd.DataFrame, factors: tuple[str, ...]) -> list[str]:
    """Level label of each row for a (possibly interacted) grouping."""
    per_factor = []
    for name in factors:
        codes, levels = group_labels(data[name])
        per_factor.append(np.asarray(levels, dtype=object)[codes])
    return [":".join(parts) for parts in zip(*per_factor, strict=True)]


def _grouping_codes(data: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes and labels of a grouping; interactions keep observed combinations only."""
    if len(factors) == 1:
        return group_labels(data[factors[0]])
    parts = [group_labels(data[name]) for name in factors]
    keys = np.stack([codes for codes, _ in parts], axis=1)
    unique_keys, codes = np.unique(keys, axis=0, return_inverse=True)
    labels = tuple(
        ":".join(parts[j][1][k] for j, k in enumerate(key)) for key in unique_keys
    )
    return codes.ravel().astype(np.int64), labels


def _block(grouping: GroupingSpec, codes: np.ndarray, z: np.ndarray) -> RandomBlock:
    """RandomBlock from a grouping spec and its matrices."""
    return RandomBlock(group=grouping.term.group, columns=grouping.columns,
                       correlated=grouping.correlated, levels=grouping.levels,
                       codes=codes, z=np.ascontiguousarray(z))


def _lme4_order(n_levels: list[int]) -> list[int]:
    """Term order lme4's mkReTrms uses: reversed stable ascending order, only if any term grows."""
    if not any(later > earlier for earlier, later in zip(n_levels, n_levels[1:], strict=False)):
        return list(range(len(n_levels)))
    ascending = sorted(range(len(n_levels)), key=lambda i: n_levels[i])
    return list(reversed(ascending))


def build_spec(
    formula: ParsedFormula,
    data: pd.DataFrame,
    na_action: str = "omit",
    reference: Mapping[str, object] | None = None,
) -> tuple[ModelSpec, Design]:
    """Learn a ModelSpec from data and build the training Design.

    Parameters
    ----------
    formula : ParsedFormula
        Output of :func:`hierlm.formula.parse_formula`.
    data : DataFrame
        Training data.
    na_action : {"omit", "raise"}
        What to do with rows that have missing values in used columns.
    reference : dict, optional
        Column -> level to use as the treatment-contrast reference.

    Returns
    -------
    spec : ModelSpec
    design : Design
    """
    data = checks.require_frame(data)
    terms = expand_bars(formula.bars)
    if formula.response is None:
        raise FormulaError("The formula has no response.")
    variables = _variables(formula, terms)
    checks.require_columns(data, _response_variables(formula.response), "the response")
    checks.require_columns(data, variables, f"the formula {formula.text!r}")
    data = checks.drop_missing(data, variables, na_action)
    checks.require_finite(data, variables)
    y = _response_values(data, formula.response)
    data = drop_unused_categories(data, variables)
    reference = dict(reference or {})
    data = checks.apply_reference_levels(data, reference)

    fixed = _materialize(formula.fixed, data, "the fixed-effect matrix")
    fixed_names = lme4_names(list(fixed.columns))
    X = np.asarray(fixed, dtype=float)
    checks.check_rank(X, fixed_names)

    groupings: list[GroupingSpec] = []
    blocks: list[RandomBlock] = []
    for term in terms:
        for name in term.factors:
            checks.warn_continuous_grouping(data, name, term.source)
        z = _materialize(term.expr, data, f"the bar {term.source}")
        codes, levels = _grouping_codes(data, term.factors)
        columns = lme4_names(list(z.columns))
        if not columns:
            raise FormulaError(f"The bar {term.source} has no columns.")
        checks.check_grouping(term.group, len(levels), len(columns), len(data), term.source)
        grouping = GroupingSpec(term=term, columns=columns, formulaic_spec=z.model_spec,
                                levels=levels)
        groupings.append(grouping)
        blocks.append(_block(grouping, codes, np.asarray(z, dtype=float)))
    order = _lme4_order([len(g.levels) for g in groupings])
    groupings = [groupings[i] for i in order]
    blocks = [blocks[i] for i in order]
    spec = ModelSpec(formula=formula, response=formula.response, fixed_spec=fixed.model_spec,
                     fixed_names=fixed_names, groupings=tuple(groupings), reference=reference)
    design = Design(y=y, X=X, fixed_names=fixed_names, blocks=tuple(blocks),
                    response=formula.response, row_index=data.index.to_numpy())
    return spec, design
