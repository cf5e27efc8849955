"""Array functions of the Bayesian covariance structures, written once for NumPy and PyTensor.

Every function takes its parameters as NumPy arrays (or floats) or as PyTensor
variables and returns the same kind: the operations are chosen by
:func:`namespace` from the inputs (``numpy``, or ``pytensor.tensor`` as soon as
one input is symbolic), and only elementwise arithmetic, ``stack`` and integer
indexing are used, so the PyTensor graphs stay small and compile quickly on the
numba backend (see :mod:`hierlm.bayes.parameters`). PyTensor is imported only
when a symbolic input arrives.

Contents:

* transforms from unconstrained reals: :func:`interval_forward` (PyMC's
  log-odds interval transform, the one ``pm.Uniform`` uses), its inverse and
  log-Jacobian; :func:`log_forward` for scales;
* correlation matrices from natural parameters: :func:`cs_correlation`,
  :func:`power_correlation` (``ar1`` over integer lags, ``car1`` over real
  lags), :func:`toeplitz_autocorrelations` (Durbin-Levinson: partial
  autocorrelations in (-1, 1) to the autocorrelations of a positive-definite
  Toeplitz matrix), :func:`lag_matrix` (index a lag vector by a lag matrix);
* :func:`lkj_cholesky`: Stan's transform of ``q (q - 1) / 2`` reals to the
  Cholesky factor of a correlation matrix, with the LKJ log-density and the
  log-Jacobian;
* :func:`cholesky` (elementwise Cholesky-Banachiewicz for the small matrices
  of a structure), :func:`scale_rows` (``D L``) and :func:`matrix` (stack
  nested rows).

Matrices are returned as 2-d arrays/tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "namespace",
    "matrix",
    "interval_forward",
    "interval_backward",
    "interval_log_jacobian",
    "lkj_log_jacobian",
    "log_forward",
    "cs_correlation",
    "power_correlation",
    "toeplitz_autocorrelations",
    "lag_matrix",
    "cholesky",
    "scale_rows",
    "lkj_cholesky",
    "lkj_raw_from_cholesky",
]


def _is_symbolic(value: Any) -> bool:
    return type(value).__module__.startswith("pytensor")


def namespace(*values: Any) -> ModuleType:
    """``pytensor.tensor`` if any value is a PyTensor variable, else ``numpy``."""
    if any(_is_symbolic(v) for v in values):
        import pytensor.tensor as pt

        return pt
    return np


def matrix(rows: Sequence[Sequence[Any]], xp: ModuleType) -> Any:
    """Stack nested rows of scalars (floats or 0-d tensors) into a 2-d array/tensor."""
    if xp is np:
        return np.array([[float(v) for v in row] for row in rows], dtype=float)
    return xp.stack([xp.stack([xp.as_tensor_variable(v) for v in row]) for row in rows])


def _log_sigmoid(u: Any, xp: ModuleType) -> Any:
    """``log(1 / (1 + exp(-u)))``, stable for large ``|u|``."""
    return -(xp.maximum(-u, 0.0) + xp.log1p(xp.exp(-xp.abs(u))))


def interval_forward(u: Any, lower: float, upper: float) -> Any:
    """``x = lower + (upper - lower) sigmoid(u)``: PyMC's interval transform (``pm.Uniform``)."""
    xp = namespace(u)
    return lower + (upper - lower) * xp.exp(_log_sigmoid(u, xp))


def interval_backward(x: Any, lower: float, upper: float) -> Any:
    """The unconstrained ``u = log((x - lower) / (upper - x))`` of ``x`` in ``(lower, upper)``."""
    xp = namespace(x)
    return xp.log(x - lower) - xp.log(upper - x)


def interval_log_jacobian(u: Any, lower: float, upper: float) -> Any:
    """``log |dx/du| = log(upper - lower) + log sigmoid(u) + log sigmoid(-u)`` (elementwise)."""
    xp = namespace(u)
    return np.log(np.subtract(upper, lower)) + _log_sigmoid(u, xp) + _log_sigmoid(-u, xp)


def log_forward(u: Any) -> tuple[Any, Any]:
    """A scale ``exp(u)`` and its log-Jacobian ``u`` (elementwise)."""
    xp = namespace(u)
    return xp.exp(u), u


def cs_correlation(rho: Any, q: int) -> Any:
    """``R = (1 - rho) I + rho J`` of ``q`` terms (valid for ``-1/(q-1) < rho < 1``)."""
    xp = namespace(rho)
    eye = np.eye(q)
    return eye + rho * (1.0 - eye) if xp is np else xp.as_tensor(eye) + rho * (1.0 - eye)


def power_correlation(base: Any, lags: np.ndarray) -> Any:
    """``base ** lags`` elementwise: ``ar1`` (integer lags) or ``car1`` (real lags, base > 0).

    Integer lags use repeated products, so the gradient at ``base = 0`` is
    finite (``0 ** 0`` has no derivative in PyTensor's ``pow``).
    """
    xp = namespace(base)
    lags = np.asarray(lags)
    if np.issubdtype(lags.dtype, np.integer):
        powers = [1.0 + 0.0 * base]
        for _ in range(int(lags.max(initial=0))):
            powers.append(powers[-1] * base)
        return lag_matrix(powers, lags)
    return base ** lags if xp is np else base ** xp.as_tensor(lags)


def lag_matrix(values: Sequence[Any] | Any, lags: np.ndarray) -> Any:
    """``M[i, j] = values[lags[i, j]]`` for a vector of values by lag (``values[0]`` at lag 0)."""
    if isinstance(values, (list, tuple)):
        xp = namespace(*values)
        vector = (np.array([float(v) for v in values]) if xp is np
                  else xp.stack([xp.as_tensor_variable(v) for v in values]))
    else:
        vector = values
    return vector[np.asarray(lags, dtype=np.int64)]


