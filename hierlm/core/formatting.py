"""p-values and significance codes printed the way R prints them.

Used by the ML/REML summary (:mod:`hierlm.lmm.report`) and by the
likelihood-ratio table of :func:`hierlm.anova`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["format_pvalue", "significance_stars"]

_EPS = 2.220446049250313e-16


def format_pvalue(p: float) -> str:
    """Format a p-value as R's ``format.pval`` does in coefficient tables."""
    if not np.isfinite(p):
        return "NA"
    if p < 2 * 1e-16 or p < _EPS:
        return "< 2e-16"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.2e}"


def significance_stars(p: float) -> str:
    """R's significance codes: ``***`` < 0.001 < ``**`` < 0.01 < ``*`` < 0.05 < ``.`` < 0.1."""
    if not np.isfinite(p):
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return mark
    return ""
