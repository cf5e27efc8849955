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

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.bayes import structure_math as sm
from hierlm.bayes.naming import BlockNames, pair_label
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
from hierlm.design.residual import ResidualDesign
from hierlm.errors import FitError

__all__ = [
    "RESIDUAL_LABEL",
    "StructureParameter",
    "CorrelationPart",
    "BlockParameterisation",
    "ResidualParameterisation",
    "block_structure",
    "residual_structure",
    "design_structures",
    "INTERVAL_KINDS",
    "STRUCTURE_KINDS",
]

#: Label of the residual structure's variables (``rho_residual`` ...).
RESIDUAL_LABEL = "residual"
#: Prior classes of parameters confined to an interval (uniform priors).
INTERVAL_KINDS = ("rho", "pacf", "phi")
#: Prior classes this module adds to the prior table (besides ``sd`` and ``cor``).
STRUCTURE_KINDS = ("sd_common", "log_ratio") + INTERVAL_KINDS


@dataclass(frozen=True)
class StructureParameter:
    """One sampled variable of a structure (a scalar or a vector with one dim).

    Attributes
    ----------
    kind : str
        Prior class (``"sd"``, ``"sd_common"``, ``"cor"``, ``"rho"``, ``"pacf"``,
        ``"phi"``, ``"log_ratio"``).
    block : str
        Block label or ``"residual"`` / ``"residual_variance"``.
    group : str
        Grouping factor (for prior keys ``kind:group``).
    dim : str or None
        Dimension of a vector.
    coords : tuple of str
        Its labels (one per element; empty for a scalar).
    lower, upper : float
        Natural range (interval kinds; ``-inf``/``inf`` otherwise).
    """

    kind: str
    block: str
    group: str
    dim: str | None = None
    coords: tuple[str, ...] = ()
    lower: float = -math.inf
    upper: float = math.inf

    @property
    def name(self) -> str:
        """Posterior variable name, ``<kind>_<block>`` (``corr_raw_<b>`` for LKJ)."""
        return f"corr_raw_{self.block}" if self.kind == "cor" else f"{self.kind}_{self.block}"

    @property
    def size(self) -> int:
        """Number of reals (one per coordinate; LKJ: one per pair)."""
        return max(len(self.coords), 1) if self.dim is not None else 1

    @property
    def terms(self) -> tuple[str, ...]:
        """Prior-table term of each element (``""`` for a scalar or the LKJ matrix)."""
        return ("",) if self.dim is None or self.kind == "cor" else self.coords


def _pair_values(corr: Any, pairs: list[tuple[int, int]]) -> Any:
    """``corr[i, j]`` for each pair, as one vector (one indexing operation)."""
    rows = np.array([i for i, _ in pairs], dtype=np.int64)
    cols = np.array([j for _, j in pairs], dtype=np.int64)
    return corr[rows, cols]


# ------------------------------------------------------------ correlation parts
class CorrelationPart(ABC):
    """Correlation parameters of a structure, its matrix from natural values."""

    #: Variables this part samples (filled by subclasses).
    parameters: tuple[StructureParameter, ...] = ()

    def derived(self, values: dict[str, Any]) -> None:  # noqa: B027 (most parts derive nothing)
        """Add derived variables (``rho`` of Toeplitz, ``cor`` of LKJ) to ``values``."""

    @abstractmethod
    def matrix(self, values: Mapping[str, Any], lags: np.ndarray) -> Any:
        """Correlation at ``lags`` (slot lags ``|i - j|``; real time lags for ``car1``)."""


class NoCorrelation(CorrelationPart):
    """Independent terms or residuals: the identity."""

    def matrix(self, values: Mapping[str, Any], lags: np.ndarray) -> Any:
        """``I``."""
        return np.eye(lags.shape[0])


class CompoundSymmetryPart(CorrelationPart):
    """``rho`` on every pair, ``-1/(size-1) < rho < 1``."""

    def __init__(self, block: str, group: str, size: int) -> None:
        floor = -1.0 / (size - 1) if size > 1 else -1.0
        self.parameters = (StructureParameter("rho", block, group, lower=floor, upper=1.0),)

    def matrix(self, values: Mapping[str, Any], lags: np.ndarray) -> Any:
        """``(1 - rho) I + rho J``."""
        return sm.cs_correlation(values[self.parameters[0].name], lags.shape[0])


