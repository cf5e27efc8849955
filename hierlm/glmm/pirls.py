"""Penalised iteratively reweighted least squares for the conditional modes of a GLMM.

At given covariance parameters ``theta`` (and fixed effects ``beta``, or with
``beta`` solved jointly as in lme4's first optimisation stage) PIRLS finds
the spherical random effects ``u`` minimising the penalised deviance

    pdev(u) = -2 sum_i log p(y_i | eta_i) + |u|^2,   eta = offset + X beta + Z Lambda u,

by Newton steps with Fisher working weights ``w = prior_w (d mu/d eta)^2 / V(mu)``
and step halving when a step does not decrease ``pdev``, as lme4's
``pwrssUpdate``. The Laplace approximation of the deviance is then
``pdev(u_hat) + log|A'WA + I|`` with the family's Laplace weights (the
Fisher weights, as lme4's, for binomial and Poisson; the observed
information for NB2, as glmmTMB's exact Laplace); its log-likelihood
includes the family's normalising constants. Iterations stop when the largest step
entry is below ``1e-8`` (Newton's quadratic convergence leaves the modes within
rounding of the optimum) and the factor is formed once more at the final
modes, so that the deviance is smooth to about 1e-13 (relative) in
``(theta, beta)``, as finite differences need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.design.blocks import Design
from hierlm.errors import FitError
from hierlm.families import Family
from hierlm.glmm.system import Factor, RestColumns, Structure

__all__ = ["GlmmProblem", "Mode"]

_MAX_ITERATIONS = 60
_MAX_HALVINGS = 30
_TOLERANCE = 1e-8  # largest step entry at which the modes count as converged


@dataclass(frozen=True, eq=False)
class Mode:
    """The conditional modes at one ``(theta, beta)`` and what the deviances need of them.

    Attributes
    ----------
    u1 : numpy.ndarray
        ``(n1, q1)`` first-part spherical effects.
    u2 : numpy.ndarray
        Rest spherical effects (length ``m_rest``).
    beta : numpy.ndarray
        Fixed effects (solved for in the joint mode).
    eta, mu : numpy.ndarray
        Linear predictor and mean at the mode.
    factor : Factor
        Factor of ``A'WA + P`` at the final working weights.
    pdev : float
        Penalised deviance ``-2 sum log p(y | u) + |u|^2``.
    a1 : numpy.ndarray
        First-part rows of ``A`` (for quadrature).
    base : numpy.ndarray
        ``eta`` without the first part's contribution (for quadrature).
    iterations : int
        PIRLS iterations taken.
    theta : numpy.ndarray
        The covariance parameters of the mode.
    """

    u1: np.ndarray
    u2: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    factor: Factor
    pdev: float
    a1: np.ndarray
    base: np.ndarray
    iterations: int
    theta: np.ndarray

    @property
    def laplace(self) -> float:
        """Laplace approximation of the deviance, ``pdev + log|A'WA + I|``."""
        return self.pdev + self.factor.logdet


