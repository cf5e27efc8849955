"""Learn a frozen spec and the sufficient statistics of data held by an engine.

Two kinds of aggregate query, both run by the engine:

1. the spec: the schema, missing values per column, the levels of every
   factor and grouping factor (``SELECT DISTINCT``), the response's range;
   formulaic then builds the spec on a small prototype frame holding every
   level, so names, contrasts and level order are those of the in-memory path;
2. the statistics: for each cell of the grouping factors (``GROUP BY g1, g2``),
   the count and the Gram matrix of ``[Z X y]``, with each design column an
   SQL expression of the spec (:mod:`hierlm.sources.sqlexpr`).

The design handed to the engines is row-less (:class:`~hierlm.design.blocks.RowSummary`):
per cell, ``min(rows, k)`` square-root rows whose cross-products equal the
cell's Gram matrix (a scaled eigen-decomposition), as an incremental QR
summarises rows. Every cross-product the ML/REML kernel, Satterthwaite,
Kenward-Roger-free tables, MAP and the marginal NUTS engine read is exact;
the cost is O(cells x k^2), not O(rows).
"""

from __future__ import annotations

import ast
import re
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design import checks
from hierlm.design.blocks import ColumnMoments, Design, RandomBlock, RowSummary
from hierlm.design.frame import FrameSpec, column_kinds, learn_frame, quote_formula
from hierlm.design.grouping import GroupingSpec, _combined_labels, _grouping_codes, _lme4_order
from hierlm.design.materialize import _materialize, lme4_names
from hierlm.design.spec import ModelSpec
from hierlm.design.variables import _column_uses, _response_variables, _variables
from hierlm.errors import DataError, FormulaError, MissingDataWarning
from hierlm.formula import ParsedFormula, expand_bars
from hierlm.sources.base import DataSource, Progress
from hierlm.sources.sqlexpr import (
    UNTRANSLATABLE_HINT,
    literal,
    matrix_sql,
    numeric_sql,
    quote,
    scaling_key,
)

__all__ = ["SourceRows", "build_source_design"]

# formulaic's and hierlm's stateful transforms whose state the engine does not learn
# (center, scale and standardize are learned by aggregate queries: _scaling_states)
_STATEFUL = re.compile(r"\b(within|between|poly|bs|cr|cs|cc|te|"
                       r"hashed|lag)\s*\(")


