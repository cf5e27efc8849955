"""Sample a crossed marginal posterior in coordinates standardised at its mode.

For designs whose dense Schur complement is wide (InstEval: 1142 columns, 45 ms per
gradient) every leapfrog step is expensive, so NUTS is run on the affine image

    x = m + L z,     L L' = H^{-1},

of the unconstrained vector ``x`` (``[beta | log sigma | log sd]``), where ``m`` is the
mode of the log posterior and ``H`` its negative Hessian there (central differences of
the gradient). The density of ``z`` is that of ``x`` times the constant ``|L|``, so the
draws of ``x = m + L z`` are draws of the same posterior (an exact change of variables);
only the geometry NUTS sees changes: near the mode it is a standard normal, correlations
included, which a diagonal mass matrix cannot express. The sampler then starts in the
bulk (chains at ``z`` uniform on ``[-1, 1]`` per coordinate: within about one posterior
SD of the mode) with unit scales, so its warm-up has little to find.

The mode is found by BFGS on the sampler's own log posterior and gradient (about 30
evaluations); where the search fails or the Hessian is not positive definite, the map is
the identity around the least-squares start (the sampler's former behaviour).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

__all__ = ["PRECONDITION_WIDTH", "AffineMap", "mode_map", "precondition_applies"]

#: Dense Schur complements at least this wide are sampled in the standardised coordinates
#: (:func:`precondition_applies`): there a gradient costs tens of milliseconds, so the
#: mode search (about 40 gradients) is repaid many times over by shorter trajectories.
PRECONDITION_WIDTH = 400
_HESSIAN_STEP = 1e-4
_LogP = Callable[..., tuple[float, np.ndarray]]


def precondition_applies(dense_columns: int) -> bool:
    """Whether a crossed design with this many dense columns is sampled standardised."""
    return dense_columns >= PRECONDITION_WIDTH


@dataclass(frozen=True)
class AffineMap:
    """``x = centre + factor @ z``, the sampler's coordinates ``z`` to the model's ``x``.

    Attributes
    ----------
    centre : numpy.ndarray
        The mode (or the start, for the identity map).
    factor : numpy.ndarray
        Lower-triangular ``L`` with ``L L'`` the inverse negative Hessian at the mode.
    at_mode : bool
        Whether the mode search and the curvature succeeded (False: identity factor).
    """

    centre: np.ndarray
    factor: np.ndarray
    at_mode: bool

    def to_x(self, z: np.ndarray) -> np.ndarray:
        """The model's unconstrained vector at sampler coordinates ``z``."""
        return self.centre + self.factor @ np.asarray(z, dtype=float)

    def logp(self, logp: _LogP) -> _LogP:
        """``z -> (log p(m + L z), L' grad)``: the density of ``z`` up to the constant ``log|L|``."""
        factor = self.factor

        def logp_z(z: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
            value, grad = logp(self.to_x(z))
            if not np.isfinite(value):
                return -np.inf, np.zeros(factor.shape[1])
            return value, factor.T @ grad

        return logp_z


def _negative(logp: _LogP) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = logp(x)
        if not np.isfinite(value):
            return np.inf, np.zeros_like(x)
        return -float(value), -np.asarray(grad, dtype=float)

    return objective


def _hessian(logp: _LogP, x: np.ndarray) -> np.ndarray:
    """Negative Hessian of the log posterior by central differences of its gradient."""
    size = x.size
    out = np.empty((size, size))
    for i in range(size):
        step = np.zeros(size)
        step[i] = _HESSIAN_STEP
        up, down = logp(x + step), logp(x - step)
        if not (np.isfinite(up[0]) and np.isfinite(down[0])):
            return np.full((size, size), np.nan)
        out[:, i] = -(up[1] - down[1]) / (2.0 * _HESSIAN_STEP)
    return 0.5 * (out + out.T)


def mode_map(logp: _LogP, start: np.ndarray) -> AffineMap:
    """The affine map standardising ``logp`` at its mode, searched from ``start``.

    Parameters
    ----------
    logp : callable
        ``x -> (log posterior, gradient)``, the sampler's density.
    start : numpy.ndarray
        Where the search starts (the least-squares start of the chains).

    Returns
    -------
    AffineMap
        ``at_mode`` False (identity factor, centre ``start``) when the search does not
        converge to a finite point or the curvature there is not positive definite.
    """
    start = np.asarray(start, dtype=float)
    identity = AffineMap(start, np.eye(start.size), False)
    if not np.isfinite(logp(start)[0]):
        return identity
    result = minimize(_negative(logp), start, jac=True, method="BFGS",
                      options={"gtol": 1e-3, "maxiter": 200})
    mode = np.asarray(result.x, dtype=float)
    if not (np.all(np.isfinite(mode)) and np.isfinite(result.fun)):
        return identity
    curvature = _hessian(logp, mode)
    if not np.all(np.isfinite(curvature)):
        return identity
    values, vectors = np.linalg.eigh(curvature)
    if values.min() <= 1e-10 * max(values.max(), 1e-300):
        return identity
    covariance = (vectors / values) @ vectors.T
    return AffineMap(mode, np.linalg.cholesky(0.5 * (covariance + covariance.T)), True)
