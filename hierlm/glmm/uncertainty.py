"""Prediction error variances of GLMM ML fits with the group effects included.

A conditional prediction on the link scale is ``eta_i = x_i' beta_hat + z_i' b_hat``
with ``b_hat = Lambda u_hat(beta_hat)`` the conditional modes. Its error about
the true ``x_i' beta + z_i' b`` has, to first order (the Laplace approximation
at the mode, ``theta`` held at its estimate), the variance

    PEV_i = d_i' V_beta d_i + v_i' A^-1 v_i,

* ``v_i = Lambda' z_i`` (the row's loading on the spherical effects),
* ``A = Lambda' Z' W Z Lambda + I`` with ``W`` the Laplace weights at the mode
  (the matrix whose inverse gives lme4's ``condVar``, :meth:`GlmmResult.conditional_variances`),
* ``d_i = x_i - X' W Z Lambda A^-1 v_i``: the fixed-effect direction left after
  the modes' own response to ``beta`` (``d u_hat / d beta = -A^-1 Lambda' Z' W X``),
* ``V_beta`` the fit's fixed-effect covariance (lme4's ``vcov``).

So the covariance between the fixed effects and the modes is included (as
Henderson's prediction error variance of the Gaussian engine,
:mod:`hierlm.results.linear`); the uncertainty of ``theta`` (and of an NB2
dispersion) is not, as in every plug-in interval. With ``V_beta`` the Schur
complement ``(X'WX - X'WZ Lambda A^-1 Lambda'Z'WX)^-1`` this is exactly ``g' H^-1 g``
for the joint Hessian ``H`` of the penalised deviance in ``(beta, u)`` and ``g = (x_i,
v_i)``. Rows of a level the model never saw get no group effect of that block
(``v_i`` has no entry for it): their variance is that of the population part.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from hierlm.design.blocks import Design
from hierlm.results.linear import LinearFunction

__all__ = ["EffectSystem", "effect_system", "prediction_error_variance"]

_CHUNK = 2000  # rows of new data solved against A at once


class EffectSystem:
    """``Z Lambda``, the Laplace weights and a factor of ``A`` of one fit (built once per fit).

    Attributes
    ----------
    loading : scipy.sparse.csr_matrix
        ``Lambda`` (level-major per design block, block order of the design).
    zl : scipy.sparse.csr_matrix
        ``Z Lambda`` of the fitted rows, ``(n, M)``.
    weights : numpy.ndarray
        Laplace weights ``W`` at the mode, ``(n,)``.
    xwzl : numpy.ndarray
        ``X' W Z Lambda``, ``(p, M)``.
    """

    def __init__(self, fit: Any) -> None:
        design: Design = fit.design
        templates = fit._templates()
        self.loading = sp.csr_matrix(sp.block_diag(
            [sp.kron(sp.identity(b.n_levels), t) for b, t in zip(design.blocks, templates, strict=True)],
            format="csr"))
        z = sp.hstack(list(LinearFunction.from_design(design, True).random or []), format="csr")
        self.zl = sp.csr_matrix(z @ self.loading)
        problem = fit.problem
        self.weights = np.asarray(fit.family.laplace_weights(
            problem.y, fit.optimum.mode.eta, problem.prior_weights, fit.dispersion), dtype=float)
        weighted = sp.csr_matrix(sp.diags(self.weights) @ self.zl)
        self.xwzl = np.asarray((weighted.T @ np.asarray(design.X, dtype=float)).T)
        a = sp.csc_matrix(self.zl.T @ weighted + sp.identity(self.zl.shape[1]))
        self._lu = spla.splu(a)

    @property
    def size(self) -> int:
        """Number of spherical effects M."""
        return int(self.zl.shape[1])

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``A^-1 rhs`` for ``rhs`` of shape ``(M, k)``."""
        return np.asarray(self._lu.solve(np.asarray(rhs, dtype=float)))


def effect_system(fit: Any) -> EffectSystem:
    """The fit's :class:`EffectSystem` (computed once and kept on the fit)."""
    cached = fit.__dict__.get("_effect_system")
    if cached is None:
        cached = fit.__dict__["_effect_system"] = EffectSystem(fit)
    return cached  # type: ignore[no-any-return]


def prediction_error_variance(fit: Any, function: LinearFunction,
                              vcov_beta: np.ndarray | None = None) -> np.ndarray:
    """``PEV`` of linear functions ``a' beta + w' b`` on the link scale (module docstring).

    Parameters
    ----------
    fit : GlmmResult
        An ML fit.
    function : LinearFunction
        The rows (``LinearFunction.from_design(new_design, True)``); without
        group effects the variance is ``a' V_beta a``.
    vcov_beta : numpy.ndarray, optional
        Fixed-effect covariance to use instead of the fit's.

    Returns
    -------
    numpy.ndarray
        ``(k,)`` variances.
    """
    vcov = np.asarray(fit.optimum.vcov_beta if vcov_beta is None else vcov_beta, dtype=float)
    a = np.asarray(function.fixed, dtype=float)
    if function.random is None or not any(w.nnz for w in function.random):
        return np.asarray(np.einsum("ri,ij,rj->r", a, vcov, a))
    system = effect_system(fit)
    weights = sp.csr_matrix(sp.hstack(list(function.random), format="csr"))
    out = np.empty(function.size)
    for start in range(0, function.size, _CHUNK):
        rows = slice(start, min(start + _CHUNK, function.size))
        v = np.asarray((weights[rows] @ system.loading).todense())
        solved = system.solve(v.T).T
        d = a[rows] - solved @ system.xwzl.T
        out[rows] = np.einsum("ri,ij,rj->r", d, vcov, d) + np.einsum("rm,rm->r", v, solved)
    return out