class GlmmProblem:
    """A design and a family: PIRLS at any ``(theta, beta, dispersion)``.

    Parameters
    ----------
    design : Design
        The model's design (offset and prior weights included).
    family : Family
        The response family.
    """

    def __init__(self, design: Design, family: Family) -> None:
        self.design = design
        self.family = family
        self.structure = Structure.of(design)
        self.y = np.asarray(design.y, dtype=float)
        self.prior_weights = np.asarray(design.weights, dtype=float)
        self.offset = np.asarray(design.offset, dtype=float)
        self.X = np.asarray(design.X, dtype=float)
        self.evaluations = 0

    @property
    def n_theta(self) -> int:
        """Number of covariance parameters (lme4's theta)."""
        return self.structure.layout.size

    def loglik_terms(self, mu: np.ndarray, dispersion: float | None) -> np.ndarray:
        """Pointwise log-likelihood at the means ``mu``."""
        return self.family.log_likelihood(self.y, mu, self.prior_weights, dispersion)

    def mode(self, theta: np.ndarray, beta: np.ndarray | None = None,
             dispersion: float | None = None, start: Mode | None = None) -> Mode:
        """Run PIRLS at ``theta``; ``beta=None`` solves the fixed effects jointly (stage 1).

        Raises
        ------
        FitError
            When PIRLS cannot decrease the penalised deviance from a finite start.
        """
        self.evaluations += 1
        s = self.structure
        family, link = self.family, self.family.link
        templates = s.templates(theta)
        a1 = s.first_rows(templates)
        joint = beta is None
        p = self.X.shape[1]
        m_rest = s.m_rest
        rest: RestColumns | np.ndarray | None
        if joint:
            rest = self.X if not s.rest else RestColumns(s, templates, self.X)
            penalty = np.concatenate([np.ones(m_rest), np.zeros(p)])
            fixed_eta = self.offset
        else:
            rest = RestColumns(s, templates) if s.rest else None
            penalty = np.ones(m_rest)
            fixed_eta = self.offset + self.X @ beta
        m = 0 if rest is None else int(rest.shape[1])
        codes = s.codes1
        if start is not None:
            u1 = start.u1.copy()
            v2 = np.concatenate([start.u2, start.beta]) if joint else start.u2.copy()
        else:
            u1 = np.zeros((s.n1, s.q1))
            v2 = np.zeros(m)
            if joint:  # start at the GLM's linear predictor for the intercept-only mean
                v2[m_rest:] = _glm_start(self, family)
        pw, y = self.prior_weights, self.y

        scalar = s.q1 == 1
        a1_column = a1[:, 0]

        def eta_of(u1: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            base = fixed_eta + (_matvec(rest, v2) if rest is not None else 0.0)
            if scalar:
                return base + a1_column * u1[codes, 0], base
            return base + np.einsum("ij,ij->i", a1, u1[codes]), base

        def pdev_of(eta: np.ndarray, u1: np.ndarray, v2: np.ndarray) -> tuple[float, np.ndarray]:
            # the deviance form: -2 sum log p = sum w d(y, mu) + a constant of the run
            mu = link.inverse(eta)
            dev = pw * family.unit_deviance(y, mu, dispersion)
            return float(np.sum(dev) + np.sum(u1 * u1) + np.sum(v2[:m_rest] ** 2)), mu

        eta, base = eta_of(u1, v2)
        pdev, mu = pdev_of(eta, u1, v2)
        if not np.isfinite(pdev):
            raise FitError("The penalised deviance is not finite at the start of PIRLS; check "
                           "the response, the offset and the starting values.")
        factor = None
        iterations = 0
        while iterations < _MAX_ITERATIONS:
            iterations += 1
            d = link.mu_eta(eta)
            var = family.variance(mu, dispersion)
            w = pw * d * d / var
            score = pw * (y - mu) * d / var
            if scalar:
                g1 = np.bincount(codes, weights=a1_column * score, minlength=s.n1)[:, None] - u1
            else:
                g1 = np.asarray(s.indicator @ (a1 * score[:, None])) - u1
            g2 = (_rmatvec(rest, score) if rest is not None else np.zeros(0)) - penalty * v2
            factor = Factor(s, a1, rest, penalty, w)
            d1, d2 = factor.solve(g1, g2)
            step = 1.0
            for _ in range(_MAX_HALVINGS):
                n1, n2 = u1 + step * d1, v2 + step * d2
                eta_new, base_new = eta_of(n1, n2)
                pdev_new, mu_new = pdev_of(eta_new, n1, n2)
                if np.isfinite(pdev_new) and pdev_new <= pdev + 1e-12 * abs(pdev):
                    break
                step *= 0.5
            else:
                break  # no decrease possible: at the mode to rounding
            size = step * max(float(np.max(np.abs(d1), initial=0.0)),
                              float(np.max(np.abs(d2), initial=0.0)))
            u1, v2, eta, base, pdev, mu = n1, n2, eta_new, base_new, pdev_new, mu_new
            if size < _TOLERANCE:
                break
        assert factor is not None
        # the factor at the final modes (Newton's last step leaves them within ~1e-16 of the
        # optimum), so that log|M| is a smooth function of (theta, beta)
        factor = Factor(s, a1, rest, penalty, family.laplace_weights(y, eta, pw, dispersion))
        u2 = v2[:m_rest]
        beta_out = v2[m_rest:] if joint else np.asarray(beta, dtype=float)
        exact = float(-2.0 * np.sum(family.log_likelihood(y, mu, pw, dispersion))
                      + np.sum(u1 * u1) + np.sum(u2 * u2))
        return Mode(u1=u1, u2=u2, beta=beta_out, eta=eta, mu=mu, factor=factor,
                    pdev=exact, a1=a1, base=base, iterations=iterations,
                    theta=np.array(theta, dtype=float))


def _matvec(rest: RestColumns | np.ndarray, v: np.ndarray) -> np.ndarray:
    return rest.matvec(v) if isinstance(rest, RestColumns) else rest @ v


def _rmatvec(rest: RestColumns | np.ndarray, s: np.ndarray) -> np.ndarray:
    return rest.rmatvec(s) if isinstance(rest, RestColumns) else rest.T @ s


def _glm_start(problem: GlmmProblem, family: Family) -> np.ndarray:
    """Fixed effects of the intercept-only mean as a start (lme4 starts from a GLM fit)."""
    mu0 = family.initial_mu(problem.y, problem.prior_weights)
    eta0 = family.link.link(mu0) - problem.offset
    coef, *_ = np.linalg.lstsq(problem.X, eta0, rcond=None)
    return coef
