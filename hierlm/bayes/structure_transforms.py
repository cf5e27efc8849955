"""Transforms and priors shared by the block and residual parameterisations of a structure.

The map between the unconstrained vector a sampler moves in and the natural
values (log for SDs, PyMC's log-odds for interval parameters, Stan's LKJ
reals as they are), its inverse, and the log prior of the non-SD parameters;
see :mod:`hierlm.bayes.structures` for the interface.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hierlm.bayes import structure_math as sm
from hierlm.bayes.structure_parts import (
    INTERVAL_KINDS,
    CorrelationPart,
    LKJPart,
    StructureParameter,
)

__all__ = ["_Parameterisation"]


class _Parameterisation:
    """Transforms and priors common to block and residual parameterisations."""

    parameters: tuple[StructureParameter, ...]
    parts: tuple[CorrelationPart, ...]

    @property
    def unconstrained_size(self) -> int:
        """Length of the unconstrained vector."""
        return sum(p.size for p in self.parameters)

    def _scale_kinds(self) -> tuple[str, ...]:
        return ("sd", "sd_common")

    def bounds(self, p: StructureParameter, priors: Any = None) -> tuple[Any, Any]:
        """Range of an interval parameter: its prior's (uniform) or its natural range.

        Returns floats for a scalar and arrays (one per element) for a vector.
        """
        if priors is None:
            return p.lower, p.upper
        pairs = [priors.interval(p.kind, p.block, term, p.lower, p.upper) for term in p.terms]
        if p.dim is None:
            return pairs[0]
        return np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])

    def from_unconstrained(self, u: Any, priors: Any = None) -> tuple[dict[str, Any], Any]:
        """Natural values (sampled and derived variables) and the log-Jacobian of ``u``.

        Interval parameters map onto their prior's range when ``priors`` (a
        :class:`~hierlm.bayes.priors.PriorTable`) is given, else onto their
        natural range. LKJ reals are returned as they are: their Jacobian is
        part of the LKJ density in :meth:`log_prior`.
        """
        values: dict[str, Any] = {}
        log_jacobian: Any = 0.0
        xp = sm.namespace(u)
        offset = 0
        for p in self.parameters:
            piece = u[offset:offset + p.size] if p.dim is not None else u[offset]
            offset += p.size
            if p.kind in self._scale_kinds():
                value, lj = sm.log_forward(piece)
            elif p.kind in INTERVAL_KINDS:
                low, high = self.bounds(p, priors)
                value = sm.interval_forward(piece, low, high)
                lj = sm.interval_log_jacobian(piece, low, high)
            else:  # real-valued (log ratios) and LKJ reals: the Jacobian is in their density
                value, lj = piece, 0.0 * piece
            values[p.name] = value
            log_jacobian = log_jacobian + xp.sum(lj)
        self.derive(values)
        return values, log_jacobian

    def to_unconstrained(self, values: Mapping[str, Any], priors: Any = None) -> np.ndarray:
        """The unconstrained vector of natural values (NumPy; inverse of the forward map)."""
        out = []
        for p in self.parameters:
            value = np.atleast_1d(np.asarray(values[p.name], dtype=float))
            if p.kind in self._scale_kinds():
                out.append(np.log(value))
            elif p.kind in INTERVAL_KINDS:
                low, high = self.bounds(p, priors)
                out.append(np.atleast_1d(sm.interval_backward(value, low, high)))
            else:
                out.append(value)
        return np.concatenate(out) if out else np.zeros(0)

    def derive(self, values: dict[str, Any]) -> None:
        """Add the derived variables of the natural values (in place)."""
        for part in self.parts:
            part.derived(values)

    def log_prior(self, values: Mapping[str, Any], priors: Any) -> Any:
        """Log prior density of the non-SD parameters (see the module docstring).

        ``priors`` is a :class:`~hierlm.bayes.priors.PriorTable`; uniform priors
        on an interval parameter are constant on their range (the transform
        maps onto the prior's range, see :meth:`interval`).
        """
        total: Any = 0.0
        for p in self.parameters:
            if p.kind == "log_ratio":
                for k, term in enumerate(p.terms):
                    prior = priors.structure(p.kind, p.block, term)
                    if prior.family == "normal":
                        mu, sd = prior.param("mu"), prior.param("sigma")
                        x = values[p.name][k]
                        total = total - 0.5 * ((x - mu) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))
            elif p.kind == "cor":
                part = next(x for x in self.parts if isinstance(x, LKJPart))
                eta = priors.structure("cor", p.block, "").param("eta")
                total = total + part.correlation_cholesky(values, eta)[1]
            elif p.kind in INTERVAL_KINDS:
                for term in p.terms:
                    low, high = priors.interval(p.kind, p.block, term, p.lower, p.upper)
                    total = total - math.log(high - low)
        return total
