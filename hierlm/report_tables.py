"""The report's tables as text for people: readable headers, rounding per column.

:func:`display_table` turns a summary table (``fixef()``, ``varcorr()``,
an ICC or LOO table) into strings:

* headers a reader knows: ``eti89_lb`` -> ``89% low``, ``std_error`` ->
  ``Std. error``, ``ess_bulk`` -> ``ESS bulk``, ``r_hat`` -> ``R-hat``; the
  index becomes the first column, headed by its name;
* numbers rounded per column: four significant digits for the column's
  smallest non-zero value, at most three decimals, the same decimals for the
  whole column (so ``251.41`` and ``10.47`` line up); whole numbers for ESS
  and counts, three decimals for R-hat, ``<0.001`` for small p-values.

:func:`comparison_table` puts a NUTS fit and its REML (ML, MAP) twin side by
side (from :func:`hierlm.compare_estimates`); the CLI prints it and the
report shows it.
"""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd

__all__ = ["display_table", "table_html", "text_table_html", "varcorr_display", "comparison_table"]

_HEADERS = {
    "mean": "Mean", "sd": "SD", "median": "Median", "estimate": "Estimate", "std_error": "Std. error",
    "df": "df", "t_value": "t", "p_value": "p", "ess_bulk": "ESS bulk", "ess_tail": "ESS tail",
    "r_hat": "R-hat", "mcse_mean": "MCSE mean", "mcse_sd": "MCSE SD", "vcov": "Var. / cov.",
    "sdcor": "SD / corr.", "group": "Group", "term": "Term", "level": "Level", "blocks": "Blocks",
    "component": "Component", "variance": "Variance", "shared": "Factor", "r2": "R²",
    "coefficient": "Coefficient", "levels": "Levels", "mean_factor": "Mean factor",
    "min_factor": "Min. factor", "max_factor": "Max. factor", "median_pull": "Median pull",
    "sd_no_pooling": "SD, no pooling", "sd_partial_pooling": "SD, partial pooling",
    "parameter": "Parameter", "class": "Class", "prior": "Prior", "source": "Source",
    "left_out": "Left out", "units": "Units", "elpd_loo": "elpd LOO", "se": "SE", "p_loo": "p LOO",
    "looic": "LOOIC", "max_k": "Max. Pareto k", "bad_k": "High Pareto k",
}
_INTERVAL = re.compile(r"^(eti|hdi|ci)(\d+)_(lb|ub)$")
_WHOLE = ("ess_bulk", "ess_tail", "levels", "units", "bad_k")
_CENTRES = ("estimate", "mean", "median")
_SPREADS = ("sd", "std_error")


def _header(column: object) -> str:
    """A readable column header: ``eti89_lb`` -> ``89% low``, ``std_error`` -> ``Std. error``."""
    name = str(column)
    if name in _HEADERS:
        return _HEADERS[name]
    match = _INTERVAL.match(name)
    if match:
        return f"{match.group(2)}% {'low' if match.group(3) == 'lb' else 'high'}"
    text = name.replace("_", " ")
    return text[:1].upper() + text[1:]


def _decimals(values: np.ndarray) -> int:
    """Decimals that give the smallest non-zero value four significant digits (0 to 3)."""
    finite = np.abs(values[np.isfinite(values)])
    nonzero = finite[finite > 0]
    if nonzero.size == 0:
        return 0
    return int(np.clip(3 - math.floor(math.log10(float(nonzero.min()))), 0, 3))


