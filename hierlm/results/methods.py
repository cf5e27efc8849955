"""Methods shared by every fit result: ICC, R², shrinkage, information criteria.

Both result classes (``LmmResult`` for ML/REML, ``BayesResult`` for MAP/NUTS)
inherit :class:`ResultMethods`, which forwards to the pure functions of
``hierlm.results`` with the fit itself (through its ``draws()``). A frequentist
fit gets point values, a Bayesian fit posteriors.

This module and :mod:`hierlm.results.draws` import nothing but
:mod:`hierlm.design`, so the engines may import them without reversing the
package's import direction; the functions they forward to load on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hierlm.results.draws import FitDraws

__all__ = ["ResultMethods"]


class ResultMethods:
    """Mixin with the post-fit quantities of ``hierlm.results`` as methods."""

    def draws(self) -> FitDraws:
        """Parameters as draws (S = 1 for point fits); implemented by each result class."""
        raise NotImplementedError

    def icc(self, shared: Iterable[str | Iterable[str]] | None = None,
            at: Mapping[str, float] | None = None, prob: float | None = None) -> Any:
        """Intraclass correlation(s) and variance shares; see :func:`hierlm.results.icc`."""
        from hierlm.results.intraclass import icc

        return icc(self, shared=shared, at=at, prob=prob)

    def r2(self, bayes: bool | None = None, residual: str = "model", prob: float | None = None) -> Any:
        """Marginal, conditional (Nakagawa) and Bayesian R²; see :func:`hierlm.results.r2`."""
        from hierlm.results.explained import r2

        return r2(self, bayes=bayes, residual=residual, prob=prob)

    def shrinkage(self, group: str, complete: str = "fixed", prob: float | None = None) -> Any:
        """No/partial/complete pooling per level of ``group``; see :func:`hierlm.results.shrinkage`."""
        from hierlm.results.pooling import shrinkage

        return shrinkage(self, group, complete=complete, prob=prob)

    def waic(self, level: str = "observation", group: str | None = None) -> Any:
        """WAIC (elpd scale), per observation or per level of ``group``; see :func:`hierlm.results.waic`."""
        from hierlm.results.ic import waic

        return waic(self, level=level, group=group)

    def loo(self, level: str = "observation", group: str | None = None) -> Any:
        """PSIS-LOO, per observation or leave-one-group-out; see :func:`hierlm.results.loo`."""
        from hierlm.results.ic import loo

        return loo(self, level=level, group=group)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Save the fit to a folder (no pickle); read it back with :func:`hierlm.load_fit`."""
        from hierlm.io import save_fit

        return save_fit(self, path, overwrite=overwrite)
