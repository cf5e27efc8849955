"""Residual correlation structures, one class per structure, and their registry.

Every structure answers the protocol of :class:`ResidualStructure`:

* its parameters: count (:attr:`~ResidualStructure.n_params`), names, the
  optimiser's box and start, and the natural-scale values for tables;
* the relative covariance ``S`` over the distinct times it was bound to, and
  its derivative (:meth:`~ResidualStructure.over_times`);
* ``S`` of a batch of groups (:meth:`~ResidualStructure.for_groups`), which the
  engines call, and ``S`` at any times of one group
  (:meth:`~ResidualStructure.covariance_at`), which prediction of new visits
  calls (it names a time the structure cannot place);
* optionally, ``S^-1`` of one group's times in closed form
  (:meth:`~ResidualStructure.precision_form`, :mod:`hierlm.design.residual.precision`:
  ``cs``, ``ar1``, ``car1``), which the criterion without random effects uses
  instead of factorising ``S``.

A structure is written by the user as an object, e.g. ``AR1("week", "id")``
(the time column and the group column), or as text (``"ar1(week | id)"``,
parsed to the same class through :data:`RESIDUAL_STRUCTURES`). The design
binds it to the distinct times of the data (:meth:`~ResidualStructure.bind`).

Adding a structure is one class here, registered in
:data:`RESIDUAL_STRUCTURES`; the parser, the engines (``hierlm.lmm.grouped``),
the tables and prediction then use it unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from hierlm.design.residual.base import ResidualStructure
from hierlm.design.residual.patterned import AR1, ARH1, CS, CSH, Toep, ToepH
from hierlm.design.residual.precision import MarkovPrecision, PrecisionForm

__all__ = [
    "ResidualStructure",
    "Independent",
    "CS",
    "CSH",
    "UN",
    "AR1",
    "ARH1",
    "Toep",
    "ToepH",
    "CAR1",
    "RESIDUAL_STRUCTURES",
]


class Independent(ResidualStructure):
    """Independent residuals, one variance (the baseline; with ``variance=``, varIdent alone)."""

    name = "independent"
    base = "independent"
    description = ("independent residuals, one variance (the baseline; a linear model without "
                   "random effects)")
    needs_time = False

    @property
    def n_correlation(self) -> int:
        """No parameters."""
        return 0

    def names(self) -> tuple[str, ...]:
        """No names."""
        return ()

    def start(self) -> np.ndarray:
        """Empty."""
        return np.zeros(0)

    def natural(self, params: np.ndarray) -> dict[str, float]:
        """Empty."""
        return {}

    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The identity."""
        t = self.n_times
        return np.eye(t), np.zeros((0, t, t))

    slot_based = False

    def for_groups(self, params: np.ndarray, slots: np.ndarray, times: np.ndarray,
                   gradient: bool = True,
                   over: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """Identity matrices."""
        k, m = slots.shape
        eye = np.broadcast_to(np.eye(m), (k, m, m)).copy()
        return eye, (np.zeros((0, k, m, m)) if gradient else None)

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """The identity at any times."""
        return np.eye(np.asarray(times).size)

    linear_covariance = True

    def covariance_parameter_names(self) -> tuple[str, ...]:
        """``variance``."""
        return ("variance",)

    def covariance_parameters(self, params: np.ndarray, sigma2: float) -> np.ndarray:
        """``sigma^2``."""
        return np.array([sigma2])

    def from_covariance_parameters(self, gamma: np.ndarray) -> tuple[np.ndarray, float]:
        """No parameters and ``sigma^2``."""
        return np.zeros(0), float(gamma[0])

    def text(self) -> str:
        """``"independent"``."""
        return "independent"


class UN(ResidualStructure):
    """Unstructured: every variance and covariance over the times (``S = L L'``, ``L_00 = 1``)."""

    name = "un"
    base = "un"
    description = "unstructured (every variance and covariance over the times)"
    heterogeneous = True
    relative_covariance = True
    per_coordinate_natural = False  # the entries of L (the table shows the matrix)

    def _pattern(self) -> list[tuple[int, int]]:
        pattern = [(i, j) for j in range(self.n_times) for i in range(j, self.n_times)]
        return pattern[1:]  # L[0, 0] = 1 fixes the scale (sigma is the first time's SD)

    @property
    def n_correlation(self) -> int:
        """``T (T + 1) / 2 - 1`` entries of the Cholesky factor."""
        return self.n_times * (self.n_times + 1) // 2 - 1

    def names(self) -> tuple[str, ...]:
        """``residual.L.<time>.<time>``."""
        lab = self.time_labels
        return tuple(f"residual.L.{lab[i]}.{lab[j]}" for i, j in self._pattern())

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """Unbounded."""
        return np.full(self.n_params, -np.inf), np.full(self.n_params, np.inf)

    def start(self) -> np.ndarray:
        """The identity."""
        return np.array([1.0 if i == j else 0.0 for i, j in self._pattern()])

    def natural(self, params: np.ndarray) -> dict[str, float]:
        """None (the table shows the matrix, :func:`hierlm.results.structures.residual_covariance`)."""
        return {}

    linear_covariance = True

    def _entries(self) -> list[tuple[int, int]]:
        return [(i, j) for j in range(self.n_times) for i in range(j, self.n_times)]

    def covariance_parameter_names(self) -> tuple[str, ...]:
        """``un(<time>,<time>)``: every variance and covariance."""
        lab = self.time_labels
        return tuple(f"un({lab[i]},{lab[j]})" for i, j in self._entries())

    def covariance_parameters(self, params: np.ndarray, sigma2: float) -> np.ndarray:
        """The entries of ``sigma^2 L L'``."""
        cov, _ = self.over_times(params)
        rows, cols = zip(*self._entries(), strict=True)
        return sigma2 * cov[list(rows), list(cols)]

    def from_covariance_parameters(self, gamma: np.ndarray) -> tuple[np.ndarray, float]:
        """``sigma^2`` is the first variance; ``L`` the Cholesky factor of the rest."""
        t = self.n_times
        cov = np.zeros((t, t))
        rows, cols = (list(x) for x in zip(*self._entries(), strict=True))
        cov[rows, cols] = gamma
        cov[cols, rows] = gamma
        sigma2 = float(cov[0, 0])
        lower = np.linalg.cholesky(cov / sigma2)
        prow, pcol = (list(x) for x in zip(*self._pattern(), strict=True))
        return lower[prow, pcol], sigma2

    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``L L'`` and its derivative in the entries of ``L``."""
        t = self.n_times
        lower = np.zeros((t, t))
        lower[0, 0] = 1.0
        pattern = self._pattern()
        rows, cols = (list(x) for x in zip(*pattern, strict=True)) if pattern else ([], [])
        lower[rows, cols] = np.asarray(params, dtype=float)[: len(pattern)]
        cov = lower @ lower.T
        grad = np.zeros((len(pattern), t, t))
        for k, (i, j) in enumerate(pattern):
            unit = np.zeros((t, t))
            unit[i, j] = 1.0
            grad[k] = unit @ lower.T + lower @ unit.T
        return cov, grad


class CAR1(ResidualStructure):
    """Continuous-time AR(1): ``corr = phi^|t - s|``, ``0 < phi < 1`` (nlme's ``corCAR1``)."""

    name = "car1"
    base = "car1"
    description = "continuous-time AR(1), corr = phi^|t - s| (nlme's corCAR1)"
    numeric_time = True

    @property
    def n_correlation(self) -> int:
        """One: ``logit(phi)``."""
        return 1

    def names(self) -> tuple[str, ...]:
        """``residual.logit_phi``."""
        return ("residual.logit_phi",)

    def start(self) -> np.ndarray:
        """``phi = 0.12``."""
        return np.array([-2.0])

    def moment_start(self, correlation: np.ndarray) -> np.ndarray:
        """``phi`` from the correlation at the smallest time difference."""
        lags = np.abs(np.subtract.outer(self.times, self.times))
        return self._lag_start(correlation, lags, lambda phi: float(np.log(phi / (1.0 - phi))))

    def natural(self, params: np.ndarray) -> dict[str, float]:
        """``phi``."""
        return {"phi": float(1.0 / (1.0 + np.exp(-np.asarray(params, dtype=float)[0])))}

    @staticmethod
    def _phi_of(r: float) -> tuple[float, float]:
        """``phi = 1 / (1 + exp(-r))`` and ``d phi / d r = phi (1 - phi)``."""
        phi = 1.0 / (1.0 + math.exp(-r))
        return phi, phi * (1.0 - phi)

    def _matrices(self, params: np.ndarray, times: np.ndarray, gradient: bool
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        phi, d_phi = self._phi_of(float(np.asarray(params, dtype=float)[0]))
        lag = np.abs(times[..., :, None] - times[..., None, :])
        cov = phi ** lag
        if not gradient:
            return cov, None
        # d phi^lag / d phi = lag phi^(lag - 1) (also for lags below 1), 0 on the diagonal
        grad = np.where(lag > 0, lag * phi ** np.where(lag > 0, lag - 1.0, 0.0), 0.0) * d_phi
        return cov, grad[None]

    def precision_form(self, slots: np.ndarray, times: np.ndarray) -> PrecisionForm | None:
        """The tridiagonal inverse over the gaps between the group's times (distinct, in order)."""
        gaps = np.diff(np.asarray(times, dtype=float))
        return MarkovPrecision(gaps, self._phi_of) if np.all(gaps > 0) else None

    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``phi^|t - s|`` over the distinct times (for tables)."""
        cov, grad = self._matrices(params, self.times, True)
        assert grad is not None
        return cov, grad

    slot_based = False

    def for_groups(self, params: np.ndarray, slots: np.ndarray, times: np.ndarray,
                   gradient: bool = True,
                   over: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """``phi^|t - s|`` from each group's own times."""
        return self._matrices(params, np.asarray(times, dtype=float), gradient)

    def for_times(self, params: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relative covariance of groups with times ``(k, m)`` and its derivative."""
        cov, grad = self._matrices(params, np.asarray(times, dtype=float), True)
        assert grad is not None
        return cov, grad

    def covariance_parameter_names(self) -> tuple[str, ...]:
        """``variance``, ``phi``."""
        return ("variance", "phi")

    def covariance_parameters(self, params: np.ndarray, sigma2: float) -> np.ndarray:
        """``sigma^2`` and ``phi``."""
        return np.array([sigma2, self.natural(params)["phi"]])

    def from_covariance_parameters(self, gamma: np.ndarray) -> tuple[np.ndarray, float]:
        """``logit(phi)`` and ``sigma^2``."""
        phi = float(gamma[1])
        return np.array([np.log(phi / (1.0 - phi))]), float(gamma[0])

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``phi^|t - s|`` at any times."""
        cov, _ = self._matrices(params, np.asarray(times, dtype=float), False)
        return cov


#: Residual structures by name (``residual=`` text); the parser lists them.
RESIDUAL_STRUCTURES: dict[str, type[ResidualStructure]] = {
    cls.name: cls for cls in (Independent, CS, CSH, UN, AR1, ARH1, Toep, ToepH, CAR1)
}
