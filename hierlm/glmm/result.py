"""The result of a GLMM fit by maximum likelihood: glmer's accessors in the result protocol.

A :class:`GlmmResult` answers the protocol of :mod:`hierlm.results.methods`
(``fixef`` with Wald z tests, ``varcorr``, ``ranef`` with conditional
variances, ``coef``, ``vcov``, ``summary``) and glmer's own: ``fitted()``
and ``predict`` on the response or link scale, ``residuals`` of the
deviance, Pearson or response type, ``loglik``/``aic``/``bic``, likelihood
ratio tests through ``hl.anova`` and Wald or profile intervals
(``confint``). The conditional variances are those of the Laplace
approximation, ``Lambda (A'WA + I)^-1 Lambda'`` at the mode (lme4's
``condVar``; sigma is 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from hierlm.errors import FitError, InputTypeError
from hierlm.glmm.optimum import GlmmOptimum
from hierlm.glmm.pirls import GlmmProblem
from hierlm.results.draws import FitDraws
from hierlm.results.explained import r2
from hierlm.results.intraclass import icc
from hierlm.results.linear import LinearFunction
from hierlm.results.methods import ResultMethods
from hierlm.results.tables import point_table
from hierlm.results.uncertainty import PointUncertainty

__all__ = ["GlmmResult", "RESIDUAL_TYPES", "EXPECTED_COUNTS"]

#: ``expected_count=`` choices of the latent-scale ICC and R² of count families.
EXPECTED_COUNTS = ("null", "model")

#: ``residuals(type=...)`` choices, as glmer's.
RESIDUAL_TYPES = ("deviance", "pearson", "response", "working")


class GlmmResult(ResultMethods):
    """A generalised linear mixed model fitted by ML (Laplace or adaptive Gauss-Hermite).

    Attributes
    ----------
    design : Design
        The fitted design.
    family : Family
        The response family.
    model : Model or None
        The Model it came from.
    optimum : GlmmOptimum
        Estimates, Hessian and the optimiser's record.
    nagq : int
        Quadrature nodes (1: Laplace).
    """

    method = "ml"
    reml = False

    def __init__(self, problem: GlmmProblem, optimum: GlmmOptimum, model: Any = None,
                 fitter: Callable[..., GlmmResult] | None = None) -> None:
        self.problem = problem
        self._fitter = fitter
        self.optimum = optimum
        self.model = model
        self.design = problem.design
        self.family = problem.family
        self.nagq = optimum.nagq

    # ------------------------------------------------------------------ estimates
    @property
    def beta(self) -> np.ndarray:
        """Fixed effects on the link scale (``design.fixed_names`` order)."""
        return self.optimum.beta.copy()

    @property
    def theta(self) -> np.ndarray:
        """Covariance parameters (lme4's theta: relative Cholesky factors, sigma = 1)."""
        return self.optimum.theta.copy()

    @property
    def dispersion(self) -> float | None:
        """The family's dispersion (NB2 ``theta``); None for binomial and Poisson."""
        return self.optimum.dispersion

    @property
    def sigma(self) -> float:
        """lme4's ``sigma()`` of a GLMM: 1."""
        return 1.0

    @property
    def fit_record(self) -> GlmmOptimum:
        """The optimiser's record (``converged``, ``message``, ``evaluations``)."""
        return self.optimum

    @property
    def theta_names(self) -> tuple[str, ...]:
        """lme4's names of theta."""
        return self.problem.structure.layout.names

    def _templates(self, theta: np.ndarray | None = None) -> list[np.ndarray]:
        return self.problem.structure.templates(self.optimum.theta if theta is None else theta)

    def covariances(self) -> list[np.ndarray]:
        """Covariance matrix ``T T'`` of each block's effects (link scale)."""
        return [t @ t.T for t in self._templates()]

    def _spherical(self) -> list[np.ndarray]:
        mode = self.optimum.mode
        return self.problem.structure.split_u(mode.u1, mode.u2)

    def effects(self) -> list[np.ndarray]:
        """Conditional modes ``b`` per block, ``(levels, q)``."""
        return [u @ t.T for u, t in zip(self._spherical(), self._templates(), strict=True)]

    def conditional_variances(self) -> list[np.ndarray]:
        """``(levels, q, q)`` per block: ``T (A'WA + I)^-1 T'`` at the mode (lme4's ``condVar``)."""
        s = self.problem.structure
        factor = self.optimum.mode.factor
        templates = self._templates()
        out: list[np.ndarray] = [np.empty(0)] * len(self.design.blocks)
        first = factor.inverse_first_blocks()
        start = 0
        for k in s.first:
            q = self.design.blocks[k].q
            part = first[:, start:start + q, start:start + q]
            out[k] = np.einsum("ab,lbc,dc->lad", templates[k], part, templates[k])
            start += q
        if s.rest:
            inverse = factor.inverse_rest()
            offset = 0
            for k, width in zip(s.rest, s.rest_widths, strict=True):
                block = self.design.blocks[k]
                q = block.q
                index = offset + np.arange(block.n_levels)[:, None] * q + np.arange(q)[None, :]
                part = inverse[index[:, :, None], index[:, None, :]]
                out[k] = np.einsum("ab,lbc,dc->lad", templates[k], part, templates[k])
                offset += width
        return out

    # --------------------------------------------------------------- likelihood
    @property
    def deviance(self) -> float:
        """``-2 log L`` (Laplace or AGQ, with the family's normalising constants)."""
        return self.optimum.deviance

    @property
    def loglik(self) -> float:
        """Log-likelihood, as lme4's Laplace ``logLik`` (AGQ: with the normalising constants too)."""
        return -0.5 * self.optimum.deviance

    @property
    def criterion(self) -> float:
        """The minimised deviance."""
        return self.optimum.deviance

    @property
    def nobs(self) -> int:
        """Number of observations."""
        return self.design.n

    @property
    def n_params(self) -> int:
        """Estimated parameters: fixed effects, theta and the dispersion if any."""
        return self.design.p + self.theta.size + (1 if self.dispersion is not None else 0)

    @property
    def df_residual(self) -> int:
        """Observations minus parameters (glmer's ``df.resid``)."""
        return self.nobs - self.n_params

    @property
    def aic(self) -> float:
        """``-2 logLik + 2 npar``."""
        return self.deviance + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """``-2 logLik + log(n) npar``."""
        return self.deviance + np.log(self.nobs) * self.n_params

    @property
    def ngroups(self) -> dict[str, int]:
        """Levels of each grouping factor (lme4's ``ngrps``)."""
        out: dict[str, int] = {}
        for block in self.design.blocks:
            out.setdefault(block.group, block.n_levels)
        return out

    def singular_components(self) -> list[str]:
        """The theta entries on their bound (a variance estimated as 0)."""
        layout = self.problem.structure.layout
        return [name for name, value, lower in zip(layout.names, self.theta, layout.lower, strict=True)
                if lower == 0 and value < 1e-4]

    @property
    def is_singular(self) -> bool:
        """Whether a variance component sits on its bound (lme4's ``isSingular``)."""
        return bool(self.singular_components())

    # ------------------------------------------------------------- the protocol
    def draws(self) -> FitDraws:
        """The estimates as one 'draw' (family and dispersion included)."""
        dispersion = None if self.dispersion is None else np.array([self.dispersion])
        return FitDraws(beta=self.optimum.beta[None, :], sigma=np.ones(1),
                        covariances=tuple(c[None] for c in self.covariances()),
                        effects=tuple(b[None] for b in self.effects()), design=self.design,
                        point=True, family=self.family, dispersion=dispersion)

    def _varpar_covariance(self) -> np.ndarray:
        n_theta = self.theta.size
        hess = self.optimum.hessian
        if hess is None:
            return np.full((n_theta, n_theta), np.nan)
        try:
            cov = 2.0 * np.linalg.inv(hess)[:n_theta, :n_theta]
        except np.linalg.LinAlgError:
            return np.full((n_theta, n_theta), np.nan)
        on_bound = np.array([lo == 0 and v < 1e-4 for v, lo in
                             zip(self.theta, self.problem.structure.layout.lower, strict=True)])
        cov[on_bound, :] = np.nan
        cov[:, on_bound] = np.nan
        return cov

    def _point_uncertainty(self) -> PointUncertainty:
        """Standard-error ingredients: lme4's Hessian-based vcov, condVar, theta's covariance."""
        cached = self.__dict__.get("_uncertainty")
        if cached is not None:
            return cached

        def covariances_of(varpar: np.ndarray) -> tuple[list[np.ndarray], float]:
            return [t @ t.T for t in self._templates(varpar)], 1.0

        self.__dict__["_uncertainty"] = PointUncertainty(
            vcov_beta=self.optimum.vcov_beta, cond_var=tuple(self.conditional_variances()),
            varpar=self.theta, varpar_cov=self._varpar_covariance, covariances_of=covariances_of,
            source=f"ML ({'Laplace' if self.nagq == 1 else f'AGQ, {self.nagq} nodes'}) Hessian "
                   "of the deviance")
        return self.__dict__["_uncertainty"]

    def _header(self) -> list[str]:
        formula = getattr(self.model, "formula", None) or f"{self.design.response} ~ ..."
        how = "Laplace" if self.nagq == 1 else f"adaptive Gauss-Hermite quadrature, {self.nagq} nodes"
        state = "converged" if self.optimum.converged else "did not converge"
        return [f"Generalized linear mixed model fit by ML ({how}): {formula}",
                f"family {self.family.describe()}; {self.nobs} observations; deviance "
                f"{self.deviance:.2f}; {state}"]

    def fixef(self, prob: float | None = None) -> pd.DataFrame:
        """Fixed effects with Wald z tests (glmer's ``z value`` and ``Pr(>|z|)``)."""
        table = super().fixef(prob)
        z = table["estimate"].to_numpy() / table["std_error"].to_numpy()
        table["z_value"] = z
        table["p_value"] = 2.0 * stats.norm.sf(np.abs(z))
        return table

    # ---------------------------------------------------------------- predictions
    def linear_predictor(self) -> np.ndarray:
        """``eta = offset + X beta + Z b`` of the fitted rows."""
        return self.optimum.mode.eta.copy()

    def fitted(self) -> np.ndarray:
        """Fitted means on the response scale (glmer's ``fitted``: probabilities, rates)."""
        return self.optimum.mode.mu.copy()

    def residuals(self, scaled: bool = False, type: str = "deviance") -> np.ndarray:  # noqa: A002
        """Residuals of the fitted rows by ``type`` (glmer's ``residuals``).

        ``"deviance"`` (glmer's default), ``"pearson"``, ``"response"`` or
        ``"working"``; ``scaled`` is ignored (a GLMM has no sigma to divide by).
        """
        if type not in RESIDUAL_TYPES:
            raise InputTypeError(f"type must be one of {', '.join(RESIDUAL_TYPES)}, not {type!r}.")
        y, mu = self.problem.y, self.optimum.mode.mu
        w = self.problem.prior_weights
        if type == "deviance":
            return self.family.deviance_residuals(y, mu, w, self.dispersion)
        if type == "pearson":
            return self.family.pearson_residuals(y, mu, w, self.dispersion)
        if type == "working":
            return (y - mu) / self.family.link.mu_eta(self.optimum.mode.eta)
        return y - mu

    def predict(self, new_data: pd.DataFrame | None = None, include_random: bool = True,  # type: ignore[override]
                type: str = "response", prob: float | None = None,  # noqa: A002
                offset: np.ndarray | None = None) -> pd.DataFrame:
        """Predict the mean on the response (inverse link) or link scale.

        Parameters
        ----------
        new_data : pandas.DataFrame, optional
            Rows to predict; the fitted rows when omitted. Levels the model
            never saw get no group effect (population prediction), with a warning.
        include_random : bool
            Add the conditional modes of known levels (lme4's ``re.form = NULL``);
            False: ``offset + X beta`` (``re.form = NA``).
        type : {"response", "link"}
            The mean, or the linear predictor.
        prob : float, optional
            Interval probability.
        offset : array, optional
            Offset of the new rows when the model had an ``offset=`` array.

        Returns
        -------
        pandas.DataFrame
            ``estimate``, ``std_error`` and interval columns. On the link
            scale the standard error is ``sqrt(x' vcov x)`` without group
            effects, and with them the prediction error variance of ``x'
            beta_hat + z' b_hat`` (:mod:`hierlm.glmm.uncertainty`: the fixed
            effects' covariance, the conditional variance of the modes and
            the covariance between the two; theta held at its estimate;
            levels the model never saw contribute nothing). On the response
            scale: the delta method, ``|d mu / d eta| * SE``, and the interval
            is the inverse link of the link-scale one.
        """
        if type not in ("response", "link"):
            raise InputTypeError(f"type must be 'response' or 'link', not {type!r}.")
        if not isinstance(include_random, (bool, np.bool_)):
            raise InputTypeError(f"include_random must be True or False, not {include_random!r}.")
        if new_data is None:
            design = self.design
            index = pd.Index(design.row_index)
        else:
            if self.model is None:
                raise FitError("predict(new_data) needs the Model; fit through hierlm.Model(...).fit().")
            if not isinstance(new_data, pd.DataFrame):
                raise InputTypeError("new_data must be a pandas DataFrame, not "
                                     f"{new_data.__class__.__name__}.")
            design = self.model.new_design(new_data, offset=offset)
            index = new_data.index
        from hierlm.glmm.uncertainty import prediction_error_variance

        eta = design.offset + design.X @ self.optimum.beta
        if include_random:
            for block, b in zip(design.blocks, self.effects(), strict=True):
                known = block.codes >= 0
                contribution = np.einsum("ij,ij->i", block.z[known], b[block.codes[known]])
                eta[known] += contribution
        function = LinearFunction.from_design(design, bool(include_random))
        se = np.sqrt(np.clip(prediction_error_variance(self, function), 0.0, None))
        link_table = point_table(eta, se, prob)
        if type == "link":
            link_table.index = index
            return link_table
        mu = self.family.link.inverse(eta)
        table = point_table(mu, se * self.family.link.mu_eta(eta), prob)
        for column in link_table.columns:
            if column not in ("estimate", "std_error"):
                table[column] = self.family.link.inverse(link_table[column].to_numpy())
        table.index = index
        return table

    # ---------------------------------------------------------- inference
    @property
    def kernel(self) -> Any:
        """The theta layout (``lower`` bounds), which likelihood-ratio tests read."""
        return self.problem.structure.layout

    def confint(self, level: float | None = None, method: str = "wald") -> pd.DataFrame:
        """Confidence intervals: Wald (fixed effects, z) or profile likelihood.

        Parameters
        ----------
        level : float, optional
            Confidence level (``hierlm.DEFAULT_PROB`` when None).
        method : {"wald", "profile"}
            ``"wald"``: ``estimate +- z SE`` of the fixed effects. ``"profile"``:
            the SDs of one-term blocks and the fixed effects, inverting the
            likelihood-ratio test (:mod:`hierlm.glmm.profile`).

        Returns
        -------
        pandas.DataFrame
            Columns ``lower``, ``upper``; profile rows ``sd_(Intercept)|<group>``
            first, then the fixed effects.
        """
        from hierlm.core.defaults import DEFAULT_PROB

        level = DEFAULT_PROB if level is None else level
        if isinstance(level, bool) or not isinstance(level, (int, float, np.number)) \
                or not 0.0 < level < 1.0:
            raise FitError(f"level must be a number between 0 and 1, got {level!r}.")
        if method == "profile":
            from hierlm.glmm.profile import profile_confint

            return profile_confint(self, float(level))
        if method != "wald":
            raise FitError(f"method={method!r}: choose 'wald' (fixed effects) or 'profile'.")
        table = self.fixef(prob=level)
        lower, upper = table.columns[2:4]
        return table[[lower, upper]].set_axis(["lower", "upper"], axis=1)

    # ------------------------------------------------- latent-scale variance shares
    def null_intercept(self) -> float:
        """Intercept of the null model: this model refitted with fixed part ``1``.

        Same random effects, offset and weights (insight's ``null_model``);
        computed once per fit and kept. ``exp`` of it is the expected count of
        the distribution-specific variance of count families.
        """
        cached = self.__dict__.get("_null_intercept")
        if cached is not None:
            return float(cached)
        if self._fitter is None:
            raise FitError("The null model needs the fitter; fit through hierlm.Model(...).fit('ml').")
        null_design = replace(self.design, X=np.ones((self.design.n, 1)),
                              fixed_names=("Intercept",), summary=None)
        null_fit = self._fitter(null_design, self.family, model=None, nagq=self.nagq)
        self.__dict__["_null_intercept"] = float(null_fit.optimum.beta[0])
        return float(self.__dict__["_null_intercept"])

    def _expected_count(self, expected_count: str) -> np.ndarray | None:
        if expected_count not in EXPECTED_COUNTS:
            raise InputTypeError(f"expected_count must be one of {', '.join(EXPECTED_COUNTS)}, "
                                 f"not {expected_count!r}.")
        if self.family.link.latent_variance is not None or expected_count == "model":
            return None  # binomial: a constant; "model": residual_variance's own lambda
        return np.array([np.exp(self.null_intercept())])

    def icc(self, shared: Any = None, at: Any = None, prob: float | None = None,
            method: str = "lognormal", expected_count: str = "null") -> Any:
        """Adjusted ICCs on the latent (link) scale (Nakagawa, Johnson & Schielzeth 2017).

        ``sum var_re / (sum var_re + var_dist)`` per set of shared grouping
        factors, with random-slope variances averaged over the rows (``mean_i
        z_i' G z_i``). ``var_dist`` is the distribution-specific variance
        (row ``Residual`` of ``components``): binomial the link's constant
        (logit ``pi^2/3``, probit 1, cloglog ``pi^2/6``); Poisson and NB2
        ``log(1 + 1/mu [+ 1/theta])`` (``method="lognormal"``), ``1/mu [+
        1/theta]`` (``"delta"``) or ``trigamma`` of its inverse, where ``mu``
        is ``exp`` of the null model's intercept (``expected_count="null"``,
        as performance 0.10.2; :meth:`null_intercept` refits once) or
        ``exp(mean(offset + x'beta) + sum var_re / 2)`` (``"model"``, no
        refit, the Bayesian engine's). See :func:`hierlm.results.icc`.
        """
        return icc(self, shared=shared, at=at, prob=prob, method=method,
                   expected_count=self._expected_count(expected_count))

    def r2(self, bayes: bool | None = None, residual: str = "model", prob: float | None = None,
           method: str = "lognormal", expected_count: str = "null") -> Any:
        """Marginal and conditional R² on the latent scale (Nakagawa, Johnson & Schielzeth 2017).

        ``var_f / (var_f + sum var_re + var_dist)`` and ``(var_f + sum var_re)
        / (...)``, ``var_f`` the variance of ``x'beta`` (offset excluded),
        ``var_dist`` as in :meth:`icc`. ``bayes=True`` adds Gelman et al.'s
        response-scale R² at the estimates. See :func:`hierlm.results.r2`.
        """
        return r2(self, bayes=bool(bayes), residual=residual, prob=prob, method=method,
                  expected_count=self._expected_count(expected_count))

    # ------------------------------------------------------------ interpretation
    def emmeans(self, specs: str | Sequence[str], by: str | Sequence[str] | None = None,
                at: Mapping[str, Any] | None = None, prob: float | None = None,
                type: str = "link") -> Any:  # noqa: A002
        """Estimated marginal means, on the link or the response scale (z intervals).

        See :func:`hierlm.results.emmeans.emmeans`; ``type="response"`` gives
        glmer's emmeans with ``type = "response"``: ``g^-1`` of the mean, the
        delta-method SE and the link-scale Wald interval's bounds through ``g^-1``.
        """
        from hierlm.results.emmeans import emmeans

        return emmeans(self, specs, by=by, at=at, prob=prob, type=type)

    def _state(self) -> dict[str, Any]:
        """What ``save()`` stores (:mod:`hierlm.core.store`): estimates, Hessian, family and link names.

        ``weights=`` and ``offset=`` arguments are stored with the model
        (:func:`hierlm.core.store.save_fit`).
        """
        o = self.optimum
        return {"kind": "glmm", "idata": None,
                "fit": {"family": self.family.name, "link": self.family.link.name,
                        "nagq": int(self.nagq), "theta": o.theta, "beta": o.beta,
                        "dispersion": o.dispersion, "deviance": float(o.deviance),
                        "hessian": o.hessian, "vcov_beta": o.vcov_beta,
                        "vcov_source": o.vcov_source, "converged": bool(o.converged),
                        "message": o.message, "evaluations": int(o.evaluations)}}

    # ------------------------------------------------------------------ others
    def summary(self, prob: float | None = None) -> Any:
        """The summary in glmer's layout (:class:`hierlm.glmm.report.GlmmSummary`)."""
        from hierlm.glmm.report import GlmmSummary

        return GlmmSummary(self, prob)

    def structure_parameters(self) -> pd.DataFrame:
        """Patterned-structure parameters: none for GLMMs (lme4 bars only)."""
        return pd.DataFrame(columns=["structure", "parameter", "estimate"])

    def scaled_residual_quantiles(self) -> np.ndarray:
        """Min, quartiles and max of the Pearson residuals (glmer's 'Scaled residuals')."""
        return np.quantile(self.residuals(type="pearson"), [0.0, 0.25, 0.5, 0.75, 1.0])

    def refit(self, start: dict[str, Any] | None = None, nagq: int | None = None) -> GlmmResult:
        """Fit the same design again (another ``nagq`` or start); this fit is left unchanged."""
        if self._fitter is None:
            raise FitError("This fit was not made by fit_glmm, so it cannot be refitted.")
        return self._fitter(self.design, self.family, model=self.model,
                        nagq=self.nagq if nagq is None else nagq, start=start)
