"""Bayesian parameterisation of a random-effect block: ``G = D R D``, found by its structure's class.

``us`` (LKJ), ``diag``, and the patterned ``cs``, ``ar1`` and ``toep``
(homogeneous or heterogeneous), dispatched by the block's
:class:`~hierlm.design.covariance.CovarianceStructure` class and, for a
patterned one, its :class:`~hierlm.design.covariance.CorrelationModel` class;
re-exported by :mod:`hierlm.bayes.structures`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hierlm.bayes import structure_math as sm
from hierlm.bayes.naming import BlockNames
from hierlm.bayes.structure_parts import (
    AR1Part,
    CompoundSymmetryPart,
    CorrelationPart,
    LKJPart,
    NoCorrelation,
    StructureParameter,
    ToeplitzPart,
    _pair_values,
)
from hierlm.bayes.structure_transforms import _Parameterisation
from hierlm.design.covariance import (
    AR1Correlation,
    CompoundSymmetryCorrelation,
    CorrelationModel,
    CovarianceStructure,
    Diagonal,
    Patterned,
    ToeplitzCorrelation,
    Unstructured,
)
from hierlm.errors import FitError

__all__ = ["BlockParameterisation", "block_structure"]


def _lag_grid(q: int) -> np.ndarray:
    index = np.arange(q)
    return np.abs(index[:, None] - index[None, :])


class BlockParameterisation(_Parameterisation):
    """A random-effect block's covariance ``G = D R D`` on the response scale.

    Parameters
    ----------
    bn : BlockNames
        The block and its label.
    homogeneous : bool
        One SD for every term (``sd_common_<b>``) instead of one per term.
    part : CorrelationPart
        The correlation ``R``.
    """

    def __init__(self, bn: BlockNames, homogeneous: bool, part: CorrelationPart) -> None:
        self.bn = bn
        self.label = bn.label
        self.q = bn.block.q
        self.homogeneous = homogeneous
        group = bn.block.group
        scale = (StructureParameter("sd_common", bn.label, group, lower=0.0) if homogeneous
                 else StructureParameter("sd", bn.label, group, bn.term_dim, bn.block.columns, 0.0))
        self.parts = (part,)
        self.parameters = (scale,) + part.parameters

    def derive(self, values: dict[str, Any]) -> None:
        """Add ``sd_<b>`` of a homogeneous block and ``cor_<b>`` of a patterned one."""
        super().derive(values)
        if self.homogeneous:
            common = values[f"sd_common_{self.label}"]
            xp = sm.namespace(common)
            values[self.bn.sd] = (np.full(self.q, float(common)) if xp is np
                                  else xp.ones(self.q) * common)
        if self.q > 1 and not isinstance(self.parts[0], (LKJPart, NoCorrelation)):
            values[self.bn.cor] = _pair_values(self.correlation(values), self.bn.pairs)

    def correlation(self, values: Mapping[str, Any]) -> Any:
        """The correlation matrix ``R`` of the block's terms."""
        return self.parts[0].matrix(values, _lag_grid(self.q))

    def cholesky(self, values: Mapping[str, Any]) -> Any:
        """``L_G = diag(sd) chol(R)``, the factor of the block's covariance."""
        part = self.parts[0]
        sd = values[self.bn.sd]
        if isinstance(part, NoCorrelation):
            xp = sm.namespace(sd)
            return np.diag(np.asarray(sd, dtype=float)) if xp is np else xp.diag(sd)
        if isinstance(part, LKJPart):
            chol, _ = part.correlation_cholesky(values)
        else:
            chol = sm.cholesky(self.correlation(values), self.q)
        return sm.scale_rows(sd, chol)

    def covariance(self, values: Mapping[str, Any]) -> np.ndarray:
        """``G`` (NumPy), for tables and tests."""
        chol = np.asarray(self.cholesky(values), dtype=float)
        return chol @ chol.T


def _unstructured(bn: BlockNames, structure: CovarianceStructure) -> BlockParameterisation:
    part: CorrelationPart = (LKJPart(bn.label, bn.block.group, bn.block.columns) if bn.block.q > 1
                             else NoCorrelation())
    return BlockParameterisation(bn, False, part)


def _diagonal(bn: BlockNames, structure: CovarianceStructure) -> BlockParameterisation:
    return BlockParameterisation(bn, False, NoCorrelation())


_PATTERN_PARTS: dict[type[CorrelationModel], Callable[[BlockNames], CorrelationPart]] = {
    CompoundSymmetryCorrelation: lambda bn: CompoundSymmetryPart(bn.label, bn.block.group, bn.block.q),
    AR1Correlation: lambda bn: AR1Part(bn.label, bn.block.group),
    ToeplitzCorrelation: lambda bn: ToeplitzPart(bn.label, bn.block.group, bn.block.q - 1,
                                                 tuple(str(k) for k in range(1, bn.block.q))),
}


def _patterned(bn: BlockNames, structure: CovarianceStructure) -> BlockParameterisation:
    assert isinstance(structure, Patterned)
    part = (_PATTERN_PARTS[type(structure.correlation)](bn) if bn.block.q > 1 else NoCorrelation())
    return BlockParameterisation(bn, structure.homogeneous and bn.block.q > 1, part)


_BLOCK_TYPES: dict[type[CovarianceStructure],
                   Callable[[BlockNames, CovarianceStructure], BlockParameterisation]] = {
    Unstructured: _unstructured,
    Diagonal: _diagonal,
    Patterned: _patterned,
}


def block_structure(bn: BlockNames) -> BlockParameterisation:
    """The Bayesian parameterisation of one random-effect block (by its structure's class).

    Raises
    ------
    FitError
        For a structure class without a Bayesian parameterisation.
    """
    structure = bn.block.structure
    for cls in type(structure).__mro__:
        if cls in _BLOCK_TYPES:
            return _BLOCK_TYPES[cls](bn, structure)
    raise FitError(f"The Bayesian engine has no parameterisation of the {structure.describe()} "
                   f"structure of {bn.block.term}; fit it with method='reml' or method='ml'.")
