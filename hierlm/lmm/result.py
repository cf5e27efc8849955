"""The result of an ML/REML fit: lme4's and lmerTest's accessors in one object.

Everything is derived from theta and the stored cross-products; the rows of
the data are only touched again for ``fitted``, ``residuals`` and ``predict``,
so a fit of a million rows stays small.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from hierlm.core.defaults import DEFAULT_PROB
from hierlm.design.blocks import Design
from hierlm.design.term_grid import check_spanned, coding_grid
from hierlm.design.terms import fixed_terms
from hierlm.errors import FitError
from hierlm.lmm.bootstrap import bootstrap_confint
from hierlm.lmm.ftests import anova_table
from hierlm.lmm.grouped import GroupedObjective
from hierlm.lmm.kenward_roger import check_ddf, kr_contrast_test
from hierlm.lmm.kenward_roger import kenward_roger as kenward_roger_covariance
from hierlm.lmm.objective import Solution
from hierlm.lmm.optimum import SINGULAR_TOL, FitRecord, blas_threads, singular_components
from hierlm.lmm.parameters import Criterion
from hierlm.lmm.profile import profile_confint
from hierlm.lmm.report import LmmSummary
from hierlm.lmm.satterthwaite import VarparCovariance, contrast_test, varpar_covariance
from hierlm.results.draws import FitDraws
from hierlm.results.interpret import InterpretMethods
from hierlm.results.methods import ResultMethods
from hierlm.results.structures import residual_covariance, structure_parameters
from hierlm.results.tables import contrast_vector, point_table
from hierlm.results.uncertainty import PointUncertainty

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
    kernel : LmmObjective or StructuredObjective
        The criterion on the design's cross-products, over lme4's theta or
        over the covariance structures' parameters (``cs``, ``ar1`` ...).
    theta : numpy.ndarray
        Estimated covariance parameters: lme4's theta when every block is
        ``us``/``diag``, else the structures' parameters (``theta_names``).
    reml : bool
        REML (True) or ML fit.
    fit_record : FitRecord
        How the optimum was found.
    threads : int or None
        BLAS threads for later computations (None: the library's default).
    fitter : callable, optional
        The function that made the fit (:func:`hierlm.lmm.fit_lmm`), used by
        :meth:`refit`; it is passed in so that this module does not import it back.

    Notes
    -----
    The tables (``fixef``, ``varcorr``, ``ranef``, ``coef``, ``predict`` ...) are
    the result protocol of :class:`~hierlm.results.methods.ResultMethods`.
    """

    def __init__(self, design: Design, model: Any, kernel: Criterion, theta: np.ndarray,
                 reml: bool, fit_record: FitRecord, threads: int | None = 1,
                 fitter: Callable[..., LmmResult] | None = None) -> None:
        self.design = design
        self.model = model
        self.kernel = kernel
        self.theta = np.asarray(theta, dtype=float)
        self.reml = bool(reml)
        self.fit_record = fit_record
        self.threads = threads
        self.fitter = fitter
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
        """Names of the covariance parameters (lme4's theta names for us/diag blocks)."""
        return self.kernel.names

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
        return (sol.ldL2 + sol.r2 / sigma2 + n * (_LOG_2PI + np.log(sigma2))
                - float(np.sum(np.log(self.design.weights))))

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
                                   column_scale=self.kernel.column_scale(self.design))

    # ----------------------------------------------------------- fixed effects
    @cached_property
    def varpar_covariance(self) -> VarparCovariance:
        """Hessian-based covariance of ``(theta, sigma)`` and ``dVar(beta)`` (lmerTest)."""
        with blas_threads(self.threads):
            return varpar_covariance(self.kernel, self.theta, self.reml,
                                     column_scale=self.kernel.column_scale(self.design))

    @cached_property
    def kenward_roger(self) -> Any:
        """Kenward-Roger adjusted covariance of the fixed effects (REML fits).

        See :mod:`hierlm.lmm.kenward_roger`; computed once, on first use.
        """
        with blas_threads(self.threads):
            return kenward_roger_covariance(self)

    def contrast(self, L: Any, rhs: float = 0.0, prob: float | None = None,
                 ddf: str = "satterthwaite") -> dict[str, float]:
        """t-test and confidence interval of ``L' beta = rhs`` with Satterthwaite's or Kenward-Roger's df.

        Parameters
        ----------
        L : array-like or dict
            Contrast vector of length p, or a mapping fixed-effect name -> weight.
        rhs : float
            Hypothesised value.
        prob : float, optional
            Confidence level of the t interval (``hierlm.DEFAULT_PROB`` when None).
        ddf : {"satterthwaite", "kenward-roger"}
            Denominator df (and, for Kenward-Roger, the adjusted standard error).

        Returns
        -------
        dict
            ``estimate``, ``std_error``, the interval bounds (``eti95_lb``,
            ``eti95_ub``: ``estimate -+ t_df * std_error``), ``df``, ``t_value``, ``p_value``.
        """
        vec = contrast_vector(self.design, L)
        if check_ddf(ddf) == "kenward-roger":
            test = kr_contrast_test(self.kenward_roger, self.solution.beta, vec, rhs)
        else:
            test = contrast_test(self.varpar_covariance, self.solution.beta, vec, rhs)
        row = point_table(np.array([test["estimate"]]), np.array([test["std_error"]]), prob,
                          df=np.array([test["df"]])).iloc[0]
        return {**{str(k): float(v) for k, v in row.items()},
                **{k: test[k] for k in ("df", "t_value", "p_value")}}

    def fixef(self, prob: float | None = None, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Fixed effects with standard errors, t intervals, df, t and p (lmerTest's table).

        Parameters
        ----------
        prob : float, optional
            Confidence level of the intervals (``hierlm.DEFAULT_PROB`` when None).
        ddf : {"satterthwaite", "kenward-roger"}
            Denominator df; Kenward-Roger also adjusts the standard errors (REML fits).

        Returns
        -------
        pandas.DataFrame
            Indexed by term; columns ``estimate, std_error``, the interval bounds
            (as ``confint(method="wald")``), then ``df, t_value, p_value``.
        """
        names = list(self.design.fixed_names)
        rows = [self.contrast(np.eye(len(names))[i], ddf=ddf, prob=prob) for i in range(len(names))]
        if not rows:  # y ~ 0 + (1 | g): the table keeps its columns
            empty = point_table(np.zeros(0), np.zeros(0), prob, df=np.zeros(0))
            columns = list(dict.fromkeys([*empty.columns, "df", "t_value", "p_value"]))
            return pd.DataFrame(columns=columns, index=pd.Index([], name="term"), dtype=float)
        return pd.DataFrame(rows, index=pd.Index(names, name="term"))

    # -------------------------------------------------------- random effects
    def covariances(self) -> list[np.ndarray]:
        """Covariance matrix of each block's coefficients (response scale)."""
        layout = self.kernel.cp.layout
        templates = layout.templates(self.kernel.theta(self.theta), [b.q for b in self.design.blocks])
        return [self.sigma ** 2 * t @ t.T for t in templates]

    def draws(self) -> FitDraws:
        """The estimates as one 'draw' (:class:`hierlm.results.draws.FitDraws`)."""
        return FitDraws(beta=self.solution.beta[None, :], sigma=np.array([self.sigma]),
                        covariances=tuple(c[None] for c in self.covariances()),
                        effects=tuple(b[None] for b in self.solution.b),
                        design=self.design, point=True)

    def _point_uncertainty(self) -> PointUncertainty:
        """Standard-error ingredients: lme4's ``vcov`` and ``condVar``, lmerTest's ``2 H^-1`` (kept)."""
        cached = self.__dict__.get("_uncertainty")
        if cached is not None:
            return cached
        qs = [b.q for b in self.design.blocks]
        layout = self.kernel.cp.layout

        def covariances_of(varpar: np.ndarray) -> tuple[list[np.ndarray], float]:
            sigma = float(varpar[-1])
            templates = layout.templates(self.kernel.theta(varpar[:-1]), qs)
            return [sigma ** 2 * t @ t.T for t in templates], sigma

        assert self.solution.cond_var is not None
        self.__dict__["_uncertainty"] = PointUncertainty(
            vcov_beta=self.sigma ** 2 * self.solution.unscaled_vcov,
            cond_var=tuple(self.solution.cond_var),
            varpar=np.append(self.theta, self.sigma),
            varpar_cov=lambda: self.varpar_covariance.vcov_varpar,
            covariances_of=covariances_of,
            source=f"{self.method.upper()} Hessian (lmerTest's covariance of theta and sigma)",
            residual_precision=self._residual_precision(),
        )
        return self.__dict__["_uncertainty"]

    def _state(self) -> dict[str, Any]:
        """What ``save()`` stores (:mod:`hierlm.core.store`): theta and the optimiser's record."""
        record = self.fit_record
        return {"kind": "lmm", "idata": None,
                "fit": {"reml": self.reml, "theta": self.theta, "threads": self.threads,
                        "record": {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}}}

    def _residual_precision(self) -> Callable[[], Any] | None:
        """``Omega^-1`` of a residual structure, computed on demand (None: independent residuals)."""
        kernel = self.kernel
        if not isinstance(kernel, GroupedObjective):
            return None
        theta = self.theta
        return lambda: kernel.residual_precision(theta)

    def _header(self) -> list[str]:
        """Short lines describing the fit, for ``repr`` and notebooks."""
        formula = getattr(self.model, "formula", None) or f"{self.design.response} ~ ..."
        groups = ", ".join(f"{n} {g}" for g, n in self.ngroups.items())
        record = self.fit_record
        state = "converged" if record.converged else f"did not converge ({record.message})"
        if self.is_singular:
            state += "; singular: " + ", ".join(self.singular_components())
        name = "REML criterion" if self.reml else "deviance"
        return [f"Linear mixed model fit by {self.method.upper()}: {formula}",
                f"{self.nobs} observations, {groups}; {name} {self.criterion:.2f}, "
                f"sigma {self.sigma:.4g}; {state}"]

    # ----------------------------------------------------------------- others
    def structure_parameters(self) -> pd.DataFrame:
        """Natural-scale parameters of patterned and residual structures (``rho``, ``phi`` ...).

        See :func:`hierlm.results.structures.structure_parameters`.
        """
        return structure_parameters(self)

    def residual_covariance(self, correlation: bool = False) -> pd.DataFrame:
        """Residual covariance (or correlation) over the distinct times of ``residual=``.

        See :func:`hierlm.results.structures.residual_covariance`.
        """
        return residual_covariance(self, correlation=correlation)

    def refit(self, reml: bool | None = None, newresp: Any = None, **options: Any) -> LmmResult:
        """Fit the same design again: by ML (``reml=False``) for a likelihood-ratio test, or to a new y.

        Parameters
        ----------
        reml : bool, optional
            Criterion of the new fit; this fit's when None.
        newresp : array-like, optional
            A new response of the same length (lme4's ``refit(object, newresp)``),
            e.g. a simulated one (:mod:`hierlm.lmm.bootstrap`).
        **options
            Passed to :func:`hierlm.lmm.fit_lmm` (``start``, ``warn``, ``optimizer`` ...).

        Raises
        ------
        FitError
            If the fit does not know how it was made (it was built by hand), or
            ``newresp`` does not match the data.
        """
        if self.fitter is None:
            raise FitError("This fit was not made by fit_lmm, so it cannot be refitted; fit the "
                           "model again with hierlm.Model(...).fit().")
        design = self.design
        if newresp is not None:
            y = np.asarray(newresp, dtype=float).ravel()
            if y.shape != (design.n,) or not np.isfinite(y).all():
                raise FitError(f"newresp must be {design.n} finite numbers, got shape {y.shape}.")
            design = dataclasses.replace(design, y=y)
        return self.fitter(design, reml=self.reml if reml is None else reml, model=self.model,
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
        if self.model is None or not hasattr(self.model, "spec"):
            raise FitError("anova(fit) needs the formula's terms: fit a hierlm.Model, not a bare Design.")
        if self.design.rowless:  # engine data: the terms' codings over a grid of the variables
            terms, intercept, coding = coding_grid(self.model.spec, full=type == 3)
            if type == 3:
                check_spanned(coding, terms, intercept)
            return anova_table(self, terms, intercept, type, check_ddf(ddf), coding=coding)
        terms, intercept = fixed_terms(self.model.spec, self.model.data)
        return anova_table(self, terms, intercept, type, check_ddf(ddf))

    def summary(self, prob: float | None = None) -> LmmSummary:
        """An lme4/lmerTest-like report; ``print(fit.summary())``; tables at ``prob`` in ``to_frames()``."""
        return LmmSummary(self, prob)

    def scaled_residual_quantiles(self) -> np.ndarray:
        """Min, quartiles and max of the scaled residuals (as in lme4's summary)."""
        if self.design.rowless:  # data held by an engine: a second pass there
            return self.design.summary.source.residual_quantiles(  # type: ignore[union-attr]
                self, [0.0, 0.25, 0.5, 0.75, 1.0])
        return np.quantile(self.residuals(scaled=True), [0.0, 0.25, 0.5, 0.75, 1.0])

    def confint(self, level: float | None = None, method: str = "wald", n_boot: int = 500,
                random_seed: int | None = None) -> pd.DataFrame:
        """Confidence intervals: Wald for the fixed effects, or profile likelihood for everything.

        Parameters
        ----------
        level : float, optional
            Confidence level, between 0 and 1 (lme4's name for ``prob``);
            ``hierlm.DEFAULT_PROB`` (0.95) when None.
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
        level = DEFAULT_PROB if level is None else level
        if isinstance(level, bool) or not isinstance(level, (int, float, np.number)) \
                or not 0.0 < level < 1.0:
            raise FitError(f"level must be a number between 0 and 1, got {level!r}.")
        if method not in ("wald", "profile", "boot"):
            raise FitError(f"method={method!r}: choose 'wald' (fixed effects), 'profile' or 'boot' "
                           "(all parameters).")
        if method == "boot":
            self.design.require_rows("confint(method='boot') (it simulates new rows)")
            return bootstrap_confint(self, level, n_boot, random_seed)
        if method == "profile":
            return profile_confint(self, level)[["lower", "upper"]]
        table = self.fixef(prob=level)
        lower, upper = table.columns[2:4]
        return table[[lower, upper]].set_axis(["lower", "upper"], axis=1)
