"""The default priors: data-scaled for Gaussian models, link-scale for the other families.

The rules are stated in :mod:`hierlm.bayes.priors` (and in one paragraph by
:func:`default_priors_note`); :func:`structure_rows` adds the defaults of a
covariance structure's correlation and SD-ratio parameters. The tables here
are what :func:`hierlm.bayes.priors.resolve_priors` starts from.
"""

from __future__ import annotations

import math

import numpy as np

from hierlm.bayes.likelihoods import family_of, likelihood_of
from hierlm.bayes.naming import block_names
from hierlm.bayes.prior_family import Prior
from hierlm.bayes.prior_table import PriorRow
from hierlm.bayes.structures import (
    INTERVAL_KINDS,
    BlockParameterisation,
    ResidualParameterisation,
    design_structures,
)
from hierlm.design.blocks import Design

__all__ = ["_default_table", "_link_scale_table", "default_priors_note", "structure_rows"]


def default_priors_note() -> str:
    """Return the one-paragraph statement of the default-prior rule (for docs and summaries)."""
    return (
        "Defaults: Intercept ~ normal(mean(y), 2.5 sd(y)); other fixed effects ~ "
        "normal(0, 2.5 sd(y)/sd(x)); SDs ~ half_student_t(3, 2.5 sd(y)/sd(x)); "
        "sigma ~ half_student_t(3, 2.5 sd(y)); correlations ~ lkj(1); structure "
        "correlations (rho, Toeplitz partial autocorrelations, car1's phi) ~ uniform over "
        "their range; log SD ratios of heterogeneous residuals ~ normal(0, 1)."
    )


def _positive_or_one(spread: float) -> float:
    """A standard deviation used for scaling; 1 when it is zero or undefined (as :func:`_spread`)."""
    return float(spread) if math.isfinite(spread) and spread > 0 else 1.0


def _spread(values: np.ndarray) -> float:
    """Standard deviation used for scaling; 1 when it is zero or undefined."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return 1.0
    spread = float(np.std(values, ddof=1))
    return spread if math.isfinite(spread) and spread > 0 else 1.0


def _default_table(design: Design) -> list[PriorRow]:
    """Rows of the data-scaled default priors (see the module docstring)."""
    moments = design.column_moments()  # of the rows, or of a row-less design's summary
    s_y = _positive_or_one(moments.y_sd)
    rows = []
    for k, name in enumerate(design.fixed_names):
        if name == "Intercept":
            prior = Prior("normal", mu=moments.y_mean, sigma=2.5 * s_y)
        else:
            prior = Prior("normal", mu=0.0, sigma=2.5 * s_y / _positive_or_one(moments.x_sd[k]))
        rows.append(PriorRow("fixef", "", name, prior, "default"))
    names = block_names(design)
    blocks, residual = design_structures(names, design.residual)
    for bn, structure in zip(names, blocks, strict=True):
        z_sd = moments.z_sd[next(i for i, b in enumerate(design.blocks) if b is bn.block)]
        spreads = [1.0 if term == "Intercept" else _positive_or_one(z_sd[k])
                   for k, term in enumerate(bn.block.columns)]
        if structure.homogeneous:  # one SD for every term: the widest of their rules
            prior = Prior("half_student_t", nu=3.0, sigma=2.5 * s_y / min(spreads))
            rows.append(PriorRow("sd_common", bn.label, "", prior, "default"))
            continue
        for term, s_x in zip(bn.block.columns, spreads, strict=True):
            prior = Prior("half_student_t", nu=3.0, sigma=2.5 * s_y / s_x)
            rows.append(PriorRow("sd", bn.label, term, prior, "default"))
    for structure in blocks:
        rows += structure_rows(structure)
    rows.append(PriorRow("sigma", "", "", Prior("half_student_t", nu=3.0, sigma=2.5 * s_y), "default"))
    if residual is not None:
        rows += structure_rows(residual)
    return rows


def structure_rows(structure: BlockParameterisation | ResidualParameterisation) -> list[PriorRow]:
    """Default rows of a structure's correlation and SD-ratio parameters (not its SDs).

    LKJ(1) on a correlation matrix (``cor``), uniform over the natural range
    on ``rho``, ``pacf`` and ``phi``, normal(0, 1) on log SD ratios.
    """
    rows = []
    for p in structure.parameters:
        if p.kind in ("sd", "sd_common"):
            continue
        for term in p.terms:
            if p.kind == "cor":
                prior = Prior("lkj", eta=1.0)
            elif p.kind in INTERVAL_KINDS:
                prior = Prior("uniform", lower=p.lower, upper=p.upper)
            else:  # log SD ratios
                prior = Prior("normal", mu=0.0, sigma=1.0)
            rows.append(PriorRow(p.kind, p.block, term, prior, "default", p.lower, p.upper))
    return rows


def _link_scale_table(design: Design, family: object) -> list[PriorRow]:
    """Rows of the link-scale default priors of a non-Gaussian family (see ``docs/priors.md``).

    The linear predictor is on the link scale, where a unit means the same in
    every data set (a log odds ratio, a log rate ratio), so the scales are not
    taken from the response. With the family's ``default_prior_scales``
    (:class:`hierlm.families.PriorScales`, rstanarm's numbers) and ``s_x`` the
    SD of a predictor: ``Intercept ~ normal(0, 2 intercept)`` (the intercept
    of the model matrix as written, not centred, so twice rstanarm's scale
    for the centred one), other coefficients ``normal(0, coefficients /
    s_x)``, each group-level SD ``exponential(s_x / group_sd)`` (``s_x = 1``
    for an intercept), LKJ(1) on correlations and ``exponential(1 /
    dispersion)`` on a dispersion parameter (the negative binomial's
    ``theta``).
    """
    fam = family_of(family)
    scales = fam.default_prior_scales
    rows = []
    for k, name in enumerate(design.fixed_names):
        if name == "Intercept":
            prior = Prior("normal", mu=0.0, sigma=2.0 * scales.intercept)
        else:
            prior = Prior("normal", mu=0.0, sigma=scales.coefficients / _spread(design.X[:, k]))
        rows.append(PriorRow("fixef", "", name, prior, "default"))
    names = block_names(design)
    for bn in names:
        for k, term in enumerate(bn.block.columns):
            s_x = 1.0 if term == "Intercept" else _spread(bn.block.z[:, k])
            prior = Prior("exponential", lam=s_x / scales.group_sd)
            rows.append(PriorRow("sd", bn.label, term, prior, "default"))
    for bn in names:
        if bn.block.correlated:
            rows.append(PriorRow("cor", bn.label, "", Prior("lkj", eta=1.0), "default"))
    if likelihood_of(fam).dispersion and fam.dispersion_name is not None:
        prior = Prior("exponential", lam=1.0 / scales.dispersion)
        rows.append(PriorRow("dispersion", "", fam.dispersion_name, prior, "default"))
    return rows
