"""Build a frozen ModelSpec from a parsed formula and data, and matrices from the spec.

The spec records everything learnt from the training data: factor levels and
their reference, stateful-transform state (``center``, ``scale``, ``within``),
column names and the levels of each grouping factor. ``spec.design_for(new)``
builds X and the Z blocks for new data identically; grouping levels the model
never saw get code -1 and are reported per factor.

The data reach formulaic through the model frame of :mod:`hierlm.design.frame`
(numbers as float64, text as factors, kinds checked again for new data), and
the built matrices are checked for values a transform made non-finite.
Aliased fixed-effect columns are dropped with a warning, as lme4 drops them,
and the spec remembers which, so new data lose the same columns.

The steps live by subject: :mod:`~hierlm.design.variables` (which columns the
model reads), :mod:`~hierlm.design.materialize` (formulaic with hierlm's
transforms, lme4's names), :mod:`~hierlm.design.response` (response and
offsets as numbers) and :mod:`~hierlm.design.grouping` (the bars' groupings);
this module puts them together.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic.model_spec import ModelSpec as FormulaicSpec

from hierlm.design import checks
from hierlm.design.blocks import Design, RandomBlock
from hierlm.design.frame import (
    FrameSpec,
    ModelFrame,
    column_kinds,
    group_labels,
    new_model_matrix,
    quote_formula,
)
from hierlm.design.grouping import GroupingSpec, _block, _combined_labels, _grouping_codes, _lme4_order
from hierlm.design.materialize import _fixed_part, _materialize, lme4_names
from hierlm.design.residual import ResidualDesign, ResidualSpec, build_residual, parse_residual
from hierlm.design.response import _binary_factor_response, _offset_values, _response_and_trials
from hierlm.design.variables import _column_uses, _residual_columns, _response_variables, _variables
from hierlm.errors import DataError, FormulaError, HierlmWarning
from hierlm.families import Family, get_family
from hierlm.formula import ParsedFormula, expand_bars
from hierlm.formula.parser import split_cbind

__all__ = ["GroupingSpec", "ModelSpec", "build_spec", "drop_unused_categories", "lme4_names", "group_labels"]


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
    residual : ResidualSpec or None
        The residual covariance structure (``residual=``), if any.
    variance : str or None
        The ``variance=`` column (nlme's ``varIdent``), if any.
    frame : FrameSpec
        Kind (and categories) of each column formula terms read; new data
        must match (:meth:`hierlm.design.frame.FrameSpec.prepare`).
    kept_columns : tuple of int or None
        Columns of formulaic's fixed-effect matrix that X keeps, when aliased
        columns were dropped (None: all of them).
    weights : str or None
        The ``weights=`` column (prior weights), if weights were given by name.
    array_offset : bool
        Whether the training data had an ``offset=`` array (new data need their own).
    """

    formula: ParsedFormula
    response: str
    fixed_spec: FormulaicSpec
    fixed_names: tuple[str, ...]
    groupings: tuple[GroupingSpec, ...]
    reference: Mapping[str, object] = field(default_factory=dict)
    residual: ResidualSpec | None = None
    variance: str | None = None
    frame: FrameSpec = field(default_factory=FrameSpec)
    kept_columns: tuple[int, ...] | None = None
    weights: str | None = None
    array_offset: bool = False

    def model_frame(self, data: pd.DataFrame) -> pd.DataFrame:
        """``data`` with the model's columns converted as formulaic saw them when fitting."""
        return self.frame.prepare(data, "the data")

    def fixed_matrix(self, frame: pd.DataFrame, where: str = "the fixed part") -> np.ndarray:
        """X of a converted frame (:meth:`model_frame`), without the columns dropped as aliased."""
        matrix = new_model_matrix(self.fixed_spec, frame, where)
        return matrix if self.kept_columns is None else matrix[:, list(self.kept_columns)]

    def residual_columns(self) -> list[str]:
        """Columns the residual structure reads (time, group, ``variance=``)."""
        return _residual_columns(self.residual, self.variance)

    def variables(self) -> list[str]:
        """Columns of the data the model reads (response first)."""
        found = _variables(self.formula, [g.term for g in self.groupings])
        extra = self.residual_columns() + ([self.weights] if self.weights else [])
        return found + [c for c in extra if c not in found]

    def offset_values(self, frame: pd.DataFrame, extra: np.ndarray | None = None) -> np.ndarray:
        """The summed offsets of a converted frame (:meth:`model_frame`), plus an ``extra`` array."""
        return _offset_values(frame, self.formula.offsets, extra)

    def design_for(
        self, data: pd.DataFrame, with_response: bool = False, offset: np.ndarray | None = None
    ) -> tuple[Design, dict[str, list[str]]]:
        """Build the Design of new data with the training spec.

        Parameters
        ----------
        data : DataFrame
            New data with every predictor and grouping column.
        with_response : bool
            Require and read the response too (otherwise y is NaN); with it
            the ``weights=`` column (or a ``cbind`` response's trials) too.
        offset : array, optional
            Offset of the new rows when the model was fitted with an
            ``offset=`` array (a column or ``offset()`` term is read from ``data``).

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
        if self.weights:
            response_only.add(self.weights)
        names = [v for v in self.variables() if with_response or v not in response_only]
        checks.require_columns(data, names, "the model (new data)")
        missing = data[names].isna().any(axis=1)
        if missing.any():
            raise DataError(
                f"New data has missing values in {int(missing.sum())} row(s) "
                f"(columns {[c for c in names if data[c].isna().any()]}); predictions need complete rows."
            )
        checks.require_finite(data, names)
        # Kinds as when fitted, factors on the fitted categories (so the reference levels,
        # frozen there, need not occur in new data); the spec itself is never modified.
        frame = self.frame.prepare(data, "the new data")
        X = self.fixed_matrix(frame, "the fixed part")
        checks.require_finite_matrix(X, self.fixed_names, "the fixed part (new data)", data.index)
        blocks = []
        new_levels: dict[str, list[str]] = {}
        for grouping in self.groupings:
            where = f"the bar {grouping.term.source}"
            z = new_model_matrix(grouping.formulaic_spec, frame, where)
            checks.require_finite_matrix(z, grouping.columns, f"{where} (new data)", data.index)
            labels = _combined_labels(data, grouping.term.factors)
            lookup = {label: i for i, label in enumerate(grouping.levels)}
            codes = np.array([lookup.get(label, -1) for label in labels], dtype=np.int64)
            unseen = sorted({label for label, code in zip(labels, codes, strict=True) if code < 0})
            if unseen:
                new_levels[grouping.term.group] = unseen
            blocks.append(_block(grouping, codes, z))
        if offset is None and self.array_offset:
            warnings.warn("The model was fitted with an offset= array, which new data do not "
                          "have; pass offset= for the new rows (the array part is 0 here).",
                          HierlmWarning, stacklevel=3)
        extra = None if offset is None else checks.require_offset(offset, len(data), "offset=")
        y, weights = np.full(len(data), np.nan), None
        if with_response:
            y, weights = _response_and_trials(frame, self.response)
            if self.weights:
                weights = checks.require_weights(frame[self.weights].to_numpy(dtype=float),
                                                 f"weights column {self.weights!r}")
        design = Design(y=y, X=X, fixed_names=self.fixed_names,
                        blocks=tuple(blocks), response=self.response,
                        row_index=data.index.to_numpy(),
                        offset=self.offset_values(frame, extra),
                        weights=np.ones(len(data)) if weights is None else weights)
        return design, new_levels


def drop_unused_categories(data: pd.DataFrame, names: list[str],
                           columns: Mapping[str, pd.Series] | None = None) -> pd.DataFrame:
    """Drop categories no row uses, as lme4's model frame does (``drop.unused.levels``).

    Otherwise an empty first category would become the treatment reference and
    its dummy columns would be all zero. ``columns``: those of ``data`` already
    read (:func:`~hierlm.design.checks.read_columns`).
    """
    unused = [name for name in names
              if _has_unused_categories(checks.column_of(data, columns, name))]
    if not unused:
        return data
    data = data.copy()
    for name in unused:
        data[name] = data[name].cat.remove_unused_categories()
    return data


def _has_unused_categories(column: pd.Series) -> bool:
    """True for a categorical column with a category that no row has."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return False
    codes = np.asarray(column.array.codes)
    n_categories = len(column.dtype.categories)
    return bool(n_categories and not np.all(np.bincount(codes[codes >= 0], minlength=n_categories)))


