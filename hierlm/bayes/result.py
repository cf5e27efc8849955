"""The result of a Bayesian fit (NUTS or MAP).

``BayesResult`` holds the DataTree and everything needed to reproduce or
interpret the fit. Its tables are those of every hierlm fit (the result
protocol of :class:`~hierlm.results.methods.ResultMethods`, columns in
:mod:`hierlm.results.tables`), so they can be joined with the frequentist ones:

* ``fixef()``: one row per fixed effect (index = term);
* ``varcorr()``: columns ``group``, ``term1``, ``term2`` like
  ``as.data.frame(VarCorr(fit))``: one row per SD (``term2`` missing), one
  per correlation, then a ``Residual`` row;
* ``ranef()``, ``coef()``: one row per (group, level, term);
* ``predict()``: one row per predicted row.

NUTS fits: ``estimate`` is the posterior mean, ``std_error`` the posterior
SD, the interval equal-tailed at ``prob`` (``hierlm.DEFAULT_PROB`` = 0.95),
then ``ess_bulk``, ``ess_tail``, ``r_hat`` and ``mcse_mean`` (``fixef``,
``varcorr``). MAP fits: the mode, with the standard errors and Wald
intervals of the Laplace approximation at the mode
(:func:`hierlm.bayes.map.laplace_uncertainty`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from hierlm.bayes.diagnostics import DiagnosticReport
from hierlm.bayes.effect_summary import SUMMARY_GROUP, EffectSummary, LazyEffects
from hierlm.bayes.groupstats import group_stats
from hierlm.bayes.likelihoods import dispersion_name
from hierlm.bayes.naming import FIXEF, SIGMA, BlockNames
from hierlm.bayes.priors import PriorTable
from hierlm.bayes.report import BayesSummary
from hierlm.bayes.structure_model import structure_parameter_table
from hierlm.design.blocks import Design
from hierlm.design.crossprod import theta_layout
from hierlm.errors import FitError
from hierlm.results.draws import FitDraws
from hierlm.results.interpret import InterpretMethods
from hierlm.results.methods import ResultMethods
from hierlm.results.tables import posterior_table
from hierlm.results.uncertainty import PointUncertainty

__all__ = ["BayesResult", "DeferredModel", "base_index"]


@dataclass(eq=False, repr=False)
class BayesResult(ResultMethods, InterpretMethods):
    """A Bayesian fit: posterior draws (NUTS) or the posterior mode (MAP).

    Attributes
    ----------
    idata : xarray.DataTree
        ArviZ 1.x DataTree. NUTS: groups ``posterior``, ``sample_stats``,
        ``observed_data``, ``posterior_predictive``, ``log_likelihood``
        (pointwise) and ``log_likelihood_group`` (per level, group effects
        integrated out); see :mod:`hierlm.bayes.posterior`.
        MAP: group ``map`` with the estimates (same variable names, no
        chain/draw) and ``observed_data``.
    pymc_model : pymc.Model
        The PyMC model that was sampled or optimised.
    formulation : str
        ``"full"`` or ``"marginal"``.
    sampler : str
        ``"nutpie"``, ``"pymc"``, ``"numpyro"``, or the optimiser for MAP.
    method : str
        ``"nuts"`` or ``"map"``.
    design : Design
        The data the model was fitted to.
    priors : PriorTable
        The priors used.
    names : list of BlockNames
        Names of the random-effect blocks.
    timing : dict of str to float
        Seconds per stage (``build``, ``compile``, ``sample``/``optimize``,
        ``postprocess``, ``total``).
    seed : int or None
        Seed that reproduces the fit.
    settings : dict
        Sampler or optimiser settings.
    diagnostics : DiagnosticReport or None
        MCMC checks (NUTS only).
    info : dict
        Method-specific extras (MAP: convergence, boundary, REML flag...).
    model : hierlm.Model or None
        The Model that was fitted (set by ``Model.fit``; needed by ``save``).
    family : Family or None
        The response family (None: Gaussian).
    """

    idata: xr.DataTree
    pymc_model: Any
    formulation: str
    sampler: str
    method: str
    design: Design
    priors: PriorTable
    names: list[BlockNames]
    timing: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    diagnostics: DiagnosticReport | None = None
    info: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    family: Any = None

    @property
    def _is_map(self) -> bool:
        return self.method == "map"

    def _values(self, name: str) -> np.ndarray:
        """Draws (chain, draw, ...) of a posterior variable; MAP as one chain of one draw."""
        if self._is_map:
            return np.asarray(self.idata["map"][name].values)[None, None, ...]
        return np.asarray(self.idata["posterior"][name].values)

    def _effects(self, bn: BlockNames) -> np.ndarray:
        """Group-effect draws (chain, draw, level, term) of a block, read by dim name."""
        effects = bn.effects(self.idata["map" if self._is_map else "posterior"])
        return effects[None, None, ...] if self._is_map else effects

    @staticmethod
    def _flat(values: np.ndarray) -> np.ndarray:
        """(chain, draw, ...) -> (chain * draw, ...)."""
        return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])

    def _pooled(self, name: str) -> np.ndarray:
        """Draws of a variable with chains pooled: (S, ...)."""
        return self._flat(self._values(name))

    def covariances(self) -> list[np.ndarray]:
        """Covariance matrix ``G`` of each block, per draw: (S, q, q) (S = 1 for MAP)."""
        out = []
        for bn in self.names:
            sd = self._pooled(bn.sd)
            corr = np.broadcast_to(np.eye(bn.block.q), (sd.shape[0], bn.block.q, bn.block.q)).copy()
            if bn.block.correlated and bn.block.q > 1:
                cor = self._pooled(bn.cor)
                for k, (i, j) in enumerate(bn.pairs):
                    corr[:, i, j] = corr[:, j, i] = cor[:, k]
            out.append(sd[:, :, None] * corr * sd[:, None, :])
        return out

    def draws(self) -> FitDraws:
        """Parameters as draws for :mod:`hierlm.results` (S = 1 holding the MAP estimate).

        Built once from the DataTree and kept (the fit's draws do not change).
        """
        cached = self.__dict__.get("_draws")
        if cached is None:
            beta = self._pooled(FIXEF)
            gaussian = self.family is None or self.family.name == "gaussian"
            dispersion = None if gaussian else dispersion_name(self.family)
            summary = self.effect_summary()
            cached = FitDraws(
                beta=beta,
                sigma=self._pooled(SIGMA) if gaussian else np.ones(beta.shape[0]),
                covariances=tuple(self.covariances()),
                effects=(LazyEffects(summary) if summary is not None
                         else tuple(self._flat(self._effects(bn)) for bn in self.names)),
                effect_summary=summary,
                design=self.design,
                point=self._is_map,
                n_chains=int(self._values(FIXEF).shape[0]),
                family=self.family,
                dispersion=None if dispersion is None else self._pooled(dispersion),
            )
            self.__dict__["_draws"] = cached
        return cached

    def effect_summary(self) -> EffectSummary | None:
        """The Rao-Blackwellised summaries of the group effects, when the fit keeps them instead of draws.

        See :mod:`hierlm.bayes.effect_summary` (``fit(group_effects=...)``).
        """
        if self._is_map or SUMMARY_GROUP not in self.idata.children:
            return None
        cached = self.__dict__.get("_effect_summary")
        if cached is None:
            cached = EffectSummary.from_idata(self.idata, group_stats(self.design), self.names)
            self.__dict__["_effect_summary"] = cached
        return cached

    def group_draws(self, levels: Any = None, group: str | None = None) -> xr.Dataset:
        """Posterior draws of the group effects of chosen levels, as the ``posterior`` stores them.

        For a fit that keeps summaries (``group_effects="summary"``) the draws
        are made now from the exact conditional of each level given each
        posterior draw, seeded by the fit's seed: the same numbers in every
        call, whichever other levels are asked for. Otherwise they are read
        from the posterior.

        Parameters
        ----------
        levels : sequence, optional
            Levels of the grouping factor (as in ``ranef()``); all when None.
        group : str, optional
            The grouping factor; needed only when the model has several.

        Returns
        -------
        xarray.Dataset
            ``ranef_<block>`` with dims (chain, draw, <block>_term, <block>_level).

        Raises
        ------
        FitError
            For a MAP fit, an unknown grouping factor or an unknown level.
        """
        if self._is_map:
            raise FitError("group_draws(): a MAP fit has no posterior draws.")
        factors = list(dict.fromkeys(bn.block.group for bn in self.names))
        if group is None and len(factors) > 1:
            raise FitError(f"group_draws(): the model has several grouping factors {factors}; "
                           "pass group=.")
        group = factors[0] if group is None else group
        chosen = [bn for bn in self.names if bn.block.group == group]
        if not chosen:
            raise FitError(f"group_draws(): {group!r} is not a grouping factor of the model; "
                           f"choose one of {factors}.")
        known = [str(v) for v in chosen[0].block.levels]
        position = {level: i for i, level in enumerate(known)}
        wanted = known if levels is None else [str(v) for v in np.atleast_1d(np.asarray(levels))]
        missing = [v for v in wanted if v not in position]
        if missing:
            raise FitError(f"group_draws(): level {missing[0]!r} is not a level of {group!r} "
                           f"(it has {len(known)} levels, e.g. {known[:3]}).")
        index = np.array([position[v] for v in wanted], dtype=np.int64)
        summary = self.effect_summary()
        n_chains = int(self._values(FIXEF).shape[0])
        data = {}
        coords: dict[str, Any] = {"chain": self.idata["posterior"]["chain"].values,
                                  "draw": self.idata["posterior"]["draw"].values}
        made = summary.draws(index) if summary is not None else None
        for bn in chosen:
            k = self.names.index(bn)
            if made is not None and summary is not None:
                values = made[:, :, summary.block_columns(k)]
                values = values.reshape(n_chains, -1, *values.shape[1:])
            else:
                values = self._effects(bn)[:, :, index, :]
            data[bn.ranef] = (("chain", "draw", *bn.ranef_dims), np.swapaxes(values, 2, 3))
            coords[bn.level_dim] = wanted
            coords[bn.term_dim] = list(bn.block.columns)
        return xr.Dataset(data, coords=coords)

    def _point_uncertainty(self) -> PointUncertainty | None:
        """MAP: the Laplace approximation at the mode, as stored by ``fit_map``; NUTS: None.

        The variance parameters are ``(theta, log sigma)`` (lme4's theta layout).
        A MAP fit saved before the approximation was stored gets NaN standard errors.
        """
        if not self._is_map:
            return None
        cached = self.__dict__.get("_uncertainty")
        if cached is not None:
            return cached
        info, design = self.info, self.design
        theta = np.asarray(info["theta"], dtype=float)
        sigma = float(self.draws().sigma[0])  # 1 for families without a residual SD
        varpar = np.append(theta, np.log(sigma))
        nan = np.full((varpar.size, varpar.size), np.nan)
        laplace = np.asarray(info.get("laplace_cov", nan), dtype=float)[: varpar.size, : varpar.size]
        vcov_beta = np.asarray(info.get("vcov_beta", np.full((design.p, design.p), np.nan)), dtype=float)
        stored = info.get("cond_var")
        cond_var = (tuple(np.asarray(c, dtype=float) for c in stored) if stored is not None
                    else tuple(np.full((b.n_levels, b.q, b.q), np.nan) for b in design.blocks))
        layout = theta_layout(design.blocks)
        qs = [b.q for b in design.blocks]

        def covariances_of(x: np.ndarray) -> tuple[list[np.ndarray], float]:
            scale = float(np.exp(x[-1]))
            return [scale ** 2 * t @ t.T for t in layout.templates(x[:-1], qs)], scale

        self.__dict__["_uncertainty"] = PointUncertainty(
            vcov_beta=vcov_beta, cond_var=cond_var, varpar=varpar, varpar_cov=lambda: laplace,
            covariances_of=covariances_of, source="Laplace approximation at the posterior mode")
        return self.__dict__["_uncertainty"]

    def _state(self) -> dict[str, Any]:
        """What ``save()`` stores (:mod:`hierlm.core.store`): the DataTree, the settings, the family.

        The family and link are stored by name (None: Gaussian); ``weights=`` and
        ``offset=`` arguments are stored with the model (:func:`hierlm.core.store.save_fit`).
        """
        gaussian = self.family is None or self.family.name == "gaussian"
        return {
            "kind": "bayes", "idata": self.idata,
            "fit": {"method": self.method, "formulation": self.formulation, "sampler": self.sampler,
                    "family": None if gaussian else self.family.name,
                    "link": None if gaussian else self.family.link.name,
                    "seed": self.seed, "settings": self.settings, "timing": self.timing,
                    "info": self.info,
                    "diagnostics": None if self.diagnostics is None else asdict(self.diagnostics),
                    "priors": [{"kind": row.kind, "block": row.block, "term": row.term,
                                "prior": row.prior, "source": row.source} for row in self.priors.rows]},
        }

    def _header(self) -> list[str]:
        """Short lines describing the fit, for ``repr`` and notebooks."""
        formula = getattr(self.model, "formula", None) or f"{self.design.response} ~ ..."
        groups: dict[str, int] = {}
        for block in self.design.blocks:
            groups.setdefault(block.group, block.n_levels)
        data = f"{self.design.n} observations, " + ", ".join(f"{n} {g}" for g, n in groups.items())
        seconds = self.timing.get("total", float("nan"))
        if self._is_map:
            reml = ", REML" if self.info.get("reml") else ""
            state = "converged" if self.info.get("converged", True) else "did not converge"
            if self.info.get("singular"):
                state += "; singular: " + ", ".join(self.info.get("boundary", []))
            return [f"Posterior mode (MAP{reml}): {formula}",
                    f"{data}; {self.sampler}, {seconds:.1f} s; {state}"]
        settings = self.settings
        report = self.diagnostics
        checks = ("diagnostics OK" if report is None or report.ok
                  else f"{len(report.problems)} diagnostic problem(s): see fit.diagnostics")
        return [f"Bayesian fit by NUTS ({self.formulation} formulation, {self.sampler}): {formula}",
                f"{data}; {settings.get('chains')} chains x {settings.get('draws')} draws, "
                f"{seconds:.1f} s; {checks}"]

    def structure_parameters(self, prob: float | None = None) -> Any:
        """Posterior of the patterned structures' correlations (``rho``, ``rho1 ...``).

        The rows of the ML/REML ``structure_parameters()`` (columns
        ``structure``, ``parameter``) with the protocol columns; see
        :func:`hierlm.bayes.structure_model.structure_parameter_table`. MAP fits:
        the mode in ``estimate``, the Laplace standard error and interval
        (:mod:`hierlm.bayes.map_intervals`), the diagnostic columns NaN.
        """
        import pandas as pd

        from hierlm.bayes.residual_marginal import residual_parameter_table

        posterior = (self.idata["map"].to_dataset().expand_dims(chain=1, draw=1) if self._is_map
                     else self.idata.posterior)
        blocks = structure_parameter_table(self.names, posterior, prob)
        residual = residual_parameter_table(self.design.residual, posterior, prob)
        tables = [t for t in (blocks, residual) if len(t)]
        variables = [v for t in tables for v in t.attrs.get("variables", [])]
        table = pd.concat(tables, ignore_index=True) if tables else blocks
        if self._is_map:  # the mode, with Laplace intervals (hierlm.bayes.map_intervals)
            from hierlm.bayes.map_intervals import laplace_structure_columns
            from hierlm.results.summary import interval_spec

            spec = interval_spec(prob)
            numeric = [c for c in table.columns if c not in ("structure", "parameter", "estimate")]
            table[numeric] = np.nan
            got = (laplace_structure_columns(self.info, variables,
                                             table["estimate"].to_numpy(), spec.prob)
                   if len(table) else None)
            if got is not None:
                table["std_error"] = got["std_error"].to_numpy()
                table[spec.lower] = got["lower"].to_numpy()
                table[spec.upper] = got["upper"].to_numpy()
                table.attrs["interval"] = ("Laplace approximation at the mode: Gaussian on the "
                                           "unconstrained scale (log-odds on the range, log for "
                                           "ratios), mapped back")
            table.attrs["estimate"] = "posterior mode (MAP)"
        return table

    def residual_covariance(self, correlation: bool = False) -> pd.DataFrame:
        """MAP: the residual covariance (or correlation) over the distinct times at the mode.

        The table of the ML/REML fits
        (:func:`hierlm.results.structures.residual_covariance_at`), at the mode's
        sigma and structure parameters (carried to the engine's scale by
        :func:`hierlm.bayes.residual_predict.draw_visit_parameters`).

        Raises
        ------
        FitError
            Without ``residual=``, or for a NUTS fit (a posterior of matrices).
        """
        from hierlm.results.structures import residual_covariance_at

        residual = self.design.residual
        if residual is None:
            raise FitError("The model has no residual structure (residual= / variance=).")
        if not self._is_map:
            raise FitError("residual_covariance() is the matrix of a point fit (ML, REML, MAP); "
                           "a NUTS fit has a posterior of them: use fit.structure_parameters() "
                           "for the posterior of the structure's parameters, or fit(method='map').")
        at = self._visit_parameters()
        return residual_covariance_at(residual, at.struct, float(np.sqrt(at.sigma2)), correlation)

    def _visit_parameters(self) -> Any:
        """MAP: the mode as the new-visit predictor's parameters (:mod:`hierlm.results.new_visits`)."""
        from hierlm.bayes.residual_predict import draw_visit_parameters

        if not self._is_map:
            raise FitError("a NUTS fit has one set of visit parameters per draw; see "
                           "hierlm.bayes.residual_predict.draw_visit_parameters")
        return draw_visit_parameters(self)[0]

    def _grouped_loglik(self, what: str) -> tuple[np.ndarray, list[str], str]:
        """The stored per-group joint log densities of a fit with ``residual=`` (S, groups)."""
        residual = self.design.residual
        assert residual is not None
        if self._is_map or "log_likelihood" not in self.idata.children:
            raise FitError(f"{what} needs the log_likelihood group of a NUTS fit "
                           "(fit(method='nuts', log_likelihood=True)).")
        group = self.idata["log_likelihood"]
        values = np.asarray(next(iter(group.data_vars.values())).values, dtype=float)
        labels = [str(v) for v in next(iter(group.data_vars.values())).coords[
            next(iter(group.data_vars.values())).dims[-1]].values]
        return values, labels, residual.spec.group

    def _residual_elpd(self, kind: str, level: str, group: str | None) -> Any:
        """LOO/WAIC per residual group (the only unit when residuals are correlated)."""
        import dataclasses

        from hierlm.bayes.residual_posterior import unit_note_of
        from hierlm.results.ic import loo, waic

        residual = self.design.residual
        assert residual is not None
        result = (loo if kind == "loo" else waic)(self, level=level, group=group)
        return dataclasses.replace(result, note=unit_note_of(residual))

    def predict(self, new_data: Any = None, include_random: bool = True, kind: str = "mean",
                prob: float | None = None, summary: bool = True, new_levels: str = "sample",
                seed: int | None = None, type: str = "response") -> Any:
        """Predictions (see :meth:`hierlm.results.methods.ResultMethods.predict`).

        With ``residual=``, new rows of observed subjects are predicted from the
        conditional Gaussian given the subject's observed visits, at every
        posterior draw (MAP: at the mode), by the ML/REML engine's predictor
        (:mod:`hierlm.bayes.residual_predict`); new subjects get the marginal.
        On the fitted rows of a NUTS fit, only the means (a new response there is
        the ``posterior_predictive`` group, which carries the residual covariance);
        a MAP fit's ``kind="response"`` there is the plug-in of the ML/REML fits
        (the row's own residual variance, :func:`hierlm.results.new_visits.row_residual_variance`).
        """
        residual = self.design.residual
        if residual is not None and new_data is None and kind != "mean" and not self._is_map:
            raise FitError(
                f"predict(kind={kind!r}) of the fitted rows of a NUTS fit with "
                f"residual={residual.describe()!r} is not available: its draws would add "
                f"independent noise of variance sigma^2, and the residuals of one "
                f"{residual.spec.group} are correlated (and their variances differ by time for "
                "heterogeneous structures). Use fit.idata['posterior_predictive'] for replicated "
                "responses (drawn with the residual covariance), or predict(new_data) for new visits.")
        if residual is None or new_data is None or not isinstance(new_data, pd.DataFrame):
            return super().predict(new_data, include_random=include_random, kind=kind, prob=prob,
                                   summary=summary, new_levels=new_levels, seed=seed, type=type)
        from hierlm.bayes.residual_predict import predict_new_visits

        if self.model is None:
            raise FitError("predict(new_data) needs the Model; fit through hierlm.Model(...).fit().")
        design = self.model.new_design(new_data)
        point = self._is_map
        base = super().predict(new_data, include_random=include_random, kind=kind, prob=prob,
                               summary=point, new_levels=new_levels, seed=seed, type=type)
        got = predict_new_visits(self, new_data, design, base, include_random=include_random,
                                 kind=kind, new_levels=new_levels, seed=seed, prob=prob)
        if point:
            return got if summary else got["estimate"].to_numpy()[None, :]
        if not summary:
            return got
        table = posterior_table(got, int(self._values(FIXEF).shape[0]), prob, diagnostics=False)
        table.index = base_index(design)
        table.attrs["std_error"] = ("posterior SD of the conditional prediction given the "
                                    "subject's observed visits; see hierlm.bayes.residual_predict")
        return table

    def loo(self, level: str = "observation", group: str | None = None) -> Any:
        """PSIS-LOO; with ``residual=`` per residual group only (see :mod:`hierlm.results.ic`)."""
        if self.design.residual is not None:
            return self._residual_elpd("loo", level, group)
        return super().loo(level=level, group=group)

    def waic(self, level: str = "observation", group: str | None = None) -> Any:
        """WAIC; with ``residual=`` per residual group only (see :mod:`hierlm.results.ic`)."""
        if self.design.residual is not None:
            return self._residual_elpd("waic", level, group)
        return super().waic(level=level, group=group)

    def summary(self, prob: float | None = None) -> BayesSummary:
        """brms-style report (text via ``print``, HTML in notebooks); see :mod:`hierlm.bayes.report`."""
        return BayesSummary(self, prob)


def base_index(design: Design) -> pd.Index:
    """The index of a prediction table of ``design``'s rows (as :func:`hierlm.results.prediction.predict`)."""
    return pd.Index(design.row_index if len(design.row_index) == design.n else np.arange(design.n))


class DeferredModel:
    """Stands in for a PyMC model until it is first needed (see ``BayesResult.pymc_model``).

    Parameters
    ----------
    build : callable
        Zero-argument function that returns the ``pymc.Model``.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build


def _get_pymc_model(result: BayesResult) -> Any:
    value = result.__dict__.get("_pymc_model")
    if isinstance(value, DeferredModel):
        value = value.build()
        result.__dict__["_pymc_model"] = value
    return value


def _set_pymc_model(result: BayesResult, value: Any) -> None:
    result.__dict__["_pymc_model"] = value


# The PyMC model of a NUTS fit is built on first access: the default sampler of the
# marginal formulation does not need PyMC, whose import costs about half a second.
setattr(  # noqa: B010 - a property over the dataclass field keeps the constructor unchanged
    BayesResult,
    "pymc_model",
    property(_get_pymc_model, _set_pymc_model, doc="The PyMC model (``pymc.Model``; None for MAP)."),
)
