"""The methods every fit answers with: the result protocol of REML, ML, MAP and NUTS fits.

Both result classes (``LmmResult`` for ML/REML, ``BayesResult`` for MAP/NUTS)
inherit :class:`ResultMethods`. They implement two hooks and get the rest:

``draws()``
    The parameters as :class:`~hierlm.results.draws.FitDraws` (S = 1 holding
    the estimates of a point fit).
``_point_uncertainty()``
    For point fits, a :class:`~hierlm.results.uncertainty.PointUncertainty`
    (covariance of the fixed effects, conditional covariance of the group
    effects, covariance of the variance parameters); None for posterior draws.
``_header()``
    Short lines describing the fit (method, formula, data, convergence), used
    by ``repr`` and the notebook view.

Every method returns the same type on every fit, and every table that shows
an interval has the columns of :mod:`hierlm.results.tables` (``estimate``,
``std_error``, interval bounds at ``prob``, ``hierlm.DEFAULT_PROB`` = 0.95
when not given):

=================  ===========================================================
``fixef``          DataFrame, index ``term``
``varcorr``        DataFrame, columns ``group, term1, term2`` then the estimates
``ranef``          DataFrame ``group, level, term, ...`` (``wide=True``: dict)
``coef``           DataFrame ``group, level, term, ...`` (``wide=True``: dict)
``predict``        DataFrame indexed by the rows predicted
``fitted``         numpy array (n,): the estimate, or the posterior mean
``residuals``      numpy array (n,): response minus ``fitted()``
``vcov``           DataFrame (p x p)
``contrast``       dict: ``estimate``, ``std_error``, the interval bounds, ...
``summary``        a :class:`~hierlm.results.display.FitSummary`
=================  ===========================================================

ML/REML fits add ``df``, ``t_value`` and ``p_value`` to ``fixef`` and
``contrast``; Bayesian fits add ``prob_greater`` to ``contrast`` and NUTS
fits their convergence diagnostics to ``fixef`` and ``varcorr``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierlm.core.store import save_fit
from hierlm.errors import FitError, InputTypeError
from hierlm.results.display import html_report
from hierlm.results.draws import FitDraws
from hierlm.results.explained import r2
from hierlm.results.ic import loo, waic
from hierlm.results.ic_engine import engine_elpd
from hierlm.results.intraclass import icc
from hierlm.results.pooling import shrinkage
from hierlm.results.prediction import predict
from hierlm.results.tables import (
    coef_table,
    contrast_table,
    fixef_table,
    ranef_table,
    varcorr_table,
)
from hierlm.results.uncertainty import PointUncertainty
from hierlm.sources.predict import predict_in_engine
from hierlm.sources.registry import source_for

__all__ = ["ResultMethods"]


class ResultMethods:
    """Mixin with the result protocol and the post-fit quantities of ``hierlm.results``."""

    design: Any
    model: Any

    # ------------------------------------------------------------------ hooks
    def draws(self) -> FitDraws:
        """Parameters as draws (S = 1 for point fits); implemented by each result class."""
        raise NotImplementedError

    def _point_uncertainty(self) -> PointUncertainty | None:
        """Standard-error ingredients of a point fit; None for posterior draws."""
        return None

    def _header(self) -> list[str]:
        """Short lines describing the fit; implemented by each result class."""
        return [type(self).__name__]

    # ------------------------------------------------------- protocol tables
    def fixef(self, prob: float | None = None) -> pd.DataFrame:
        """Fixed effects: one row per term (index), estimate, standard error and interval.

        Parameters
        ----------
        prob : float, optional
            Interval probability (``hierlm.DEFAULT_PROB`` when None).

        Returns
        -------
        pandas.DataFrame
            See :mod:`hierlm.results.tables` for the columns.
        """
        return fixef_table(self, prob)

    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects (NUTS: of their posterior draws)."""
        draws = self.draws()
        names = list(self.design.fixed_names)
        if draws.point:
            unc = self._point_uncertainty()
            matrix = unc.vcov_beta if unc is not None else np.full((len(names), len(names)), np.nan)
        else:
            matrix = np.atleast_2d(np.cov(draws.beta, rowvar=False))
        return pd.DataFrame(matrix, index=names, columns=names)

    def contrast(self, L: Any, rhs: float = 0.0, prob: float | None = None) -> dict[str, float]:
        """Estimate and interval of ``L' beta``, and the posterior probability that it exceeds ``rhs``.

        Parameters
        ----------
        L : array-like or dict
            Contrast vector of length p, or a mapping fixed-effect name -> weight.
        rhs : float
            Value compared with.
        prob : float, optional
            Interval probability.

        Returns
        -------
        dict
            ``estimate``, ``std_error``, the two interval bounds and ``prob_greater``
            (share of draws above ``rhs``; MAP: its normal approximation).
        """
        return contrast_table(self, L, rhs, prob)

    def varcorr(self, prob: float | None = None) -> pd.DataFrame:
        """SDs and correlations of the group effects and the residual SD, in lme4's row layout.

        Parameters
        ----------
        prob : float, optional
            Interval probability.

        Returns
        -------
        pandas.DataFrame
            Columns ``group, term1, term2`` (``term2`` None on SD rows, set on
            correlation rows, a last ``Residual`` row), the estimate columns, then
            ``vcov`` (variance or covariance); see :func:`hierlm.results.tables.varcorr_table`.
        """
        return varcorr_table(self, prob)

    def ranef(self, prob: float | None = None, wide: bool = False,
              diagnostics: bool = False) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Group effects per (group, level, term); ``wide=True`` gives lme4's dict of tables.

        See :func:`hierlm.results.tables.ranef_table`.
        """
        return ranef_table(self, prob, wide, diagnostics)

    def coef(self, prob: float | None = None,
             wide: bool = False) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Per-level coefficients, fixed effect plus group effect (lme4's ``coef``).

        See :func:`hierlm.results.tables.coef_table`.
        """
        return coef_table(self, prob, wide)

    def cond_var(self) -> dict[str, np.ndarray]:
        """Conditional covariance of each block's effects, ``(levels, q, q)``, by block label.

        Raises
        ------
        FitError
            For posterior draws (use the draws of ``ranef`` instead).
        """
        unc = self._point_uncertainty()
        if unc is None:
            raise FitError("cond_var() is the conditional variance of a point fit (ML, REML, MAP); "
                           "a NUTS fit has the effects' posterior draws (fit.draws().effects).")
        return unc.cond_var_table(self.design)

    # ------------------------------------------------------------ predictions
    def fitted(self) -> np.ndarray:
        """Fitted values ``X beta + Z b`` of the rows that were fitted (NUTS: posterior mean).

        For data held by an engine (:mod:`hierlm.sources`) a second pass there:
        the engine's lazy result (DuckDB relation, polars LazyFrame, dask
        DataFrame) of the used rows with a ``fitted`` column.
        """
        if self.design.rowless:
            return self.design.summary.source.second_pass(self, "fitted")  # type: ignore[union-attr]
        return self.draws().mean_linear_predictor()

    def residuals(self, scaled: bool = False) -> np.ndarray:
        """Response minus ``fitted()``; divided by sigma (NUTS: its posterior mean) when ``scaled``.

        For data held by an engine: a second pass there, the used rows with
        ``fitted`` and ``residual`` columns (see :meth:`fitted`).
        """
        if self.design.rowless:
            return self.design.summary.source.second_pass(  # type: ignore[union-attr]
                self, "scaled" if scaled else "residuals")
        res = np.asarray(self.design.y, dtype=float) - self.fitted()
        return res / float(np.mean(self.draws().sigma)) if scaled else res

    def predict(self, new_data: pd.DataFrame | None = None, include_random: bool = True,
                kind: str = "mean", prob: float | None = None, summary: bool = True,
                new_levels: str = "sample", seed: int | None = None, type: str = "response") -> Any:
        """Predict the mean response (or new responses) for the fitted rows or ``new_data``.

        Parameters
        ----------
        new_data : pandas.DataFrame or engine data, optional
            Data to predict for; the fitted data when omitted. For a model fitted
            on engine data, new rows held by an engine (a DuckDB relation, Parquet
            files, a polars LazyFrame, a Dask DataFrame) are predicted there and
            come back lazily with an ``estimate`` column
            (:mod:`hierlm.sources.predict`).
        include_random : bool
            Add the group effects of known levels (lme4's ``re.form = NULL``);
            False gives ``X beta`` only (``re.form = NA``).
        kind : {"mean", "response"}
            The mean, or a new observation (adds the residual variance).
        prob : float, optional
            Interval probability.
        summary : bool
            False: the (S, n) draws instead of the table (S = 1 for point fits).
        new_levels : {"sample", "population"}
            Rows of levels the model never saw: their effects vary as N(0, G)
            (NUTS: drawn, one draw per level; point fits: in the standard
            error) or are 0. The estimate of a point fit is the population
            prediction either way.
        seed : int, optional
            Seed of the random draws (NUTS new levels, ``kind="response"``).
        type : {"response", "link"}
            Non-Gaussian families: the mean on the response scale (a
            probability, an expected count) or the linear predictor (as
            ``predict.merMod``'s ``type``); the same for Gaussian models.

        Returns
        -------
        pandas.DataFrame
            Indexed by the rows predicted: ``estimate``, ``std_error`` and the
            interval bounds; see :func:`hierlm.results.prediction.predict`.
        """
        if not isinstance(include_random, (bool, np.bool_)):
            raise InputTypeError(f"include_random must be True or False, not {include_random!r}.")
        if new_data is None:
            self.design.require_rows("predict() of the fitted rows")
            return predict(self, None, include_random=include_random, kind=kind, summary=summary,
                           prob=prob, new_levels=new_levels, seed=seed, scale=type)
        if self.model is None:
            raise FitError("predict(new_data) needs the Model; fit through hierlm.Model(...).fit().")
        engine = None if isinstance(new_data, pd.DataFrame) else source_for(new_data)
        if engine is not None:  # new rows held by an engine: predicted there (hierlm.sources.predict)
            if kind != "mean" or not summary or type != "response" or prob is not None:
                raise FitError("predict() into a data engine gives the estimate of the mean only "
                               "(kind='mean', summary=True, no interval); for intervals or draws "
                               "predict a pandas DataFrame of the rows you need.")
            return predict_in_engine(self, engine, include_random=include_random)
        if not isinstance(new_data, pd.DataFrame):
            raise InputTypeError(f"new_data must be a pandas DataFrame, not {new_data.__class__.__name__}.")
        design = self.model.new_design(new_data)
        labels = {
            block.group: [":".join(str(v) for v in row)
                          for row in new_data[list(block.group.split(":"))].itertuples(index=False)]
            for block in design.blocks
        }
        table = predict(self, design, include_random=include_random, kind=kind, summary=summary,
                        prob=prob, new_levels=new_levels, new_level_labels=labels, seed=seed,
                        scale=type)
        if self.design.residual is not None and hasattr(self, "solution") and summary:
            # correlated residuals: new visits borrow from the subject's observed ones
            from hierlm.results.new_visits import predict_visits
            return predict_visits(self, new_data, design, table, include_random=include_random,
                                  kind=kind, prob=prob, new_levels=new_levels)
        return table

    # ------------------------------------------------------------- quantities
    def icc(self, shared: Iterable[str | Iterable[str]] | None = None,
            at: Mapping[str, float] | None = None, prob: float | None = None) -> Any:
        """Intraclass correlation(s) and variance shares; see :func:`hierlm.results.icc`."""
        return icc(self, shared=shared, at=at, prob=prob)

    def r2(self, bayes: bool | None = None, residual: str = "model", prob: float | None = None) -> Any:
        """Marginal, conditional (Nakagawa) and Bayesian R²; see :func:`hierlm.results.r2`."""
        if self.design.rowless and (bayes or (bayes is None and not self.draws().point)):
            self.design.require_rows("the Bayesian R² (bayes=True; Nakagawa's R² is available)")
        return r2(self, bayes=bayes, residual=residual, prob=prob)

    def shrinkage(self, group: str, complete: str = "fixed", prob: float | None = None) -> Any:
        """No/partial/complete pooling per level of ``group``; see :func:`hierlm.results.shrinkage`."""
        return shrinkage(self, group, complete=complete, prob=prob)

    def waic(self, level: str = "observation", group: str | None = None) -> Any:
        """WAIC (elpd scale), per observation or per level of ``group``; see :func:`hierlm.results.waic`."""
        if level != "group" and self.design.rowless:  # engine data: streamed in batches of rows
            return engine_elpd(self, "waic")
        return waic(self, level=level, group=group)

    def loo(self, level: str = "observation", group: str | None = None) -> Any:
        """PSIS-LOO, per observation or leave-one-group-out; see :func:`hierlm.results.loo`."""
        if level != "group" and self.design.rowless:  # engine data: streamed in batches of rows
            return engine_elpd(self, "loo")
        return loo(self, level=level, group=group)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Save the fit to a folder (no pickle); read it back with :func:`hierlm.load_fit`.

        What is stored is the fit's ``_state()`` (see :mod:`hierlm.core.store`).
        """
        return save_fit(self, path, overwrite=overwrite)

    # ---------------------------------------------------------------- display
    def __repr__(self) -> str:
        return "\n".join(self._header())

    def _repr_html_(self) -> str:
        """The header, fixed effects and variance components, for notebooks."""
        return html_report(self._header(), {"Fixed effects": self.fixef(),
                                            "Variance components": self.varcorr()})
