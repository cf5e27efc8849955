"""The protocol of residual structures (:class:`ResidualStructure`).

Besides the matrices the engines need, each structure maps its parameters to
*covariance parameters* (:meth:`ResidualStructure.covariance_parameters`):
the scale on which SAS PROC MIXED reports them (``cs``: the common covariance
and the residual variance; ``ar1``: the variance and ``rho``; ``un``: every
variance and covariance), and back. Kenward-Roger's small-sample correction
is computed on that scale (:mod:`hierlm.lmm.kenward_roger`); structures that
are linear in it (``cs``, ``toep``, ``un``, ``independent``) have no second
derivatives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from scipy import optimize

from hierlm.design.covariance import FREE_LIMIT, CorrelationModel
from hierlm.design.residual.precision import PrecisionForm
from hierlm.errors import DataError, FitError

__all__ = ["ResidualStructure", "correlation_reals"]


def correlation_reals(model: CorrelationModel, natural: np.ndarray) -> np.ndarray:
    """The free reals ``r`` of a correlation model with ``natural(r)`` equal to ``natural``.

    Solved numerically (every model's ``natural`` is smooth and one-to-one), so a
    new correlation model needs no inverse of its own.
    """
    target = np.asarray(natural, dtype=float)
    if target.size == 0:
        return np.zeros(0)
    closed = model.reals(target)
    if closed is not None and bool(np.isfinite(closed).all()):
        return np.asarray(closed, dtype=float)
    direct = optimize.root(lambda r: model.natural(r) - target, np.zeros(target.size),
                           method="hybr", tol=1e-14)
    if direct.success and np.max(np.abs(model.natural(direct.x) - target)) <= 1e-12:
        return np.asarray(direct.x, dtype=float)
    reals = np.zeros(target.size)
    # a path from no correlation (r = 0) to the target keeps every solve near its start
    for fraction in (0.25, 0.5, 0.75, 0.9, 1.0):
        goal = fraction * target
        solution = optimize.root(lambda r, goal=goal: model.natural(r) - goal, reals,
                                 method="hybr", tol=1e-14)
        reals = solution.x
    if np.max(np.abs(model.natural(reals) - target)) > 1e-10:
        raise FitError(f"Correlations {target} are outside the valid range of {model.name}.")
    return np.asarray(reals, dtype=float)


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
        out = object.__new__(type(self))  # (copy.copy's shallow copy, without its dispatch)
        out.__dict__.update(self.__dict__)
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

    def moment_start(self, correlation: np.ndarray) -> np.ndarray:
        """A start from the empirical correlation of OLS residuals over the distinct times.

        ``correlation`` is ``(T, T)``, NaN where no group has both times. The default is
        :meth:`start`; structures with one correlation parameter override it (fewer
        evaluations of the criterion).
        """
        return self.start()

    def _lag_start(self, correlation: np.ndarray, lags: np.ndarray,
                   to_reals: Callable[[float], float]) -> np.ndarray:
        """``rho`` from the mean correlation at the smallest lag ``L``: ``c^(1/L)``."""
        start = self.start()
        valid = np.isfinite(correlation) & (lags > 0)
        if not valid.any():
            return start
        smallest = lags[valid].min()
        # the lags numpy's isclose(lags, smallest) finds (rtol 1e-5, atol 1e-8), without its cost
        near = valid & (np.abs(lags - smallest) <= 1e-8 + 1e-5 * abs(smallest))
        mean = float(correlation[near].sum() / np.count_nonzero(near))
        if not 0.05 < mean < 0.999:  # none or negative: keep the default start
            return start
        start[0] = to_reals(min(mean ** (1.0 / smallest), 0.99))
        return start

    @abstractmethod
    def natural(self, params: np.ndarray) -> dict[str, float]:
        """Natural-scale parameters for tables (``rho``, ``phi``, ``ratio.<time>``)."""

    # ------------------------------------------------------------ matrices
    @abstractmethod
    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relative covariance over the distinct times ``(T, T)`` and its derivative."""

    #: Each natural parameter is a monotone function of one parameter, in order (profiles).
    per_coordinate_natural: ClassVar[bool] = True

    #: :meth:`for_groups` indexes :meth:`over_times` by slots (callers may pass it in, ``over``).
    slot_based: ClassVar[bool] = True

    def for_groups(self, params: np.ndarray, slots: np.ndarray, times: np.ndarray,
                   gradient: bool = True,
                   over: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
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
        over : tuple of numpy.ndarray, optional
            :meth:`over_times` at ``params``, computed once by a caller with many batches.
        """
        full, d_full = self.over_times(params) if over is None else over
        rows, cols = slots[:, :, None], slots[:, None, :]
        return full[rows, cols], (d_full[:, rows, cols] if gradient else None)

    def precision_form(self, slots: np.ndarray, times: np.ndarray) -> PrecisionForm | None:
        """``S^-1`` of one time pattern in closed form (:mod:`~hierlm.design.residual.precision`).

        Parameters
        ----------
        slots : numpy.ndarray
            ``(m,)`` index of each of a group's times among the distinct times, in time order.
        times : numpy.ndarray
            ``(m,)`` the time values.

        Returns
        -------
        PrecisionForm or None
            None (the default) when the structure has no closed form for these times; the
            engines then factorise ``S``.
        """
        return None

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

    # ------------------------------------------------ covariance parameters
    #: The covariance is linear in the covariance parameters (no second derivatives).
    linear_covariance: ClassVar[bool] = False

    @abstractmethod
    def covariance_parameter_names(self) -> tuple[str, ...]:
        """Names of the covariance parameters (SAS's scale, e.g. ``variance``, ``rho``)."""

    @abstractmethod
    def covariance_parameters(self, params: np.ndarray, sigma2: float) -> np.ndarray:
        """Covariance parameters of ``sigma^2 S(params)``."""

    @abstractmethod
    def from_covariance_parameters(self, gamma: np.ndarray) -> tuple[np.ndarray, float]:
        """Parameters and ``sigma^2`` back from :meth:`covariance_parameters`."""

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