def _fixed(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` decimals, without a minus sign on a rounded zero."""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _is_number(values: pd.Series) -> bool:
    """True for a numeric (not boolean) column."""
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def _format_column(name: str, values: pd.Series, decimals: int | None = None) -> list[str]:
    """A column as text, rounded as the module docstring says (``decimals`` when given)."""
    if not _is_number(values):
        return ["" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
                for value in values]
    numbers = values.to_numpy(dtype=float)
    if name in _WHOLE or pd.api.types.is_integer_dtype(values):
        def text(value: float) -> str:
            return f"{value:.0f}"
    elif name == "r_hat":
        def text(value: float) -> str:
            return f"{value:.3f}"
    elif name == "p_value":
        def text(value: float) -> str:
            return "<0.001" if value < 0.001 else f"{value:.3f}"
    elif name == "df":
        def text(value: float) -> str:
            return f"{value:.1f}"
    else:
        places = _decimals(numbers) if decimals is None else decimals

        def text(value: float) -> str:
            return _fixed(value, places)
    return [text(value) if np.isfinite(value) else "" for value in numbers]


def _shared_decimals(table: pd.DataFrame) -> tuple[set[str], int | None]:
    """Columns on the estimate's scale (estimate, SD, interval bounds) and their common decimals."""
    centres = [str(c) for c in table.columns if str(c) in _CENTRES and _is_number(table[c])]
    if not centres:
        return set(), None
    scale = {str(c) for c in table.columns if _is_number(table[c])
             and (str(c) in _CENTRES or str(c) in _SPREADS or _INTERVAL.match(str(c)))}
    return scale, _decimals(table[centres].to_numpy(dtype=float))


def _display(table: pd.DataFrame, index: bool) -> tuple[pd.DataFrame, list[bool]]:
    """The text table and, per column, whether it holds numbers."""
    shown = table.reset_index() if index else table.reset_index(drop=True)
    if index and table.index.name is None and table.index.nlevels == 1:
        shown = shown.rename(columns={"index": ""})
    scale, decimals = _shared_decimals(shown)
    out = pd.DataFrame({k: _format_column(str(c), shown[c], decimals if str(c) in scale else None)
                        for k, c in enumerate(shown.columns)})
    out.columns = [_header(column) if str(column) else "" for column in shown.columns]
    return out, [_is_number(shown[c]) for c in shown.columns]


def display_table(table: pd.DataFrame, index: bool = True) -> pd.DataFrame:
    """A table as text for people: readable headers, rounded per column, the index as a column.

    Parameters
    ----------
    table : pandas.DataFrame
        A summary table (``fixef()``, ``varcorr()``, ...).
    index : bool
        Show the index (as the first column, headed by its name).

    Returns
    -------
    pandas.DataFrame
        Strings, with a plain integer index.
    """
    return _display(table, index)[0]


def table_html(table: pd.DataFrame, index: bool = True) -> str:
    """A DataFrame as an HTML table: readable headers, rounded numbers right-aligned, text left."""
    shown, numeric = _display(table, index)
    return text_table_html(shown, numeric)


def text_table_html(shown: pd.DataFrame, numeric: list[bool] | None = None) -> str:
    """A table of strings as HTML; ``numeric`` columns are right-aligned (default: all but the first)."""
    if numeric is None:
        numeric = [k > 0 for k in range(len(shown.columns))]
    def cell(tag: str, text: object, number: bool) -> str:
        return f'<{tag} class="{"num" if number else "text"}">{html.escape(str(text))}</{tag}>'

    head = "".join(cell("th", column, number) for column, number in zip(shown.columns, numeric, strict=True))
    body = "".join("<tr>" + "".join(cell("td", value, number) for value, number in
                                    zip(row, numeric, strict=True)) + "</tr>"
                   for row in shown.itertuples(index=False))
    return f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def varcorr_display(table: pd.DataFrame) -> pd.DataFrame:
    """``varcorr()`` with one ``parameter`` label per row: sd(Days), cor(Intercept, Days), sigma."""
    labels = []
    for group, term1, term2 in zip(table["group"], table["term1"], table["term2"], strict=True):
        if group == "Residual":
            labels.append("sigma")
        elif term2 is None or (isinstance(term2, float) and math.isnan(term2)):
            labels.append(f"sd({term1})")
        else:
            labels.append(f"cor({term1}, {term2})")
    shown = table.drop(columns=["term1", "term2"])
    shown.insert(1, "parameter", labels)
    return shown


def _label(kind: str, group: str, term1: str, term2: str) -> str:
    """Parameter label of a ``compare_estimates`` row."""
    if kind == "fixed":
        return term1
    if kind == "sd":
        return f"sd({term1} | {group})"
    if kind == "cor":
        return f"cor({term1}, {term2} | {group})"
    if kind == "icc":
        return f"ICC({group})"
    return str(kind)


def comparison_table(bayes_fit: object, point_fit: object) -> pd.DataFrame:
    """A posterior and a point fit of one model side by side, as text (:func:`hierlm.compare_estimates`).

    Parameters
    ----------
    bayes_fit : fit result
        The NUTS fit.
    point_fit : fit result
        The REML, ML or MAP fit of the same model and data.

    Returns
    -------
    pandas.DataFrame
        One row per parameter: posterior mean, SD, interval and R-hat next
        to the point estimate, its standard error and Wald interval.
    """
    from hierlm.results.estimates import compare_estimates

    table = compare_estimates(bayes_fit, point_fit)
    method = str(getattr(point_fit, "method", "point")).upper()
    posterior = [c for c in table.columns if re.match(r"^(eti|hdi)\d+_lb$", str(c))][0][:-3]
    wald = [c for c in table.columns if re.match(r"^ci\d+_lb$", str(c))][0][:-3]
    decimals = _decimals(table[["post_mean", "estimate"]].to_numpy(dtype=float))

    def fixed(values: pd.Series) -> list[str]:
        return [_fixed(v, decimals) if np.isfinite(v) else "" for v in values.to_numpy(dtype=float)]

    def interval(prefix: str) -> list[str]:
        low, high = fixed(table[f"{prefix}_lb"]), fixed(table[f"{prefix}_ub"])
        return [f"[{a}, {b}]" if a and b else "" for a, b in zip(low, high, strict=True)]

    out = pd.DataFrame({"Parameter": [_label(*row) for row in table[["kind", "group", "term1", "term2"]]
                                      .astype(str).itertuples(index=False)]})
    out["Posterior mean"] = fixed(table["post_mean"])
    out["Posterior SD"] = fixed(table["post_sd"])
    out[f"{_digits(posterior)}% interval"] = interval(posterior)
    if "r_hat" in table.columns:
        out["R-hat"] = _format_column("r_hat", table["r_hat"])
    out[f"{method} estimate"] = fixed(table["estimate"])
    out["Std. error"] = fixed(table["std_error"])
    out[f"{_digits(wald)}% Wald interval"] = interval(wald)
    return out


def _digits(prefix: str) -> str:
    """``eti95`` -> ``95``."""
    return "".join(ch for ch in prefix if ch.isdigit())
