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

__all__ = ["GlmmProblem", "Mode", "System"]

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
        system = self.system(theta, beta)
        a1, rest, penalty, joint = system.a1, system.rest, system.penalty, system.joint
        m_rest = s.m_rest
        m = system.m
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
        eta_of = system.eta

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
        # the factor at the final modes (Newton's last step leaves them within ~1e-16 of the
        # optimum), so that log|M| is a smooth function of (theta, beta)
        exact, factor = self.laplace_terms(system, u1, v2, eta, mu, dispersion)
        u2 = v2[:m_rest]
        beta_out = v2[m_rest:] if joint else np.asarray(beta, dtype=float)
        return Mode(u1=u1, u2=u2, beta=beta_out, eta=eta, mu=mu, factor=factor,
                    pdev=exact, a1=a1, base=base, iterations=iterations,
                    theta=np.array(theta, dtype=float))

    def system(self, theta: np.ndarray, beta: np.ndarray | None = None) -> System:
        """The columns of the penalised system at ``theta`` (``beta=None``: fixed effects inside)."""
        s = self.structure
        templates = s.templates(theta)
        a1 = s.first_rows(templates)
        p = self.X.shape[1]
        rest: RestColumns | np.ndarray | None
        if beta is None:
            rest = self.X if not s.rest else RestColumns(s, templates, self.X)
            penalty = np.concatenate([np.ones(s.m_rest), np.zeros(p)])
            fixed_eta = self.offset
        else:
            rest = RestColumns(s, templates) if s.rest else None
            penalty = np.ones(s.m_rest)
            fixed_eta = self.offset + self.X @ beta
        return System(structure=s, a1=a1, rest=rest, penalty=penalty, fixed_eta=fixed_eta,
                      joint=beta is None)

    def score(self, eta: np.ndarray, mu: np.ndarray, dispersion: float | None) -> np.ndarray:
        """``d log p(y | eta) / d eta`` per row (the PIRLS score)."""
        d = self.family.link.mu_eta(eta)
        return self.prior_weights * (self.y - mu) * d / self.family.variance(mu, dispersion)

    def laplace_terms(self, system: System, u1: np.ndarray, v2: np.ndarray, eta: np.ndarray,
                      mu: np.ndarray, dispersion: float | None) -> tuple[float, Factor]:
        """``(-2 log p(y | u) + |u|^2, factor of A'WA + P)`` at given modes: the Laplace deviance's terms.

        The one definition of the Laplace deviance ``pdev + log|M|``: PIRLS ends
        with it, and the analytic gradient (:mod:`hierlm.glmm.gradient`) differentiates it
        at fixed modes.
        """
        family, pw, y = self.family, self.prior_weights, self.y
        u2 = v2[:self.structure.m_rest]
        factor = Factor(self.structure, system.a1, system.rest, system.penalty,
                        family.laplace_weights(y, eta, pw, dispersion))
        exact = float(-2.0 * np.sum(family.log_likelihood(y, mu, pw, dispersion))
                      + np.sum(u1 * u1) + np.sum(u2 * u2))
        return exact, factor


@dataclass(frozen=True, eq=False)
class System:
    """The columns ``[A1 | rest]`` and penalty of the penalised system at one ``theta``.

    Attributes
    ----------
    a1 : numpy.ndarray
        ``(n, q1)`` first-part rows of ``A``.
    rest : RestColumns or numpy.ndarray or None
        Rest columns (rest random effects, then the fixed effects when ``joint``).
    penalty : numpy.ndarray
        1 for the rest's random-effect columns, 0 for fixed effects.
    fixed_eta : numpy.ndarray
        The offset (plus ``X beta`` unless ``joint``).
    joint : bool
        Whether the fixed effects are solved with the random effects (stage 1).
    """

    structure: Structure
    a1: np.ndarray
    rest: RestColumns | np.ndarray | None
    penalty: np.ndarray
    fixed_eta: np.ndarray
    joint: bool

    @property
    def m(self) -> int:
        """Width of the rest."""
        return 0 if self.rest is None else int(self.rest.shape[1])

    def eta(self, u1: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(eta, eta without the first part)`` at modes ``(u1, v2)``."""
        s = self.structure
        base = self.fixed_eta + (_matvec(self.rest, v2) if self.rest is not None else 0.0)
        if s.q1 == 1:
            return base + self.a1[:, 0] * u1[s.codes1, 0], base
        return base + np.einsum("ij,ij->i", self.a1, u1[s.codes1]), base


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