@dataclass(frozen=True, eq=False)
class SourceRows:
    """How to find the model's rows in the engine again (second passes).

    Attributes
    ----------
    source : DataSource
        The engine.
    complete : str
        SQL condition of the rows the model used (complete in its columns).
    x_sql, y_sql : list of str, str
        SQL of the kept fixed-effect columns and of the response.
    z_sql : list of list of str
        SQL of each block's random-effect columns.
    factors : list of tuple of str
        Data columns of each block's grouping factor.
    keys : list of pandas.DataFrame
        Per block, the raw values of its grouping columns, one row per level in level order.
    """

    source: DataSource
    complete: str
    x_sql: list[str]
    y_sql: str
    z_sql: list[list[str]]
    factors: list[tuple[str, ...]]
    keys: list[pd.DataFrame] = field(default_factory=list)

    def second_pass(self, fit: Any, what: str = "fitted") -> Any:
        """Fitted values (``what="fitted"``) or residuals (``"residuals"``, ``"scaled"``) in the engine.

        Returns the engine's lazy result with every column of the used rows
        plus ``fitted`` (and ``residual``); see :mod:`hierlm.sources.passes`.
        NUTS fits use the posterior means of beta, b and sigma.
        """
        from hierlm.sources.passes import second_pass_select

        draws = fit.draws()
        beta = np.asarray(draws.beta, dtype=float).mean(axis=0)
        effects = [np.asarray(e, dtype=float) for e in draws.effect_means()]
        sigma = float(np.mean(draws.sigma))
        sql, tables = second_pass_select(self, beta, effects, what, sigma)
        return self.source.second_pass(sql, tables)

    def column_means(self, columns: list[str]) -> dict[str, float]:
        """Means of numeric data columns over the model's rows (one aggregate query)."""
        if not columns:
            return {}
        sums = ", ".join(f"SUM(CAST({quote(c)} AS DOUBLE)) AS s{i}" for i, c in enumerate(columns))
        row = _combine(self.source.query(f"SELECT COUNT(*) AS n, {sums} FROM data "
                                         f"WHERE {self.complete}"), [], self.source).iloc[0]
        return {c: float(row[f"s{i}"]) / float(row["n"]) for i, c in enumerate(columns)}

    def design_batches(self, size: int) -> Iterator[dict[str, Any]]:
        """The model's rows streamed from the engine as design arrays, ``size`` rows at a time.

        Each batch: ``y`` (m,), ``X`` (m, p), and per block ``z`` (m, q) and
        ``codes`` (m,) (the level positions of the fit). Row order is the
        engine's; nothing is kept between batches.
        """
        tables: dict[str, pd.DataFrame] = {}
        tag = uuid.uuid4().hex[:8]
        columns = [f"({self.y_sql}) AS __hl_y"]
        columns += [f"({x}) AS __hl_x{j}" for j, x in enumerate(self.x_sql)]
        joins = []
        for k, (keys, z_sql) in enumerate(zip(self.keys, self.z_sql, strict=True)):
            name, alias = f"__hl_codes{k}_{tag}", f"__hl_c{k}"
            table = keys.set_axis([f"__hl_k{j}" for j in range(keys.shape[1])], axis=1).copy()
            table["__hl_code"] = np.arange(len(table), dtype=np.int64)
            tables[name] = table
            on = " AND ".join(f"data.{quote(col)} = {alias}.__hl_k{j}"
                              for j, col in enumerate(self.factors[k]))
            joins.append(f"LEFT JOIN {name} AS {alias} ON {on}")
            columns.append(f"{alias}.__hl_code AS __hl_code{k}")
            columns += [f"({z}) AS __hl_z{k}_{i}" for i, z in enumerate(z_sql)]
        sql = f"SELECT {', '.join(columns)} FROM data {' '.join(joins)} WHERE {self.complete}"
        rows = self.source.second_pass(sql, tables)
        for frame in self.source.batches(rows, size):  # type: ignore[attr-defined]
            yield {
                "y": frame["__hl_y"].to_numpy(dtype=float),
                "X": frame[[f"__hl_x{j}" for j in range(len(self.x_sql))]].to_numpy(dtype=float),
                "z": [frame[[f"__hl_z{k}_{i}" for i in range(len(z))]].to_numpy(dtype=float)
                      for k, z in enumerate(self.z_sql)],
                "codes": [frame[f"__hl_code{k}"].to_numpy(dtype=np.int64)
                          for k in range(len(self.z_sql))],
            }

    def residual_quantiles(self, fit: Any, probs: list[float]) -> np.ndarray:
        """Quantiles of the scaled residuals, from a second pass (NaN where the engine has none)."""
        saved = getattr(self.source, "saved_quantiles", None)  # a loaded fit's (ReplaySource)
        if saved is not None:
            return np.asarray(saved(probs), dtype=float)
        rows = self.second_pass(fit, "scaled")
        found = getattr(self.source, "quantiles", lambda *_: None)(rows, "residual", probs)
        return np.full(len(probs), np.nan) if found is None else np.asarray(found, dtype=float)


def _combine(frame: pd.DataFrame, keys: list[str], source: DataSource) -> pd.DataFrame:
    """Sum the partial results of a partitioned source over its key columns."""
    if not source.partitioned:
        return frame
    if not keys:
        return frame.sum(numeric_only=True).to_frame().T
    return frame.groupby(keys, sort=False, dropna=False).sum().reset_index()


