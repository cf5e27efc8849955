"""Closed-form inverses of residual correlation matrices over one time pattern.

For some structures the inverse ``S^-1`` of a group's correlation matrix is a
combination ``sum_k c_k(params) B_k`` of a few fixed symmetric matrices ``B_k``
that depend on the group's times only, and ``log|S|`` is a closed-form
function of the parameters:

* compound symmetry, ``S = (1 - rho) I + rho J`` of size ``m``:
  ``S^-1 = I / (1 - rho) - rho J / ((1 - rho)(1 + (m - 1) rho))`` and
  ``log|S| = (m - 1) log(1 - rho) + log(1 + (m - 1) rho)``;
* autoregressive structures, ``S_ij = b^|t_i - t_j|`` at sorted times (``ar1``:
  ``b = rho`` on the integer grid; ``car1``: ``b = phi`` in continuous time): a
  Markov chain, ``x_1 ~ N(0, 1)``, ``x_{i+1} | x_i ~ N(f_i x_i, 1 - f_i^2)`` with
  ``f_i = b^(t_{i+1} - t_i)``, so
  ``S^-1 = e_1 e_1' + sum_i (e_{i+1} - f_i e_i)(e_{i+1} - f_i e_i)' / (1 - f_i^2)``
  (tridiagonal) and ``log|S| = sum_i log(1 - f_i^2)``. Consecutive pairs with the
  same gap share their ``f``: the basis has three matrices per distinct gap.

A :class:`PrecisionForm` holds the basis of one time pattern and gives the
coefficients, ``log|S|`` and their exact derivatives in the structure's
parameters. A criterion that sums quadratic forms ``<S^-1, C>`` over many
groups with one pattern reduces each cross-product ``C`` to ``K`` numbers once
(``basis @ C``), and an evaluation then costs ``O(K)`` per quantity instead of
a factorisation (:mod:`hierlm.lmm.grouped_shared`). Structures offer their form
through :meth:`~hierlm.design.residual.base.ResidualStructure.precision_form`.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from hierlm.errors import FitError

__all__ = ["PrecisionForm", "CompoundSymmetryPrecision", "MarkovPrecision"]

_NOT_PD = "A group's covariance matrix is not positive definite at these parameters."

#: ``(coefficients (1 or 1 + n_params, K), log|S|, d log|S| (n_params,) or None)``.
Coefficients = tuple[np.ndarray, float, np.ndarray | None]


class PrecisionForm(ABC):
    """``S^-1 = sum_k c_k(params) B_k`` over one time pattern, with ``log|S|`` in closed form.

    Attributes
    ----------
    basis : numpy.ndarray
        ``(K, m * m)``: the fixed symmetric matrices ``B_k``, flattened (read-only).
    """

    basis: np.ndarray

    @abstractmethod
    def coefficients(self, params: np.ndarray, gradient: bool) -> Coefficients:
        """The coefficients ``c_k``, ``log|S|`` and (``gradient``) their derivatives.

        Parameters
        ----------
        params : numpy.ndarray
            The structure's parameters (the first one drives the correlation; the
            derivatives have one entry per entry of ``params``).
        gradient : bool
            Also return the derivatives.

        Returns
        -------
        coefficients : numpy.ndarray
            ``(1, K)``: the ``c_k``; with ``gradient``, ``(1 + len(params), K)``: the ``c_k``,
            then their derivatives in each parameter (one row each), so that one product
            with the reduced cross-products gives the sums and their derivatives.
        logdet : float
            ``log|S|``.
        d_logdet : numpy.ndarray or None
            ``(len(params),)`` its derivatives (None without ``gradient``).

        Raises
        ------
        FitError
            When ``S`` is not positive definite at ``params``.
        """


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class CompoundSymmetryPrecision(PrecisionForm):
    """``S = (1 - rho) I + rho J`` of size ``m``; basis ``I``, ``J``.

    Parameters
    ----------
    m : int
        Group size.
    rho_of : callable
        ``r -> (rho, d rho / d r)`` of the structure's first parameter.
    """

    def __init__(self, m: int, rho_of: Callable[[float], tuple[float, float]]) -> None:
        self.m = int(m)
        self._rho_of = rho_of
        self.basis = _cs_basis(self.m)

    def coefficients(self, params: np.ndarray, gradient: bool) -> Coefficients:
        """``1 / (1 - rho)`` (of ``I``), ``-rho / ((1 - rho)(1 + (m - 1) rho))`` (of ``J``)."""
        m = self.m
        rho, d_rho = self._rho_of(float(params[0]))
        low, high = 1.0 - rho, 1.0 + (m - 1) * rho  # the eigenvalues, m - 1 times and once
        if not (low > 0.0 and high > 0.0):
            raise FitError(_NOT_PD)
        both = low * high
        logdet = (m - 1) * math.log(low) + math.log(high)
        values = [1.0 / low, -rho / both]
        if not gradient:
            return np.array([values]), logdet, None
        slopes = [d_rho / (low * low), -d_rho * (1.0 + (m - 1) * rho * rho) / (both * both)]
        return _with_gradient(values, slopes, len(params), -d_rho * (m - 1) * m * rho / both, logdet)


class MarkovPrecision(PrecisionForm):
    """``S_ij = b^|t_i - t_j|`` at sorted times: the tridiagonal inverse of a Markov chain.

    Parameters
    ----------
    gaps : numpy.ndarray
        ``(m - 1,)`` positive differences of consecutive times (in the units of the
        exponent: grid steps for ``ar1``, time for ``car1``).
    base_of : callable
        ``r -> (b, d b / d r)`` of the structure's first parameter, with ``b > 0``
        wherever a gap is below 1 (``car1``; ``ar1``'s gaps are whole steps, any ``b``).

    Notes
    -----
    The basis is ``e_1 e_1'`` and, per distinct gap ``g``, the sums over the pairs
    ``(i, i + 1)`` with that gap of ``e_{i+1} e_{i+1}'``, ``e_i e_{i+1}' + e_{i+1} e_i'``
    and ``e_i e_i'``, with coefficients ``1``, ``1 / s``, ``-f / s``, ``f^2 / s``
    (``f = b^g``, ``s = 1 - f^2``).
    """

    def __init__(self, gaps: np.ndarray, base_of: Callable[[float], tuple[float, float]]) -> None:
        self._base_of = base_of
        #: the distinct gaps, how many consecutive pairs have each (Python numbers), the basis
        self.gaps, self.counts, self.basis = _markov_layout(tuple(np.asarray(gaps, dtype=float).tolist()))

    def coefficients(self, params: np.ndarray, gradient: bool) -> Coefficients:
        """``1``, then ``(1 / s, -f / s, f^2 / s)`` per distinct gap."""
        b, d_b = self._base_of(float(params[0]))
        c, dc_row = [1.0], [0.0]
        logdet = d_logdet = 0.0
        for g, count in zip(self.gaps, self.counts, strict=True):
            f = b ** g
            s = 1.0 - f * f
            if not s > 0.0:
                raise FitError(_NOT_PD)
            c += (1.0 / s, -f / s, f * f / s)
            logdet += count * math.log(s)
            if gradient:  # d f / d r = g b^(g - 1) d b (0^0 = 1 at g = 1)
                power = b ** (g - 1.0) if b != 0.0 else float(g == 1.0)
                d_f = g * power * d_b
                s2 = s * s
                dc_row += (2.0 * f * d_f / s2, -(1.0 + f * f) * d_f / s2, 2.0 * f * d_f / s2)
                d_logdet -= count * 2.0 * f * d_f / s
        if not gradient:
            return np.array([c]), logdet, None
        return _with_gradient(c, dc_row, len(params), d_logdet, logdet)


def _with_gradient(values: list[float], slopes: list[float], n_params: int, d_logdet: float,
                   logdet: float) -> Coefficients:
    """:meth:`PrecisionForm.coefficients`'s output when only the first parameter moves ``S``."""
    zeros = [0.0] * len(values)
    rows = np.array([values, slopes] + [zeros] * (n_params - 1))
    return rows, logdet, np.array([d_logdet] + [0.0] * (n_params - 1))


@functools.lru_cache(maxsize=256)
def _cs_basis(m: int) -> np.ndarray:
    """``I`` and ``J`` of size ``m``, flattened (read-only; one per size)."""
    return _read_only(np.stack([np.eye(m).ravel(), np.ones(m * m)]))


@functools.lru_cache(maxsize=256)
def _markov_layout(gaps: tuple[float, ...]
                   ) -> tuple[tuple[float, ...], tuple[int, ...], np.ndarray]:
    """The distinct gaps, their counts and :class:`MarkovPrecision`'s basis (one per pattern)."""
    steps = np.array(gaps, dtype=float)
    if steps.size and not np.all(steps > 0):
        raise ValueError("MarkovPrecision needs strictly increasing times (positive gaps).")
    m = steps.size + 1
    if steps.size and bool((steps == steps[0]).all()):  # equally spaced: one gap
        distinct, which = steps[:1], np.zeros(steps.size, dtype=np.int64)
    else:
        distinct, which = np.unique(steps, return_inverse=True)
    which = which.ravel()
    counts = np.bincount(which, minlength=distinct.size)
    basis = np.zeros((1 + 3 * distinct.size, m, m))
    basis[0, 0, 0] = 1.0
    pair, first = np.arange(m - 1), 1 + 3 * which  # each pair's three matrices
    basis[first, pair + 1, pair + 1] = 1.0
    basis[first + 1, pair, pair + 1] = 1.0
    basis[first + 1, pair + 1, pair] = 1.0
    basis[first + 2, pair, pair] = 1.0
    return (tuple(float(g) for g in distinct), tuple(int(n) for n in counts),
            _read_only(basis.reshape(basis.shape[0], m * m)))
