"""Warnings of GLMM fits: few observations per level for Laplace, separation, overdispersion."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import stats

from hierlm.core.warn import PACKAGE_DIR
from hierlm.errors import HierlmWarning
from hierlm.glmm.pirls import GlmmProblem
from hierlm.glmm.quadrature import MAX_AGQ_TERMS

__all__ = ["warn_before_fit", "warn_after_fit", "OVERDISPERSION_RATIO", "FEW_PER_LEVEL"]

#: Pearson chi-square / residual df above which a Poisson fit is reported as overdispersed.
OVERDISPERSION_RATIO = 1.5
#: Median number of binary observations per level below which Laplace is reported as rough.
FEW_PER_LEVEL = 5
_SEPARATION_ETA = 10.0  # |linear predictor| beyond which a probability is 0 or 1 in practice


def _is_bernoulli(problem: GlmmProblem) -> bool:
    y, w = problem.y, problem.prior_weights
    return problem.family.name == "binomial" and bool(np.all(w == 1) and np.all((y == 0) | (y == 1)))


def warn_before_fit(problem: GlmmProblem, nagq: int) -> None:
    """Warn when the Laplace approximation is rough: binary data with few rows per level."""
    if nagq > 1 or not _is_bernoulli(problem):
        return
    for block in problem.design.blocks:
        counts = np.bincount(block.codes, minlength=block.n_levels)
        median = float(np.median(counts))
        if median < FEW_PER_LEVEL:
            s = problem.structure
            if not s.rest and s.q1 <= MAX_AGQ_TERMS:
                advice = "fit with nagq= (e.g. nagq=10, adaptive Gauss-Hermite quadrature)"
            else:
                advice = ("quadrature (nagq=) is not available for this random-effect structure; "
                          "compare with a Bayesian fit (method='nuts')")
            warnings.warn(
                f"Binary response with a median of {median:g} observation(s) per level of "
                f"{block.group!r}: the Laplace approximation can bias the variance components "
                f"and fixed effects toward zero; {advice}.",
                HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))
            return


def warn_after_fit(fit: Any) -> None:
    """Warn about complete separation (binomial) and overdispersion (Poisson)."""
    family = fit.family
    if family.name == "binomial":
        eta_fixed = fit.design.X @ fit.beta
        diverging = [name for name, value, se in zip(fit.design.fixed_names, fit.beta,
                                                     np.sqrt(np.diag(fit.optimum.vcov_beta)),
                                                     strict=True)
                     if abs(value) > _SEPARATION_ETA or se > 5.0 * max(abs(value), 1.0) + 10.0]
        extreme = int(np.sum(np.abs(eta_fixed + fit.design.offset) > 2 * _SEPARATION_ETA))
        if diverging or extreme:
            what = (f"the fixed effect(s) {', '.join(diverging)} diverge (estimate or standard "
                    "error very large)" if diverging else
                    f"{extreme} fitted probabilities are numerically 0 or 1")
            warnings.warn(
                f"Complete or quasi-complete separation: {what}. The ML estimates are not "
                "finite and their Wald tests are meaningless; use a penalised or Bayesian fit "
                "(method='map' or 'nuts' with the default priors), or merge the categories that "
                "predict the outcome perfectly.", HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))
    if family.name == "poisson":
        chi2 = float(np.sum(fit.residuals(type="pearson") ** 2))
        df = fit.df_residual
        if df > 0 and chi2 / df > OVERDISPERSION_RATIO:
            p_value = float(stats.chi2.sf(chi2, df))
            warnings.warn(
                f"Overdispersion: Pearson chi-square / residual df = {chi2:.1f} / {df} = "
                f"{chi2 / df:.2f} (p = {p_value:.3g} against 1). Poisson standard errors are too "
                "small; consider family='negative_binomial' or an observation-level random "
                "effect '+ (1 | obs)' with obs a column numbering the rows.",
                HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))