def _missing_counts(source: DataSource, schema: Mapping[str, str], variables: list[str],
                    na_action: str) -> str:
    """Count rows and missing values; warn (or raise) as the in-memory path; return the WHERE."""
    if na_action not in ("omit", "raise"):
        from hierlm.errors import InputTypeError

        raise InputTypeError(f"na_action must be 'omit' or 'raise', not {na_action!r}.")
    conditions = {v: source.missing(quote(v), schema[v]) for v in variables}
    any_missing = " OR ".join(f"({c})" for c in conditions.values()) or "FALSE"
    parts = ["COUNT(*) AS n_rows",
             f"SUM(CASE WHEN {any_missing} THEN 1 ELSE 0 END) AS n_incomplete"]
    parts += [f"SUM(CASE WHEN {c} THEN 1 ELSE 0 END) AS na_{i}"
              for i, c in enumerate(conditions.values())]
    counts = _combine(source.query(f"SELECT {', '.join(parts)} FROM data"), [], source)
    row = counts.iloc[0]
    n_rows, n_dropped = int(row["n_rows"]), int(row["n_incomplete"] or 0)
    if n_dropped:
        detail = ", ".join(f"{v!r}: {int(row[f'na_{i}'])}" for i, v in enumerate(variables)
                           if int(row[f"na_{i}"] or 0))
        if na_action == "raise":
            raise DataError(f"{n_dropped} row(s) have missing values (by column: {detail}). "
                            "Remove or impute them, or pass na_action='omit' to drop them.")
        if n_dropped == n_rows:
            raise DataError(
                f"No rows are left after dropping rows with missing values (by column: {detail}).")
        warnings.warn(f"Dropped {n_dropped} of {n_rows} row(s) with missing values "
                      f"(by column: {detail}).", MissingDataWarning, stacklevel=5)
    if n_rows == 0:
        raise DataError(f"The {source.kind} data have no rows.")
    return f"NOT ({any_missing})"


def _distinct(source: DataSource, columns: tuple[str, ...], where: str) -> pd.DataFrame:
    """Distinct combinations of ``columns`` among the complete rows."""
    names = ", ".join(quote(c) for c in columns)
    frame = source.query(f"SELECT DISTINCT {names} FROM data WHERE {where}")
    return frame.drop_duplicates(ignore_index=True) if source.partitioned else frame


def _prototype(levels: Mapping[str, pd.Series], schema: Mapping[str, str],
               columns: list[str]) -> pd.DataFrame:
    """A small frame with every level of every categorical column formula terms read."""
    size = max([8] + [len(values) for values in levels.values()])
    data: dict[str, Any] = {}
    for k, name in enumerate(columns):
        if name in levels:
            values = levels[name].to_numpy()
            data[name] = np.resize(values, size)
        else:
            # positive, distinct values keep log/sqrt in their domain and X of full rank
            base = 1.0 + np.mod(np.arange(size) * (0.618034 + 0.1 * k), 1.0)
            data[name] = (np.round(base * 10).astype(np.int64) if schema[name] == "integer"
                          else base)
    return pd.DataFrame(data)


