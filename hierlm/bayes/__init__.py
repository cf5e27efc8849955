"""Bayesian engine: PyMC models (full and marginal formulations), priors, sampling, MAP.

``Prior``, ``PriorTable`` and ``resolve_priors`` import without PyMC; the
other names load PyMC on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from hierlm.bayes.priors import Prior, PriorTable, resolve_priors

__all__ = [
    "Prior",
    "PriorTable",
    "resolve_priors",
    "fit_bayes",
    "BayesResult",
    "BuiltModel",
    "build_model",
    "choose_formulation",
    "sample_prior_predictive",
]

_LAZY = {
    "fit_bayes": "hierlm.bayes.fit",
    "BayesResult": "hierlm.bayes.result",
    "BuiltModel": "hierlm.bayes.build",
    "build_model": "hierlm.bayes.build",
    "choose_formulation": "hierlm.bayes.build",
    "sample_prior_predictive": "hierlm.bayes.prior_predictive",
}


def __getattr__(name: str) -> Any:
    """Import PyMC-dependent names on first access."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hierlm.bayes' has no attribute {name!r}")
