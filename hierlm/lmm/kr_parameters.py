"""The covariance parameters of Kenward-Roger's correction, one piece of ``Sigma`` at a time.

``Sigma = sum_b Z_b G_b Z_b' + sigma^2 Omega``: one piece per random-effect
block and one for the residuals. Each piece has its covariance parameters
``gamma`` (SAS's scale, see :mod:`hierlm.lmm.kenward_roger`), its matrix and
exact first derivatives in ``gamma`` (the structures' derivatives in their own
parameters, by the chain rule through the piece's map from ``gamma`` to them,
whose Jacobian is a central difference of that small map), and, when it is not
linear in ``gamma``, second derivatives (central differences of the first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.design.residual.base import correlation_reals
from hierlm.errors import FitError

__all__ = ["CovariancePiece", "covariance_pieces"]

#: Relative steps of the central differences (Jacobian of the map; second derivatives).
JACOBIAN_STEP = 1e-6
SECOND_STEP = 1e-4


class CovariancePiece:
    """One additive piece of ``Sigma`` in its covariance parameters ``gamma``."""

    def __init__(self, names: tuple[str, ...], gamma: np.ndarray, linear: bool) -> None:
        self.names = names
        self.gamma = np.asarray(gamma, dtype=float)
        self.linear = linear

    def _theta(self, gamma: np.ndarray) -> np.ndarray:
        """The piece's own parameters at ``gamma``."""
        raise NotImplementedError

    def _gamma(self, theta: np.ndarray) -> np.ndarray:
        """``gamma`` at the piece's own parameters (the forward map, cheap)."""
        raise NotImplementedError

    def _theta_and_jacobian(self, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``theta(gamma)`` and ``d theta / d gamma``, the inverse of the forward map's Jacobian."""
        theta = self._theta(gamma)
        columns = []
        for t, h in enumerate(self._steps(theta, JACOBIAN_STEP)):
            up, down = theta.copy(), theta.copy()
            up[t] += h
            down[t] -= h
            columns.append((self._gamma(up) - self._gamma(down)) / (2.0 * h))
        return theta, np.linalg.inv(np.column_stack(columns))

    def _analytic(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The piece's matrix and its exact derivatives in its own parameters."""
        raise NotImplementedError

    def _steps(self, gamma: np.ndarray, relative: float) -> np.ndarray:
        return relative * np.maximum(np.abs(gamma), 1e-2)

    def matrices(self, gamma: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The piece's ``(n, n)`` matrix at ``gamma`` and its derivative in each ``gamma_r``."""
        theta, jacobian = self._theta_and_jacobian(np.asarray(gamma, dtype=float))
        matrix, d_theta = self._analytic(theta)
        return matrix, [np.tensordot(jacobian[:, r], d_theta, axes=(0, 0))
                        for r in range(jacobian.shape[1])]

    def _analytic_projected(self, theta: np.ndarray, a: np.ndarray) -> np.ndarray:
        """``A' dM A`` in the piece's own parameters (dense unless a piece has better)."""
        _, d_theta = self._analytic(theta)
        return np.einsum("np,knm,mq->kpq", a, d_theta, a, optimize=True)

    def projected(self, gamma: np.ndarray, a: np.ndarray) -> np.ndarray:
        """``A' (d Sigma / d gamma_r) A`` for each ``r``, ``(k, p, p)``."""
        theta, jacobian = self._theta_and_jacobian(np.asarray(gamma, dtype=float))
        return np.tensordot(jacobian.T, self._analytic_projected(theta, a), axes=(1, 0))

    def second_derivatives(self, a: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
        """``A' (d^2 Sigma / d gamma_r d gamma_s) A`` (symmetrised central differences).

        ``A = Sigma^-1 X``: the projection is all Kenward-Roger's ``R_rs`` needs.
        """
        if self.linear:
            return {}
        steps = self._steps(self.gamma, SECOND_STEP)
        rows: list[np.ndarray] = []
        for r, h in enumerate(steps):
            up, down = self.gamma.copy(), self.gamma.copy()
            up[r] += h
            down[r] -= h
            rows.append((self.projected(up, a) - self.projected(down, a)) / (2.0 * h))
        k = len(steps)
        return {(r, s): 0.5 * (rows[r][s] + rows[s][r]) for r in range(k) for s in range(k)}


class _LinearBlock(CovariancePiece):
    """A ``us``/``diag`` block: ``Z G Z'`` is linear in the entries of ``G`` (pbkrtest's)."""

    def __init__(self, block: Any, covariance: np.ndarray) -> None:
        entries = [(a, b) for b in range(block.q) for a in range(b, block.q)
                   if block.correlated or a == b]
        codes = np.asarray(block.codes)
        z = np.asarray(block.z, dtype=float)
        same = (codes[:, None] == codes[None, :]).astype(float)
        self._basis = []
        for a, b in entries:
            outer = np.outer(z[:, a], z[:, b])
            self._basis.append(same * (outer + outer.T if a != b else outer))
        names = tuple(f"{block.group}.cov({block.columns[a]},{block.columns[b]})" for a, b in entries)
        super().__init__(names, np.array([covariance[a, b] for a, b in entries]), linear=True)

    def matrices(self, gamma: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """``sum_r gamma_r G_r`` and ``G_r``."""
        return sum(g * m for g, m in zip(gamma, self._basis, strict=True)), list(self._basis)  # type: ignore[return-value]


class _PatternedBlock(CovariancePiece):
    """A patterned block ``G = D R D``: variances and natural correlations (non-linear)."""

    def __init__(self, block: Any, phi: np.ndarray, sigma: float) -> None:
        self._block = block
        self._structure = block.structure
        codes = np.asarray(block.codes)
        self._same = (codes[:, None] == codes[None, :]).astype(float)
        self._z = np.asarray(block.z, dtype=float)
        n_scale = self._structure.n_scale
        variances = (sigma * np.asarray(phi[:n_scale], dtype=float)) ** 2
        values = self._structure.correlation.natural(np.asarray(phi[n_scale:], dtype=float))
        names = tuple(f"{block.group}.var{k}" for k in range(n_scale)) + tuple(
            f"{block.group}.{label}" for label in self._structure.correlation.param_labels())
        super().__init__(names, np.concatenate([variances, values]), linear=False)

    def _theta(self, gamma: np.ndarray) -> np.ndarray:
        n_scale = self._structure.n_scale
        if np.any(gamma[:n_scale] <= 0):
            raise FitError(f"Kenward-Roger's method needs the variances of {self._block.term} "
                           "inside the parameter space (a variance is 0 at the optimum).")
        reals = correlation_reals(self._structure.correlation, gamma[n_scale:])
        return np.concatenate([np.sqrt(gamma[:n_scale]), reals])  # absolute-scale phi

    def _gamma(self, theta: np.ndarray) -> np.ndarray:
        n_scale = self._structure.n_scale
        return np.concatenate([theta[:n_scale] ** 2,
                               self._structure.correlation.natural(theta[n_scale:])])

    def _analytic(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        template = self._structure.template(theta)
        zt = self._z @ template
        matrix = self._same * (zt @ zt.T)
        grads = []
        for d_template in self._structure.template_jacobian(theta):
            cross = (self._z @ d_template) @ zt.T
            grads.append(self._same * (cross + cross.T))
        return matrix, np.stack(grads)


class _Residual(CovariancePiece):
    """``sigma^2 M S M``: the residual structure's covariance parameters, then ``variance=`` ratios."""

    def __init__(self, kernel: Any, params: np.ndarray, sigma: float) -> None:
        self._kernel = kernel
        residual = kernel.residual
        self._structure = residual.structure
        self._n_struct = self._structure.n_params
        params = np.asarray(params, dtype=float)
        gamma = self._structure.covariance_parameters(params[: self._n_struct], sigma ** 2)
        ratios = np.exp(params[self._n_struct:])
        names = tuple(f"residual.{name}" for name in self._structure.covariance_parameter_names())
        if residual.variance_function is not None:
            names += tuple(name.replace("log_ratio", "ratio")
                           for name in residual.variance_function.names())
        self._n_gamma = gamma.size
        super().__init__(names, np.concatenate([gamma, ratios]),
                         linear=self._structure.linear_covariance and ratios.size == 0)

    def _theta(self, gamma: np.ndarray) -> np.ndarray:
        params, sigma2 = self._structure.from_covariance_parameters(gamma[: self._n_gamma])
        return np.concatenate([params, np.log(gamma[self._n_gamma:]), [sigma2]])

    def _gamma(self, theta: np.ndarray) -> np.ndarray:
        params, sigma2 = theta[: self._n_struct], float(theta[-1])
        return np.concatenate([self._structure.covariance_parameters(params, sigma2),
                               np.exp(theta[self._n_struct:-1])])

    def _analytic(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sigma2 = theta[-1]
        omega, d_omega = self._kernel.residual_dense(theta[:-1])
        return sigma2 * omega, np.concatenate([sigma2 * d_omega, omega[None]])

    def _analytic_projected(self, theta: np.ndarray, a: np.ndarray) -> np.ndarray:
        omega, d_params = self._kernel.residual_projected(theta[:-1], a)
        return np.concatenate([theta[-1] * d_params, omega[None]])


class _Independent(CovariancePiece):
    """``sigma^2 I`` (no residual structure)."""

    def __init__(self, n: int, sigma: float) -> None:
        self._n = n
        super().__init__(("residual.variance",), np.array([sigma ** 2]), linear=True)

    def matrices(self, gamma: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """``sigma^2 I`` and ``I``."""
        return gamma[0] * np.eye(self._n), [np.eye(self._n)]


def covariance_pieces(fit: Any) -> list[CovariancePiece]:
    """The pieces of a fit's ``Sigma``: its blocks in order, then the residuals."""
    design = fit.design
    theta = np.asarray(fit.theta, dtype=float)
    sigma = float(fit.sigma)
    pieces: list[CovariancePiece] = []
    offset = 0
    covariances = fit.covariances()
    for block, covariance in zip(design.blocks, covariances, strict=True):
        size = block.structure.n_params
        part = theta[offset:offset + size]
        offset += size
        if block.structure.is_lme4:
            pieces.append(_LinearBlock(block, np.asarray(covariance, dtype=float)))
        else:
            pieces.append(_PatternedBlock(block, part, sigma))
    if design.residual is None:
        pieces.append(_Independent(np.asarray(design.X).shape[0], sigma))  # the square-root rows if row-less
    else:
        pieces.append(_Residual(fit.kernel, theta[offset:], sigma))
    return pieces
