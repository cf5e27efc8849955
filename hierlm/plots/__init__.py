"""Figures of fitted hierarchical models.

Every function takes a hierlm fit (ML/REML/MAP or NUTS) or its
:class:`~hierlm.results.draws.FitDraws` (or a results table) and returns a
:class:`matplotlib.figure.Figure`, not registered with pyplot (see
:mod:`hierlm.plots.common`):

======================================  ===========================================  ==========
function                                shows                                        fits
======================================  ===========================================  ==========
:func:`plot_shrinkage`                  no pooling -> partial pooling per level      all
:func:`plot_caterpillar`                sorted group effects with intervals          all
:func:`plot_trajectories`               per-group and population lines over data     all
:func:`plot_conditional_effects`        predicted mean over one variable, interval   all
:func:`plot_residuals`                  residuals vs fitted                          all
:func:`plot_effects_qq`                 normal QQ plot of group effects              all
:func:`plot_icc`                        ICC posterior                                posterior
:func:`plot_variance_components`        SD (or variance) posteriors                  posterior
:func:`plot_correlations`               correlation posteriors                       posterior
:func:`plot_ppc`                        posterior predictive check                   posterior
:func:`plot_trace`, :func:`plot_rank`   MCMC trace and rank plots                    posterior
:func:`plot_compare`                    elpd comparison (``hl.compare`` table)       table
:func:`plot_compare_estimates`          Bayes vs ML/REML (vs GEE) estimates          table
======================================  ===========================================  ==========

Names load on first use, so ``import hierlm`` does not import matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "plot_shrinkage",
    "plot_caterpillar",
    "plot_effects_qq",
    "plot_trajectories",
    "plot_conditional_effects",
    "plot_icc",
    "plot_variance_components",
    "plot_correlations",
    "plot_residuals",
    "plot_ppc",
    "plot_trace",
    "plot_rank",
    "plot_compare",
    "plot_compare_estimates",
    "plot_ppc_counts",
    "plot_ppc_proportions",
]

_HOME = {
    "plot_shrinkage": "hierlm.plots.pooling",
    "plot_caterpillar": "hierlm.plots.effects",
    "plot_effects_qq": "hierlm.plots.effects",
    "plot_trajectories": "hierlm.plots.trajectories",
    "plot_conditional_effects": "hierlm.plots.conditional",
    "plot_icc": "hierlm.plots.posterior",
    "plot_variance_components": "hierlm.plots.posterior",
    "plot_correlations": "hierlm.plots.posterior",
    "plot_residuals": "hierlm.plots.diagnostics",
    "plot_ppc": "hierlm.plots.diagnostics",
    "plot_trace": "hierlm.plots.diagnostics",
    "plot_rank": "hierlm.plots.diagnostics",
    "plot_compare": "hierlm.plots.comparison",
    "plot_compare_estimates": "hierlm.plots.comparison",
    "plot_ppc_counts": "hierlm.plots.counts",
    "plot_ppc_proportions": "hierlm.plots.counts",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` when it is first asked for."""
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'hierlm.plots' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
