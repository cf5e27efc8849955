"""Bayesian parameterisation of a residual structure relative to sigma: ``S = M R M`` over times.

``cs``, ``csh``, ``un``, ``ar1``, ``arh1``, ``toep``, ``toeph`` and ``car1``
(dispatched by the structure's base name), each with optional ``variance=``
ratios by row; re-exported by :mod:`hierlm.bayes.structures`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hierlm.bayes import structure_math as sm
from hierlm.bayes.structure_parts import (
    RESIDUAL_LABEL,
    AR1Part,
    CAR1Part,
    CompoundSymmetryPart,
    CorrelationPart,
    LKJPart,
    NoCorrelation,
    StructureParameter,
    ToeplitzPart,
)
from hierlm.bayes.structure_transforms import _Parameterisation
from hierlm.design.residual import ResidualDesign
from hierlm.errors import FitError

__all__ = ["ResidualParameterisation", "residual_structure"]


class ResidualParameterisation(_Parameterisation):
    """A residual structure relative to sigma: ``S = M R M`` over times, ``variance=`` by row.

    Parameters
    ----------
    residual : ResidualDesign
        The design's residual structure.
    part : CorrelationPart
        The correlation over slots (or time lags for ``car1``).
    """

    def __init__(self, residual: ResidualDesign, part: CorrelationPart) -> None:
        self.residual = residual
        structure = residual.structure
        self.structure = structure
        self.label = RESIDUAL_LABEL
        group = residual.spec.group
        params = list(part.parameters)
        self.n_time_ratios = structure.n_times - 1 if (structure.heterogeneous
                                                       or structure.base == "un") else 0
        if self.n_time_ratios:
            params.append(StructureParameter("log_ratio", RESIDUAL_LABEL, group, "residual_time",
                                             tuple(structure.time_labels[1:])))
        if residual.n_variance:
            params.append(StructureParameter("log_ratio", "residual_variance", group,
                                             "residual_variance_level",
                                             tuple(residual.variance_labels[1:])))
        self.parts = (part,)
        self.parameters = tuple(params)
        grid = getattr(structure, "_grid", None)
        self._slots_of_time = (np.asarray(grid, dtype=np.int64) if grid is not None
                               else np.arange(structure.n_times))

    def _scale_kinds(self) -> tuple[str, ...]:
        return ()

    def derive(self, values: dict[str, Any]) -> None:
        """Add the SD ratios (``ratio_residual``, ``ratio_residual_variance``)."""
        super().derive(values)
        for name in ("log_ratio_residual", "log_ratio_residual_variance"):
            if name in values:
                xp = sm.namespace(values[name])
                values[name.replace("log_", "")] = xp.exp(values[name])

    @property
    def is_continuous(self) -> bool:
        """True for ``car1``: the correlation depends on each group's own times."""
        return isinstance(self.parts[0], CAR1Part)

    def correlation(self, values: Mapping[str, Any]) -> Any:
        """Correlation over the distinct times (not ``car1``: use :meth:`correlation_at`)."""
        if self.is_continuous:
            return self.correlation_at(values, self.structure.times)
        slots = self._slots_of_time
        return self.parts[0].matrix(values, np.abs(slots[:, None] - slots[None, :]))

    def correlation_at(self, values: Mapping[str, Any], times: np.ndarray) -> Any:
        """Correlation of one group's residuals at its time values."""
        times = np.asarray(times, dtype=float)
        if self.is_continuous:
            return self.parts[0].matrix(values, np.abs(times[:, None] - times[None, :]))
        index = np.searchsorted(self.structure.times, times)
        return self.correlation(values)[index][:, index]

    def time_scales(self, values: Mapping[str, Any]) -> Any:
        """SD ratio of each distinct time (the first is 1)."""
        if not self.n_time_ratios:
            return np.ones(self.structure.n_times)
        ratio = values["ratio_residual"]
        xp = sm.namespace(ratio)
        return (np.concatenate([[1.0], np.asarray(ratio, dtype=float)]) if xp is np
                else xp.concatenate([xp.ones(1), ratio]))

    def row_scales(self, values: Mapping[str, Any]) -> Any:
        """``variance=`` SD ratio of each row (1 without ``variance=``)."""
        codes = self.residual.variance_codes
        if codes is None or not self.residual.n_variance:
            return np.ones(len(self.residual.group_codes))
        ratio = values["ratio_residual_variance"]
        xp = sm.namespace(ratio)
        full = (np.concatenate([[1.0], np.asarray(ratio, dtype=float)]) if xp is np
                else xp.concatenate([xp.ones(1), ratio]))
        return full[np.asarray(codes, dtype=np.int64)]

    def relative_covariance(self, values: Mapping[str, Any]) -> np.ndarray:
        """``S = M R M`` over the distinct times (NumPy; ``variance=`` at its first level)."""
        corr = np.asarray(self.correlation(values), dtype=float)
        scales = np.asarray(self.time_scales(values), dtype=float)
        return corr * np.outer(scales, scales)


def _residual_part(residual: ResidualDesign) -> CorrelationPart:
    structure = residual.structure
    group = residual.spec.group
    grid = getattr(structure, "_grid", None)
    n_lags = int(grid[-1]) if grid is not None and len(grid) else 0
    makers: dict[str, Callable[[], CorrelationPart]] = {
        "independent": NoCorrelation,
        "cs": lambda: CompoundSymmetryPart(RESIDUAL_LABEL, group, max(structure.n_times, 2)),
        "ar1": lambda: AR1Part(RESIDUAL_LABEL, group),
        "toep": lambda: ToeplitzPart(RESIDUAL_LABEL, group, n_lags,
                                     tuple(str(k) for k in range(1, n_lags + 1))),
        "car1": lambda: CAR1Part(RESIDUAL_LABEL, group),
        "un": lambda: LKJPart(RESIDUAL_LABEL, group, tuple(structure.time_labels)),
    }
    if structure.base not in makers:
        raise FitError(f"The Bayesian engine has no parameterisation of residual="
                       f"{residual.describe()!r}; fit it with method='reml' or method='ml'.")
    return makers[structure.base]()


def residual_structure(residual: ResidualDesign) -> ResidualParameterisation:
    """The Bayesian parameterisation of a residual design (by its structure's base name)."""
    return ResidualParameterisation(residual, _residual_part(residual))
