"""hierlm: Bayesian hierarchical linear models with lme4 formulas and exact ML/REML twins."""

from hierlm import datasets, errors
from hierlm.model import Model, RandomTerm

__version__ = "0.1.0"

__all__ = ["Model", "RandomTerm", "datasets", "errors", "__version__"]
