"""hierlm: Bayesian hierarchical linear models with lme4 formulas and exact ML/REML twins."""

__version__ = "0.1.0"
