"""Package-wide defaults of hierlm's tables.

``DEFAULT_PROB`` is the probability of every interval a fit reports when
``prob=`` is not given: Wald/t confidence intervals of ML/REML fits, Laplace
intervals of MAP fits and equal-tailed credible intervals of NUTS fits
(``fixef``, ``varcorr``, ``ranef``, ``coef``, ``predict``, ``summary``,
``contrast``, and the quantity tables ``icc``, ``r2``, ``shrinkage``). It is
0.95, the default of lme4's ``confint`` and of brms, not ArviZ's 0.89; pass
``prob=`` to any of these methods for another level.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PROB", "DEFAULT_KIND"]

DEFAULT_PROB: float = 0.95
"""Probability inside the intervals of every table when ``prob=`` is not given."""

DEFAULT_KIND: str = "eti"
"""Kind of posterior interval when not given: equal-tailed (``"hdi"``: highest density)."""
