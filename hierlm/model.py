"""The user's entry point: ``Model(formula, data)`` and its ``fit``.

A Model parses the formula, learns a frozen spec from the data and builds the
design once. ``fit`` hands the design to an engine: ``hierlm.lmm`` for
``"ml"``/``"reml"``, ``hierlm.bayes`` for ``"map"``/``"nuts"``. Engines are
imported on first use so a frequentist fit never imports PyMC.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.core.warn import PACKAGE_DIR
from hierlm.design.blocks import Design
from hierlm.design.checks import incomplete_rows
from hierlm.design.residual import ResidualStructure, VarIdent, residual_text, variance_column
from hierlm.design.spec import ModelSpec, build_spec
from hierlm.errors import FitError, HierlmWarning, InputTypeError, NewLevelError
from hierlm.families import Family, Link, get_family
from hierlm.formula import parse_formula
from hierlm.options import check_options
from hierlm.sources import source_design, source_for
from hierlm.sources.model import RowlessData

__all__ = ["Model", "RandomTerm", "FIT_METHODS"]

FIT_METHODS = ("reml", "ml", "map", "nuts")


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect bar after expansion, as listed by ``Model.random_terms``.

    Attributes
    ----------
    group : str
        Grouping factor, e.g. ``"Subject"`` or ``"cask:batch"``.
    columns : list of str
        Coefficients that vary by group, e.g. ``["Intercept", "Days"]``.
    correlated : bool
        Whether the coefficients have correlation parameters.
    n_levels : int
        Number of levels of the grouping factor in the data.
    """

    group: str
    columns: list[str]
    correlated: bool
    n_levels: int

    def __repr__(self) -> str:
        return (f"RandomTerm(group={self.group!r}, columns={self.columns!r}, "
                f"correlated={self.correlated}, n_levels={self.n_levels})")


