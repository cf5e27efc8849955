"""Posterior mode (MAP) of the marginal model, for every random-effect structure.

The group effects are integrated out and the mode is sought over the
covariance parameters, sigma and (unless REML) the fixed effects. Covariances
are parametrised as lme4 does, ``G_b = sigma^2 T_b T_b'`` with ``T_b``
lower triangular and non-negative diagonal (``theta``, lme4's layout), which
keeps a variance of exactly zero reachable: a singular mode lies on the
boundary ``theta_k = 0``, where an optimiser over log-SDs could only creep
towards it.

The marginal density is the one Gaussian likelihood of
:mod:`hierlm.lmm.likelihood` (the ML/REML criterion's factorisation, for one
factor, nested and crossed designs), with ``A = Lambda'Z'Z Lambda + I``,
``R_X'R_X`` the Schur complement of ``X`` and ``r2`` the penalised residual
sum of squares at ``beta_hat``:

    -2 log p(y | theta, sigma, beta) = n log(2 pi sigma^2) + log|A|
                                       + (r2 + |R_X (beta - beta_hat)|^2) / sigma^2
    -2 log p_REML(y | theta, sigma)  = (n - p) log(2 pi sigma^2) + log|A|
                                       + log|R_X'R_X| + r2 / sigma^2

The mode is that of the posterior density in the natural parameters (SDs,
correlations, sigma, fixed effects), without Jacobian terms, so that with
``priors="flat"`` it is the ML estimate and, with ``reml=True``, the REML
estimate. With flat priors sigma and beta are profiled out in closed form and
only theta is optimised, with COBYQA (Powell's derivative-free trust-region
method with bounds, successor of the BOBYQA lme4 uses); otherwise the optimum
of the flat problem is the start of a joint optimisation with the log-prior
added (L-BFGS-B with box constraints, the likelihood's exact gradient and
central differences of the closed-form log-prior).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy import optimize, stats
from threadpoolctl import threadpool_limits

from hierlm.bayes.build import design_and_priors
from hierlm.bayes.conditional import conditional_means
from hierlm.bayes.laplace import laplace_uncertainty
from hierlm.bayes.naming import FIXEF, FIXEF_DIM, OBS_DIM, SIGMA, BlockNames, block_names
from hierlm.bayes.priors import Prior, PriorTable
from hierlm.bayes.result import BayesResult
from hierlm.core.warn import PACKAGE_DIR
from hierlm.design.blocks import Design
from hierlm.design.checks import require_varying_response
from hierlm.design.crossprod import ThetaLayout, theta_layout
from hierlm.errors import FitError, SingularFitWarning
from hierlm.lmm.likelihood import GaussianLikelihood

__all__ = ["MarginalDensity", "MapFit", "fit_map", "log_prior_density"]

_SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on theta's diagonal entries


@dataclass(frozen=True)
class Pieces:
    """The marginal density's ingredients at one theta (from the ML/REML factorisation)."""

    theta: np.ndarray
    logdet_a: float
    logdet_xx: float
    r2: float
    beta_hat: np.ndarray
    xx: np.ndarray


