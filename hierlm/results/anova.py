"""Likelihood-ratio test of two nested ML/REML fits, as lme4's ``anova(small, big)``.

REML criteria of models with different fixed effects are not comparable, so,
as lme4 does, REML fits are refitted by ML first (with a message). The table
has lme4's columns (npar, AIC, BIC, logLik, deviance, Chisq, Df, p).

GLMMs fitted by ML (Laplace or adaptive quadrature) are compared the same way,
through their log-likelihoods (glmer's ``anova``). Both fits must have the same
family and link: likelihoods of different response distributions, or of one
distribution under different links (which are not nested), do not make a
likelihood-ratio test, so such pairs are refused (:class:`FamilyError`), as is
a Gaussian REML fit against a GLMM. Fits with different numbers of adaptive
quadrature nodes are compared with a warning (their likelihoods are
approximated differently).

When the bigger model adds variance parameters, the null hypothesis puts a
variance on the boundary of its space (0), where the likelihood-ratio
statistic is no longer chi-square(Df) but a mixture (Self & Liang 1987;
Stram & Lee 1994). For exactly one added variance (with or without its
covariances with existing terms, and any added fixed effects) the asymptotic
null distribution is the 50:50 mixture of chi-square(Df - 1) and
chi-square(Df): e.g. a random intercept alone: 0.5 chi2(0) + 0.5 chi2(1);
a correlated random slope (1 variance + 1 covariance): 0.5 chi2(1) + 0.5
chi2(2). With several added variances the null distribution is a
chi-bar-square whose weights depend on the information matrix; the same
50:50 mixture is then reported as an approximation and labelled so. The plain
chi-square(Df) p-value, which is conservative in these cases, stays in the
table.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.core.formatting import format_pvalue, significance_stars
from hierlm.core.warn import PACKAGE_DIR
from hierlm.errors import DataError, FamilyError, FitError, HierlmWarning, InputTypeError
from hierlm.results.display import html_report

__all__ = ["anova", "LikelihoodRatioTest", "mixture_pvalue"]

_REFIT_MESSAGE = "refitting model(s) with ML (instead of REML)"


def mixture_pvalue(statistic: float, df: int) -> float:
    """p-value of the 50:50 mixture of chi-square(df - 1) and chi-square(df).

    chi-square(0) is a point mass at 0.
    """
    from scipy import stats

    if df < 1:
        raise FitError(f"The mixture needs df >= 1, got {df}.")
    stat = max(float(statistic), 0.0)
    lower = (0.0 if stat > 0 else 1.0) if df == 1 else float(stats.chi2.sf(stat, df - 1))
    return 0.5 * lower + 0.5 * float(stats.chi2.sf(stat, df))


def _theta_counts(fit: Any) -> tuple[int, int]:
    bounded = np.isfinite(fit.kernel.lower)  # variances (bounded at 0) and free parameters
    return int(bounded.sum()), int((~bounded).sum())


@dataclass(frozen=True, eq=False)
class LikelihoodRatioTest:
    """The result of :func:`anova`.

    Attributes
    ----------
    table : pandas.DataFrame
        lme4's table: one row per model (smaller first) with columns ``npar,
        AIC, BIC, logLik, deviance, Chisq, Df, p_value`` and, when variance
        parameters are added, ``p_boundary``.
    statistic : float
        Likelihood-ratio statistic (difference of ML deviances, >= 0).
    df : int
        Difference in the number of parameters.
    p_value : float
        ``P(chi2(df) > statistic)``.
    p_boundary : float or None
        Boundary-corrected p-value (see module notes); None when no variance
        parameter is added.
    method : str
        How ``p_boundary`` was computed, or why there is none.
    refitted : bool
        Whether REML fits were refitted by ML.
    fits : tuple
        The two ML fits compared (smaller first).
    """

    table: pd.DataFrame
    statistic: float
    df: int
    p_value: float
    p_boundary: float | None
    method: str
    refitted: bool
    fits: tuple[Any, Any]

    def __str__(self) -> str:
        lines = []
        if self.refitted:
            lines.append(_REFIT_MESSAGE)
        lines.append("Models:")
        for label, fit in zip(self.table.index, self.fits, strict=True):
            formula = getattr(fit.model, "formula", None) or fit.design.response
            lines.append(f"{label}: {formula}")
        shown = self.table.copy()
        text = pd.DataFrame(index=shown.index)
        text["npar"] = shown["npar"].map(lambda v: f"{int(v)}")
        for col in ("AIC", "BIC"):
            text[col] = shown[col].map(lambda v: f"{v:.1f}")
        text["logLik"] = shown["logLik"].map(lambda v: f"{v:.2f}")
        text["deviance"] = shown["deviance"].map(lambda v: f"{v:.1f}")
        text["Chisq"] = shown["Chisq"].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
        text["Df"] = shown["Df"].map(lambda v: "" if pd.isna(v) else f"{int(v)}")
        text["Pr(>Chisq)"] = shown["p_value"].map(
            lambda v: "" if pd.isna(v) else f"{format_pvalue(v)} {significance_stars(v)}")
        if "p_boundary" in shown:
            text["Pr(boundary)"] = shown["p_boundary"].map(
                lambda v: "" if pd.isna(v) else format_pvalue(v))
        lines.append(text.to_string())
        lines.append(f"Boundary correction: {self.method}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        """The models, the table and the boundary note, for notebooks."""
        lines = ["Likelihood-ratio test" + (f" ({_REFIT_MESSAGE})" if self.refitted else "")]
        lines += [f"{label}: {getattr(fit.model, 'formula', None) or fit.design.response}"
                  for label, fit in zip(self.table.index, self.fits, strict=True)]
        return html_report(lines, {"": self.table}, notes=[f"Boundary correction: {self.method}"])


def _check_same_data(small: Any, big: Any) -> None:
    if small.nobs != big.nobs:
        raise DataError(
            f"The models were fitted to different numbers of observations ({small.nobs} and "
            f"{big.nobs}); a likelihood-ratio test needs the same rows. Drop missing values "
            "in every variable of the bigger model before fitting both.")
    if not np.array_equal(np.asarray(small.design.y), np.asarray(big.design.y)):
        raise DataError("The models were fitted to different responses or rows; a "
                        "likelihood-ratio test needs the same data.")


def _family_of(fit: Any) -> tuple[str, str]:
    """(family, link) names of a fit; Gaussian/identity for linear mixed models."""
    family = getattr(fit, "family", None)
    if family is None or not hasattr(family, "link"):
        return "gaussian", "identity"
    return str(family.name), str(family.link.name)


def _check_same_family(small: Any, big: Any) -> None:
    """Refuse a likelihood-ratio test across families, links or estimation criteria."""
    (fam_s, link_s), (fam_b, link_b) = _family_of(small), _family_of(big)
    if fam_s != fam_b:
        reml = [f for f in (small, big) if getattr(f, "reml", False)]
        extra = (" (and REML is Gaussian-only: a REML criterion never compares with a GLMM's "
                 "likelihood)") if reml else ""
        raise FamilyError(
            f"The models have different families ({fam_s} and {fam_b}){extra}; a likelihood-"
            "ratio test compares two models of one response distribution. Fit both with the "
            "same family=, or compare non-nested models with AIC/BIC or LOO.")
    if link_s != link_b:
        raise FamilyError(
            f"The {fam_s} models have different links ({link_s} and {link_b}), so neither is a "
            "special case of the other; fit both with the same link=, or compare them with "
            "AIC/BIC.")
    nagq = [int(getattr(f, "nagq", 1)) for f in (small, big)]
    if nagq[0] != nagq[1]:
        warnings.warn(f"The fits use different likelihood approximations (nagq={nagq[0]} and "
                      f"{nagq[1]}); refit both with the same nagq for a test of the models alone.",
                      HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))


def _nesting_note(small: Any, big: Any) -> str | None:
    missing_fixed = [n for n in small.design.fixed_names if n not in big.design.fixed_names]
    missing_random = []
    for block in small.design.blocks:
        if not any(b.group == block.group and set(block.columns) <= set(b.columns)
                   for b in big.design.blocks):
            missing_random.append(f"({block.term})")
    if missing_fixed or missing_random:
        return ("the smaller model has terms the bigger one lacks ("
                + ", ".join(missing_fixed + missing_random)
                + "); check that the models are nested")
    return None


def anova(small: Any, big: Any = None, names: tuple[str, str] | None = None,
          refit: bool = True, type: int = 3) -> Any:  # noqa: A002 - lmerTest's argument name
    """Likelihood-ratio test of two nested linear mixed models (lme4's ``anova``), or F-tests of one.

    With one fit, ``anova(fit)`` is ``fit.anova(type=type)``: F-tests of the
    fixed-effect terms with Satterthwaite's df (lmerTest's ``anova(fit)``).

    Parameters
    ----------
    small, big : LmmResult or GlmmResult
        ML or REML fits of nested models to the same data (GLMMs: ML fits of
        one family and link). The order does not matter: the model with fewer
        parameters is taken as the null model.
        Without ``big``, the F-table of ``small``.
    names : tuple of str, optional
        Row labels; default ``("small", "big")``.
    refit : bool
        Refit REML fits by ML first (lme4's default). Comparing REML criteria
        is only meaningful when the fixed effects are identical.

    type : {3, 1}
        Hypothesis type of the F-table (one fit only).

    Returns
    -------
    LikelihoodRatioTest or AnovaTable

    Raises
    ------
    DataError
        If the fits use different data.
    FamilyError
        If the fits have different families or links.
    FitError
        If the models have the same number of parameters (not nested) or are
        not ML/REML fits.
    """
    from scipy import stats

    if big is None:
        if not hasattr(small, "kernel") or not hasattr(small, "anova"):
            raise InputTypeError(
                f"anova(fit) tests the terms of an ML/REML fit (LmmResult), got {small.__class__.__name__}.")
        return small.anova(type=type)
    for fit in (small, big):
        if not hasattr(fit, "kernel") or not hasattr(fit, "reml"):
            raise InputTypeError(
                f"anova compares ML/REML fits (LmmResult, GlmmResult), got {fit.__class__.__name__}.")
    _check_same_family(small, big)
    if small.n_params > big.n_params:
        small, big = big, small
    labels = names or ("small", "big")
    _check_same_data(small, big)
    if small.n_params == big.n_params:
        raise FitError(
            f"Both models have {small.n_params} parameters, so they are not nested; a "
            "likelihood-ratio test compares a model with a special case of it.")
    refitted = False
    fits = [small, big]
    if refit and (small.reml or big.reml):
        warnings.warn(_REFIT_MESSAGE, HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))
        fits = [f.refit(reml=False) if f.reml else f for f in fits]
        refitted = True
    elif not refit and (small.reml or big.reml):
        if small.reml != big.reml or list(small.design.fixed_names) != list(
                big.design.fixed_names):
            raise FitError("REML criteria are only comparable between models with the same "
                           "fixed effects; use refit=True.")
    note = _nesting_note(small, big)
    if note:
        warnings.warn(note, HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))

    def criterion(fit: Any) -> float:
        return float(fit.deviance if not fit.reml else fit.criterion)

    dev = [criterion(f) for f in fits]
    statistic = max(dev[0] - dev[1], 0.0)
    df = fits[1].n_params - fits[0].n_params
    p_value = float(stats.chi2.sf(statistic, df))
    (var_s, cov_s), (var_b, cov_b) = _theta_counts(fits[0]), _theta_counts(fits[1])
    added_var, added_cov = var_b - var_s, cov_b - cov_s
    p_boundary: float | None
    if added_var <= 0:
        p_boundary = None
        method = ("none: the bigger model adds no variance parameter, so the chi-square("
                  f"{df}) reference applies")
    else:
        p_boundary = mixture_pvalue(statistic, df)
        parts = f"{added_var} variance(s)" + (f", {added_cov} covariance(s)" if added_cov else "")
        low = "chi2(0) (point mass at 0)" if df == 1 else f"chi2({df - 1})"
        method = (f"50:50 mixture of {low} and chi2({df}) for the added {parts} "
                  "(Self & Liang 1987; Stram & Lee 1994)")
        if added_var > 1:
            method += ("; an approximation: with several added variances the null "
                       "distribution is a chi-bar-square with information-dependent weights")
    rows = []
    for fit, d in zip(fits, dev, strict=True):
        loglik = -0.5 * d
        rows.append({"npar": fit.n_params, "AIC": d + 2 * fit.n_params,
                     "BIC": d + np.log(fit.nobs) * fit.n_params, "logLik": loglik,
                     "deviance": d})
    table = pd.DataFrame(rows, index=pd.Index(list(labels), name="model"))
    table["Chisq"] = [np.nan, statistic]
    table["Df"] = [np.nan, float(df)]
    table["p_value"] = [np.nan, p_value]
    if p_boundary is not None:
        table["p_boundary"] = [np.nan, p_boundary]
    return LikelihoodRatioTest(table=table, statistic=statistic, df=df, p_value=p_value,
                               p_boundary=p_boundary, method=method, refitted=refitted,
                               fits=(fits[0], fits[1]))
