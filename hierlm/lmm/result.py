"""The result of an ML/REML fit: lme4's and lmerTest's accessors in one object.

Everything is derived from theta and the stored cross-products; the rows of
the data are only touched again for ``fitted``, ``residuals`` and ``predict``,
so a fit of a million rows stays small.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.blocks import Design
from hierlm.errors import FitError, InputTypeError
from hierlm.lmm.fit import (
    SINGULAR_TOL,
    FitRecord,
    blas_threads,
    fit_lmm,
    singular_components,
    theta_column_scale,
)
from hierlm.lmm.kenward_roger import check_ddf, kr_contrast_test
from hierlm.lmm.objective import LmmObjective, Solution
from hierlm.lmm.satterthwaite import VarparCovariance, contrast_test, varpar_covariance
from hierlm.results.draws import FitDraws
from hierlm.results.interpret import InterpretMethods
from hierlm.results.methods import ResultMethods

__all__ = ["LmmResult"]

_LOG_2PI = float(np.log(2.0 * np.pi))


class LmmResult(ResultMethods, InterpretMethods):
    """A linear mixed model fitted by REML or ML.

    Parameters
    ----------
    design : Design
        The design that was fitted.
    model : Model or None
        The model the design came from (needed for ``predict`` on new data).
    kernel : LmmObjective
        The criterion on the design's cross-products.
    theta : numpy.ndarray
        Estimated relative covariance parameters (lme4's layout).
    reml : bool
        REML (True) or ML fit.
    fit_record : FitRecord
        How the optimum was found.
    threads : int or None
        BLAS threads for later computations (None: the library's default).
    """

    def __init__(self, design: Design, model: Any, kernel: LmmObjective, theta: np.ndarray,
                 reml: bool, fit_record: FitRecord, threads: int | None = 1) -> None:
        self.design = design
        self.model = model
        self.kernel = kernel
        self.theta = np.asarray(theta, dtype=float)
        self.reml = bool(reml)
        self.fit_record = fit_record
        self.threads = threads
        self.solution: Solution = kernel.solution(self.theta, self.reml, cond_var=True)

    # ----------------------------------------------------------------- scalars
    @property
    def method(self) -> str:
        """``"reml"`` or ``"ml"``."""
        return "reml" if self.reml else "ml"

    @property
    def sigma(self) -> float:
        """Residual standard deviation."""
        return self.solution.sigma

    @property
    def beta(self) -> np.ndarray:
        """Fixed-effect estimates (array, ``design.fixed_names`` order)."""
        return self.solution.beta.copy()

    @property
    def theta_names(self) -> tuple[str, ...]:
        """lme4's names of the theta entries."""
        return self.kernel.cp.layout.names

    @property
    def nobs(self) -> int:
        """Number of observations."""
        return self.design.n

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor (lme4's ``ngrps``)."""
        out: dict[str, int] = {}
        for block in self.design.blocks:
            out.setdefault(block.group, block.n_levels)
        return out

    @property
    def n_params(self) -> int:
        """Number of estimated parameters: fixed effects, theta and sigma."""
        return self.design.p + self.theta.size + 1

    @property
    def criterion(self) -> float:
        """The minimised criterion (REML criterion or ML deviance)."""
        return self.solution.value

    @property
    def loglik(self) -> float:
        """Log-likelihood (restricted log-likelihood for REML fits), as lme4's ``logLik``."""
        return -0.5 * self.solution.value

    @property
    def aic(self) -> float:
        """Akaike's information criterion, ``-2 logLik + 2 npar``."""
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """Bayesian information criterion, ``-2 logLik + log(n) npar``."""
        return -2.0 * self.loglik + np.log(self.nobs) * self.n_params

    @property
    def deviance(self) -> float:
        """ML deviance: the criterion for ML fits; for REML fits ``-2 log L`` at the REML estimates.

        The latter is lme4's ``deviance(fit, REML = FALSE)``: the ML log-likelihood
        evaluated at the REML theta, beta and sigma (not a maximum).
        """
        sol = self.solution
        if not self.reml:
            return sol.value
        sigma2 = sol.sigma ** 2
        n = self.nobs
        return sol.ldL2 + sol.r2 / sigma2 + n * (_LOG_2PI + np.log(sigma2))

    @property
    def reml_criterion(self) -> float | None:
        """REML criterion at the optimum (lme4's ``REMLcrit``); None for ML fits."""
        return self.solution.value if self.reml else None

    @property
    def df_residual(self) -> int:
        """Residual degrees of freedom as lme4 prints them: ``n - npar``."""
        return self.nobs - self.n_params

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular``: a bounded theta entry below 1e-4."""
        return bool(self.singular_components())

    def singular_components(self, tol: float = SINGULAR_TOL) -> list[str]:
        """Names of the theta entries that make the fit singular at tolerance ``tol``."""
        return singular_components(self.theta, self.kernel.lower, self.theta_names, tol,
                                   column_scale=theta_column_scale(self.design, self.kernel))

    # ----------------------------------------------------------- fixed effects
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects, ``sigma^2 (R_X'R_X)^{-1}``."""
        names = list(self.design.fixed_names)
        return pd.DataFrame(self.sigma ** 2 * self.solution.unscaled_vcov, index=names,
                            columns=names)

    @cached_property
    def varpar_covariance(self) -> VarparCovariance:
        """Hessian-based covariance of ``(theta, sigma)`` and ``dVar(beta)`` (lmerTest)."""
        with blas_threads(self.threads):
            return varpar_covariance(self.kernel, self.theta, self.reml,
                                     column_scale=theta_column_scale(self.design, self.kernel))

    @cached_property
    def kenward_roger(self) -> Any:
        """Kenward-Roger adjusted covariance of the fixed effects (REML fits).

        See :mod:`hierlm.lmm.kenward_roger`; computed once, on first use.
        """
        from hierlm.lmm.kenward_roger import kenward_roger

        with blas_threads(self.threads):
            return kenward_roger(self)

    def contrast(self, L: Any, rhs: float = 0.0, ddf: str = "satterthwaite") -> dict[str, float]:
        """t-test of ``L' beta = rhs`` with Satterthwaite's or Kenward-Roger's df.

        Parameters
        ----------
        L : array-like or dict
            Contrast vector of length p, or a mapping fixed-effect name -> weight.
        rhs : float
            Hypothesised value.
        ddf : {"satterthwaite", "kenward-roger"}
            Denominator df (and, for Kenward-Roger, the adjusted standard error).

        Returns
        -------
        dict
            ``estimate``, ``std_error``, ``df``, ``t_value``, ``p_value``.
        """
        names = list(self.design.fixed_names)
        if isinstance(L, dict):
            unknown = [k for k in L if k not in names]
            if unknown:
                raise InputTypeError(f"Unknown fixed effects {unknown}; the model has {names}.")
            vec = np.array([float(L.get(k, 0.0)) for k in names])
        else:
            try:
                vec = np.asarray(L, dtype=float).ravel()
            except (TypeError, ValueError):
                raise InputTypeError(f"L must be a numeric vector or a dict, got {L!r}.") from None
            if vec.size != len(names):
                raise InputTypeError(f"The contrast L has {vec.size} entries; the model has "
                                     f"{len(names)} fixed effects {names}.")
        if check_ddf(ddf) == "kenward-roger":
            return kr_contrast_test(self.kenward_roger, self.solution.beta, vec, rhs)
        return contrast_test(self.varpar_covariance, self.solution.beta, vec, rhs)

    def fixef(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Fixed effects with standard errors, df, t and p (lmerTest's table).

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger"}
            Denominator df; Kenward-Roger also adjusts the standard errors (REML fits).

        Returns
        -------
        pandas.DataFrame
            Indexed by term; columns ``estimate, std_error, df, t_value, p_value``.
        """
        names = list(self.design.fixed_names)
        rows = [self.contrast(np.eye(len(names))[i], ddf=ddf) for i in range(len(names))]
        frame = pd.DataFrame(rows, index=pd.Index(names, name="term"))
        return frame[["estimate", "std_error", "df", "t_value", "p_value"]]

    # -------------------------------------------------------- random effects
    def covariances(self) -> list[np.ndarray]:
        """Covariance matrix of each block's coefficients (response scale)."""
        layout = self.kernel.cp.layout
        templates = layout.templates(self.theta, [b.q for b in self.design.blocks])
        return [self.sigma ** 2 * t @ t.T for t in templates]

    def varcorr(self) -> pd.DataFrame:
        """Variance components in the layout of lme4's ``as.data.frame(VarCorr(fit))``.

        Returns
        -------
        pandas.DataFrame
            Columns ``group, term1, term2, vcov, sdcor``: per block, one row per
            variance (``term2`` None, ``sdcor`` the SD), then one per covariance
            (``sdcor`` the correlation); a final ``"Residual"`` row.
        """
        rows: list[dict[str, Any]] = []
        for label, block, cov in zip(self.design.block_labels(), self.design.blocks,
                                     self.covariances(), strict=True):
            sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            for i, name in enumerate(block.columns):
                rows.append({"group": label, "term1": name, "term2": None,
                             "vcov": float(cov[i, i]), "sdcor": float(sd[i])})
            if block.correlated:
                for i in range(block.q):
                    for j in range(i + 1, block.q):
                        denom = sd[i] * sd[j]
                        corr = float(cov[i, j] / denom) if denom > 0 else float("nan")
                        rows.append({"group": label, "term1": block.columns[i],
                                     "term2": block.columns[j], "vcov": float(cov[i, j]),
                                     "sdcor": corr})
        rows.append({"group": "Residual", "term1": None, "term2": None,
                     "vcov": self.sigma ** 2, "sdcor": self.sigma})
        return pd.DataFrame({
            "group": pd.Series([r["group"] for r in rows], dtype=object),
            "term1": pd.Series([r["term1"] for r in rows], dtype=object),
            "term2": pd.Series([r["term2"] for r in rows], dtype=object),
            "vcov": np.array([r["vcov"] for r in rows], dtype=float),
            "sdcor": np.array([r["sdcor"] for r in rows], dtype=float),
        })

    def ranef(self, wide: bool = False) -> Any:
        """Conditional modes of the random effects with their conditional SDs.

        Parameters
        ----------
        wide : bool
            False: one tidy DataFrame with columns ``group, level, term, estimate,
            cond_sd`` (lme4's ``as.data.frame(ranef(fit))``). True: a dict
            grouping factor -> DataFrame (levels x terms), as lme4's ``ranef``.

        Returns
        -------
        pandas.DataFrame or dict of pandas.DataFrame
        """
        sol = self.solution
        if wide:
            out: dict[str, pd.DataFrame] = {}
            for block, b in zip(self.design.blocks, sol.b, strict=True):
                frame = pd.DataFrame(b, index=pd.Index(block.levels, name=block.group),
                                     columns=list(block.columns))
                if block.group in out:
                    out[block.group] = pd.concat([out[block.group], frame], axis=1)
                else:
                    out[block.group] = frame
            return out
        parts = []
        assert sol.cond_var is not None
        for block, b, cv in zip(self.design.blocks, sol.b, sol.cond_var, strict=True):
            cond_sd = np.sqrt(np.clip(np.diagonal(cv, axis1=1, axis2=2), 0.0, None))
            levels = np.asarray(block.levels, dtype=object)
            for i, term in enumerate(block.columns):
                parts.append(pd.DataFrame({"group": block.group, "level": levels, "term": term,
                                           "estimate": b[:, i], "cond_sd": cond_sd[:, i]}))
        return pd.concat(parts, ignore_index=True)

    def cond_var(self) -> dict[str, np.ndarray]:
        """Conditional covariance matrices of each block's effects, ``(n_levels, q, q)``."""
        assert self.solution.cond_var is not None
        return dict(zip(self.design.block_labels(), self.solution.cond_var, strict=True))

    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients: fixed effects plus the level's random effects (lme4's ``coef``).

        Returns
        -------
        dict of pandas.DataFrame
            Grouping factor -> DataFrame (levels x coefficients).
        """
        fixed = dict(zip(self.design.fixed_names, self.solution.beta, strict=True))
        out = {}
        for group, frame in self.ranef(wide=True).items():
            cols = list(self.design.fixed_names) + [c for c in frame.columns if c not in fixed]
            table = pd.DataFrame(index=frame.index, columns=cols, dtype=float)
            for c in cols:
                table[c] = fixed.get(c, 0.0) + (frame[c] if c in frame.columns else 0.0)
            out[group] = table
        return out

    # ------------------------------------------------------------ predictions
    def _linear_predictor(self, design: Design, include_random: bool) -> np.ndarray:
        mean = np.asarray(design.X, dtype=float) @ self.solution.beta
        if include_random:
            for block, b in zip(design.blocks, self.solution.b, strict=True):
                codes = np.asarray(block.codes)
                known = codes >= 0
                contribution = np.einsum("nq,nq->n", np.asarray(block.z, dtype=float),
                                         b[np.where(known, codes, 0)])
                mean += np.where(known, contribution, 0.0)
        return mean

    def fitted(self) -> np.ndarray:
        """Fitted values ``X beta + Z b`` of the data that were fitted."""
        return self._linear_predictor(self.design, include_random=True)

    def residuals(self, scaled: bool = False) -> np.ndarray:
        """Response minus fitted values (divided by sigma when ``scaled``)."""
        res = np.asarray(self.design.y, dtype=float) - self.fitted()
        return res / self.sigma if scaled else res

    def predict(self, new_data: pd.DataFrame | None = None,
                include_random: bool = True) -> np.ndarray:
        """Predict the mean response.

        Parameters
        ----------
        new_data : pandas.DataFrame, optional
            Data to predict for; the fitted data when omitted. Grouping levels the
            model never saw get the population-level prediction.
        include_random : bool
            Add the conditional modes of known levels (lme4's ``re.form = NULL``);
            False gives ``X beta`` only (``re.form = NA``).

        Returns
        -------
        numpy.ndarray
        """
        if not isinstance(include_random, (bool, np.bool_)):
            raise InputTypeError(f"include_random must be True or False, not {include_random!r}.")
        if new_data is None:
            return self._linear_predictor(self.design, include_random)
        if self.model is None:
            raise FitError("predict(new_data) needs the Model; fit through hierlm.Model(...).fit().")
        if not isinstance(new_data, pd.DataFrame):
            raise InputTypeError(f"new_data must be a pandas DataFrame, not "
                                 f"{type(new_data).__name__}.")
        return self._linear_predictor(self.model.new_design(new_data), include_random)

    def draws(self) -> FitDraws:
        """The estimates as one 'draw' (:class:`hierlm.results.draws.FitDraws`)."""
        return FitDraws(beta=self.solution.beta[None, :], sigma=np.array([self.sigma]),
                        covariances=tuple(c[None] for c in self.covariances()),
                        effects=tuple(b[None] for b in self.solution.b),
                        design=self.design, point=True)

    # ----------------------------------------------------------------- others
    def refit(self, reml: bool | None = None, **options: Any) -> LmmResult:
        """Fit the same design again, e.g. by ML (``reml=False``) for a likelihood-ratio test."""
        return fit_lmm(self.design, reml=self.reml if reml is None else reml, model=self.model,
                       **options)

    def anova(self, type: int = 3, ddf: str = "satterthwaite") -> Any:  # noqa: A002 - lmerTest's name
        """F-tests of the fixed-effect terms with Satterthwaite's df (lmerTest's ``anova(fit)``).

        Parameters
        ----------
        type : {3, 2, 1}
            3: each term adjusted for all others, with the hypotheses of a term
            orthogonal to those of terms containing it (lmerTest's default);
            2: each term adjusted for the terms that do not contain it;
            1: sequential, each term adjusted for the terms before it.
        ddf : {"satterthwaite", "kenward-roger"}
            Denominator df; Kenward-Roger also scales F (REML fits).

        Returns
        -------
        AnovaTable
            ``.table`` has one row per term: ``Sum Sq``, ``Mean Sq``, ``NumDF``,
            ``DenDF``, ``F value``, ``Pr(>F)``. See :mod:`hierlm.lmm.ftests`.

        Raises
        ------
        FitError
            For a fit made from a bare Design (the terms of the formula are
            needed), or type III with factors that are not treatment-coded.
        """
        from hierlm.design.terms import fixed_terms
        from hierlm.lmm.ftests import anova_table

        if self.model is None or not hasattr(self.model, "spec"):
            raise FitError("anova(fit) needs the formula's terms: fit a hierlm.Model, not a bare Design.")
        terms, intercept = fixed_terms(self.model.spec, self.model.data)
        return anova_table(self, terms, intercept, type, check_ddf(ddf))

    def summary(self) -> Any:
        """An lme4/lmerTest-like report; ``print(fit.summary())``."""
        from hierlm.lmm.report import LmmSummary

        return LmmSummary(self)

    def scaled_residual_quantiles(self) -> np.ndarray:
        """Min, quartiles and max of the scaled residuals (as in lme4's summary)."""
        return np.quantile(self.residuals(scaled=True), [0.0, 0.25, 0.5, 0.75, 1.0])

    def __repr__(self) -> str:
        formula = getattr(self.model, "formula", None) or self.design.response
        return (f"<LmmResult {self.method.upper()}: {formula}; n={self.nobs}, "
                f"criterion={self.criterion:.4f}, sigma={self.sigma:.4g}>")

    def confint(self, level: float = 0.95, method: str = "wald", n_boot: int = 500,
                random_seed: int | None = None) -> pd.DataFrame:
        """Confidence intervals: Wald for the fixed effects, or profile likelihood for everything.

        Parameters
        ----------
        level : float
            Confidence level, between 0 and 1.
        method : {"wald", "profile", "boot"}
            ``"wald"``: fixed effects only, ``estimate +- t * SE`` with
            Satterthwaite's df (lmerTest-style), instant. ``"profile"``: every
            SD, correlation, sigma and fixed effect, inverting the likelihood-ratio
            test of the ML deviance (lme4's default ``confint(fit)``; see
            :mod:`hierlm.lmm.profile`); seconds for small models. ``"boot"``:
            parametric bootstrap percentile intervals of every parameter
            (lme4's ``confint(fit, method = "boot")``; :mod:`hierlm.lmm.bootstrap`).
        n_boot, random_seed : int
            Replicates and seed of the bootstrap.

        Returns
        -------
        pandas.DataFrame
            Columns ``lower``, ``upper``. Wald: indexed by term. Profile and
            boot: indexed ``sd_<term>|<group>``, ``cor_<term2>.<term1>|<group>``,
            ``sigma``, then the fixed effects, in lme4's order.
        """
        if isinstance(level, bool) or not isinstance(level, (int, float, np.number)) \
                or not 0.0 < level < 1.0:
            raise FitError(f"level must be a number between 0 and 1, got {level!r}.")
        if method not in ("wald", "profile", "boot"):
            raise FitError(f"method={method!r}: choose 'wald' (fixed effects), 'profile' or 'boot' "
                           "(all parameters).")
        if method == "boot":
            from hierlm.lmm.bootstrap import bootstrap_confint

            return bootstrap_confint(self, level, n_boot, random_seed)
        if method == "profile":
            from hierlm.lmm.profile import profile_confint

            return profile_confint(self, level)[["lower", "upper"]]
        from scipy import stats

        table = self.fixef()
        half = stats.t.ppf(0.5 + level / 2.0, table["df"]) * table["std_error"]
        return pd.DataFrame({"lower": table["estimate"] - half,
                             "upper": table["estimate"] + half}, index=table.index)
