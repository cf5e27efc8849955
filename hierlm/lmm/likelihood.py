"""The Gaussian marginal log-likelihood at given parameters, and its exact gradient.

One definition serves every engine: ML/REML profile it, MAP adds a log-prior
to it and the marginal NUTS formulation differentiates it. It is built on
the factorisation of the ML/REML criterion that :func:`criterion_for`
chooses for a design:

* :class:`~hierlm.lmm.objective.LmmObjective` (lme4's theta; one factor,
  nested and crossed designs), also on an orthonormal basis of X;
* :class:`~hierlm.lmm.parameters.StructuredObjective` (patterned
  random-effect structures: the chain rule through the structure's
  Jacobian);
* :class:`~hierlm.lmm.grouped.GroupedObjective` (residual structures, per
  group ``W_i``).

With ``u(beta)`` the penalised least-squares solution at the given beta,

    -2 log p(y | beta, phi, sigma) = log|L|^2 + n log(2 pi sigma^2)
                                     + pwrss(beta) / sigma^2,
    pwrss(beta) = |y - X beta - Z Lambda u(beta)|^2 + |u(beta)|^2
                = r2 + |R_X (beta - beta_hat)|^2,

(``log|L|^2 -> sum_i log|W_i|`` and ``pwrss -> sum_i r_i'W_i^-1 r_i`` with a
residual structure). Prior weights (``Var(y_i) = sigma^2 / w_i``) enter through
the weighted cross-products and add ``+ sum_i log(w_i) / 2``. The gradient in
phi follows by the envelope theorem at ``u(beta)`` plus the log-determinant's
derivative the criterion already has; in beta it is
``-R_X'R_X (beta - beta_hat) / sigma^2``. The REML likelihood (beta integrated
out under a flat prior) is

    -2 log p_R(y | phi, sigma) = log|L|^2 + log|R_X|^2 + (n - p) log(2 pi sigma^2)
                                 + r2 / sigma^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.design.blocks import Design
from hierlm.lmm.grouped import GroupedObjective
from hierlm.lmm.objective import LmmObjective
from hierlm.lmm.parameters import Criterion, StructuredObjective, criterion_for

__all__ = ["LikelihoodValue", "GaussianLikelihood"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class LikelihoodValue:
    """The log-likelihood at one point and its gradient.

    Attributes
    ----------
    value : float
        ``log p(y | beta, phi, sigma)`` (or the REML likelihood, without beta).
    d_beta : numpy.ndarray
        Gradient in beta (empty for REML).
    d_phi : numpy.ndarray or None
        Gradient in the criterion's covariance parameters.
    d_sigma : float
        Derivative in sigma.
    """

    value: float
    d_beta: np.ndarray
    d_phi: np.ndarray | None
    d_sigma: float


class GaussianLikelihood:
    """``log p(y | beta, phi, sigma)`` of a Gaussian mixed model, group effects integrated out.

    Parameters
    ----------
    design : Design
        Any Gaussian design: one factor, nested, crossed, patterned
        random-effect structures, residual structures.
    criterion : Criterion, optional
        The ML/REML criterion whose factorisation is used (default:
        :func:`~hierlm.lmm.parameters.criterion_for`); ``phi`` is its parameter
        vector (lme4's theta for us/diag blocks).

    Examples
    --------
    >>> lik = GaussianLikelihood(design)                       # doctest: +SKIP
    >>> lik.evaluate(beta, lik.criterion.start(), sigma=25.0).value  # doctest: +SKIP
    """

    def __init__(self, design: Design, criterion: Criterion | None = None) -> None:
        self.design = design
        self.criterion: Criterion = criterion_for(design) if criterion is None else criterion
        self.n, self.p = design.n, design.p
        kernel = getattr(self.criterion, "kernel", self.criterion)
        cp = getattr(kernel, "cp", None)
        #: ``sum(log w)`` of the prior weights (``Var(y_i) = sigma^2 / w_i``; 0 without)
        self.log_weights = float(getattr(cp, "log_weights", 0.0))

    @property
    def n_phi(self) -> int:
        """Number of covariance parameters."""
        return int(self.criterion.n_theta)

    def terms_at_beta(self, phi: np.ndarray, beta: np.ndarray, gradient: bool
                 ) -> tuple[float, float, np.ndarray | None, np.ndarray | None, np.ndarray]:
        """``(logdet, pwrss, d logdet/d phi, d pwrss/d phi, d pwrss/d beta)`` of any criterion."""
        crit = self.criterion
        if isinstance(crit, GroupedObjective):
            return crit.at_beta(phi, beta, gradient)
        if isinstance(crit, StructuredObjective):
            kernel, theta = crit.kernel, crit.parameters.theta(phi)
        else:
            kernel, theta = crit, np.asarray(phi, dtype=float)
        assert isinstance(kernel, LmmObjective)
        basis = getattr(kernel, "basis", None)  # ConditionedObjective: beta_s = R beta
        beta_k = basis.r @ beta if basis is not None else beta
        logdet, pwrss, d_logdet, d_pwrss, d_beta = kernel.at_beta(theta, beta_k, gradient)
        if basis is not None:
            d_beta = basis.r.T @ d_beta
        if isinstance(crit, StructuredObjective) and d_logdet is not None and d_pwrss is not None:
            jac = crit.parameters.jacobian(phi)
            d_logdet, d_pwrss = jac.T @ d_logdet, jac.T @ d_pwrss
        return logdet, pwrss, d_logdet, d_pwrss, d_beta

    def evaluate(self, beta: np.ndarray, phi: np.ndarray, sigma: float,
                 gradient: bool = True) -> LikelihoodValue:
        """The marginal log-likelihood at ``(beta, phi, sigma)`` and its exact gradient.

        Parameters
        ----------
        beta : numpy.ndarray
            Fixed effects (p,).
        phi : numpy.ndarray
            Covariance parameters of the criterion (relative to sigma).
        sigma : float
            Residual SD (scale of every covariance).
        gradient : bool
            Also compute ``d_phi`` (``d_beta`` and ``d_sigma`` are always given).

        Returns
        -------
        LikelihoodValue
        """
        beta = np.asarray(beta, dtype=float)
        logdet, pwrss, d_logdet, d_pwrss, d_beta = self.terms_at_beta(phi, beta, gradient)
        var = float(sigma) ** 2
        value = -0.5 * (logdet + self.n * (_LOG_2PI + np.log(var)) + pwrss / var
                        - self.log_weights)
        d_phi = None
        if d_logdet is not None and d_pwrss is not None:
            d_phi = -0.5 * (d_logdet + d_pwrss / var)
        d_sigma = -self.n / sigma + pwrss / (var * sigma)
        return LikelihoodValue(float(value), -0.5 * d_beta / var, d_phi, float(d_sigma))

    def evaluate_reml(self, phi: np.ndarray, sigma: float, gradient: bool = True) -> LikelihoodValue:
        """The REML likelihood (beta integrated out under a flat prior) and its gradient."""
        comp = self.criterion.components(np.asarray(phi, dtype=float), True, gradient)
        var = float(sigma) ** 2
        dof = self.n - self.p
        value = -0.5 * (comp.logdet + dof * (_LOG_2PI + np.log(var)) + comp.r2 / var
                        - self.log_weights)
        d_phi = None
        if comp.d_logdet is not None and comp.d_r2 is not None:
            d_phi = -0.5 * (comp.d_logdet + comp.d_r2 / var)
        d_sigma = -dof / sigma + comp.r2 / (var * sigma)
        return LikelihoodValue(float(value), np.zeros(0), d_phi, float(d_sigma))

    def loglik(self, beta: np.ndarray | None, phi: np.ndarray, sigma: float,
               reml: bool = False) -> float:
        """The (REML) log-likelihood value only."""
        if reml:
            return self.evaluate_reml(phi, sigma, gradient=False).value
        assert beta is not None
        return self.evaluate(beta, phi, sigma, gradient=False).value

    def beta_hat(self, phi: np.ndarray) -> np.ndarray:
        """The generalised least-squares beta at ``phi`` (the criterion's solution)."""
        return np.asarray(self.criterion.solution(np.asarray(phi, dtype=float), False,
                                                  cond_var=False).beta)
