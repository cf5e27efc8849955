"""Residual correlation structures, one class per structure, and their registry.

Every structure answers the protocol of :class:`ResidualStructure`:

* its parameters: count (:attr:`~ResidualStructure.n_params`), names, the
  optimiser's box and start, and the natural-scale values for tables;
* the relative covariance ``S`` over the distinct times it was bound to, and
  its derivative (:meth:`~ResidualStructure.over_times`);
* ``S`` of a batch of groups (:meth:`~ResidualStructure.for_groups`), which the
  engines call, and ``S`` at any times of one group
  (:meth:`~ResidualStructure.covariance_at`), which prediction of new visits
  calls (it names a time the structure cannot place).

A structure is written by the user as an object, e.g. ``AR1("week", "id")``
(the time column and the group column), or as text (``"ar1(week | id)"``,
parsed to the same class through :data:`RESIDUAL_STRUCTURES`). The design
binds it to the distinct times of the data (:meth:`~ResidualStructure.bind`).

Adding a structure is one class here, registered in
:data:`RESIDUAL_STRUCTURES`; the parser, the engines (``hierlm.lmm.grouped``),
the tables and prediction then use it unchanged.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from hierlm.design.covariance import (
    FREE_LIMIT,
    AR1Correlation,
    CompoundSymmetryCorrelation,
    CorrelationModel,
    ToeplitzCorrelation,
)
from hierlm.errors import DataError, FitError

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


class ResidualStructure(ABC):
    """Protocol of a residual correlation structure within a group.

    Parameters
    ----------
    time : str, optional
        The time (or position) column; ``None`` for ``cs`` and
        ``independent``, which need none.
    group : str, optional
        The group column inside which residuals correlate.
    """

    #: Name as written in ``residual=`` text.
    name: ClassVar[str] = ""
    #: One line for the parser's list of structures.
    description: ClassVar[str] = ""
    #: The homogeneous structure it scales (``"ar1"`` for ``arh1``); its own name otherwise.
    base: ClassVar[str] = ""
    #: The structure needs a time column.
    needs_time: ClassVar[bool] = True
    #: The time must be numeric and integer (lags are counted in time units).
    integer_time: ClassVar[bool] = False
    #: The time must be numeric (continuous).
    numeric_time: ClassVar[bool] = False
    #: One SD ratio per distinct time (the residual variance is not one number).
    heterogeneous: ClassVar[bool] = False
    #: ``S`` is a covariance relative to the first time's variance, not a correlation.
    relative_covariance: ClassVar[bool] = False

    def __init__(self, time: str | None = None, group: str | None = None) -> None:
        self.time = time
        self.group = group
        self.times = np.zeros(0)
        self.time_labels: tuple[str, ...] = ()
        self.n_times = 0
        self.bound = False

    # ------------------------------------------------------------ binding
    def bind(self, times: np.ndarray, time_labels: tuple[str, ...]) -> ResidualStructure:
        """Return a copy bound to the sorted distinct ``times`` (labels for names)."""
        out = copy.copy(self)
        out.times = np.asarray(times, dtype=float)
        out.time_labels = tuple(time_labels)
        out.n_times = out.times.size
        out.bound = True
        out._setup()
        return out

    def _setup(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Prepare what depends on the bound times (subclasses)."""

    def _require_bound(self) -> None:
        if not self.bound:
            raise FitError(f"The {self.name} structure is not bound to data yet (bind(times)).")

    # --------------------------------------------------------- parameters
    @property
    @abstractmethod
    def n_correlation(self) -> int:
        """Number of correlation (or covariance) parameters."""

    @property
    def n_ratio(self) -> int:
        """Number of per-time SD ratios (heterogeneous structures)."""
        return 0

    @property
    def n_params(self) -> int:
        """Number of parameters (counted in AIC/BIC and LRT df)."""
        return self.n_correlation + self.n_ratio

    @abstractmethod
    def names(self) -> tuple[str, ...]:
        """Parameter names (on the optimiser's scale)."""

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The optimiser's box: correlation reals within +-``FREE_LIMIT``."""
        return np.full(self.n_params, -FREE_LIMIT), np.full(self.n_params, FREE_LIMIT)

    @abstractmethod
    def start(self) -> np.ndarray:
        """Starting parameters."""

    @abstractmethod
    def natural(self, params: np.ndarray) -> dict[str, float]:
        """Natural-scale parameters for tables (``rho``, ``phi``, ``ratio.<time>``)."""

    # ------------------------------------------------------------ matrices
    @abstractmethod
    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relative covariance over the distinct times ``(T, T)`` and its derivative."""

    def for_groups(self, params: np.ndarray, slots: np.ndarray, times: np.ndarray,
                   gradient: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``S`` of ``k`` groups of ``m`` rows ``(k, m, m)`` and its derivative.

        Parameters
        ----------
        params : numpy.ndarray
            The structure's parameters.
        slots : numpy.ndarray
            ``(k, m)`` index of each row's time among the distinct times.
        times : numpy.ndarray
            ``(k, m)`` time values (used by continuous-time structures).
        gradient : bool
            Also return ``dS`` of shape ``(n_params, k, m, m)``.
        """
        full, d_full = self.over_times(params)
        rows, cols = slots[:, :, None], slots[:, None, :]
        return full[rows, cols], (d_full[:, rows, cols] if gradient else None)

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``S`` at the times of one group ``(m, m)``, observed or new.

        Discrete structures place only times they were bound to.

        Raises
        ------
        DataError
            Naming a time the structure cannot place.
        """
        slots = self._slots_of(np.asarray(times, dtype=float))
        full, _ = self.over_times(params)
        return full[np.ix_(slots, slots)]

    def _slots_of(self, times: np.ndarray) -> np.ndarray:
        self._require_bound()
        slots = np.searchsorted(self.times, times).clip(0, max(self.n_times - 1, 0))
        unknown = ~np.isclose(self.times[slots], times, rtol=0.0, atol=1e-9) if self.n_times \
            else np.ones(times.shape, dtype=bool)
        if np.any(unknown):
            bad = times[np.argmax(unknown)]
            raise DataError(
                f"residual {self.name}: the time {self.time}={_label(bad)} is not among the "
                f"fitted times ({', '.join(self.time_labels)}), and {self.name} has a parameter "
                "per time it knows; predict at fitted times, or use a structure that places any "
                "time (ar1 for integer times, car1 for continuous ones).")
        return slots

    # -------------------------------------------------------------- text
    def text(self) -> str:
        """The structure written as ``residual=`` text, e.g. ``"ar1(week | id)"``."""
        if self.group is None:
            raise FitError(f"The {self.name} structure object has no group column.")
        return f"{self.name}({self.time} | {self.group})" if self.time else f"{self.name}({self.group})"

    def __repr__(self) -> str:
        args = ", ".join(repr(a) for a in (self.time, self.group) if a is not None)
        bound = f", times={self.n_times}" if self.bound else ""
        return f"{type(self).__name__}({args}{bound})"


def _label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


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

    def for_groups(self, params: np.ndarray, slots: np.ndarray, times: np.ndarray,
                   gradient: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Identity matrices."""
        k, m = slots.shape
        eye = np.broadcast_to(np.eye(m), (k, m, m)).copy()
        return eye, (np.zeros((0, k, m, m)) if gradient else None)

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """The identity at any times."""
        return np.eye(np.asarray(times).size)

    def text(self) -> str:
        """``"independent"``."""
        return "independent"


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

    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The correlation over the distinct times and its derivative."""
        self._require_bound()
        r = np.asarray(params, dtype=float)[: self.n_correlation]
        matrix, grad = self._correlation.matrix_and_gradient(r)
        index = self._index()
        return matrix[np.ix_(index, index)], grad[:, index][:, :, index]


class CS(_SlotCorrelation):
    """Compound symmetry: one correlation ``rho`` between every pair of a group's residuals."""

    name = "cs"
    base = "cs"
    description = "compound symmetry (one correlation, one variance)"
    needs_time = False

    def _model(self) -> CorrelationModel:
        return CompoundSymmetryCorrelation(max(self.n_times, 2))

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

    def _model(self) -> CorrelationModel:
        return ToeplitzCorrelation(self._size)

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

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Only the fitted times (each has its own variance)."""
        return ResidualStructure.covariance_at(self, params, times)


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


class UN(ResidualStructure):
    """Unstructured: every variance and covariance over the times (``S = L L'``, ``L_00 = 1``)."""

    name = "un"
    base = "un"
    description = "unstructured (every variance and covariance over the times)"
    heterogeneous = True
    relative_covariance = True

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

    def natural(self, params: np.ndarray) -> dict[str, float]:
        """``phi``."""
        return {"phi": float(1.0 / (1.0 + np.exp(-np.asarray(params, dtype=float)[0])))}

    def _matrices(self, params: np.ndarray, times: np.ndarray, gradient: bool
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        r = float(np.asarray(params, dtype=float)[0])
        phi = 1.0 / (1.0 + np.exp(-r))
        lag = np.abs(times[..., :, None] - times[..., None, :])
        cov = phi ** lag
        if not gradient:
            return cov, None
        d_phi = phi * (1.0 - phi)
        grad = np.where(lag > 0, lag * phi ** np.maximum(lag - 1.0, 0.0), 0.0) * d_phi
        return cov, grad[None]

    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``phi^|t - s|`` over the distinct times (for tables)."""
        cov, grad = self._matrices(params, self.times, True)
        assert grad is not None
        return cov, grad

    def for_groups(self, params: np.ndarray, slots: np.ndarray, times: np.ndarray,
                   gradient: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``phi^|t - s|`` from each group's own times."""
        return self._matrices(params, np.asarray(times, dtype=float), gradient)

    def for_times(self, params: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relative covariance of groups with times ``(k, m)`` and its derivative."""
        cov, grad = self._matrices(params, np.asarray(times, dtype=float), True)
        assert grad is not None
        return cov, grad

    def covariance_at(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``phi^|t - s|`` at any times."""
        cov, _ = self._matrices(params, np.asarray(times, dtype=float), False)
        return cov


#: Residual structures by name (``residual=`` text); the parser lists them.
RESIDUAL_STRUCTURES: dict[str, type[ResidualStructure]] = {
    cls.name: cls for cls in (Independent, CS, CSH, UN, AR1, ARH1, Toep, ToepH, CAR1)
}
