"""The result of a Bayesian fit (NUTS or MAP) and its basic tables.

``BayesResult`` holds the DataTree and everything needed to reproduce or
interpret the fit. Its tables use lme4's row layout so they can be joined
with the frequentist ones:

* ``fixef()``: one row per fixed effect (index = term);
* ``varcorr()``: columns ``group``, ``term1``, ``term2`` like
  ``as.data.frame(VarCorr(fit))``: one row per SD (``term2`` missing), one
  per correlation, then a ``Residual`` row; the summarised quantity is the SD
  or the correlation (lme4's ``sdcor``);
* ``ranef()``: one row per (group, level, term).

For NUTS fits the posterior columns are ``mean``, ``sd``, ``median``, the
equal-tailed interval at ArviZ's default probability (``rcParams
["stats.ci_prob"]``, 0.89 unless changed; columns ``eti89_lb``/``eti89_ub``),
``ess_bulk``, ``ess_tail``, ``r_hat`` and ``mcse_mean``. For MAP fits the
column is ``estimate`` (and ``std_error`` for fixed effects).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from arviz_base import rcParams
from arviz_stats.base.array import array_stats

from hierlm.bayes.diagnostics import DiagnosticReport
from hierlm.bayes.naming import FIXEF, SIGMA, BlockNames
from hierlm.bayes.priors import PriorTable
from hierlm.design.blocks import Design
from hierlm.results.draws import FitDraws
from hierlm.results.interpret import InterpretMethods
from hierlm.results.methods import ResultMethods

__all__ = ["BayesResult", "DeferredModel", "summarize_draws"]


def summarize_draws(draws: np.ndarray, diagnostics: bool = True) -> pd.DataFrame:
    """Posterior summary of each column of (chain, draw, k) draws.

    Parameters
    ----------
    draws : ndarray
        Shape (chain, draw, k).
    diagnostics : bool
        Also compute ESS, R-hat and MCSE (slower for many columns).

    Returns
    -------
    pandas.DataFrame
        One row per column; see the module docstring for the columns.
    """
    prob = float(rcParams["stats.ci_prob"])
    label = f"eti{round(prob * 100):d}"
    pooled = draws.reshape(-1, draws.shape[-1])
    interval = array_stats.eti(pooled, prob, axis=0)
    table = {
        "mean": pooled.mean(axis=0),
        "sd": pooled.std(axis=0, ddof=1) if pooled.shape[0] > 1 else np.full(pooled.shape[1], np.nan),
        "median": np.median(pooled, axis=0),
        f"{label}_lb": interval[..., 0],
        f"{label}_ub": interval[..., 1],
    }
    if diagnostics:
        table["ess_bulk"] = array_stats.ess(draws, chain_axis=0, draw_axis=1, method="bulk")
        # tail ESS: the smaller ESS of the 5% and 95% quantiles (Vehtari et al. 2021, as R's
        # posterior package and hierlm.results.summary), whatever the interval probability
        table["ess_tail"] = array_stats.ess(draws, chain_axis=0, draw_axis=1, method="tail",
                                           prob=(0.05, 0.95))
        table["r_hat"] = array_stats.rhat(draws, chain_axis=0, draw_axis=1)
        table["mcse_mean"] = array_stats.mcse(draws, chain_axis=0, draw_axis=1, method="mean")
    return pd.DataFrame(table)


@dataclass(eq=False)
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

    def _summary(self, draws: np.ndarray, diagnostics: bool = True) -> pd.DataFrame:
        if self._is_map:
            return pd.DataFrame({"estimate": draws.reshape(-1)})
        return summarize_draws(draws.reshape(draws.shape[0], draws.shape[1], -1), diagnostics)

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
        """Parameters as draws for :mod:`hierlm.results` (S = 1 holding the MAP estimate)."""
        return FitDraws(
            beta=self._pooled(FIXEF),
            sigma=self._pooled(SIGMA),
            covariances=tuple(self.covariances()),
            effects=tuple(self._flat(self._effects(bn)) for bn in self.names),
            design=self.design,
            point=self._is_map,
            n_chains=int(self._values(SIGMA).shape[0]),
        )

    def summary(self) -> Any:
        """brms-style report (text via ``print``, HTML in notebooks); see :mod:`hierlm.bayes.report`."""
        from hierlm.bayes.report import BayesSummary

        return BayesSummary(self)

    def coef(self) -> pd.DataFrame:
        """Per-level coefficients, fixed effect plus group effect, as posterior summaries.

        Returns
        -------
        pandas.DataFrame
            One row per (group, level, term) for every term that varies by a
            group; the fixed effect is added where the term is also a fixed
            effect (as lme4's ``coef``).
        """
        beta = self._values(FIXEF)
        fixed_index = {name: k for k, name in enumerate(self.design.fixed_names)}
        parts = []
        for bn in self.names:
            values = self._effects(bn).copy()
            for k, term in enumerate(bn.block.columns):
                if term in fixed_index:
                    values[..., k] += beta[..., fixed_index[term]][..., None]
            levels = [str(level) for level in bn.block.levels]
            head = pd.DataFrame({"group": bn.label, "level": np.repeat(levels, bn.block.q),
                                 "term": np.tile(list(bn.block.columns), len(levels))})
            body = (self._summary(values) if self._is_map
                    else summarize_draws(values.reshape(*values.shape[:2], -1), False))
            parts.append(pd.concat([head, body], axis=1))
        return pd.concat(parts, ignore_index=True)

    def predict(self, new_data: pd.DataFrame | None = None, include_random: bool = True,
                kind: str = "mean", summary: bool = True, prob: float | None = None,
                seed: int | None = None) -> Any:
        """Posterior predictions for the training data or ``new_data``.

        New grouping levels get effects drawn from the population distribution
        N(0, G), one draw per level shared by its rows; see
        :func:`hierlm.results.predict`.
        """
        from hierlm.results.prediction import predict

        if new_data is None:
            return predict(self, None, include_random=include_random, kind=kind,
                           summary=summary, prob=prob, seed=seed)
        if self.model is None:
            from hierlm.errors import FitError

            raise FitError("predict(new_data) needs the Model; fit through hierlm.Model(...).fit().")
        design = self.model.new_design(new_data)
        labels = {
            block.group: [":".join(str(v) for v in row)
                          for row in new_data[list(block.group.split(":"))].itertuples(index=False)]
            for block in design.blocks
        }
        return predict(self, design, include_random=include_random, kind=kind, summary=summary,
                       prob=prob, seed=seed, new_level_labels=labels)

    def fixef(self) -> pd.DataFrame:
        """Fixed effects: one row per term (index), posterior summary columns.

        Returns
        -------
        pandas.DataFrame
            NUTS: mean, sd, median, interval, ess_bulk, ess_tail, r_hat,
            mcse_mean. MAP: estimate, std_error (from ``X'V^-1 X`` at the
            mode, as lme4's ``vcov``).
        """
        table = self._summary(self._values(FIXEF))
        if self._is_map and "fixef_std_error" in self.info:
            table["std_error"] = np.asarray(self.info["fixef_std_error"])
        table.index = pd.Index(self.design.fixed_names, name="term")
        return table

    def varcorr(self) -> pd.DataFrame:
        """Random-effect SDs and correlations and the residual SD, in lme4's row layout.

        Returns
        -------
        pandas.DataFrame
            Columns group, term1, term2 then the summary columns of the SD
            (``term2`` missing) or the correlation.
        """
        keys: list[tuple[str, str, str | None]] = []
        columns = []
        for bn in self.names:
            sd = self._values(bn.sd)
            for k, term in enumerate(bn.block.columns):
                keys.append((bn.label, term, None))
                columns.append(sd[..., k])
            if bn.block.correlated and bn.block.q > 1:
                cor = self._values(bn.cor)
                for k, (term1, term2) in enumerate(bn.pair_terms):
                    keys.append((bn.label, term1, term2))
                    columns.append(cor[..., k])
        keys.append(("Residual", None, None))  # type: ignore[arg-type]
        columns.append(self._values(SIGMA))
        table = self._summary(np.stack(columns, axis=-1))
        head = pd.DataFrame(keys, columns=["group", "term1", "term2"])
        head = head.astype(object).where(head.notna(), None)
        return pd.concat([head, table], axis=1)

    def ranef(self, diagnostics: bool = False) -> pd.DataFrame:
        """Group effects: one row per (group, level, term).

        Parameters
        ----------
        diagnostics : bool
            Add ESS, R-hat and MCSE columns (NUTS; slow with many levels).

        Returns
        -------
        pandas.DataFrame
            Columns group, level, term then the summary columns.
        """
        parts = []
        for bn in self.names:
            values = self._effects(bn)
            levels = [str(level) for level in bn.block.levels]
            head = pd.DataFrame(
                {
                    "group": bn.label,
                    "level": np.repeat(levels, bn.block.q),
                    "term": np.tile(list(bn.block.columns), len(levels)),
                }
            )
            body = (
                self._summary(values)
                if self._is_map
                else summarize_draws(values.reshape(*values.shape[:2], -1), diagnostics)
            )
            parts.append(pd.concat([head, body], axis=1))
        return pd.concat(parts, ignore_index=True)

    def __repr__(self) -> str:
        what = (
            f"{self.settings.get('chains')} chains x {self.settings.get('draws')} draws"
            if not self._is_map
            else "posterior mode"
        )
        return (
            f"<BayesResult method={self.method} formulation={self.formulation} "
            f"sampler={self.sampler}: {what}, {self.timing.get('total', float('nan')):.1f} s>"
        )


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
