"""Covariance structures of random-effect terms, one object per structure.

Every structure answers the same protocol (:class:`CovarianceStructure`):

* its parameters ``phi``: count, names, lower bounds and start;
* the relative covariance factor ``T(phi)`` (lower triangular, ``G = sigma^2 T T'``)
  and its derivative ``dT / dphi``, which the ML/REML gradient needs;
* which entries of ``T`` can be non-zero (the kernel's template pattern);
* its natural-scale parameters for tables (SDs relative to sigma, correlations);
* whether its terms are correlated (for ``varcorr`` rows).

``us`` (unstructured, lme4's ``(x | g)``) and ``diag`` (lme4's ``(x || g)``)
use lme4's theta as ``phi`` unchanged, so lme4's numbers and bounds carry over
exactly. The patterned structures (``cs``, ``ar1``, ``toep``, each with
homogeneous or heterogeneous variances) write ``G = sigma^2 D R(r) D`` with
``D = diag(s)`` (``s >= 0``, one value or one per column) and a correlation
matrix ``R`` driven by unconstrained reals ``r``; then ``T = D chol(R)``, and
``dT`` follows from ``dR`` by the derivative of the Cholesky factor,
``dL = L Phi(L^-1 dR L^-T)`` (``Phi``: lower triangle, halved diagonal).

Adding a structure is one new :class:`CorrelationModel` (its ``R(r)`` and
``dR/dr``) registered in :data:`STRUCTURES`.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from hierlm.errors import FitError, FormulaError
from hierlm.formula.structures import STRUCTURES

__all__ = [
    "CovarianceStructure",
    "Unstructured",
    "Diagonal",
    "Patterned",
    "CorrelationModel",
    "CompoundSymmetryCorrelation",
    "AR1Correlation",
    "ToeplitzCorrelation",
    "STRUCTURES",
    "make_structure",
    "require_lme4_structures",
    "FREE_LIMIT",
    "SCALE_LIMIT",
]


#: Limit of the optimiser on the free reals of correlations (tanh(7) = 1 - 1.7e-6).
FREE_LIMIT = 7.0
#: Limit on a patterned structure's SD relative to sigma. Beyond it sigma is not identified
#: (the residual is confounded with the term's diagonal, one observation per group and column)
#: and the criterion loses its digits; the fit warns and suggests a residual structure.
SCALE_LIMIT = 1e3


def _lme4_name(column: str) -> str:
    return "(Intercept)" if column == "Intercept" else column


class CovarianceStructure(ABC):
    """Protocol of a random-effect covariance structure of ``q`` terms."""

    #: Name as written in formulas (``"us"``, ``"cs"``, ...).
    name: str = ""

    def __init__(self, q: int) -> None:
        if q < 1:
            raise FormulaError(f"A {self.name} structure needs at least one term.")
        self.q = int(q)

    # --------------------------------------------------------- parameters
    @property
    @abstractmethod
    def n_params(self) -> int:
        """Number of covariance parameters (counted in AIC/BIC and LRT df)."""

    @abstractmethod
    def param_names(self, group: str, columns: tuple[str, ...]) -> tuple[str, ...]:
        """Names of the parameters ``phi`` (``theta`` rows of the fit)."""

    @abstractmethod
    def lower(self) -> np.ndarray:
        """Lower bounds of ``phi`` (0 for scale parameters, ``-inf`` for free ones)."""

    @abstractmethod
    def start(self) -> np.ndarray:
        """Starting ``phi``: unit relative SDs and no correlation."""

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The optimiser's box: :meth:`lower`, and finite limits on free correlation reals.

        A correlation real beyond +-``FREE_LIMIT`` is a correlation within 1e-6 of
        its bound, where the Cholesky factor loses its digits.
        """
        return self.lower(), np.full(self.n_params, np.inf)

    # ------------------------------------------------------------ factor
    @abstractmethod
    def template(self, phi: np.ndarray) -> np.ndarray:
        """Return the ``q x q`` lower-triangular relative factor ``T`` at ``phi``."""

    @abstractmethod
    def template_jacobian(self, phi: np.ndarray) -> np.ndarray:
        """Return ``dT / dphi``, shape ``(n_params, q, q)``."""

    @abstractmethod
    def kernel_pattern(self) -> list[tuple[int, int]]:
        """Entries ``(row, col)`` of ``T`` that may be non-zero, column-wise."""

    # ------------------------------------------------------------ report
    @property
    def has_correlation(self) -> bool:
        """True when the terms are correlated (``varcorr`` shows correlation rows)."""
        return self.q > 1

    @property
    def is_lme4(self) -> bool:
        """True when ``phi`` is lme4's theta (``us`` and ``diag``)."""
        return False

    def natural(self, phi: np.ndarray) -> dict[str, float]:
        """Structure parameters on their natural scale (e.g. ``rho``), for tables."""
        return {}

    def relative_covariance(self, phi: np.ndarray) -> np.ndarray:
        """Return ``T T'`` (the covariance divided by sigma^2)."""
        t = self.template(phi)
        return t @ t.T

    def describe(self) -> str:
        """Short label, e.g. ``"cs"`` or ``"ar1 (heterogeneous)"``."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(q={self.q})"


class Unstructured(CovarianceStructure):
    """General positive semi-definite covariance (``us``, lme4's ``(x | g)``)."""

    name = "us"

    def kernel_pattern(self) -> list[tuple[int, int]]:
        """All lower-triangular entries, column-wise (lme4's theta order)."""
        return [(i, j) for j in range(self.q) for i in range(j, self.q)]

    @property
    def n_params(self) -> int:
        """``q (q + 1) / 2``."""
        return len(self.kernel_pattern())

    @property
    def is_lme4(self) -> bool:
        """True: ``phi`` is lme4's theta."""
        return True

    def param_names(self, group: str, columns: tuple[str, ...]) -> tuple[str, ...]:
        """lme4's theta names, e.g. ``Subject.(Intercept)``, ``Subject.Days.(Intercept)``."""
        names = []
        for i, j in self.kernel_pattern():
            if i == j:
                names.append(f"{group}.{_lme4_name(columns[i])}")
            else:
                names.append(f"{group}.{_lme4_name(columns[i])}.{_lme4_name(columns[j])}")
        return tuple(names)

    def lower(self) -> np.ndarray:
        """0 on template diagonals, ``-inf`` elsewhere (lme4's)."""
        return np.array([0.0 if i == j else -np.inf for i, j in self.kernel_pattern()])

    def start(self) -> np.ndarray:
        """1 on diagonals, 0 elsewhere (lme4's)."""
        return np.array([1.0 if i == j else 0.0 for i, j in self.kernel_pattern()])

    def template(self, phi: np.ndarray) -> np.ndarray:
        """Fill the template's pattern with ``phi``."""
        out = np.zeros((self.q, self.q))
        rows, cols = zip(*self.kernel_pattern(), strict=True)
        out[list(rows), list(cols)] = phi
        return out

    def template_jacobian(self, phi: np.ndarray) -> np.ndarray:
        """Unit matrices: ``T`` is linear in ``phi``."""
        out = np.zeros((self.n_params, self.q, self.q))
        for k, (i, j) in enumerate(self.kernel_pattern()):
            out[k, i, j] = 1.0
        return out


class Diagonal(Unstructured):
    """Independent terms with their own variances (``diag``, lme4's ``(x || g)``)."""

    name = "diag"

    def kernel_pattern(self) -> list[tuple[int, int]]:
        """The diagonal only."""
        return [(i, i) for i in range(self.q)]

    @property
    def has_correlation(self) -> bool:
        """False: the terms are independent."""
        return False


# ------------------------------------------------------------ correlations
class CorrelationModel(ABC):
    """A correlation matrix ``R(r)`` of ``q`` terms driven by unconstrained reals ``r``."""

    name: str = ""

    def __init__(self, q: int) -> None:
        self.q = q

    @property
    @abstractmethod
    def n_params(self) -> int:
        """Number of reals ``r``."""

    @abstractmethod
    def param_labels(self) -> tuple[str, ...]:
        """Labels of the natural parameters (``rho``, ``rho1``, ...)."""

    @abstractmethod
    def start(self) -> np.ndarray:
        """``r`` giving the identity correlation."""

    @abstractmethod
    def natural(self, r: np.ndarray) -> np.ndarray:
        """The natural parameters (correlations) at ``r``."""

    @abstractmethod
    def matrix_and_gradient(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``R`` (q, q) and ``dR/dr`` (n_params, q, q)."""

    def reals(self, natural: np.ndarray) -> np.ndarray | None:
        """The ``r`` with :meth:`natural` equal to ``natural``, in closed form; None if none.

        Models without one are inverted numerically
        (:func:`hierlm.design.residual.base.correlation_reals`).
        """
        return None


def _lags(q: int) -> np.ndarray:
    index = np.arange(q)
    return np.abs(index[:, None] - index[None, :])


class CompoundSymmetryCorrelation(CorrelationModel):
    """Equal correlation ``rho`` between every pair, ``-1/(q-1) < rho < 1``."""

    name = "cs"

    def __init__(self, q: int) -> None:
        super().__init__(q)
        floor = -1.0 / (q - 1) if q > 1 else -1.0
        self._mid, self._half = (1.0 + floor) / 2.0, (1.0 - floor) / 2.0

    @property
    def n_params(self) -> int:
        """One correlation."""
        return 1 if self.q > 1 else 0

    def param_labels(self) -> tuple[str, ...]:
        """``("rho",)``."""
        return ("rho",)[: self.n_params]

    def start(self) -> np.ndarray:
        """The ``r`` with ``rho = 0``."""
        return np.array([np.arctanh(-self._mid / self._half)])[: self.n_params]

    def natural(self, r: np.ndarray) -> np.ndarray:
        """``rho`` at ``r``."""
        return self._mid + self._half * np.tanh(np.asarray(r, dtype=float))

    def natural_and_slope(self, r: float) -> tuple[float, float]:
        """``rho`` and ``d rho / d r`` at one ``r`` (Python floats, for closed-form evaluations)."""
        t = math.tanh(r)
        return self._mid + self._half * t, self._half * (1.0 - t * t)

    def reals(self, natural: np.ndarray) -> np.ndarray | None:
        """``r = atanh((rho - mid) / half)``."""
        return np.arctanh((np.asarray(natural, dtype=float) - self._mid) / self._half)

    @functools.cached_property
    def _eye_off(self) -> tuple[np.ndarray, np.ndarray]:
        """``I`` and ``J - I`` of size ``q`` (read-only; they do not depend on ``r``)."""
        eye = np.eye(self.q)
        off = 1.0 - eye
        eye.flags.writeable = False
        off.flags.writeable = False
        return eye, off

    def matrix_and_gradient(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``R = (1 - rho) I + rho J`` and its derivative in ``r``."""
        if self.n_params == 0:
            return np.eye(self.q), np.zeros((0, self.q, self.q))
        eye, off = self._eye_off
        rho = float(self.natural(r)[0])
        drho = self._half * (1.0 - np.tanh(float(r[0])) ** 2)
        return eye + rho * off, (drho * off)[None]


class AR1Correlation(CorrelationModel):
    """First-order autoregressive correlation ``rho^|i - j|`` over the term order."""

    name = "ar1"

    @property
    def n_params(self) -> int:
        """One correlation."""
        return 1 if self.q > 1 else 0

    def param_labels(self) -> tuple[str, ...]:
        """``("rho",)``."""
        return ("rho",)[: self.n_params]

    def start(self) -> np.ndarray:
        """``rho = 0``."""
        return np.zeros(self.n_params)

    def natural(self, r: np.ndarray) -> np.ndarray:
        """``rho = tanh(r)``."""
        return np.tanh(np.asarray(r, dtype=float))

    def reals(self, natural: np.ndarray) -> np.ndarray | None:
        """``r = atanh(rho)``."""
        return np.arctanh(np.asarray(natural, dtype=float))

    def matrix_and_gradient(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``R_ij = rho^|i-j|`` and ``dR/dr = |i-j| rho^(|i-j|-1) (1 - rho^2)``."""
        if self.n_params == 0:
            return np.eye(self.q), np.zeros((0, self.q, self.q))
        rho = float(np.tanh(r[0]))
        lag, lower_lag, positive = self._lag_arrays
        matrix = rho ** lag
        lower_power = np.where(positive, rho ** lower_lag, 0.0)
        return matrix, (lag * lower_power * (1.0 - rho ** 2))[None]

    @functools.cached_property
    def _lag_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``|i - j|``, ``max(|i - j| - 1, 0)`` and ``|i - j| > 0`` (read-only; not in ``r``)."""
        lag = _lags(self.q)
        arrays = (lag, np.maximum(lag - 1, 0), lag > 0)
        for array in arrays:
            array.flags.writeable = False
        return arrays


class ToeplitzCorrelation(CorrelationModel):
    """Banded (Toeplitz) correlation: one correlation per lag ``rho_1 ... rho_{q-1}``.

    The reals are the partial autocorrelations on the atanh scale,
    ``kappa_k = tanh(r_k)``; the Durbin-Levinson recursion turns any
    ``kappa`` in ``(-1, 1)`` into the autocorrelations of a positive-definite
    Toeplitz matrix, so the optimiser never leaves the valid set. The
    derivatives are carried through the recursion (forward mode).
    """

    name = "toep"

    @property
    def n_params(self) -> int:
        """``q - 1`` lag correlations."""
        return self.q - 1

    def param_labels(self) -> tuple[str, ...]:
        """``rho1 ... rho{q-1}`` (correlation at lag k)."""
        return tuple(f"rho{k}" for k in range(1, self.q))

    def start(self) -> np.ndarray:
        """All lag correlations 0."""
        return np.zeros(self.n_params)

    def _autocorrelations(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = self.n_params
        kappa = np.tanh(np.asarray(r, dtype=float))
        dkappa = 1.0 - kappa ** 2
        rho = np.zeros(m + 1)
        drho = np.zeros((m + 1, m))  # d rho_lag / d r_j
        rho[0] = 1.0
        phi = np.zeros(0)
        dphi = np.zeros((0, m))
        v, dv = 1.0, np.zeros(m)
        for k in range(1, m + 1):
            # rho_k = sum_j phi_{k-1,j} rho_{k-j} + kappa_k v_{k-1}
            lagged = rho[k - 1:0:-1] if k > 1 else np.zeros(0)
            dlagged = drho[k - 1:0:-1] if k > 1 else np.zeros((0, m))
            rho[k] = float(phi @ lagged) + kappa[k - 1] * v
            drho[k] = dphi.T @ lagged + dlagged.T @ phi + kappa[k - 1] * dv
            drho[k, k - 1] += dkappa[k - 1] * v
            new_phi = np.append(phi - kappa[k - 1] * phi[::-1], kappa[k - 1])
            new_dphi = np.vstack([dphi - kappa[k - 1] * dphi[::-1], np.zeros((1, m))])
            new_dphi[:k - 1, k - 1] -= phi[::-1] * dkappa[k - 1]
            new_dphi[k - 1, k - 1] = dkappa[k - 1]
            phi, dphi = new_phi, new_dphi
            dv = dv * (1.0 - kappa[k - 1] ** 2)
            dv[k - 1] -= 2.0 * kappa[k - 1] * dkappa[k - 1] * v
            v = v * (1.0 - kappa[k - 1] ** 2)
        return rho, drho

    def natural(self, r: np.ndarray) -> np.ndarray:
        """The lag correlations ``rho_1 ... rho_{q-1}``."""
        return self._autocorrelations(r)[0][1:]

    def matrix_and_gradient(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``R_ij = rho_|i-j|`` and its derivative in ``r``."""
        rho, drho = self._autocorrelations(r)
        lag = _lags(self.q)
        return rho[lag], np.moveaxis(drho[lag], -1, 0)


_CORRELATIONS: dict[str, type[CorrelationModel]] = {
    "cs": CompoundSymmetryCorrelation,
    "ar1": AR1Correlation,
    "toep": ToeplitzCorrelation,
}


def _cholesky_derivative(chol: np.ndarray, d_matrix: np.ndarray) -> np.ndarray:
    """``dL`` for ``L = chol(M)`` and each ``dM`` in ``d_matrix`` (k, q, q)."""
    inv = np.linalg.inv(chol)
    inner = inv @ d_matrix @ inv.T
    lower = np.tril(inner)
    lower[:, np.arange(chol.shape[0]), np.arange(chol.shape[0])] *= 0.5
    return chol @ lower


class Patterned(CovarianceStructure):
    """``G = sigma^2 D R(r) D``: scaled correlation model, homogeneous or heterogeneous.

    Parameters
    ----------
    q : int
        Number of terms.
    correlation : str
        ``"cs"``, ``"ar1"`` or ``"toep"``.
    homogeneous : bool
        One relative SD for every term (True) or one per term (False).
    """

    def __init__(self, q: int, correlation: str, homogeneous: bool = True) -> None:
        self.name = correlation
        super().__init__(q)
        self.correlation = _CORRELATIONS[correlation](q)
        self.homogeneous = bool(homogeneous)
        self.n_scale = 1 if self.homogeneous else self.q

    @property
    def n_params(self) -> int:
        """Scale parameters plus correlation parameters."""
        return self.n_scale + self.correlation.n_params

    def kernel_pattern(self) -> list[tuple[int, int]]:
        """All lower-triangular entries (``T`` is dense)."""
        return [(i, j) for j in range(self.q) for i in range(j, self.q)]

    def param_names(self, group: str, columns: tuple[str, ...]) -> tuple[str, ...]:
        """``g.sd`` or ``g.sd.<col>`` (relative SDs), then ``g.atanh_<rho>`` (free reals)."""
        if self.homogeneous:
            scales = [f"{group}.sd"]
        else:
            scales = [f"{group}.sd.{_lme4_name(c)}" for c in columns]
        free = [f"{group}.r_{label}" for label in self.correlation.param_labels()]
        return tuple(scales + free)

    def lower(self) -> np.ndarray:
        """0 for the relative SDs, ``-inf`` for the free correlation reals."""
        return np.concatenate([np.zeros(self.n_scale), np.full(self.correlation.n_params, -np.inf)])

    def start(self) -> np.ndarray:
        """Unit relative SDs and zero correlation."""
        return np.concatenate([np.ones(self.n_scale), self.correlation.start()])

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """SDs at or above 0; correlation reals within +-``FREE_LIMIT``."""
        k = self.correlation.n_params
        lower = np.concatenate([np.zeros(self.n_scale), np.full(k, -FREE_LIMIT)])
        upper = np.concatenate([np.full(self.n_scale, SCALE_LIMIT), np.full(k, FREE_LIMIT)])
        return lower, upper

    def _split(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        phi = np.asarray(phi, dtype=float)
        scales = phi[: self.n_scale]
        return (np.full(self.q, scales[0]) if self.homogeneous else scales), phi[self.n_scale:]

    def template(self, phi: np.ndarray) -> np.ndarray:
        """``T = D chol(R)``."""
        scales, free = self._split(phi)
        matrix, _ = self.correlation.matrix_and_gradient(free)
        return scales[:, None] * np.linalg.cholesky(matrix)

    def template_jacobian(self, phi: np.ndarray) -> np.ndarray:
        """``dT/ds`` (rows of ``chol(R)``) and ``D dL/dr``."""
        scales, free = self._split(phi)
        matrix, d_matrix = self.correlation.matrix_and_gradient(free)
        chol = np.linalg.cholesky(matrix)
        out = np.zeros((self.n_params, self.q, self.q))
        if self.homogeneous:
            out[0] = chol
        else:
            for i in range(self.q):
                out[i, i] = chol[i]
        if self.correlation.n_params:
            out[self.n_scale:] = scales[None, :, None] * _cholesky_derivative(chol, d_matrix)
        return out

    def natural(self, phi: np.ndarray) -> dict[str, float]:
        """The correlation parameters (``rho`` or ``rho1 ...``) at ``phi``."""
        _, free = self._split(phi)
        values = self.correlation.natural(free)
        return dict(zip(self.correlation.param_labels(), map(float, values), strict=True))

    def describe(self) -> str:
        """``"cs"`` or ``"cs (heterogeneous)"``."""
        return self.name if self.homogeneous else f"{self.name} (heterogeneous)"

    def __repr__(self) -> str:
        return f"Patterned({self.name!r}, q={self.q}, homogeneous={self.homogeneous})"


def make_structure(name: str, q: int, homogeneous: bool = True) -> CovarianceStructure:
    """Build the structure object for ``q`` terms.

    Parameters
    ----------
    name : str
        One of :data:`STRUCTURES`.
    q : int
        Number of terms of the block.
    homogeneous : bool
        For ``cs``, ``ar1`` and ``toep``: one variance for all terms.

    Returns
    -------
    CovarianceStructure

    Raises
    ------
    FormulaError
        For an unknown name.
    """
    if name == "us":
        return Unstructured(q)
    if name == "diag":
        return Diagonal(q)
    if name in _CORRELATIONS:
        return Patterned(q, name, homogeneous)
    raise FormulaError(f"Unknown covariance structure {name!r}; choose one of "
                       + ", ".join(f"{key} ({text})" for key, text in STRUCTURES.items()) + ".")


def require_lme4_structures(blocks: tuple, feature: str, residual: Any = None) -> None:
    """Refuse ``feature`` for blocks whose structure is not ``us``/``diag`` (not built there yet).

    Parameters
    ----------
    blocks : tuple of RandomBlock
        The design's blocks.
    feature : str
        What is refused, for the message (e.g. ``"the Bayesian engine"``).
    residual : ResidualDesign, optional
        The design's residual structure, refused too when given.

    Raises
    ------
    FitError
        Naming the blocks and what works for them.
    """
    patterned = [block.term for block in blocks if not block.structure.is_lme4]
    if residual is not None:
        raise FitError(
            f"{feature} does not support residual structures (residual={residual.describe()!r}) "
            "yet; fit the model with method='reml' or method='ml'.")
    if patterned:
        raise FitError(
            f"{feature} does not support the covariance structures of {', '.join(patterned)} "
            "yet; it takes us(...) / (x | g) and diag(...) / (x || g) terms. Fit these models "
            "with method='reml' or method='ml' (estimates, varcorr, Satterthwaite df, LRT, "
            "AIC/BIC), or write the terms as us(...)."
        )
