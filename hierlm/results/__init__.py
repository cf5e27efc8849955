"""Post-fit quantities as pure functions over a fit's draws.

Every function takes a fit (or its :class:`~hierlm.results.draws.FitDraws`)
and works the same on Bayesian fits (a posterior per quantity) and on
ML/REML/MAP fits (a point value): :func:`icc`, :func:`r2`, :func:`shrinkage`,
:func:`predict`, :func:`waic`, :func:`loo`, :func:`compare`,
:func:`compare_estimates`, and the interpretation helpers
:func:`variance_shares`, :func:`predictions`, :func:`comparisons`,
:func:`slopes` and :func:`datagrid`. ``emmeans``, ``effect_sizes`` and
``hypothesis`` live in modules of the same names (``hl.effect_sizes`` is the
function; ``fit.emmeans``, ``fit.hypothesis`` are methods of every fit).

This package sits below the engines (``hierlm.lmm``, ``hierlm.bayes``) and
imports neither: the result classes inherit the result protocol of
:mod:`hierlm.results.methods` and hand it what differs between engines
through the methods they implement (``draws()``, ``_point_uncertainty()``).
The names are loaded on first use; ArviZ itself is imported only where a
diagnostic, an HDI or PSIS-LOO is computed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "FitDraws",
    "icc",
    "r2",
    "shrinkage",
    "predict",
    "waic",
    "loo",
    "compare",
    "compare_estimates",
    "summarize",
    "variance_shares",
    "predictions",
    "comparisons",
    "slopes",
    "datagrid",
]

_HOME = {
    "FitDraws": "hierlm.results.draws",
    "icc": "hierlm.results.intraclass",
    "r2": "hierlm.results.explained",
    "shrinkage": "hierlm.results.pooling",
    "predict": "hierlm.results.prediction",
    "waic": "hierlm.results.ic",
    "loo": "hierlm.results.ic",
    "compare": "hierlm.results.comparison",
    "compare_estimates": "hierlm.results.estimates",
    "summarize": "hierlm.results.summary",
    "variance_shares": "hierlm.results.effect_sizes",
    "predictions": "hierlm.results.marginal_effects",
    "comparisons": "hierlm.results.marginal_effects",
    "slopes": "hierlm.results.marginal_effects",
    "datagrid": "hierlm.results.marginal_effects",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` when it is first asked for."""
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'hierlm.results' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
