"""Bayesian parameterisation of every covariance structure: parameters, transforms, priors, names.

One object per structure, found by :func:`block_structure` (a random-effect
block: ``us``, ``diag``, ``cs``, ``ar1``, ``toep``, homogeneous or
heterogeneous) and :func:`residual_structure` (a residual design: ``cs``,
``csh``, ``un``, ``ar1``, ``arh1``, ``toep``, ``toeph``, ``car1``, each with
optional ``variance=`` ratios). Dispatch is by registry: the block's
:class:`~hierlm.design.covariance.CovarianceStructure` class, the
:class:`~hierlm.design.covariance.CorrelationModel` class of a patterned one,
and the residual structure's base name. The array functions live in
:mod:`hierlm.bayes.structure_math` and take NumPy or PyTensor inputs alike.
The code lives by part: :mod:`~hierlm.bayes.structure_parts` (the variables
and correlation parts), :mod:`~hierlm.bayes.structure_transforms` (the shared
transforms and priors), :mod:`~hierlm.bayes.block_structures` and
:mod:`~hierlm.bayes.residual_structures`; this module re-exports their names.

Interface
---------
``structure.parameters`` is a tuple of :class:`StructureParameter`, each one
posterior variable of natural parameters:

================  ==================================  ====================  ===================
kind (prior key)  variable (dims)                     natural range         default prior
================  ==================================  ====================  ===================
``sd``            ``sd_<b>`` (``<b>_term``)           (0, inf)              the SD rule of
                                                                            :mod:`~.priors`
``sd_common``     ``sd_common_<b>`` (scalar)          (0, inf)              the SD rule
``cor``           ``corr_raw_<b>`` -> ``cor_<b>``     LKJ                   lkj(1)
                  (``<b>_pair``)
``rho``           ``rho_<b>`` (scalar)                cs: (-1/(q-1), 1),    uniform over the
                                                      ar1: (-1, 1)          range
``pacf``          ``pacf_<b>`` (``<b>_lag``)          (-1, 1) each          uniform(-1, 1)
``phi``           ``phi_residual`` (scalar)           (0, 1)                uniform(0, 1)
``log_ratio``     ``log_ratio_residual``              real                  normal(0, 1)
                  (``residual_time``),
                  ``log_ratio_residual_variance``
                  (``residual_variance_level``)
================  ==================================  ====================  ===================

``<b>`` is the block label (:mod:`hierlm.bayes.naming`) or ``residual``.
Derived, not sampled: ``sd_<b>`` of a homogeneous block (``sd_common`` on
every term), ``rho_<b>`` of ``toep`` (the lag correlations, dims ``<b>_lag``,
from ``pacf`` by Durbin-Levinson), ``cor_<b>`` of every correlated block
(pairs in lme4's order, as ``varcorr`` rows), ``ratio_residual`` and
``ratio_residual_variance`` (``exp`` of the log ratios). The natural-scale names
of :func:`hierlm.results.structures.structure_parameters` map one to one:
``rho`` = ``rho_<b>``, ``rho<k>`` = ``rho_<b>[k]``, ``phi`` = ``phi_residual``,
``ratio.<t>`` = ``ratio_residual[t]``, ``ratio.<col>.<level>`` =
``ratio_residual_variance[level]``.

Per structure:

* ``unconstrained_size``, ``from_unconstrained(u) -> (values, log_jacobian)``
  and ``to_unconstrained(values)``: ``u`` is the flat vector of the sampled
  parameters in :attr:`parameters` order; ``values`` maps each variable name
  (sampled and derived) to its natural value. Interval parameters use PyMC's
  log-odds transform (the one of ``pm.Uniform``), so the same ``u`` is PyMC's
  free value; SDs use ``log``; LKJ reals are Stan's (``corr_raw_<b>``, as today).
* blocks: ``cholesky(values)`` is the factor ``L_G`` of the block's covariance
  ``G = L_G L_G'`` on the response scale (``diag(sd) chol(R)``) and
  ``correlation(values)`` its ``R``;
* residuals: ``correlation(values)`` over the distinct times (not ``car1``),
  ``correlation_at(values, times)`` for the times of one group (every
  structure), ``time_scales(values)`` the SD ratios by distinct time (1 at the
  first) and ``row_scales(values)`` those of ``variance=`` by row; the
  residual covariance of group ``i`` is
  ``sigma^2 M_i S_i M_i`` as in :mod:`hierlm.design.residual`.
* ``log_prior(values, priors)``: the log prior density of the non-SD
  parameters (uniform, normal on log ratios, LKJ); SDs' priors are the
  engine's (``sd``/``sd_common`` rows of the :class:`~.priors.PriorTable`).
"""

from __future__ import annotations

from hierlm.bayes.block_structures import BlockParameterisation, block_structure
from hierlm.bayes.naming import BlockNames
from hierlm.bayes.residual_structures import ResidualParameterisation, residual_structure
from hierlm.bayes.structure_parts import (
    INTERVAL_KINDS,
    RESIDUAL_LABEL,
    STRUCTURE_KINDS,
    CorrelationPart,
    LKJPart,
    StructureParameter,
)
from hierlm.design.residual import ResidualDesign

__all__ = [
    "RESIDUAL_LABEL",
    "StructureParameter",
    "CorrelationPart",
    "LKJPart",
    "BlockParameterisation",
    "ResidualParameterisation",
    "block_structure",
    "residual_structure",
    "design_structures",
    "INTERVAL_KINDS",
    "STRUCTURE_KINDS",
]


def design_structures(names: list[BlockNames], residual: ResidualDesign | None
                      ) -> tuple[list[BlockParameterisation], ResidualParameterisation | None]:
    """Parameterisations of every block and of the residual structure (None without one)."""
    blocks = [block_structure(bn) for bn in names]
    return blocks, (residual_structure(residual) if residual is not None else None)
