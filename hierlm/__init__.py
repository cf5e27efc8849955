"""hierlm: Bayesian hierarchical linear models with lme4 formulas and exact ML/REML twins."""

from importlib import import_module
from typing import Any

from hierlm import datasets, errors
from hierlm.core.defaults import DEFAULT_PROB
from hierlm.core.version import __version__
from hierlm.design import residual
from hierlm.model import Model, RandomTerm

# Loaded on first use so that ``import hierlm`` stays light (no ArviZ/PyMC/statsmodels).
_LAZY = {
    "anova": "hierlm.results.anova",
    "compare": "hierlm.results.comparison",
    "compare_estimates": "hierlm.results.estimates",
    "Prior": "hierlm.bayes.priors",
    "load_fit": "hierlm.io",
    "effect_sizes": "hierlm.results.effect_sizes",
    "compare_structures": "hierlm.selection",
}

__all__ = ["Model", "RandomTerm", "datasets", "errors", "residual", "DEFAULT_PROB", "__version__", *_LAZY]


# Quantities of one fit are its methods, with one public spelling each; a top-level name that
# users of other packages reach for says where it is.
_METHODS = {"emmeans": "fit.emmeans(specs, by=..., at=...)",
            "contrast": "fit.emmeans(specs).contrast(...)"}


def __getattr__(name: str) -> Any:
    """Import ``anova``, ``compare``, ``effect_sizes``, ``Prior``, ``load_fit`` ... on first use."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _METHODS:
        raise AttributeError(f"module 'hierlm' has no attribute {name!r}: it is a method of a fit, "
                             f"{_METHODS[name]}.")
    raise AttributeError(f"module 'hierlm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