def build_spec(
    formula: ParsedFormula,
    data: pd.DataFrame,
    na_action: str = "omit",
    reference: Mapping[str, object] | None = None,
    residual: str | None = None,
    variance: str | None = None,
    drop_aliased: bool = True,
    family: Family | None = None,
    weights: str | np.ndarray | None = None,
    offset: str | np.ndarray | None = None,
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
    residual : str, optional
        Residual covariance structure, e.g. ``"ar1(week | id)"``
        (:mod:`hierlm.design.residual`).
    variance : str, optional
        Column whose levels get their own residual SD (nlme's ``varIdent``).
    drop_aliased : bool
        Drop fixed-effect columns that are linear combinations of earlier
        ones, with a warning, as lme4 does (True), or raise
        :class:`~hierlm.errors.RankDeficientError` (False).
    family : Family, optional
        The response family (Gaussian when None); it checks the response.
    weights : str or array, optional
        Prior weights: a column name or an array of one value per row of
        ``data`` (binomial: the trials of a proportion response).
    offset : str or array, optional
        A column name or array added to the linear predictor (with the
        formula's ``offset()`` terms).

    Returns
    -------
    spec : ModelSpec
    design : Design
    """
    data = checks.require_frame(data)
    family = get_family("gaussian") if family is None else family
    weights_array = None if weights is None or isinstance(weights, str) else \
        checks.require_weights(checks.require_row_array(weights, len(data), "weights="), "weights=")
    offset_array = None if offset is None or isinstance(offset, str) else \
        checks.require_offset(offset, len(data), "offset=")
    if isinstance(offset, str):
        checks.require_columns(data, [offset], "offset=")
        formula = dataclasses.replace(formula, offsets=formula.offsets + (offset,))
    weights_column = weights if isinstance(weights, str) else None
    if weights_column is not None:
        checks.require_columns(data, [weights_column], "weights=")
    terms = expand_bars(formula.bars)
    formula, terms = quote_formula(formula, terms, data.columns)
    if formula.response is None:
        raise FormulaError("The formula has no response.")
    variables = _variables(formula, terms)
    checks.require_columns(data, _response_variables(formula.response), "the response")
    checks.require_columns(data, variables, f"the formula {formula.text!r}")
    residual_spec = parse_residual(residual) if residual is not None else None
    if variance is not None and not isinstance(variance, str):
        raise FormulaError(f"variance= names a column, e.g. variance='Sex'; got {variance!r}.")
    extra = _residual_columns(residual_spec, variance)
    checks.require_columns(data, extra, "residual= / variance=")
    if weights_column is not None:
        extra = extra + [weights_column]
    variables = variables + [c for c in extra if c not in variables]
    if weights_array is not None or offset_array is not None:
        complete = ~checks.incomplete_rows(data, variables)
        weights_array = None if weights_array is None else weights_array[complete]
        offset_array = None if offset_array is None else offset_array[complete]
    # the used columns, each read once; read again whenever a step returns a new frame
    used = checks.read_columns(data, variables)
    data, used = _same_columns(checks.drop_missing(data, variables, na_action, used), data, used)
    checks.require_finite(data, variables, used)
    if family.name == "binomial":
        data, used = _same_columns(_binary_factor_response(data, formula.response), data, used)
    # (the values are kept: the steps below change no rows, and no response column unless a
    # reference= level names it)
    responses = {name: checks.require_numeric_response(data, name, used)
                 for name in _response_variables(formula.response)}
    data, used = _same_columns(drop_unused_categories(data, variables, used), data, used)
    uses = _column_uses(formula, terms)
    kinds = column_kinds(data, list(uses), f"the formula {formula.text!r}", used)
    for term in terms:
        for name in term.factors:  # refuses unusable label types
            group_labels(checks.column_of(data, used, name), name, f"the bar {term.source}")
    reference = dict(reference or {})
    data, used = _same_columns(checks.apply_reference_levels(data, reference), data, used)
    frame = ModelFrame(data, kinds, used)  # (the frame itself is built only if formulaic needs it)
    if formula.response in responses and formula.response not in reference \
            and split_cbind(formula.response) is None:
        y, trials = responses[formula.response], None
    elif formula.response in frame.columns and split_cbind(formula.response) is None:
        y, trials = checks.require_numeric_response(data, formula.response, frame.columns), None
    else:
        y, trials = _response_and_trials(frame.frame, formula.response)
    if weights_column is not None:
        weights_array = checks.require_weights(frame.frame[weights_column].to_numpy(dtype=float),
                                               f"weights column {weights_column!r}")
    if trials is not None:
        if family.name != "binomial":
            raise FormulaError(f"A cbind() response (successes, failures) is binomial; fit it "
                               f"with family='binomial', not {family.name!r}.")
        if weights_array is not None:
            raise FormulaError("Give the binomial trials once: by cbind(successes, failures) "
                               "or by a proportion response with weights=, not both.")
        weights_array = trials
    y, prior_weights = family.check_response(y, weights_array, f"The response {formula.response!r}")
    checks.check_response(y, formula.response)
    offset_values = _offset_values(frame.frame if formula.offsets else data, formula.offsets,
                                   offset_array)
    checks.require_offset(offset_values, len(y), "the offset")

    fixed_spec, fixed_columns, X = _fixed_part(formula.fixed, frame, kinds)
    all_names = lme4_names(fixed_columns)
    checks.require_finite_matrix(X, all_names, "the fixed part", data.index)
    kept = checks.check_rank(X, all_names, drop_aliased)
    fixed_names = tuple(all_names[j] for j in kept)
    X = X[:, kept]

    groupings: list[GroupingSpec] = []
    blocks: list[RandomBlock] = []
    for term in terms:
        for name in term.factors:
            checks.warn_continuous_grouping(data, name, term.source)
        z = _materialize(term.expr, frame.frame, f"the bar {term.source}")
        codes, levels = _grouping_codes(data, term.factors, used)
        columns = lme4_names(list(z.columns))
        if not columns:
            raise FormulaError(f"The bar {term.source} has no columns.")
        z_values = np.asarray(z, dtype=float)
        checks.require_finite_matrix(z_values, columns, f"the bar {term.source}", data.index)
        grouping = GroupingSpec(term=term, columns=columns, formulaic_spec=z.model_spec,
                                levels=levels)
        if grouping.structure.is_lme4 and family.name == "gaussian":
            # (GLMMs may have one level per row: an observation-level effect for overdispersion)
            # lme4's rule (levels x terms < rows) is about unstructured blocks; a patterned
            # structure has fewer parameters than its random effects suggest.
            checks.check_grouping(term.group, len(levels), len(columns), len(data), term.source)
        groupings.append(grouping)
        blocks.append(_block(grouping, codes, z_values))
    checks.warn_repeated_terms((g.term.group, g.columns, g.term.source) for g in groupings)
    order = _lme4_order([len(g.levels) for g in groupings])
    groupings = [groupings[i] for i in order]
    blocks = [blocks[i] for i in order]
    spec = ModelSpec(formula=formula, response=formula.response, fixed_spec=fixed_spec,
                     fixed_names=fixed_names, groupings=tuple(groupings), reference=reference,
                     residual=residual_spec, variance=variance,
                     frame=FrameSpec.learn(frame.columns, kinds, uses),
                     kept_columns=None if len(kept) == len(all_names) else tuple(kept),
                     weights=weights_column, array_offset=offset_array is not None)
    residual_design = None
    if residual_spec is not None or variance is not None:
        residual_design = _residual_design(data, residual_spec, variance, blocks, used)
    design = Design(y=y, X=X, fixed_names=fixed_names, blocks=tuple(blocks),
                    response=formula.response, row_index=data.index.to_numpy(),
                    residual=residual_design, offset=offset_values, weights=prior_weights)
    return spec, design


def _same_columns(new: pd.DataFrame, old: pd.DataFrame, columns: dict[str, pd.Series]
                  ) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """``new`` and its columns: ``columns`` when a step returned ``old`` itself, else read again."""
    return new, (columns if new is old else checks.read_columns(new, columns))


def _residual_design(data: pd.DataFrame, residual: ResidualSpec | None,
                     variance: str | None, blocks: list[RandomBlock],
                     columns: Mapping[str, pd.Series] | None = None) -> ResidualDesign:
    """Index the training rows for the residual structure (``variance=`` alone: independence).

    ``columns``: those of ``data`` already read (:func:`~hierlm.design.checks.read_columns`).
    """
    if residual is None:
        # varIdent alone: independent residuals with SDs by level (nlme's weights = varIdent),
        # grouped by the random effects' factor so that each group's covariance is one block
        groupings = {block.group for block in blocks}
        if len(groupings) > 1:
            raise FormulaError(
                f"variance={variance!r} with random effects on several grouping factors "
                f"({', '.join(sorted(groupings))}) is not supported; use one grouping factor.")
        if blocks:
            group_codes = blocks[0].codes
            group_labels = blocks[0].levels
            name = blocks[0].group
        else:
            group_codes = np.arange(len(data), dtype=np.int64)
            group_labels = tuple(str(i) for i in range(len(data)))
            name = "row"
        residual = ResidualSpec("independent", None, name)
    else:
        group_codes, group_labels = _grouping_codes(data, (residual.group,), columns)
        intercepts = [b.term for b in blocks if b.columns == ("Intercept",)
                      and b.group == residual.group]
        if residual.name in ("cs", "csh") and intercepts:
            warnings.warn(
                f"The random intercept ({intercepts[0]}) and residual={residual.text!r} both "
                "make every pair of a group's observations equally correlated: the two are not "
                "jointly identified (the intercept variance trades against the residual "
                "correlation). Keep one of them.", HierlmWarning, stacklevel=4)
    variance_codes: np.ndarray | None = None
    variance_labels: tuple[str, ...] = ()
    if variance is not None:
        variance_codes, variance_labels = _grouping_codes(data, (variance,), columns)
    return build_residual(residual, data, group_codes, group_labels, variance, variance_codes,
                          variance_labels, columns=dict(columns) if columns is not None else None)
