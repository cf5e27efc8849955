"""The pieces of a covariance structure's Bayesian parameterisation: variables and correlation parts.

:class:`StructureParameter` is one sampled variable (its prior class, block,
coordinates and natural range); a :class:`CorrelationPart` gives a
structure's correlation matrix from natural values (identity, compound
symmetry, AR(1), CAR(1), Toeplitz, LKJ). The block and residual
parameterisations (:mod:`hierlm.bayes.block_structures`,
:mod:`hierlm.bayes.residual_structures`) are built from them; every name is
re-exported by :mod:`hierlm.bayes.structures`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.bayes import structure_math as sm
from hierlm.bayes.naming import pair_label

__all__ = [
    "INTERVAL_KINDS",
    "RESIDUAL_LABEL",
    "STRUCTURE_KINDS",
    "AR1Part",
    "CAR1Part",
    "CompoundSymmetryPart",
    "CorrelationPart",
    "LKJPart",
    "NoCorrelation",
    "StructureParameter",
    "ToeplitzPart",
    "_pair_values",
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
