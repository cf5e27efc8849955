"""Methods that interpret a fit: marginal means, effect sizes, predictions, hypotheses.

:class:`InterpretMethods` is a mixin of both result classes (``LmmResult``
and ``BayesResult``); every method delegates to a function of
``hierlm.results`` and works the same on REML, ML, MAP and NUTS fits:

=====================  ==============================================
``emmeans``            :func:`hierlm.results.emmeans.emmeans`
``variance_shares``    :func:`hierlm.results.effect_sizes.variance_shares`
``predictions``        :func:`hierlm.results.marginal_effects.predictions`
``comparisons``        :func:`hierlm.results.marginal_effects.comparisons`
``slopes``             :func:`hierlm.results.marginal_effects.slopes`
``hypothesis``         :func:`hierlm.results.hypothesis.hypothesis`
=====================  ==============================================

Effect sizes of a predictor compare two fits: :func:`hierlm.effect_sizes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["InterpretMethods"]


class InterpretMethods:
    """Mixin: estimated marginal means, variance shares, marginaleffects-style helpers, hypotheses."""

    def emmeans(self, specs: str | Sequence[str], by: str | Sequence[str] | None = None,
                at: Mapping[str, Any] | None = None, ddf: str = "satterthwaite",
                prob: float | None = None, type: str = "link") -> Any:  # noqa: A002
        """Estimated marginal means over the reference grid; see :func:`hierlm.results.emmeans.emmeans`."""
        from hierlm.results.emmeans import emmeans

        return emmeans(self, specs, by=by, at=at, ddf=ddf, prob=prob, type=type)

    def variance_shares(self, prob: float | None = None) -> pd.DataFrame:
        """Share of each variance component; see :func:`hierlm.results.effect_sizes.variance_shares`."""
        from hierlm.results.effect_sizes import variance_shares

        return variance_shares(self, prob=prob)

    def predictions(self, newdata: pd.DataFrame | Mapping[str, Any] | None = None,
                    by: bool | str | Sequence[str] | None = None, include_random: bool = True,
                    ddf: str = "satterthwaite", prob: float | None = None,
                    interval: str = "confidence", seed: int | None = None) -> pd.DataFrame:
        """Predicted means with uncertainty; see :func:`hierlm.results.marginal_effects.predictions`."""
        from hierlm.results.marginal_effects import predictions

        return predictions(self, newdata, by=by, include_random=include_random, ddf=ddf, prob=prob,
                           interval=interval, seed=seed)

    def comparisons(self, variable: str, newdata: pd.DataFrame | Mapping[str, Any] | None = None,
                    by: bool | str | Sequence[str] | None = None, include_random: bool = True,
                    step: float = 1.0, ddf: str = "satterthwaite",
                    prob: float | None = None) -> pd.DataFrame:
        """Change of the prediction; see :func:`hierlm.results.marginal_effects.comparisons`."""
        from hierlm.results.marginal_effects import comparisons

        return comparisons(self, variable, newdata, by=by, include_random=include_random, step=step,
                           ddf=ddf, prob=prob)

    def slopes(self, variable: str, newdata: pd.DataFrame | Mapping[str, Any] | None = None,
               by: bool | str | Sequence[str] | None = None, include_random: bool = True,
               eps: float | None = None, ddf: str = "satterthwaite",
               prob: float | None = None) -> pd.DataFrame:
        """Derivative of the prediction in a covariate; see :func:`hierlm.results.marginal_effects.slopes`."""
        from hierlm.results.marginal_effects import slopes

        return slopes(self, variable, newdata, by=by, include_random=include_random, eps=eps, ddf=ddf,
                      prob=prob)

    def hypothesis(self, hypotheses: str | Sequence[str], ddf: str = "satterthwaite",
                   prob: float | None = None) -> pd.DataFrame:
        """brms-style tests of linear combinations; see :func:`hierlm.results.hypothesis.hypothesis`."""
        from hierlm.results.hypothesis import hypothesis

        return hypothesis(self, hypotheses, ddf=ddf, prob=prob)