def toeplitz_autocorrelations(pacf: Sequence[Any] | Any, count: int | None = None) -> list[Any]:
    """Autocorrelations ``[1, rho_1, ..., rho_m]`` of partial autocorrelations ``kappa_1..m``.

    The Durbin-Levinson recursion: ``rho_k = sum_j phi_{k-1, j} rho_{k-j} +
    kappa_k v_{k-1}`` with ``phi_k = (phi_{k-1} - kappa_k rev(phi_{k-1}),
    kappa_k)`` and ``v_k = v_{k-1} (1 - kappa_k^2)``. Every ``kappa`` in
    ``(-1, 1)`` gives a positive-definite Toeplitz matrix, and every such
    matrix has one ``kappa``: the map is a bijection (Barndorff-Nielsen and
    Schou 1973), so uniform(-1, 1) priors on ``kappa`` cover them all.

    Parameters
    ----------
    pacf : sequence or vector
        The partial autocorrelations.
    count : int, optional
        Their number (needed for a symbolic vector).
    """
    m = len(pacf) if count is None else count
    kappa = [pacf[k] for k in range(m)]
    rho: list[Any] = [1.0]
    phi: list[Any] = []
    v: Any = 1.0
    for k in range(1, m + 1):
        kk = kappa[k - 1]
        value = kk * v
        for j, coefficient in enumerate(phi, start=1):
            value = value + coefficient * rho[k - j]
        rho.append(value)
        phi = [phi[j] - kk * phi[len(phi) - 1 - j] for j in range(len(phi))] + [kk]
        v = v * (1.0 - kk * kk)
    return rho


def cholesky(mat: Any, q: int) -> Any:
    """Lower Cholesky factor of a ``q x q`` positive-definite matrix, elementwise."""
    xp = namespace(mat)
    if xp is np:
        return np.linalg.cholesky(np.asarray(mat, dtype=float))
    entries: list[list[Any]] = [[0.0] * q for _ in range(q)]
    for i in range(q):
        for j in range(i + 1):
            total = mat[i, j]
            for k in range(j):
                total = total - entries[i][k] * entries[j][k]
            entries[i][j] = xp.sqrt(total) if i == j else total / entries[j][j]
    return matrix(entries, xp)


def scale_rows(scales: Any, mat: Any) -> Any:
    """``diag(scales) @ mat`` (``scales``: one value, or one per row)."""
    xp = namespace(scales, mat)
    if xp is np:
        s = np.asarray(scales, dtype=float)
        return (s[:, None] if s.ndim else s) * np.asarray(mat)
    s = xp.as_tensor_variable(scales)
    return (s[:, None] if s.ndim else s) * mat


def lkj_cholesky(raw: Any, q: int, eta: Any) -> tuple[Any, Any]:
    """Cholesky factor of a correlation matrix and LKJ(eta) log-density plus log-Jacobian.

    Stan's transform: canonical partial correlations ``z = tanh(raw)`` (one per
    pair, row by row of the lower triangle); row ``i`` of ``L`` is filled left
    to right with ``L[i, j] = z sqrt(1 - sum_{k<j} L[i, k]^2)`` and a diagonal
    that gives the row unit length. The density is the LKJ density of ``L``,
    ``sum_i (q - i + 2 eta - 2) log L[i, i]`` (1-based ``i``, unnormalised).

    Returns
    -------
    chol, log_density : array/tensor and scalar
    """
    xp = namespace(raw, eta)
    cpc = [xp.tanh(raw[k]) for k in range(q * (q - 1) // 2)]
    log_jacobian: Any = 0.0
    for value in cpc:
        log_jacobian = log_jacobian + xp.log1p(-(value ** 2))
    rows: list[list[Any]] = []
    log_density: Any = 0.0
    position = 0
    for i in range(q):
        row: list[Any] = []
        sum_squares: Any = 0.0
        for j in range(i):
            if j == 0:
                entry = cpc[position]
            else:
                log_jacobian = log_jacobian + 0.5 * xp.log1p(-sum_squares)
                entry = cpc[position] * xp.sqrt(1.0 - sum_squares)
            position += 1
            row.append(entry)
            sum_squares = sum_squares + entry ** 2
        diagonal: Any = 1.0 if i == 0 else xp.sqrt(1.0 - sum_squares)
        if i > 0:
            log_density = log_density + (q - (i + 1) + 2 * eta - 2) * xp.log(diagonal)
        rows.append(row + [diagonal] + [0.0] * (q - i - 1))
    return matrix(rows, xp), log_density + log_jacobian


def lkj_log_jacobian(raw: np.ndarray, q: int) -> float:
    """The log-Jacobian of the map from the reals to the correlation matrix ``R`` (NumPy).

    LKJ(1) is constant in ``R``, so :func:`lkj_cholesky`'s density at ``eta = 1``
    (the density of the factor, ``sum_i (q - i) log L[i, i]``, plus Stan's
    transform's log-Jacobian) is that Jacobian, up to a constant. A posterior
    mode in the natural parameters (MAP) leaves it out.
    """
    return float(lkj_cholesky(np.asarray(raw, dtype=float), q, 1.0)[1])


def lkj_raw_from_cholesky(chol: np.ndarray) -> np.ndarray:
    """Inverse of :func:`lkj_cholesky`'s map (NumPy): the reals of a correlation Cholesky factor."""
    chol = np.asarray(chol, dtype=float)
    q = chol.shape[0]
    out = []
    for i in range(q):
        sum_squares = 0.0
        for j in range(i):
            z = chol[i, j] / math.sqrt(1.0 - sum_squares)
            out.append(math.atanh(z))
            sum_squares += chol[i, j] ** 2
    return np.array(out)