def _square_root_rows(gram: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose cross-products equal each cell's Gram matrix: ``(rows, k)`` and their cell.

    Each cell is scaled to unit diagonal, eigen-decomposed, and keeps its
    ``min(count, k)`` largest eigenpairs (the rest are zero in exact arithmetic).
    """
    n_cells, k, _ = gram.shape
    diag = np.sqrt(np.maximum(np.einsum("cii->ci", gram), 0.0))
    scale = np.where(diag > 0, diag, 1.0)
    scaled = gram / scale[:, :, None] / scale[:, None, :]
    values, vectors = np.linalg.eigh(scaled)
    keep = np.minimum(counts, k).astype(np.int64)
    rank = np.arange(k)[None, :] >= (k - keep)[:, None]  # eigh sorts ascending
    rows = np.sqrt(np.maximum(values, 0.0))[:, :, None] * vectors.transpose(0, 2, 1)
    rows = rows * scale[:, None, :]
    return rows[rank], np.repeat(np.arange(n_cells), keep)


def _sql_of_response(response: str, schema: Mapping[str, str]) -> str:
    if response in schema:
        return f"CAST({quote(response)} AS DOUBLE)"
    return numeric_sql(response, schema)


def build_source_design(formula: ParsedFormula, source: DataSource, na_action: str = "omit",
                        reference: Mapping[str, object] | None = None,
                        drop_aliased: bool = True,
                        progress: Progress | None = None) -> tuple[ModelSpec, Design]:
    """Learn the spec and a row-less design from data held by an engine.

    Parameters
    ----------
    formula : ParsedFormula
        The parsed formula.
    source : DataSource
        The engine holding the rows.
    na_action, reference, drop_aliased
        As for the in-memory path (:func:`hierlm.design.spec.build_spec`).
    progress : Progress, optional
        Stage reports on stderr.

    Returns
    -------
    spec : ModelSpec
    design : Design
        Row-less (``design.summary`` is set).
    """
    progress = progress or Progress(False, source.kind)
    with progress.stage("schema, missing values and levels"):
        schema = source.schema()
        names = list(schema)
        empty = pd.DataFrame(columns=names)
        terms = expand_bars(formula.bars)
        formula, terms = quote_formula(formula, terms, names)
        if formula.response is None:
            raise FormulaError("The formula has no response.")
        if not terms:
            raise FormulaError(f"{source.kind} data are fitted as mixed models: the formula "
                               f"{formula.text!r} has no random-effect term.")
        for text in [formula.fixed] + [t.expr for t in terms]:
            match = _STATEFUL.search(text)
            if match:
                raise FormulaError(
                    f"The transform {match.group(1)}() learns its state from the rows "
                    f"(in {text!r}); {UNTRANSLATABLE_HINT}.")
        variables = _variables(formula, terms)
        variables += [c for c in _scaled_columns([formula.fixed] + [t.expr for t in terms], schema)
                      if c not in variables]
        checks.require_columns(empty, _response_variables(formula.response), "the response")
        checks.require_columns(empty, variables, f"the formula {formula.text!r}")
        for name in _response_variables(formula.response):
            if schema[name] not in ("float", "integer"):
                raise DataError(f"The response {name!r} is not numeric in the {source.kind} data "
                                f"(its kind there: {schema[name]}); cast it to a number.")
        group_columns = list(dict.fromkeys(f for t in terms for f in t.factors))
        for name in group_columns:
            if schema[name] == "float":
                raise DataError(
                    f"The grouping column {name!r} holds floating-point numbers in the "
                    f"{source.kind} data; group identifiers must be integers or text "
                    f"(cast it, e.g. CAST({name} AS BIGINT) or AS VARCHAR).")
        complete = _missing_counts(source, schema, variables, na_action)
        uses = _column_uses(formula, terms)
        categorical = [c for c in uses if schema[c] in ("string", "bool")]
        levels = {c: _distinct(source, (c,), complete)[c] for c in categorical}
        for column, values in levels.items():
            levels[column] = values.sort_values(ignore_index=True)
        group_keys = {t.factors: _distinct(source, t.factors, complete) for t in terms}
        response_sql = _sql_of_response(formula.response, schema)
        span = source.query(f"SELECT MIN({response_sql}) AS lo, MAX({response_sql}) AS hi "
                            f"FROM data WHERE {complete}")
        checks.check_response(np.array([float(span["lo"].min()), float(span["hi"].max())]),
                              formula.response)

    # (the argument of center(x), scale(x) is not among the uses formulaic reports)
    proto_columns = list(uses) + [v for v in variables if v not in uses and v in schema]
    proto = _prototype(levels, schema, proto_columns)
    reference = dict(reference or {})
    proto = checks.apply_reference_levels(proto, reference)
    kinds = column_kinds(proto, proto_columns, f"the formula {formula.text!r}")
    frame = learn_frame(proto, kinds)
    fixed = _materialize(formula.fixed, frame, "the fixed-effect matrix")
    fixed_spec = _with_engine_states(fixed.model_spec, source, schema, complete, progress)
    stateful = _unlearned(fixed_spec)
    all_names = lme4_names(list(fixed.columns))
    x_sql = matrix_sql(fixed_spec, schema)
    groupings: list[GroupingSpec] = []
    z_sql: list[list[str]] = []
    keys: list[pd.DataFrame] = []
    for term in terms:
        z = _materialize(term.expr, frame, f"the bar {term.source}")
        z_spec = _with_engine_states(z.model_spec, source, schema, complete, progress)
        stateful += _unlearned(z_spec)
        columns = lme4_names(list(z.columns))
        if not columns:
            raise FormulaError(f"The bar {term.source} has no columns.")
        distinct = group_keys[term.factors]
        codes, level_labels = _grouping_codes(distinct, term.factors)
        by_code = np.argsort(codes, kind="stable")
        keys.append(distinct.iloc[by_code].reset_index(drop=True))
        groupings.append(GroupingSpec(term=term, columns=columns, formulaic_spec=z_spec,
                                      levels=level_labels))
        z_sql.append(matrix_sql(z_spec, schema))
    if stateful:
        raise FormulaError(f"The transform {stateful[0]!r} learns its state from the rows "
                           f"(centring/scaling constants); {UNTRANSLATABLE_HINT}.")
    checks.warn_repeated_terms((g.term.group, g.columns, g.term.source) for g in groupings)
    order = _lme4_order([len(g.levels) for g in groupings])
    groupings = [groupings[i] for i in order]
    z_sql = [z_sql[i] for i in order]
    keys = [keys[i] for i in order]

    with progress.stage("sufficient statistics"):
        exprs = [e for block in z_sql for e in block] + x_sql + [response_sql]
        k = len(exprs)
        cell_keys = list(dict.fromkeys(f for g in groupings for f in g.term.factors))
        key_names = [f"k{i}" for i in range(len(cell_keys))]
        inner = ", ".join([f"{quote(c)} AS {kn}" for c, kn in zip(cell_keys, key_names,
                                                                  strict=True)]
                          + [f"{e} AS e{i}" for i, e in enumerate(exprs)])
        sums = [f"SUM(e{i}) AS m{i}" for i in range(k)]
        sums += [f"SUM(e{i} * e{j}) AS s{i}_{j}" for i in range(k) for j in range(i, k)]
        sql = (f"SELECT {', '.join(key_names)}, COUNT(*) AS n, {', '.join(sums)} "
               f"FROM (SELECT {inner} FROM data WHERE {complete}) AS t "
               f"GROUP BY {', '.join(key_names)}")
        cells = _combine(source.query(sql), key_names, source)

    counts = cells["n"].to_numpy(dtype=np.int64)
    n = int(counts.sum())
    gram = np.empty((len(cells), k, k))
    for i in range(k):
        for j in range(i, k):
            gram[:, i, j] = gram[:, j, i] = cells[f"s{i}_{j}"].to_numpy(dtype=float)
    totals = gram.sum(axis=0)
    bad = [i for i in range(k) if not np.isfinite(totals[i, i])]
    if bad:
        column_names = [c for g in groupings for c in g.columns] + list(all_names) + [
            formula.response]
        raise DataError(f"The column {column_names[bad[0]]!r} is not finite in some rows of the "
                        f"{source.kind} data (a transform outside its domain, or infinite "
                        "values); check the data or the transform.")
    rows, cell_of = _square_root_rows(gram, counts)
    first_rows = np.searchsorted(cell_of, np.arange(len(cells)))  # first square-root row per cell
    means = cells[[f"m{i}" for i in range(k)]].to_numpy(dtype=float).sum(axis=0)

    renamed = cells[key_names].set_axis(cell_keys, axis=1)
    blocks: list[RandomBlock] = []
    sq_sums: list[np.ndarray] = []
    start = 0
    for grouping in groupings:
        labels = _combined_labels(renamed, grouping.term.factors)
        lookup = {label: i for i, label in enumerate(grouping.levels)}
        codes = np.array([lookup[label] for label in labels], dtype=np.int64)[cell_of]
        q = len(grouping.columns)
        blocks.append(RandomBlock(group=grouping.term.group, columns=grouping.columns,
                                  structure=grouping.structure, levels=grouping.levels,
                                  codes=codes, z=np.ascontiguousarray(rows[:, start:start + q])))
        sq_sums.append(np.diag(totals)[start:start + q].copy())
        if grouping.structure.is_lme4:
            checks.check_grouping(grouping.term.group, len(grouping.levels), q, n,
                                  grouping.term.source)
        start += q
    p_all = len(all_names)
    X_all = rows[:, start:start + p_all]
    # a column that is 0 in every row (an empty cell of an interaction) is exactly 0 here too:
    # its square-root rows are rounding noise, which the rank check would keep
    empty = np.diag(totals)[start:start + p_all] == 0.0
    kept = checks.check_rank(np.where(empty, 0.0, X_all), all_names, drop_aliased)
    fixed_names = tuple(all_names[j] for j in kept)
    spec = ModelSpec(formula=formula, response=formula.response, fixed_spec=fixed_spec,
                     fixed_names=fixed_names, groupings=tuple(groupings), reference=reference,
                     frame=FrameSpec.learn(frame, kinds, uses),
                     kept_columns=None if len(kept) == p_all else tuple(kept))
    plan = SourceRows(source=source, complete=complete, x_sql=[x_sql[j] for j in kept],
                      y_sql=response_sql, z_sql=z_sql,
                      factors=[g.term.factors for g in groupings], keys=keys)
    summary = RowSummary(n=n, column_sq_sums=tuple(sq_sums),
                         x_sums=means[start:start + p_all][kept], source=plan,
                         moments=_moments(means, np.diag(totals), n, groupings,
                                          [start + j for j in kept]),
                         level_counts=tuple(np.bincount(b.codes[first_rows], weights=counts,
                                                        minlength=b.n_levels)
                                            for b in blocks))
    design = Design(y=np.ascontiguousarray(rows[:, -1]),
                    X=np.ascontiguousarray(X_all[:, kept]), fixed_names=fixed_names,
                    blocks=tuple(blocks), response=formula.response,
                    row_index=np.empty(0, dtype=int), summary=summary)
    return spec, design


_SCALING_CALL = re.compile(r"\b(?:center|scale|standardize)\s*\(")


def _scaled_columns(texts: list[str], schema: Mapping[str, str]) -> list[str]:
    """Data columns named in formula parts with a ``center``/``scale``/``standardize`` call.

    formulaic does not report the arguments of these stateful transforms among
    a formula's variables; the prototype frame and the missing-value check need them.
    """
    found: list[str] = []
    for text in texts:
        if _SCALING_CALL.search(text):
            for name in re.findall(r"`([^`]+)`|([A-Za-z_][A-Za-z0-9_.]*)", text):
                column = name[0] or name[1]
                if column in schema and column not in found:
                    found.append(column)
    return found


def _unlearned(spec: Any) -> list[str]:
    """Stateful transforms of a spec whose state the engine did not learn."""
    return [k for k, v in spec.transform_state.items() if v and scaling_key(str(k)) is None]


def _with_engine_states(spec: Any, source: DataSource, schema: Mapping[str, str], complete: str,
                        progress: Progress | None) -> Any:
    """The spec with the states of its ``center``/``scale``/``standardize`` calls learned by the engine.

    formulaic learned them on the prototype frame; the engine computes, over
    the model's rows, the mean of each call's argument and, where the call
    scales, ``sqrt(sum((e - c)^2) / (n - ddof))`` with ``c`` the mean (0 for
    ``center=False``), as formulaic does, in two aggregate queries (the second
    centred, for accuracy).
    """
    calls = [(str(k), v) for k, v in spec.transform_state.items() if scaling_key(str(k))]
    if not calls:
        return spec
    inner = []
    for key, _ in calls:
        node = ast.parse(key, mode="eval").body
        assert isinstance(node, ast.Call)
        inner.append(numeric_sql(ast.unparse(node.args[0]), schema))
    with (progress or Progress(False, source.kind)).stage("centring and scaling constants"):
        first = _combine(source.query(
            "SELECT COUNT(*) AS n, " + ", ".join(f"SUM({e}) AS s{i}" for i, e in enumerate(inner))
            + f" FROM data WHERE {complete}"), [], source).iloc[0]
        n = float(first["n"])
        centres = [float(first[f"s{i}"]) / n if state.get("center") is not None else 0.0
                   for i, (_, state) in enumerate(calls)]
        second = _combine(source.query(
            "SELECT " + ", ".join(f"SUM(POWER({e} - {literal(c)}, 2)) AS q{i}"
                                  for i, (e, c) in enumerate(zip(inner, centres, strict=True)))
            + f" FROM data WHERE {complete}"), [], source).iloc[0]
    states = dict(spec.transform_state)
    for i, (key, state) in enumerate(calls):
        learned = dict(state)
        if state.get("center") is not None:
            learned["center"] = np.float64(centres[i])
        if state.get("scale") is not None:
            learned["scale"] = np.float64(np.sqrt(float(second[f"q{i}"]) / (n - state["ddof"])))
        states[key] = learned
    return spec.update(transform_state=states)


def _moments(sums: np.ndarray, squares: np.ndarray, n: int, groupings: list[GroupingSpec],
             x_columns: list[int]) -> ColumnMoments:
    """Means and SDs (ddof 1) of the design's columns from their sums and sums of squares."""
    mean = sums / n
    sd = (np.sqrt(np.maximum(squares - n * mean ** 2, 0.0) / (n - 1)) if n >= 2
          else np.full(sums.shape, np.nan))
    z_sd, start = [], 0
    for grouping in groupings:
        z_sd.append(sd[start:start + len(grouping.columns)])
        start += len(grouping.columns)
    return ColumnMoments(y_mean=float(mean[-1]), y_sd=float(sd[-1]), x_sd=sd[x_columns],
                         z_sd=tuple(z_sd))