class AR1Part(CorrelationPart):
    """``rho^lag``, ``-1 < rho < 1`` (integer lags)."""

    def __init__(self, block: str, group: str) -> None:
        self.parameters = (StructureParameter("rho", block, group, lower=-1.0, upper=1.0),)

    def matrix(self, values: Mapping[str, Any], lags: np.ndarray) -> Any:
        """``rho ** lags``."""
        return sm.power_correlation(values[self.parameters[0].name], lags.astype(np.int64))


class CAR1Part(CorrelationPart):
    """``phi^|t - s|`` over real time lags, ``0 < phi < 1`` (nlme's ``corCAR1``)."""

    def __init__(self, block: str, group: str) -> None:
        self.parameters = (StructureParameter("phi", block, group, lower=0.0, upper=1.0),)

    def matrix(self, values: Mapping[str, Any], lags: np.ndarray) -> Any:
        """``phi ** lags``."""
        return sm.power_correlation(values[self.parameters[0].name], lags.astype(float))


class ToeplitzPart(CorrelationPart):
    """One correlation per lag from partial autocorrelations ``pacf`` in (-1, 1)."""

    def __init__(self, block: str, group: str, n_lags: int, lag_labels: tuple[str, ...]) -> None:
        self.block = block
        self.n_lags = n_lags
        self.parameters = (StructureParameter("pacf", block, group, f"{block}_lag", lag_labels,
                                              -1.0, 1.0),) if n_lags else ()
        self.rho_name = f"rho_{block}"

    def derived(self, values: dict[str, Any]) -> None:
        """``rho_<b>``: the lag correlations (Durbin-Levinson)."""
        if not self.n_lags:
            return
        acf = sm.toeplitz_autocorrelations(values[self.parameters[0].name], self.n_lags)
        xp = sm.namespace(*acf)
        values[self.rho_name] = (np.array([float(v) for v in acf[1:]]) if xp is np
                                 else xp.stack(acf[1:]))

    def matrix(self, values: Mapping[str, Any], lags: np.ndarray) -> Any:
        """``R_ij = rho_{lag_ij}``."""
        if not self.n_lags:
            return np.eye(lags.shape[0])
        acf = sm.toeplitz_autocorrelations(values[self.parameters[0].name], self.n_lags)
        return sm.lag_matrix(acf, lags.astype(np.int64))


class LKJPart(CorrelationPart):
    """A general correlation matrix with an LKJ prior (Stan's transform, ``corr_raw_<b>``)."""

    def __init__(self, block: str, group: str, labels: tuple[str, ...]) -> None:
        self.q = len(labels)
        self.pairs = [(i, j) for i in range(self.q) for j in range(i + 1, self.q)]
        pair_labels = tuple(pair_label(labels[i], labels[j]) for i, j in self.pairs)
        self.parameters = (StructureParameter("cor", block, group, f"{block}_pair", pair_labels),)
        self.cor_name = f"cor_{block}"
        self.chol_name = f"corr_chol_{block}"

    def correlation_cholesky(self, values: Mapping[str, Any], eta: Any = 1.0) -> tuple[Any, Any]:
        """Cholesky factor of ``R`` and the LKJ(eta) log-density with the Jacobian."""
        return sm.lkj_cholesky(values[self.parameters[0].name], self.q, eta)

    def derived(self, values: dict[str, Any]) -> None:
        """``cor_<b>`` (pairs in lme4's order) and ``corr_chol_<b>``."""
        chol, _ = self.correlation_cholesky(values)
        values[self.chol_name] = chol
        values[self.cor_name] = _pair_values(chol @ chol.T, self.pairs)

    def matrix(self, values: Mapping[str, Any], lags: np.ndarray) -> Any:
        """``R = L L'``."""
        chol, _ = self.correlation_cholesky(values)
        return chol @ chol.T


# ------------------------------------------------------------------ shared base
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


# -------------------------------------------------------------- random effects
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


# -------------------------------------------------------------------- residuals
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


def design_structures(names: list[BlockNames], residual: ResidualDesign | None
                      ) -> tuple[list[BlockParameterisation], ResidualParameterisation | None]:
    """Parameterisations of every block and of the residual structure (None without one)."""
    blocks = [block_structure(bn) for bn in names]
    return blocks, (residual_structure(residual) if residual is not None else None)