class Model:
    """A (generalised) linear mixed model given by an lme4 formula and a data frame.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame or a source of :mod:`hierlm.sources`
        The data; columns named in the formula must be present. A DuckDB
        relation, a Parquet path or glob, a polars LazyFrame or a Dask
        DataFrame is fitted from sufficient statistics the engine computes.
    family : str or Family
        Response family: ``"gaussian"`` (default), ``"binomial"``,
        ``"poisson"``, ``"negative_binomial"`` (NB2), or a Family object
        (:mod:`hierlm.families`). Stored as the Family object ``model.family``.
    link : str, optional
        Link function; the family's default (identity, logit, log) when omitted.
        Binomial takes ``"logit"``, ``"probit"``, ``"cloglog"``.
    weights : str or array, optional
        Prior weights: a column name or one value per row (lme4's
        ``weights=``). Binomial: the trials of a proportion response.
        Gaussian: ``Var(y_i) = sigma^2 / w_i``.
    offset : str or array, optional
        Added to the linear predictor: a column name or one value per row
        (with any ``offset(...)`` terms of the formula).
    priors : dict, "flat" or None
        Prior overrides for Bayesian fits (see ``hierlm.bayes.priors``).
    na_action : {"omit", "raise"}
        Drop rows with missing values (with a warning, as lme4's ``na.omit``)
        or raise.
    reference : dict, optional
        Column -> level to use as treatment-contrast reference, e.g.
        ``{"Machine": "B"}``.
    residual : str or ResidualStructure, optional
        Residual covariance structure within a group, e.g. ``"ar1(week | id)"``
        or the object ``hierlm.residual.AR1("week", "id")``: ``cs``, ``csh``,
        ``un``, ``ar1``, ``arh1``, ``toep``, ``toeph``, ``car1``
        (:mod:`hierlm.design.residual`). ML/REML fits.
    variance : str or VarIdent, optional
        A column whose levels get their own residual SD (nlme's ``varIdent``;
        or ``hierlm.residual.VarIdent("Sex")``), alone or with ``residual=``.
    drop_aliased : bool
        Fixed-effect columns that are linear combinations of earlier ones
        (e.g. cells of a factorial design without rows) are dropped with a
        :class:`~hierlm.errors.RankDeficientWarning`, as lme4 drops them
        (True, the default), or raise :class:`~hierlm.errors.RankDeficientError`
        (False). Predictions on new data drop the same columns.
    progress : bool
        For data held by an engine (a DuckDB relation, Parquet files, a polars
        LazyFrame, a Dask DataFrame; :mod:`hierlm.sources`): report each pass
        on stderr with its elapsed time.

    Examples
    --------
    >>> import hierlm as hl
    >>> m = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))
    >>> m.random_terms
    [RandomTerm(group='Subject', columns=['Intercept', 'Days'], correlated=True, n_levels=18)]
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        family: str | Family = "gaussian",
        priors: Mapping[str, Any] | str | None = None,
        na_action: str = "omit",
        reference: Mapping[str, object] | None = None,
        residual: str | ResidualStructure | None = None,
        variance: str | VarIdent | None = None,
        drop_aliased: bool = True,
        progress: bool = True,
        link: str | Link | None = None,
        weights: str | np.ndarray | None = None,
        offset: str | np.ndarray | None = None,
    ) -> None:
        self.family: Family = get_family(family, link)
        if priors is not None and not isinstance(priors, (Mapping, str)):
            raise InputTypeError(
                f"priors must be a dict of Prior objects or 'flat', not {type(priors).__name__}."
            )
        if reference is not None and not isinstance(reference, Mapping):
            raise InputTypeError(
                f"reference must be a dict column -> level, e.g. {{'Machine': 'B'}}, "
                f"not {type(reference).__name__}."
            )
        if not isinstance(drop_aliased, bool):
            raise InputTypeError(f"drop_aliased must be True or False, not {drop_aliased!r}.")
        self.formula = formula
        self.weights = weights
        self.offset = offset
        self.na_action = na_action
        self.parsed = parse_formula(formula)
        self.spec: ModelSpec
        self.design: Design
        # a structure object (hierlm.residual.AR1("week", "id")) is kept as its text, which
        # save/load, cards and reports store
        residual = residual_text(residual)
        variance = variance_column(variance)
        self.residual = residual
        self.variance = variance
        source = source_for(data)  # a registered kind of data held by an engine (hierlm.sources)
        if source is not None:
            self.spec, self.design = source_design(
                self.parsed, source, family=family, na_action=na_action, reference=reference,
                residual=residual, variance=variance, drop_aliased=drop_aliased,
                weights=locals().get("weights"), offset=locals().get("offset"), progress=progress)
            self.data = RowlessData(data, source.kind)  # the rows stay in the engine
            self.user_priors = priors
            return
        self.spec, self.design = build_spec(self.parsed, data, na_action=na_action,
                                            reference=reference, residual=residual,
                                            variance=variance, drop_aliased=drop_aliased,
                                            family=self.family, weights=weights, offset=offset)
        # rows kept by build_spec (those complete in the model's columns); a boolean mask, not
        # the index labels, so that a frame with duplicate index labels keeps its n rows
        kept = np.ones(len(data), dtype=bool)
        if self.design.n == len(data):  # no row dropped
            self.data = data.copy(deep=False)  # (copy-on-write: later edits of data copy first)
        else:
            kept = ~incomplete_rows(data, self.spec.variables())
            self.data = data.loc[kept]
        #: the weights=/offset= arrays of the rows in self.data (what save() stores beside them)
        self.row_arrays = {name: np.asarray(value, dtype=float)[kept] for name, value in
                           (("weights", weights), ("offset", offset))
                           if value is not None and not isinstance(value, str)}
        self.user_priors = priors
        if priors is not None:
            self.priors  # noqa: B018 - validate prior names and parameters early

    @property
    def random_terms(self) -> list[RandomTerm]:
        """One entry per random-effect block after expansion, in lme4 order."""
        return [RandomTerm(b.group, list(b.columns), b.correlated, b.n_levels)
                for b in self.design.blocks]

    @property
    def nobs(self) -> int:
        """Number of observations used (after dropping incomplete rows)."""
        return self.design.n

    @property
    def fixed_names(self) -> list[str]:
        """Names of the fixed-effect coefficients."""
        return list(self.design.fixed_names)

    @property
    def priors(self) -> Any:
        """Table of the priors a Bayesian fit will use (defaults plus overrides)."""
        from hierlm.bayes.priors import resolve_priors

        return resolve_priors(self.design, self.user_priors, self.family)

    def build(self, formulation: str = "auto") -> Any:
        """Build (without sampling) the PyMC model a Bayesian fit would use."""
        from hierlm.bayes import build_model

        return build_model(self, formulation=formulation)

    def prior_predictive(self, draws: int = 500, random_seed: int | None = None) -> Any:
        """Draw parameters, group effects and responses from the priors (no data fitted).

        Parameters
        ----------
        draws : int
            Number of draws.
        random_seed : int, optional
            Seed (same seed, same draws).

        Returns
        -------
        xarray.DataTree
            Groups ``prior`` (named like a fit's posterior), ``prior_predictive``
            (the response for every row of the data) and ``observed_data``.
            See :mod:`hierlm.bayes.prior_predictive`.

        Raises
        ------
        PriorError
            When a prior is flat: improper priors have no draws.
        """
        from hierlm.bayes.prior_predictive import sample_prior_predictive

        return sample_prior_predictive(self, draws=draws, random_seed=random_seed)

    def fit(self, method: str = "reml", **options: Any) -> Any:
        """Fit the model.

        Parameters
        ----------
        method : {"reml", "ml", "map", "nuts"}
            ``"reml"``/``"ml"``: exact restricted / full maximum likelihood (lme4's
            criteria). ``"map"``: posterior mode. ``"nuts"``: posterior sampling.
        **options
            Passed to the engine (e.g. ``draws``, ``chains``, ``random_seed`` for NUTS).

        Returns
        -------
        LmmResult or BayesResult
        """
        if method not in FIT_METHODS:
            raise FitError(f"Unknown fit method {method!r}; choose one of {', '.join(FIT_METHODS)}.")
        if method == "reml" and not self.family.supports_reml:
            raise FitError(f"REML is defined for Gaussian models only; use method='ml' for this "
                           f"{self.family.describe()} model.")
        if method == "ml" and self.family.name != "gaussian":
            from hierlm.glmm import fit_glmm

            check_options(fit_glmm, method, options, exclude=("design", "family", "model"))
            return fit_glmm(self.design, self.family, model=self, **options)
        if method in ("reml", "ml"):
            if self.design.has_weights and self.design.residual is not None:
                raise FitError("weights= cannot be combined with residual=/variance= structures; "
                               "drop one of them.")
            if self.design.has_offset:
                raise FitError("Gaussian ML/REML fits take no offset here; subtract it from the "
                               "response instead: 'I(y - offset_column) ~ ...'.")
            from hierlm.lmm import fit_lmm

            check_options(fit_lmm, method, options, exclude=("design", "reml", "model"))
            return fit_lmm(self.design, reml=(method == "reml"), model=self, **options)
        from hierlm.bayes import fit_bayes

        # fit_bayes refuses the options its method does not use (draws for MAP, reml for NUTS)
        result = fit_bayes(self, method=method, **options)
        result.model = self
        return result

    def new_design(self, data: pd.DataFrame, with_response: bool = False,
                   allow_new_levels: bool = True, offset: np.ndarray | None = None) -> Design:
        """Build the design of new data with this model's spec.

        Grouping levels the model never saw get code -1 (population-level
        prediction); they are reported with a warning, or raise
        :class:`~hierlm.errors.NewLevelError` when ``allow_new_levels=False``.
        Offsets given by column or ``offset()`` term are read from ``data``; an
        ``offset=`` array of the training data needs ``offset`` for the new rows.
        """
        design, new_levels = self.spec.design_for(data, with_response=with_response, offset=offset)
        if new_levels:
            detail = "; ".join(
                f"{group}: {', '.join(levels[:5])}{' ...' if len(levels) > 5 else ''} "
                f"({len(levels)} new)" for group, levels in new_levels.items()
            )
            if not allow_new_levels:
                raise NewLevelError(f"New data has grouping levels the model never saw: {detail}.")
            warnings.warn(
                f"New data has grouping levels the model never saw ({detail}): ML/REML fits "
                "predict them at the population level, Bayesian fits draw their effects from "
                "the population distribution N(0, G).", HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))
        return design

    def __repr__(self) -> str:
        terms = ", ".join(f"({' + '.join(t.columns)} | {t.group})" for t in self.random_terms)
        return (f"Model({self.formula!r}, nobs={self.nobs}, fixed={self.fixed_names}, "
                f"random=[{terms}])")
