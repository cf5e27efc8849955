"""Names of the random-effect covariance structures a formula may write, e.g. ``cs(0 + f | g)``."""

from __future__ import annotations

__all__ = ["STRUCTURES", "HETEROGENEOUS_CAPABLE"]

#: Structure names accepted in formulas, with a description for messages and docs.
STRUCTURES: dict[str, str] = {
    "us": "unstructured (lme4's (x | g))",
    "diag": "independent terms, own variances (lme4's (x || g) without splitting factors)",
    "cs": "compound symmetry (hom = FALSE: heterogeneous variances)",
    "ar1": "first-order autoregressive over the term order (hom = FALSE: heterogeneous)",
    "toep": "Toeplitz, one correlation per lag (hom = FALSE: heterogeneous)",
}

#: Structures that take ``hom = TRUE | FALSE``.
HETEROGENEOUS_CAPABLE = frozenset({"cs", "ar1", "toep"})
