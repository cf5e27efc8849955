"""The priors a model will use: :class:`PriorTable`, one :class:`PriorRow` per parameter.

Built by :func:`hierlm.bayes.priors.resolve_priors` (which re-exports both);
the engines look a parameter's prior up here by its class, block and term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from hierlm.bayes.prior_family import Prior
from hierlm.bayes.structures import STRUCTURE_KINDS

__all__ = ["PriorRow", "PriorTable"]


@dataclass(frozen=True)
class PriorRow:
    """One parameter's prior in a :class:`PriorTable`.

    Attributes
    ----------
    kind : str
        ``"fixef"``, ``"sd"``, ``"cor"``, ``"sigma"`` (Gaussian residual SD) or
        ``"dispersion"`` (another family's dispersion, e.g. the negative
        binomial's ``theta``; ``term`` holds its name).
    block : str
        Block label for ``sd`` and ``cor`` rows, else ``""``.
    term : str
        Fixed-effect or block term name (``""`` for ``cor`` and ``sigma``).
    prior : Prior
        The prior that will be used.
    source : str
        ``"default"``, ``"flat"`` or the key of ``priors`` it came from.
    lower, upper : float
        Natural range of an interval parameter (``rho``, ``pacf``, ``phi``) of a
        covariance structure (kinds of :mod:`hierlm.bayes.structures`).
    """

    kind: str
    block: str
    term: str
    prior: Prior
    source: str
    lower: float = -math.inf
    upper: float = math.inf

    @property
    def parameter(self) -> str:
        """The posterior variable (and coordinate) this row is the prior of."""
        if self.kind in STRUCTURE_KINDS:
            return f"{self.kind}_{self.block}" + (f"[{self.term}]" if self.term else "")
        if self.kind == "fixef":
            return f"fixef[{self.term}]"
        if self.kind == "sd":
            return f"sd_{self.block}[{self.term}]"
        if self.kind == "cor":
            return f"cor_{self.block}"
        if self.kind == "dispersion":
            return self.term
        return "sigma"


@dataclass(frozen=True)
class PriorTable:
    """The priors a model will use, one row per parameter; printable.

    Attributes
    ----------
    rows : tuple of PriorRow
        Fixed effects (design order), SDs per block and term, correlations per
        correlated block, then sigma.
    """

    rows: tuple[PriorRow, ...]

    def fixef(self, name: str) -> Prior:
        """Prior of one fixed effect."""
        return self._find("fixef", "", name)

    def sd(self, block: str, term: str) -> Prior:
        """Prior of the SD of ``term`` in the block labelled ``block``."""
        return self._find("sd", block, term)

    def cor(self, block: str) -> Prior:
        """LKJ prior of the correlations of the block labelled ``block``."""
        return self._find("cor", block, "")

    @property
    def sigma(self) -> Prior:
        """Prior of the residual SD."""
        return self._find("sigma", "", "")

    def structure(self, kind: str, block: str, term: str = "") -> Prior:
        """Prior of a covariance-structure parameter (kinds of :mod:`hierlm.bayes.structures`)."""
        return self._find(kind, block, term)

    def interval(self, kind: str, block: str, term: str, lower: float,
                 upper: float) -> tuple[float, float]:
        """Range of an interval parameter: its uniform prior's bounds, else ``(lower, upper)``."""
        prior = self._find(kind, block, term)
        if prior.family == "uniform":
            return prior.param("lower"), prior.param("upper")
        return lower, upper

    def dispersion(self, name: str) -> Prior:
        """Prior of a non-Gaussian family's dispersion parameter (e.g. ``"theta"``)."""
        if name == "sigma":
            return self.sigma
        return self._find("dispersion", "", name)

    @property
    def has_sigma(self) -> bool:
        """True when the table has a residual-SD row (Gaussian models)."""
        return any(row.kind == "sigma" for row in self.rows)

    @property
    def is_flat(self) -> bool:
        """True when every prior is flat, so the posterior mode is the ML estimate."""
        return all(row.prior.is_flat for row in self.rows)

    @property
    def fixef_flat(self) -> bool:
        """True when every fixed effect has a flat prior (needed for REML)."""
        return all(row.prior.is_flat for row in self.rows if row.kind == "fixef")

    def _find(self, kind: str, block: str, term: str) -> Prior:
        for row in self.rows:
            if row.kind == kind and row.block == block and row.term == term:
                return row.prior
        raise KeyError(f"no {kind} prior for block={block!r} term={term!r}")

    def to_frame(self) -> pd.DataFrame:
        """Return the table as a DataFrame (columns parameter, class, group, term, prior, source)."""
        return pd.DataFrame(
            {
                "parameter": [row.parameter for row in self.rows],
                "class": [row.kind for row in self.rows],
                "group": [row.block for row in self.rows],
                "term": [row.term for row in self.rows],
                "prior": [str(row.prior) for row in self.rows],
                "source": [row.source for row in self.rows],
            }
        )

    def __str__(self) -> str:
        return self.to_frame().to_string(index=False)

    def _repr_html_(self) -> str:
        return str(self.to_frame().to_html(index=False))