class MarginalDensity:
    """The Gaussian marginal density of a design as a function of (theta, sigma, beta).

    Every value comes from :class:`hierlm.lmm.likelihood.GaussianLikelihood`,
    i.e. from the factorisation of the ML/REML criterion (one factor, nested
    and crossed designs); nothing here refactors ``A``.

    Parameters
    ----------
    design : Design
        Any random-effect structure (one factor, nested, crossed).
    """

    def __init__(self, design: Design) -> None:
        self.design = design
        self.layout: ThetaLayout = theta_layout(design.blocks)
        self.likelihood = GaussianLikelihood(design)
        self.criterion = self.likelihood.criterion
        self.n, self.p = design.n, design.p
        self.m = int(sum(b.n_levels * b.q for b in design.blocks))
        self._q = [b.q for b in design.blocks]

    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per-block relative Cholesky factors ``T_b``."""
        return self.layout.templates(np.asarray(theta, dtype=float), self._q)

    def pieces(self, theta: np.ndarray) -> Pieces:
        """The penalised least-squares solution at ``theta`` (the criterion's)."""
        theta = np.asarray(theta, dtype=float)
        sol = self.criterion.solution(theta, False, cond_var=False)
        r_x = np.asarray(sol.R_X)
        return Pieces(theta, float(sol.ldL2), float(sol.ldRX2), max(float(sol.r2), 0.0),
                      np.asarray(sol.beta), r_x.T @ r_x)

    def profiled_criterion(self, theta: np.ndarray, reml: bool) -> float:
        """lme4's ML deviance or REML criterion (sigma and beta profiled out)."""
        return float(self.criterion(np.asarray(theta, dtype=float), reml))

    def minus_two_loglik(self, pc: Pieces, sigma: float, beta: np.ndarray | None, reml: bool) -> float:
        """``-2 log`` likelihood (ML, at ``beta``) or REML likelihood, at given sigma."""
        if reml:
            return -2.0 * self.likelihood.evaluate_reml(pc.theta, sigma, gradient=False).value
        if beta is None:
            raise ValueError("beta is needed for the ML likelihood")
        return -2.0 * self.likelihood.evaluate(beta, pc.theta, sigma, gradient=False).value

    def minus_two_loglik_gradient(self, theta: np.ndarray, sigma: float, beta: np.ndarray | None,
                                  reml: bool) -> tuple[float, np.ndarray]:
        """``-2 log`` (REML) likelihood and its exact gradient in ``(theta, log sigma, beta)``."""
        if reml:
            got = self.likelihood.evaluate_reml(theta, sigma)
        else:
            assert beta is not None
            got = self.likelihood.evaluate(beta, theta, sigma)
        assert got.d_phi is not None
        grad = np.concatenate([got.d_phi, [got.d_sigma * sigma], got.d_beta])
        return -2.0 * got.value, -2.0 * grad

    def conditional_modes(self, theta: np.ndarray, beta: np.ndarray) -> list[np.ndarray]:
        """Group effects ``b`` at ``(theta, beta)`` per block, shape (levels, q)."""
        return conditional_means(self.design, self.criterion, np.asarray(theta, dtype=float),
                                 np.asarray(beta, dtype=float))

    def conditional_variances(self, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
        """Per block, ``sigma^2 T A_ll^-1 T'`` for every level (lme4's ``condVar``)."""
        sol = self.criterion.solution(np.asarray(theta, dtype=float), False, cond_var=True)
        assert sol.cond_var is not None
        scale = (sigma / sol.sigma) ** 2 if sol.sigma > 0 else 0.0
        return [np.asarray(cv) * scale for cv in sol.cond_var]


def _log_density(prior: Prior, value: float) -> float:
    """Log-density of one prior at a value (up to a constant for flat)."""
    kw = prior.kwargs
    if prior.family == "flat":
        return 0.0
    if prior.family == "normal":
        return float(stats.norm.logpdf(value, kw["mu"], kw["sigma"]))
    if prior.family == "student_t":
        return float(stats.t.logpdf(value, kw["nu"], kw["mu"], kw["sigma"]))
    if value < 0:
        return -np.inf
    if prior.family == "half_normal":
        return float(stats.halfnorm.logpdf(value, 0.0, kw["sigma"]))
    if prior.family == "half_student_t":
        return float(np.log(2.0) + stats.t.logpdf(value, kw["nu"], 0.0, kw["sigma"]))
    if prior.family == "half_cauchy":
        return float(stats.halfcauchy.logpdf(value, 0.0, kw["sigma"]))
    if prior.family == "exponential":
        return float(stats.expon.logpdf(value, scale=1.0 / kw["lam"]))
    raise ValueError(f"no density for prior family {prior.family!r}")


def _sd_and_corr(template: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """SDs and correlation matrix of ``G = sigma^2 T T'``."""
    cov = sigma**2 * template @ template.T
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    return sd, corr


def log_prior_density(
    priors: PriorTable,
    names: list[BlockNames],
    templates: list[np.ndarray],
    sigma: float,
    beta: np.ndarray | None,
    fixed_names: tuple[str, ...],
) -> float:
    """Log prior density at natural parameters implied by (theta, sigma, beta).

    Parameters
    ----------
    priors : PriorTable
        The priors.
    names : list of BlockNames
        Block names, aligned with ``templates``.
    templates : list of ndarray
        Relative Cholesky factors ``T_b``.
    sigma : float
        Residual SD.
    beta : ndarray or None
        Fixed effects (None when integrated out).
    fixed_names : tuple of str
        Names of the fixed effects.

    Returns
    -------
    float
        Sum of the log-densities (LKJ up to its normalising constant).
    """
    total = _log_density(priors.sigma, sigma)
    if beta is not None:
        for name, value in zip(fixed_names, beta, strict=True):
            total += _log_density(priors.fixef(name), float(value))
    for bn, template in zip(names, templates, strict=True):
        sd, corr = _sd_and_corr(template, sigma)
        for term, value in zip(bn.block.columns, sd, strict=True):
            total += _log_density(priors.sd(bn.label, term), float(value))
        if bn.block.correlated and bn.block.q > 1:
            eta = priors.cor(bn.label).param("eta")
            if eta != 1.0:
                sign, logdet = np.linalg.slogdet(corr)
                total += (eta - 1.0) * logdet if sign > 0 else -np.inf
    return float(total)


def _central_gradient(func: Any, x: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Central-difference gradient (one-sided next to a lower bound)."""
    grad = np.empty_like(x)
    for k in range(x.size):
        step = 1e-6 * max(1.0, abs(x[k]))
        up = x.copy()
        up[k] += step
        down = x.copy()
        down[k] -= step
        if down[k] < lower[k]:
            grad[k] = (func(up) - func(x)) / step
        else:
            grad[k] = (func(up) - func(down)) / (2 * step)
    return grad


def _minimize(func: Any, start: np.ndarray, lower: np.ndarray) -> optimize.OptimizeResult:
    """L-BFGS-B with box constraints; ``func(x) -> (value, gradient)``."""
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    return optimize.minimize(
        func,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-9, "maxcor": 20},
    )


@dataclass(frozen=True)
class MapFit:
    """The optimum: parameters on both scales, and how it was found."""

    theta: np.ndarray
    sigma: float
    beta: np.ndarray
    objective: float
    loglik: float
    evaluations: int
    converged: bool
    message: str


def _optimize(density: MarginalDensity, priors: PriorTable, names: list[BlockNames], reml: bool) -> MapFit:
    """Find the mode: profiled flat problem first, then joint with the priors if any."""
    layout = density.layout
    lower = layout.lower
    flat = optimize.minimize(
        lambda th: density.profiled_criterion(th, reml),
        layout.start(),
        method="COBYQA",
        bounds=optimize.Bounds(lower, np.full(lower.size, np.inf)),
        options={"final_tr_radius": 1e-10, "maxfev": 20_000},
    )
    theta = np.maximum(flat.x, np.where(np.isfinite(lower), lower, -np.inf))
    pc = density.pieces(theta)
    dof = density.n - (density.p if reml else 0)
    sigma = float(np.sqrt(pc.r2 / dof))
    beta = pc.beta_hat
    evaluations = int(flat.nfev)
    converged, message = bool(flat.success), str(flat.message)
    if not priors.is_flat:
        n_theta = layout.size
        fixed = density.design.fixed_names

        def log_prior(x: np.ndarray) -> float:
            b = None if reml else x[n_theta + 1 :]
            return log_prior_density(priors, names, density.templates(x[:n_theta]),
                                     float(np.exp(x[n_theta])), b, fixed)

        def negative_log_posterior(x: np.ndarray) -> tuple[float, np.ndarray]:
            th, sig = x[:n_theta], float(np.exp(x[n_theta]))
            b = None if reml else x[n_theta + 1 :]
            prior = log_prior(x)
            if not np.isfinite(prior):
                return np.inf, np.zeros_like(x)
            value, grad = density.minus_two_loglik_gradient(th, sig, b, reml)
            return 0.5 * value - prior, 0.5 * grad - _central_gradient(log_prior, x, bounds)

        start = np.concatenate([theta, [np.log(sigma)], [] if reml else beta])
        bounds = np.concatenate([lower, np.full(start.size - n_theta, -np.inf)])
        joint = _minimize(negative_log_posterior, start, bounds)
        theta = np.maximum(joint.x[:n_theta], np.where(np.isfinite(lower), lower, -np.inf))
        sigma = float(np.exp(joint.x[n_theta]))
        pc = density.pieces(theta)
        beta = pc.beta_hat if reml else joint.x[n_theta + 1 :]
        evaluations += int(joint.nfev)
        converged, message = bool(joint.success), str(joint.message)
    minus_two = density.minus_two_loglik(pc, sigma, None if reml else beta, reml)
    objective = 0.5 * minus_two - log_prior_density(
        priors,
        names,
        density.templates(theta),
        sigma,
        None if reml else beta,
        density.design.fixed_names,
    )
    return MapFit(
        theta, sigma, np.asarray(beta), float(objective), -0.5 * minus_two, evaluations, converged, message
    )


def _boundary(density: MarginalDensity, names: list[BlockNames], theta: np.ndarray) -> list[str]:
    """Variance components at their lower bound (lme4's isSingular rule)."""
    layout = density.layout
    out = []
    for k in np.flatnonzero(layout.is_diagonal & (theta < _SINGULAR_TOL)):
        bn = names[int(layout.block[k])]
        out.append(f"{bn.sd}[{bn.block.columns[int(layout.row[k])]}]")
    return out


def fit_map(model: Any, priors: Any = None, reml: bool = False) -> BayesResult:
    """Posterior mode of the marginal model (group effects integrated out).

    Parameters
    ----------
    model : hierlm.Model or Design
        The model.
    priors : dict, "flat", PriorTable or None
        Prior overrides (``"flat"``: the mode is the ML or REML estimate).
    reml : bool
        Integrate the fixed effects out under a flat prior (the REML
        criterion); needs flat priors on the fixed effects.

    Returns
    -------
    BayesResult
        ``method="map"``; ``idata["map"]`` holds the estimates (group effects
        are their conditional modes), ``info`` the optimiser's record.

    Raises
    ------
    FitError
        For reml with non-flat fixed-effect priors or not a bool, a model
        without random effects (and without ``residual=``), or a constant
        response; for ``reml=True`` with patterned blocks or ``residual=``.

    Notes
    -----
    Patterned random-effect blocks (``cs``, ``ar1``, ``toep``) and residual
    structures (``residual=``, ``variance=``) are fitted by
    :func:`hierlm.bayes.map_structured.fit_map_structured`: the mode of the
    model NUTS samples, over its variables and transforms.
    """
    start = time.perf_counter()
    if not isinstance(reml, (bool, np.bool_)):
        raise FitError(f"reml must be True or False, got {reml!r}")
    design, prior_table, family = design_and_priors(model, priors)
    if family != "gaussian":
        raise FitError(f"MAP for family={family!r} is not implemented")
    if design.residual is not None or any(not b.structure.is_lme4 for b in design.blocks):
        # the NUTS marginal model's variables and transforms (hierlm.bayes.map_structured)
        from hierlm.bayes.map_structured import fit_map_structured

        require_varying_response(design.y, design.X, design.response)
        return fit_map_structured(design, prior_table, bool(reml))
    if not design.blocks:
        raise FitError("the model has no random-effect terms; add a (term | group) to the formula")
    require_varying_response(design.y, design.X, design.response)
    if reml and not prior_table.fixef_flat:
        raise FitError(
            "reml=True integrates the fixed effects out under a flat prior; give them flat priors "
            "(priors={'b': 'flat', 'Intercept': 'flat'}) or use reml=False"
        )
    names = block_names(design)
    # one BLAS thread: the dense factors here are small, and OpenBLAS threads cost far more
    # than they save on them (10x slower on a busy 2-core machine)
    with threadpool_limits(limits=1, user_api="blas"):
        density = MarginalDensity(design)
        found = _optimize(density, prior_table, names, reml)
    templates = density.templates(found.theta)
    boundary = _boundary(density, names, found.theta)
    if boundary:
        warnings.warn(
            "posterior mode on the boundary (singular fit): "
            + ", ".join(f"{b} = 0" for b in boundary)
            + "; the variance is estimated at exactly zero",
            SingularFitWarning,
            skip_file_prefixes=(PACKAGE_DIR,),
        )
    with threadpool_limits(limits=1, user_api="blas"):  # standard errors for every table (Laplace)
        laplace = laplace_uncertainty(
            density, found.theta, found.sigma, None if reml else found.beta,
            lambda th, sig, b: log_prior_density(prior_table, names, density.templates(th), sig, b,
                                                 design.fixed_names),
            lambda j, value: _log_density(prior_table.fixef(design.fixed_names[j]), value))
    std_error = np.sqrt(np.diag(laplace["vcov_beta"]))
    effects = density.conditional_modes(found.theta, found.beta)
    idata = _map_datatree(design, names, found, templates, effects)
    elapsed = time.perf_counter() - start
    return BayesResult(
        idata=idata,
        pymc_model=None,
        formulation="marginal",
        sampler="COBYQA" if prior_table.is_flat else "COBYQA+L-BFGS-B",
        method="map",
        design=design,
        priors=prior_table,
        names=names,
        timing={"optimize": elapsed, "total": elapsed},
        settings={"reml": reml},
        info={
            "theta": found.theta,
            "theta_names": density.layout.names,
            "objective": found.objective,
            "loglik": found.loglik,
            "reml": reml,
            "evaluations": found.evaluations,
            "converged": found.converged,
            "message": found.message,
            "boundary": boundary,
            "singular": bool(boundary),
            "fixef_std_error": std_error,
            **laplace,
        },
    )


def _map_datatree(
    design: Design,
    names: list[BlockNames],
    found: MapFit,
    templates: list[np.ndarray],
    effects: list[np.ndarray],
) -> xr.DataTree:
    """Estimates under the posterior's variable names (no chain/draw dims)."""
    data_vars: dict[str, tuple[tuple[str, ...], Any]] = {
        FIXEF: ((FIXEF_DIM,), found.beta),
        SIGMA: ((), found.sigma),
    }
    coords: dict[str, Any] = {FIXEF_DIM: list(design.fixed_names)}
    for bn, template, effect in zip(names, templates, effects, strict=True):
        coords.update(bn.coords())
        sd, corr = _sd_and_corr(template, found.sigma)
        data_vars[bn.sd] = ((bn.term_dim,), sd)
        if bn.block.correlated and bn.block.q > 1:
            values = np.array([corr[i, j] if sd[i] > 0 and sd[j] > 0 else 0.0 for i, j in bn.pairs])
            data_vars[bn.cor] = ((bn.pair_dim,), values)
        data_vars[bn.ranef] = (bn.ranef_dims, np.asarray(effect).T)  # (terms, levels), see naming
    groups = {"map": xr.Dataset(data_vars, coords=coords)}
    if not design.rowless:  # data held by an engine: no rows to store here
        groups["observed_data"] = xr.Dataset(
            {design.response: ((OBS_DIM,), np.asarray(design.y, dtype=float))},
            coords={OBS_DIM: np.arange(design.n)},
        )
    return xr.DataTree.from_dict(groups)
