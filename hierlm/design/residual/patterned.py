"""Residual structures over time slots: ``cs``, ``ar1``, ``toep`` and their heterogeneous forms.

Their correlation is a :class:`~hierlm.design.covariance.CorrelationModel` (the
one the random-effect structures use), indexed by each row's time slot
(``ar1``/``toep``: the integer grid from the first time).
"""

from __future__ import annotations

import math

import numpy as np

from hierlm.design.covariance import (
    AR1Correlation,
    CompoundSymmetryCorrelation,
    CorrelationModel,
    ToeplitzCorrelation,
)
from hierlm.design.residual.base import ResidualStructure, correlation_reals
from hierlm.design.residual.precision import (
    CompoundSymmetryPrecision,
    MarkovPrecision,
    PrecisionForm,
)
from hierlm.errors import DataError

__all__ = ["CS", "CSH", "AR1", "ARH1", "Toep", "ToepH"]


class _SlotCorrelation(ResidualStructure):
    """A structure whose correlation comes from a :class:`CorrelationModel` over time slots."""

    def _model(self) -> CorrelationModel:
        raise NotImplementedError

    def _setup(self) -> None:
        self._correlation = self._model()

    @property
    def n_correlation(self) -> int:
        """The correlation model's parameters."""
        self._require_bound()
        return self._correlation.n_params

    def names(self) -> tuple[str, ...]:
        """``residual.r_<label>`` on the optimiser's (atanh) scale."""
        self._require_bound()
        return tuple(f"residual.r_{label}" for label in self._correlation.param_labels())

    def start(self) -> np.ndarray:
        """No correlation."""
        self._require_bound()
        return self._correlation.start()

    def natural(self, params: np.ndarray) -> dict[str, float]:
        """The correlations (``rho``, ``rho1 ...``)."""
        self._require_bound()
        values = self._correlation.natural(np.asarray(params, dtype=float)[: self.n_correlation])
        return dict(zip(self._correlation.param_labels(), map(float, values), strict=True))

    def _index(self) -> np.ndarray:
        return np.arange(self.n_times)

    def covariance_parameter_names(self) -> tuple[str, ...]:
        """``variance`` and the correlations."""
        return ("variance",) + self._correlation.param_labels()

    def covariance_parameters(self, params: np.ndarray, sigma2: float) -> np.ndarray:
        """``sigma^2`` and the correlations."""
        values = self._correlation.natural(np.asarray(params, dtype=float)[: self.n_correlation])
        return np.concatenate([[sigma2], values])

    def from_covariance_parameters(self, gamma: np.ndarray) -> tuple[np.ndarray, float]:
        """The correlation reals and ``sigma^2``."""
        gamma = np.asarray(gamma, dtype=float)
        return correlation_reals(self._correlation, gamma[1:]), float(gamma[0])

    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The correlation over the distinct times and its derivative."""
        self._require_bound()
        r = np.asarray(params, dtype=float)[: self.n_correlation]
        matrix, grad = self._correlation.matrix_and_gradient(r)
        index = self._index()
        if index.size == matrix.shape[0]:  # every slot of the model is a time (index 0, 1, ...)
            return matrix, grad
        return matrix[np.ix_(index, index)], grad[:, index][:, :, index]


class CS(_SlotCorrelation):
    """Compound symmetry: one correlation ``rho`` between every pair of a group's residuals."""

    name = "cs"
    base = "cs"
    description = "compound symmetry (one correlation, one variance)"
    needs_time = False

    def _model(self) -> CorrelationModel:
        return CompoundSymmetryCorrelation(max(self.n_times, 2))

    linear_covariance = True

    @property
    def _floor(self) -> float:
        """The smallest correlation, ``-1 / (T - 1)`` (that of the correlation model)."""
        return -1.0 / max(self.n_times - 1, 1)

    def _rho_of(self, r: float) -> tuple[float, float]:
        """``rho`` and ``d rho / d r``: ``rho = mid + half tanh(r)`` over ``(floor, 1)``."""
        return self._correlation.natural_and_slope(r)  # type: ignore[attr-defined, no-any-return]

    def precision_form(self, slots: np.ndarray, times: np.ndarray) -> PrecisionForm | None:
        """``(1 - rho) I + rho J`` inverts in closed form at any times."""
        if not self.n_correlation:
            return None
        return CompoundSymmetryPrecision(np.asarray(slots).size, self._rho_of)

    def moment_start(self, correlation: np.ndarray) -> np.ndarray:
        """The mean off-diagonal correlation."""
        start = self.start()
        off = correlation[~np.eye(correlation.shape[0], dtype=bool) & np.isfinite(correlation)]
        floor = self._floor
        if off.size and self.n_correlation:
            rho = min(max(float(off.mean()), 0.9 * floor), 0.99)
            start[0] = correlation_reals(self._correlation, np.array([rho]))[0]
        return start

    def covariance_parameter_names(self) -> tuple[str, ...]:
        """SAS's ``CS`` (the common covariance) and ``residual`` (the rest of the variance)."""
        return ("covariance", "residual")

    def covariance_parameters(self, params: np.ndarray, sigma2: float) -> np.ndarray:
        """``sigma^2 rho`` and ``sigma^2 (1 - rho)``: ``V = a J + b I``, linear."""
        rho = float(self._correlation.natural(np.asarray(params)[: self.n_correlation])[0])
        return np.array([sigma2 * rho, sigma2 * (1.0 - rho)])

    def from_covariance_parameters(self, gamma: np.ndarray) -> tuple[np.ndarray, float]:
        """``rho = a / (a + b)``, ``sigma^2 = a + b``."""
        sigma2 = float(gamma[0] + gamma[1])
        return correlation_reals(self._correlation, np.array([gamma[0] / sigma2])), sigma2

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``(1 - rho) I + rho J`` at any times."""
        m = np.asarray(times).size
        rho = self.natural(params)["rho"] if self.n_correlation else 0.0
        return (1.0 - rho) * np.eye(m) + rho * np.ones((m, m))


class _IntegerGrid(_SlotCorrelation):
    """Correlation over the integer grid of times ``t0, t0 + 1, ..., t_max``."""

    integer_time = True

    def _setup(self) -> None:
        offsets = self.times - self.times[0] if self.n_times else np.zeros(0)
        self._grid = np.rint(offsets).astype(np.int64)
        self._size = int(self._grid[-1]) + 1 if self.n_times else 1
        super()._setup()

    def _index(self) -> np.ndarray:
        return self._grid

    def _lags_at(self, times: np.ndarray) -> np.ndarray:
        times = np.asarray(times, dtype=float)
        if not np.allclose(times, np.rint(times)):
            bad = times[np.argmax(~np.isclose(times, np.rint(times)))]
            raise DataError(f"residual {self.name}: the time {self.time}={bad} is not an integer; "
                            f"{self.name} places integer times only (use car1 for continuous time).")
        return np.rint(np.abs(times[:, None] - times[None, :])).astype(np.int64)


class AR1(_IntegerGrid):
    """First-order autoregressive in the integer time: ``corr = rho^|t - s|``."""

    name = "ar1"
    base = "ar1"
    description = "first-order autoregressive in the integer time"

    def _model(self) -> CorrelationModel:
        return AR1Correlation(self._size)

    def start(self) -> np.ndarray:
        """``rho = 0.3``.

        Not 0: with times two or more units apart every correlation is an even
        power of ``rho``, so ``rho = 0`` is a stationary point the optimiser
        would never leave.
        """
        return np.array([np.arctanh(0.3)])[: self.n_correlation]

    def moment_start(self, correlation: np.ndarray) -> np.ndarray:
        """``rho`` from the correlation at the smallest lag (in time units)."""
        if not self.n_correlation:
            return self.start()
        lags = np.abs(np.subtract.outer(self.times, self.times))
        return self._lag_start(correlation, lags, lambda rho: float(np.arctanh(rho)))

    @staticmethod
    def _rho_of(r: float) -> tuple[float, float]:
        """``rho = tanh(r)`` and ``d rho / d r = 1 - rho^2``."""
        rho = math.tanh(r)
        return rho, 1.0 - rho ** 2

    def precision_form(self, slots: np.ndarray, times: np.ndarray) -> PrecisionForm | None:
        """The tridiagonal inverse over the group's grid steps (distinct times, in order)."""
        if not self.n_correlation:
            return None
        gaps = np.diff(self._grid[np.asarray(slots)])
        return MarkovPrecision(gaps, self._rho_of) if np.all(gaps > 0) else None

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``rho^|t - s|`` at any integer times."""
        lag = self._lags_at(times)
        rho = float(np.tanh(np.asarray(params, dtype=float)[0])) if self.n_correlation else 0.0
        return np.asarray(rho ** lag, dtype=float)


class Toep(_IntegerGrid):
    """Toeplitz in the integer time lag: one correlation per lag ``rho1 ... rhoK``."""

    name = "toep"
    base = "toep"
    description = "Toeplitz (one correlation per integer lag, one variance)"

    per_coordinate_natural = False  # the lag correlations come from all partial ones

    def _model(self) -> CorrelationModel:
        return ToeplitzCorrelation(self._size)

    linear_covariance = True

    def covariance_parameter_names(self) -> tuple[str, ...]:
        """SAS's ``TOEP``: the covariance at each lag, lag 0 (the variance) first."""
        return ("variance",) + tuple(f"lag{k}" for k in range(1, self._size))

    def covariance_parameters(self, params: np.ndarray, sigma2: float) -> np.ndarray:
        """``sigma^2 (1, rho1, ...)``: linear in the lag covariances."""
        values = self._correlation.natural(np.asarray(params, dtype=float)[: self.n_correlation])
        return sigma2 * np.concatenate([[1.0], values])

    def from_covariance_parameters(self, gamma: np.ndarray) -> tuple[np.ndarray, float]:
        """Lag correlations ``gamma_k / gamma_0`` and ``sigma^2 = gamma_0``."""
        gamma = np.asarray(gamma, dtype=float)
        return correlation_reals(self._correlation, gamma[1:] / gamma[0]), float(gamma[0])

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``rho_|t - s|`` at integer times whose lags the fit knows."""
        lag = self._lags_at(times)
        if lag.size and int(lag.max()) >= self._size:
            raise DataError(
                f"residual {self.name}: a lag of {int(lag.max())} {self.time} units is beyond the "
                f"largest the fit estimated ({self._size - 1}); predict within the fitted range "
                f"of {self.time}.")
        matrix, _ = self._correlation.matrix_and_gradient(np.asarray(params)[: self.n_correlation])
        return np.asarray(matrix[0][lag], dtype=float)


class _PerTimeSD(_SlotCorrelation):
    """Mixin: one SD ratio per distinct time on top of a correlation (first time: ratio 1)."""

    heterogeneous = True

    @property
    def n_ratio(self) -> int:
        """``T - 1`` log SD ratios."""
        return max(self.n_times - 1, 0)

    def names(self) -> tuple[str, ...]:
        """Correlation names, then ``residual.log_ratio.<time>``."""
        return super().names() + tuple(f"residual.log_ratio.{label}"
                                       for label in self.time_labels[1:])

    def start(self) -> np.ndarray:
        """The correlation's start and equal variances."""
        return np.concatenate([super().start(), np.zeros(self.n_ratio)])

    def natural(self, params: np.ndarray) -> dict[str, float]:
        """The correlations, then ``ratio.<time>``."""
        params = np.asarray(params, dtype=float)
        out = super().natural(params)
        ratios = np.exp(params[self.n_correlation:])
        out.update({f"ratio.{label}": float(v)
                    for label, v in zip(self.time_labels[1:], ratios, strict=True)})
        return out

    def _ratios(self, params: np.ndarray) -> np.ndarray:
        return np.exp(np.concatenate([[0.0], np.asarray(params, dtype=float)[self.n_correlation:]]))

    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``r_a r_b R_ab`` and its derivative (correlations, then log ratios)."""
        corr, d_corr = super().over_times(params)
        t = self.n_times
        outer = np.outer(self._ratios(params), self._ratios(params))
        cov = corr * outer
        grad = np.zeros((self.n_params, t, t))
        grad[: self.n_correlation] = d_corr * outer
        for k in range(1, t):  # d/d log ratio_k of r_a r_b R_ab: (1[a=k] + 1[b=k]) cov_ab
            indicator = np.zeros(t)
            indicator[k] = 1.0
            grad[self.n_correlation + k - 1] = cov * (indicator[:, None] + indicator[None, :])
        return cov, grad

    linear_covariance = False

    def covariance_parameter_names(self) -> tuple[str, ...]:
        """One variance per time (``var.<time>``), then the correlations."""
        return (tuple(f"var.{label}" for label in self.time_labels)
                + self._correlation.param_labels())

    def covariance_parameters(self, params: np.ndarray, sigma2: float) -> np.ndarray:
        """``sigma^2 ratio_t^2`` per time and the correlations."""
        values = self._correlation.natural(np.asarray(params, dtype=float)[: self.n_correlation])
        return np.concatenate([sigma2 * self._ratios(params) ** 2, values])

    def from_covariance_parameters(self, gamma: np.ndarray) -> tuple[np.ndarray, float]:
        """Correlation reals, log SD ratios to the first time, and its variance."""
        gamma = np.asarray(gamma, dtype=float)
        t = self.n_times
        variances, values = gamma[:t], gamma[t:]
        reals = correlation_reals(self._correlation, values)
        return np.concatenate([reals, 0.5 * np.log(variances[1:] / variances[0])]), float(variances[0])

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Only the fitted times (each has its own variance)."""
        return ResidualStructure.covariance_at(self, params, times)

    def precision_form(self, slots: np.ndarray, times: np.ndarray) -> PrecisionForm | None:
        """None: the per-time SDs leave no closed form here (the engines factorise ``S``)."""
        return None


class CSH(_PerTimeSD, CS):
    """Heterogeneous compound symmetry: one correlation, one SD ratio per time."""

    name = "csh"
    base = "cs"
    description = "heterogeneous compound symmetry (one correlation, one variance per time)"
    needs_time = True


class ARH1(_PerTimeSD, AR1):
    """Heterogeneous AR(1): ``rho^|t - s|`` with one SD ratio per time."""

    name = "arh1"
    base = "ar1"
    description = "heterogeneous AR(1) (one variance per time)"


class ToepH(_PerTimeSD, Toep):
    """Heterogeneous Toeplitz: one correlation per lag and one SD ratio per time."""

    name = "toeph"
    base = "toep"
    description = "heterogeneous Toeplitz (one correlation per lag, one variance per time)"


