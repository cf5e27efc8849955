"""F-tests of fixed-effect terms with Satterthwaite's df: lmerTest's ``anova(fit)`` table.

For each term of the fixed part (``recipe``, ``temperature``,
``recipe:temperature``) a contrast matrix ``L`` (one row per hypothesis) is
formed and ``L beta = 0`` is tested with

    F = (L beta)' (L V L')^-1 (L beta) / q,

``V`` the covariance of the fixed effects and ``q`` the rank of ``L V L'``.
The denominator df follow Satterthwaite as in lmerTest (Kuznetsova, Brockhoff
& Christensen 2017, J. Stat. Softw. 82(13)): ``L V L'`` is diagonalised,
``P' L`` gives q independent one-df contrasts with Satterthwaite df
``nu_m``, and ``E = sum nu_m / (nu_m - 2)`` gives ``2 E / (E - q)`` (2 when
some ``nu_m <= 2``; ``nu`` itself when all are equal).

Which hypotheses a term tests depends on the type:

* **type I** (sequential): with ``X'X = U' D U``, ``U`` unit upper triangular,
  the rows of ``U`` belonging to the term's columns. Each term is adjusted for
  the terms before it in the formula, not after; the order matters.
* **type II**: each term adjusted for every term that does not contain it
  (marginally when no term contains it); see :func:`type2_contrasts`;
* **type III** (lmerTest's and SAS's default): each term is tested adjusted for
  all others, with its hypotheses made orthogonal to those of every term that
  contains it (``recipe`` in ``recipe:temperature``). Start from
  ``L0 = (X^+ R)'``, where ``R`` is the over-parameterised design (an intercept
  and every term with indicator columns for all levels of its factors, as R's
  ``model.matrix(~ 0 + term)``) and ``X^+`` the pseudo-inverse of ``X``. Going
  from the highest-order terms to the lowest, the columns of a contained term
  are replaced by their least-squares residuals on the columns of the terms
  containing it. The term's contrasts are then its columns, read at the rows
  of ``R`` that are the columns of ``X``. A term is contained in another when
  the other has all its variables and more, and the same numeric variables:
  with ``temp`` numeric, ``temp`` is contained in ``recipe:temp`` but
  ``recipe`` is not (see :func:`hierlm.design.terms.contained_in`).

The table has lmerTest's columns: ``Sum Sq`` and ``Mean Sq`` (``F sigma^2 q``
and ``F sigma^2``), ``NumDF``, ``DenDF``, ``F value``, ``Pr(>F)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.terms import FixedTerm, contained_in
from hierlm.errors import FitError, InputTypeError
from hierlm.lmm.kenward_roger import kr_test
from hierlm.lmm.satterthwaite import VarparCovariance, satterthwaite_df

__all__ = [
    "AnovaTable",
    "anova_table",
    "combine_df",
    "f_test",
    "type1_contrasts",
    "type2_contrasts",
    "type3_contrasts",
]

# lmerTest's tolerance for treating eigenvalues of L V L' as zero (relative to the largest)
_EIGEN_TOL = float(np.sqrt(np.finfo(float).eps))


def _unit_triangular(X: np.ndarray) -> np.ndarray:
    """``U`` with ``X'X = U' D U``, unit upper triangular (lmerTest's normalised Doolittle factor).

    Entries below 1e-6 in absolute value are set to 0, as lmerTest's Doolittle
    factorisation does, so that the tables agree to the last digit.
    """
    R = np.linalg.cholesky(X.T @ X).T
    unit = R / np.diag(R)[:, None]
    unit[np.abs(unit) < 1e-6] = 0.0
    return unit


def type1_contrasts(X: np.ndarray, terms: list[FixedTerm]) -> list[np.ndarray]:
    """Sequential (type I) hypotheses of each term: its rows of :func:`_unit_triangular`."""
    unit = _unit_triangular(X)
    return [unit[list(term.columns), :] for term in terms]


def type2_contrasts(X: np.ndarray, terms: list[FixedTerm]) -> list[np.ndarray]:
    """Type II hypotheses: each term adjusted for every term that does not contain it.

    A term contained in no other is tested by its own coefficients (marginally).
    A contained term is tested sequentially after the terms that do not contain
    it: the columns of X are reordered as (others, the term, its containing
    terms), and the term's rows of the unit triangular factor of the reordered
    X'X are taken back to the original column order.
    """
    if X.shape[1] <= 1 or len(terms) <= 1:
        return type1_contrasts(X, terms)
    out = []
    for term in terms:
        containing = [other for other in terms if contained_in(term, other)]
        if not containing:
            out.append(np.eye(X.shape[1])[list(term.columns)])
            continue
        last = list(term.columns) + [c for other in containing for c in other.columns]
        order = [c for c in range(X.shape[1]) if c not in last] + last
        unit = _unit_triangular(X[:, order])
        rows = [order.index(c) for c in term.columns]
        contrast = np.zeros((len(rows), X.shape[1]))
        contrast[:, order] = unit[rows, :]
        out.append(contrast)
    return out


def _zap(values: np.ndarray) -> np.ndarray:
    """Set entries that are rounding noise relative to the largest one to exactly 0."""
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    out = values.copy()
    out[np.abs(out) < 1e-9 * max(scale, 1.0)] = 0.0
    return out


def _rows_of_x(X: np.ndarray, overparameterised: np.ndarray, intercept: int | None,
               terms: list[FixedTerm]) -> np.ndarray:
    """Column of the over-parameterised design equal to each column of X (treatment coding)."""
    offsets, start = {}, 1 if intercept is not None else 0
    for term in terms:
        offsets[term.name] = start
        start += term.overparameterised.shape[1]
    rows = np.empty(X.shape[1], dtype=int)
    if intercept is not None:
        rows[intercept] = 0
    for term in terms:
        block = term.overparameterised
        for column in term.columns:
            matches = [k for k in range(block.shape[1]) if np.array_equal(block[:, k], X[:, column])]
            if len(matches) != 1:
                raise FitError(
                    f"type III tests need treatment-coded factors (hierlm's default); column "
                    f"{column} of term '{term.name}' is coded otherwise. Use type=1, or drop "
                    "the contrast coding from the formula."
                )
            rows[column] = offsets[term.name] + matches[0]
    return rows


def type3_contrasts(X: np.ndarray, terms: list[FixedTerm], intercept: int | None) -> list[np.ndarray]:
    """Type III hypotheses of each term (see the module docstring).

    Parameters
    ----------
    X : numpy.ndarray
        Fixed-effect matrix (n, p), full column rank.
    terms : list of FixedTerm
        Every term except the intercept, in formula order.
    intercept : int or None
        Column of the intercept in X, if the model has one.

    Returns
    -------
    list of numpy.ndarray
        One contrast matrix (k_term, p) per term.
    """
    if X.shape[1] <= 1 or len(terms) <= 1:
        return type1_contrasts(X, terms)
    blocks = [term.overparameterised for term in terms]
    if intercept is not None:
        blocks.insert(0, np.ones((X.shape[0], 1)))
    full = np.column_stack(blocks)
    L = _zap(np.linalg.pinv(X) @ full).T
    for term in sorted(terms, key=lambda t: -t.order):
        containing = [other for other in terms if contained_in(term, other)]
        if not containing:
            continue
        target = list(term.columns)
        basis = L[:, [c for other in containing for c in other.columns]]
        coef, *_ = np.linalg.lstsq(basis, L[:, target], rcond=None)
        L[:, target] = _zap(L[:, target] - basis @ coef)
    L = L[_rows_of_x(X, full, intercept, terms), :]
    out = []
    for term in terms:
        contrast = L[:, list(term.columns)].T
        out.append(contrast[np.abs(contrast).sum(axis=1) > 1e-8])
    return out


def combine_df(nu: np.ndarray) -> float:
    """Denominator df of an F statistic from the Satterthwaite df of its one-df parts."""
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < 1e-8):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    expected = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * expected / (expected - nu.size)


def f_test(cov: VarparCovariance, beta: np.ndarray, contrast: np.ndarray) -> tuple[float, int, float]:
    """F statistic, numerator df and Satterthwaite denominator df of ``contrast @ beta = 0``.

    Returns
    -------
    tuple
        ``(F, num_df, den_df)``; ``(nan, 0, nan)`` when the contrast is empty.
    """
    contrast = np.atleast_2d(np.asarray(contrast, dtype=float))
    if contrast.shape[0] == 0:
        return float("nan"), 0, float("nan")
    vcov = cov.vcov_beta
    values, vectors = np.linalg.eigh(contrast @ vcov @ contrast.T)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    keep = values > max(_EIGEN_TOL * values[0], 0.0)
    rank = int(keep.sum())
    if rank == 0:
        return float("nan"), 0, float("nan")
    rotated = vectors[:, :rank].T @ contrast
    estimates = rotated @ beta
    f_value = float(np.sum(estimates**2 / values[:rank]) / rank)
    nu = np.array([satterthwaite_df(cov, row) for row in rotated])
    return f_value, rank, combine_df(nu)


@dataclass(frozen=True)
class AnovaTable:
    """F-tests of the fixed-effect terms of an ML/REML fit (lmerTest's ``anova(fit)``).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per term: ``Sum Sq``, ``Mean Sq``, ``NumDF``, ``DenDF``,
        ``F value``, ``Pr(>F)``.
    type : int
        1 (sequential), 2 (adjusted for the terms not containing it) or 3
        (adjusted for all others).
    contrasts : dict
        Term -> contrast matrix it tests (rows: hypotheses, columns: fixed effects).
    ddf : str
        ``"satterthwaite"`` or ``"kenward-roger"``.
    """

    table: pd.DataFrame
    type: int
    contrasts: dict[str, np.ndarray]
    ddf: str = "satterthwaite"

    def __str__(self) -> str:
        kind = {1: "Type I", 2: "Type II", 3: "Type III"}[self.type]
        method = {"satterthwaite": "Satterthwaite's", "kenward-roger": "Kenward-Roger's"}[self.ddf]
        body = self.table.to_string(float_format=lambda v: f"{v:.6g}")
        return f"{kind} Analysis of Variance Table with {method} method\n{body}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return str(self.table.to_html(float_format=lambda v: f"{v:.6g}"))


def anova_table(fit: Any, terms: list[FixedTerm], intercept: int | None, kind: int,
                ddf: str = "satterthwaite", coding: np.ndarray | None = None) -> AnovaTable:
    """Compute the F table of ``fit`` for its fixed terms.

    Parameters
    ----------
    fit : LmmResult
        The ML/REML fit.
    terms : list of FixedTerm
        Its fixed terms except the intercept, in formula order.
    intercept : int or None
        Column of the intercept.
    kind : {1, 2, 3}
        Type of the hypotheses.
    ddf : {"satterthwaite", "kenward-roger"}
        Denominator df. Kenward-Roger's F is scaled (``F value``) while ``Sum Sq``
        and ``Mean Sq`` use the unscaled statistic, as lmerTest reports them.
    coding : numpy.ndarray, optional
        X over the rows the terms' codings are given on, for type III when
        they are not the fit's rows (:mod:`hierlm.design.term_grid`); default
        ``fit.design.X``.

    Returns
    -------
    AnovaTable
    """
    from scipy import stats

    if kind not in (1, 2, 3):
        raise InputTypeError(
            f"type={kind!r}: choose 3 (lmerTest's default), 2 (adjusted for terms not containing "
            "the term) or 1 (sequential)")
    X = np.asarray(fit.design.X, dtype=float)
    if kind == 1:
        contrasts = type1_contrasts(X, terms)
    elif kind == 2:
        contrasts = type2_contrasts(X, terms)
    else:
        # with one column or one term type III is type I, over the fit's own X'X
        over = coding if coding is not None and X.shape[1] > 1 and len(terms) > 1 else X
        contrasts = type3_contrasts(over, terms, intercept)
    cov = fit.varpar_covariance
    beta = np.asarray(fit.beta, dtype=float)
    sigma2 = float(fit.sigma) ** 2
    rows = []
    for contrast in contrasts:
        if ddf == "kenward-roger" and contrast.shape[0]:
            result = kr_test(fit.kenward_roger, beta, contrast)
            f_value, num_df, den_df = result["f_value"], result["num_df"], result["den_df"]
            mean_sq = result["f_unscaled"] * sigma2
        else:
            f_value, num_df, den_df = f_test(cov, beta, contrast)
            mean_sq = f_value * sigma2
        p_value = float(stats.f.sf(f_value, num_df, den_df)) if num_df else float("nan")
        rows.append([mean_sq * num_df, mean_sq, num_df, den_df, f_value, p_value])
    columns = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    table = pd.DataFrame(rows, index=pd.Index([t.name for t in terms], name="term"), columns=columns)
    return AnovaTable(table, kind, {t.name: c for t, c in zip(terms, contrasts, strict=True)}, ddf)
