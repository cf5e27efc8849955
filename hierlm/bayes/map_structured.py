"""Posterior mode (MAP) of patterned random-effect structures and residual structures.

The model is the one NUTS samples in the marginal formulation: the PyMC
variables, priors and transforms of
:func:`hierlm.bayes.structured_marginal.build_structured_marginal_model`
(``cs``, ``ar1``, ``toep`` blocks, homogeneous or heterogeneous) or of
:func:`hierlm.bayes.residual_marginal.build_residual_marginal_model`
(``residual=``, with or without random effects), with the group effects
integrated out by the one Gaussian likelihood
(:class:`hierlm.lmm.likelihood.GaussianLikelihood`, through its kernel's
template entries; with ``residual=`` its per-group form
:class:`hierlm.bayes.residual_likelihood.ResidualLikelihood`, tested equal
to it). The compiled prior model and the likelihood are joined by
:func:`hierlm.bayes.prior_split.split_density`, without the transforms'
Jacobian (PyMC's transforms' and that of Stan's transform of the LKJ reals,
which PyMC counts as their density): the mode is that of the posterior density
of the natural parameters (SDs, correlations, sigma, fixed effects), as for
the other MAP fits, so that with ``priors="flat"`` it is the ML estimate. It is found by L-BFGS-B over
the unconstrained vector (log SDs, log-odds of interval parameters, Stan's
LKJ reals) with the exact gradient; a variance exactly at zero is therefore
approached, not reached (a singular mode is reported as one).

Standard errors come from the Laplace approximation: the Hessian of the
negative log posterior in the unconstrained coordinates (central differences
of the exact gradient), inverted, and carried by the delta method to the
covariance parameters the result protocol uses (``theta``, the kernel's
template entries ``T_b = L_b / sigma``, and ``log sigma``); the structures'
parameters get theirs from the same covariance
(:mod:`hierlm.bayes.map_intervals`). Group effects are
their conditional means given y at the mode, with their conditional
covariances.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from hierlm.bayes.build import BuiltModel, build_model
from hierlm.bayes.map_intervals import structure_jacobians
from hierlm.bayes.naming import FIXEF, FIXEF_DIM, OBS_DIM, SIGMA, BlockNames
from hierlm.bayes.prior_split import SplitDensity, split_density
from hierlm.bayes.priors import PriorTable
from hierlm.bayes.result import BayesResult
from hierlm.core.warn import PACKAGE_DIR
from hierlm.design.blocks import Design
from hierlm.design.crossprod import theta_layout
from hierlm.errors import FitError, SingularFitWarning

__all__ = ["StructuredProblem", "structured_problem", "fit_map_structured"]

_SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on the relative factor's diagonal
# L-BFGS-B at ftol 1e-15 often ends in "ABNORMAL" line searches at the optimum's rounding
# level; the mode is accepted when the largest gradient entry is below this
_GRADIENT_TOL = 1e-4
_COMPILE_MODE = "NUMBA"  # as NUTS compiles it (cached on disk by PyTensor)


@dataclass(frozen=True, eq=False)
class StructuredProblem:
    """The NUTS model's log density without Jacobian, and how to read its likelihood inputs.

    Attributes
    ----------
    built : BuiltModel
        The marginal model.
    density : SplitDensity
        ``logp(x)`` with ``jacobian=False`` over the free variables.
    var_names : list of str
        The stored variables (as a NUTS fit stores them).
    """

    built: BuiltModel
    density: SplitDensity
    var_names: list[str]

    @property
    def residual(self) -> bool:
        """True with ``residual=`` (inputs ``[beta, sigma, T, S, levels]``; else ``[beta, theta, sigma]``)."""
        return self.built.design.residual is not None

    def parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """``(beta, theta, sigma)`` at ``x``; theta the kernel's template entries (lme4's layout)."""
        inputs = self.density.inputs(x)
        if not self.residual:
            beta, theta, sigma = inputs
            return beta, np.asarray(theta, dtype=float).ravel(), float(sigma)
        flat = inputs[2]
        layout = theta_layout(self.built.design.blocks)
        q_sizes = [b.q for b in self.built.design.blocks]
        starts = np.concatenate(([0], np.cumsum([q * q for q in q_sizes]))).astype(int)
        theta = np.array([flat[starts[b] + r * q_sizes[b] + c]
                          for b, r, c in zip(layout.block, layout.row, layout.col, strict=True)])
        return inputs[0], theta, float(inputs[1])

    def offset(self, name: str) -> int:
        """Position of a free variable's first entry in ``x``."""
        index = self.density.free_names.index(name)
        return int(sum(self.density.free_sizes[:index]))


def structured_problem(design: Design, priors: PriorTable) -> StructuredProblem:
    """Build and compile the marginal model of a patterned or residual design, without Jacobian."""
    from hierlm.bayes.sample import stored_variables

    built = build_model(design, priors, formulation="marginal")
    var_names = stored_variables(built)
    if design.residual is not None:
        from hierlm.bayes.residual_nutpie import residual_density

        density = residual_density(built, var_names, mode=_COMPILE_MODE, jacobian=False)
    else:
        density = _patterned_density(built, var_names)
    return StructuredProblem(built, _without_lkj_jacobian(density), var_names)


def _without_lkj_jacobian(density: SplitDensity) -> SplitDensity:
    """Take the LKJ reals' transform Jacobian out of the density.

    PyMC keeps it (it is the density of the variable ``corr_raw_<b>`` itself);
    without it the mode is in the correlations.
    """
    from dataclasses import replace

    from hierlm.bayes.structure_math import lkj_cholesky, lkj_log_jacobian

    starts = np.concatenate(([0], np.cumsum(density.free_sizes))).astype(int)
    lkj = [(int(starts[k]), int(size)) for k, (name, size)
           in enumerate(zip(density.free_names, density.free_sizes, strict=True))
           if name.startswith("corr_raw_")]
    if not lkj:
        return density
    logp = density.logp

    def corrected(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
        value, grad = logp(x)
        if not np.isfinite(value):
            return value, grad
        grad = np.array(grad, dtype=float)
        for start, size in lkj:
            q = int(round((1 + np.sqrt(1 + 8 * size)) / 2))
            raw = np.asarray(x[start:start + size], dtype=float)
            value -= lkj_log_jacobian(raw, q)
            for k in range(size):  # complex step: the closed form is analytic, exact to rounding
                shifted = raw.astype(complex)
                shifted[k] += 1e-30j
                with warnings.catch_warnings():  # the real factor it also builds drops the step
                    warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
                    log_jacobian = lkj_cholesky(shifted, q, 1.0)[1]
                grad[start + k] -= float(np.imag(log_jacobian)) / 1e-30
        return float(value), grad

    return replace(density, logp=corrected)


def _patterned_density(built: BuiltModel, var_names: list[str]) -> SplitDensity:
    """The patterned blocks' prior model joined to the one likelihood (kernel entries)."""
    from hierlm.bayes.structured_marginal import build_structured_marginal_model
    from hierlm.lmm.likelihood import GaussianLikelihood

    design = built.design
    criterion = GaussianLikelihood(design).criterion
    likelihood = GaussianLikelihood(design, criterion=getattr(criterion, "kernel", criterion))
    model, inputs = build_structured_marginal_model(design, built.priors, with_likelihood=False)

    def evaluate(values: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
        beta, theta, sigma = values
        if not (np.all(np.isfinite(theta)) and np.isfinite(sigma) and sigma > 0):
            raise FitError("outside the domain")
        got = likelihood.evaluate(beta, theta, float(sigma))
        assert got.d_phi is not None
        return got.value, [got.d_beta, got.d_phi, np.asarray(got.d_sigma)]

    return split_density(model, inputs, evaluate, var_names, mode=_COMPILE_MODE, jacobian=False)


def _negative(density: SplitDensity) -> Any:
    def func(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = density.logp(np.asarray(x, dtype=float))
        if not np.isfinite(value):
            return np.inf, np.zeros_like(x)
        return -value, -grad
    return func


def find_mode(problem: StructuredProblem) -> Any:
    """L-BFGS-B on the negative log density from PyMC's initial point, restarted once at its end.

    If the largest gradient entry is still above the tolerance, Newton
    trust-region steps (scipy's ``trust-exact``) on the central-difference
    Hessian of the exact gradient follow.
    """
    from scipy import optimize

    func = _negative(problem.density)
    options = {"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-9, "maxcor": 20}
    found = optimize.minimize(func, problem.density.start, jac=True, method="L-BFGS-B",
                              options=options)
    again = optimize.minimize(func, found.x, jac=True, method="L-BFGS-B", options=options)
    again.nfev += found.nfev
    best = again if again.fun <= found.fun else found
    if np.max(np.abs(func(best.x)[1]), initial=0.0) < _GRADIENT_TOL:
        return best
    # flat directions (un's LKJ reals): Newton trust-region steps on the exact gradient's
    # central-difference Hessian finish what L-BFGS-B's curvature model could not
    newton = optimize.minimize(func, best.x, jac=True, hess=lambda x: _hessian(problem, x),
                               method="trust-exact", options={"gtol": 1e-8, "maxiter": 200})
    newton.nfev = int(newton.nfev) + int(best.nfev) + 2 * best.x.size * int(newton.get("nhev", 0))
    return newton if newton.fun <= best.fun else best


def _hessian(problem: StructuredProblem, x: np.ndarray) -> np.ndarray:
    """Central differences of the exact gradient of the negative log density."""
    d = x.size
    hess = np.zeros((d, d))
    for k in range(d):
        step = 1e-5 * max(1.0, abs(x[k]))
        up, down = x.copy(), x.copy()
        up[k] += step
        down[k] -= step
        hess[:, k] = -(problem.density.logp(up)[1] - problem.density.logp(down)[1]) / (2 * step)
    return 0.5 * (hess + hess.T)


def laplace(problem: StructuredProblem, x: np.ndarray) -> dict[str, np.ndarray]:
    """Laplace covariances at the mode: of ``x``, of ``(theta, log sigma, beta)`` and of beta."""
    hess = _hessian(problem, x)
    finite = np.all(np.isfinite(hess))
    positive = finite and np.linalg.eigvalsh(hess).min() > 0
    cov_x = np.linalg.inv(hess) if positive else np.full_like(hess, np.nan)

    def varpar(v: np.ndarray) -> np.ndarray:
        beta, theta, sigma = problem.parts(v)
        return np.concatenate([theta, [np.log(sigma)], beta])

    centre = varpar(x)
    jac = np.zeros((centre.size, x.size))
    for k in range(x.size):
        step = 1e-6 * max(1.0, abs(x[k]))
        up, down = x.copy(), x.copy()
        up[k] += step
        down[k] -= step
        jac[:, k] = (varpar(up) - varpar(down)) / (2 * step)
    start = problem.offset(FIXEF)
    p = problem.built.design.p
    return {"laplace_x": cov_x, "laplace_cov": jac @ cov_x @ jac.T,
            "vcov_beta": cov_x[start:start + p, start:start + p]}


def _block_templates(design: Any, flat: np.ndarray) -> list[np.ndarray]:
    """Each block's relative factor (q x q) from the density's flattened inputs."""
    q_sizes = [b.q for b in design.blocks]
    starts = np.concatenate(([0], np.cumsum([q * q for q in q_sizes]))).astype(int)
    return [flat[starts[b]:starts[b + 1]].reshape(q, q) for b, q in enumerate(q_sizes)]


def _effects(problem: StructuredProblem, x: np.ndarray, beta: np.ndarray, theta: np.ndarray,
             sigma: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Conditional means (levels, q) and covariances (levels, q, q) of the group effects at the mode."""
    design = problem.built.design
    if problem.residual:
        from hierlm.bayes.residual_likelihood import ResidualLikelihood

        inputs = problem.density.inputs(x)
        templates = _block_templates(design, inputs[2])
        return ResidualLikelihood(design).effect_means(beta, sigma, templates, inputs[3], inputs[4])
    from hierlm.bayes.conditional import conditional_means
    from hierlm.lmm.likelihood import GaussianLikelihood

    criterion = GaussianLikelihood(design).criterion
    kernel = getattr(criterion, "kernel", criterion)  # at the template entries
    means = conditional_means(design, kernel, theta, beta)
    sol = kernel.solution(theta, False, cond_var=True)  # lme4's condVar at sol.sigma
    assert sol.cond_var is not None
    scale = (sigma / sol.sigma) ** 2 if sol.sigma > 0 else 0.0
    return means, [np.asarray(cv) * scale for cv in sol.cond_var]


def _boundary(names: list[BlockNames], design: Design, theta: np.ndarray) -> list[str]:
    """SDs at (numerically) zero: a diagonal entry of ``T_b`` below lme4's tolerance."""
    layout = theta_layout(design.blocks)
    out = []
    for k in np.flatnonzero(layout.is_diagonal & (np.abs(theta) < _SINGULAR_TOL)):
        bn = names[int(layout.block[k])]
        out.append(f"{bn.sd}[{bn.block.columns[int(layout.row[k])]}]")
    return out


def fit_map_structured(design: Design, prior_table: PriorTable, reml: bool) -> BayesResult:
    """Posterior mode of a design with patterned blocks or ``residual=`` (see the module docstring).

    Parameters
    ----------
    design : Design
        Gaussian, with a patterned random-effect block or a residual structure.
    prior_table : PriorTable
        The resolved priors (those NUTS uses).
    reml : bool
        Must be False: the fixed effects are variables of this model.

    Returns
    -------
    BayesResult
        ``method="map"``, as :func:`hierlm.bayes.map.fit_map` returns it, with
        the structure's parameters (``rho_<b>``, ``rho_residual`` ...) in
        ``idata["map"]``.

    Raises
    ------
    FitError
        For ``reml=True``.
    """
    from hierlm.bayes.naming import block_names

    start = time.perf_counter()
    what = (f"residual={design.residual.describe()!r}" if design.residual is not None
            else "patterned random-effect structures (cs, ar1, toep)")
    if reml:
        raise FitError(f"MAP with reml=True is not available for {what}: the fixed effects are "
                       "parameters of this model. Use reml=False (their priors enter the mode), "
                       "or method='reml' for the REML estimate.")
    names = block_names(design)
    with threadpool_limits(limits=1, user_api="blas"):
        problem = structured_problem(design, prior_table)
        found = find_mode(problem)
        x = np.asarray(found.x, dtype=float)
        beta, theta, sigma = problem.parts(x)
        uncertainty = laplace(problem, x)
        jacobians = structure_jacobians(problem, x)  # the structure rows' Laplace intervals
        effects, cond_var = _effects(problem, x, beta, theta, sigma)
    values = problem.density.expand(x)
    log_posterior = -float(found.fun)
    loglik = _loglik(problem, x, beta, theta, sigma)
    boundary = _boundary(names, design, theta)
    if boundary:
        warnings.warn("posterior mode on the boundary (singular fit): "
                      + ", ".join(f"{b} = 0" for b in boundary)
                      + "; the variance is estimated at (numerically) zero",
                      SingularFitWarning, skip_file_prefixes=(PACKAGE_DIR,))
    grad_norm = float(np.max(np.abs(problem.density.logp(x)[1]))) if x.size else 0.0
    idata = _datatree(problem, names, values, effects)
    elapsed = time.perf_counter() - start
    std_error = np.sqrt(np.clip(np.diag(uncertainty["vcov_beta"]), 0.0, None))
    return BayesResult(
        idata=idata, pymc_model=None, formulation="marginal", sampler="L-BFGS-B", method="map",
        design=design, priors=prior_table, names=names,
        timing={"optimize": elapsed, "total": elapsed}, settings={"reml": False},
        info={"theta": theta, "theta_names": theta_layout(design.blocks).names,
              "objective": -log_posterior, "loglik": loglik, "reml": False,
              "evaluations": int(found.nfev),
              "converged": bool(found.success) or grad_norm < _GRADIENT_TOL,
              "message": str(found.message), "gradient_max": grad_norm,
              "boundary": boundary, "singular": bool(boundary),
              "free_names": list(problem.density.free_names), "x": x,
              "fixef_std_error": std_error, "cond_var": cond_var,
              "structure_jacobian": jacobians, **uncertainty})


def _loglik(problem: StructuredProblem, x: np.ndarray, beta: np.ndarray, theta: np.ndarray,
            sigma: float) -> float:
    """The marginal log-likelihood at the mode (the one likelihood)."""
    from hierlm.lmm.likelihood import GaussianLikelihood

    design = problem.built.design
    if problem.residual:
        from hierlm.bayes.residual_likelihood import ResidualLikelihood

        inputs = problem.density.inputs(x)
        templates = _block_templates(design, inputs[2])
        return float(ResidualLikelihood(design).evaluate(beta, sigma, templates, inputs[3],
                                                         inputs[4]).value)
    criterion = GaussianLikelihood(design).criterion
    kernel = GaussianLikelihood(design, criterion=getattr(criterion, "kernel", criterion))
    return float(kernel.evaluate(beta, theta, sigma, gradient=False).value)


def _datatree(problem: StructuredProblem, names: list[BlockNames], values: dict[str, np.ndarray],
              effects: list[np.ndarray]) -> xr.DataTree:
    """The mode under the posterior's variable names and dims (no chain/draw)."""
    design = problem.built.design
    dims = problem.density.dims
    coords: dict[str, Any] = {FIXEF_DIM: list(design.fixed_names)}
    coords.update({dim: list(index) for dim, index in problem.density.coords.items()})
    data_vars: dict[str, tuple[tuple[str, ...], Any]] = {}
    for name in problem.var_names:
        if name.startswith("corr_chol_"):
            continue  # the correlations are stored as cor_<b>
        data_vars[name] = (dims.get(name, ()), values[name])
    data_vars[SIGMA] = ((), float(values[SIGMA]))
    data_vars[FIXEF] = ((FIXEF_DIM,), np.asarray(values[FIXEF], dtype=float))
    for bn, effect in zip(names, effects, strict=True):
        coords.update(bn.coords())
        data_vars[bn.ranef] = (bn.ranef_dims, np.asarray(effect).T)  # (terms, levels)
    groups = {"map": xr.Dataset(data_vars, coords=coords)}
    if not design.rowless:
        groups["observed_data"] = xr.Dataset(
            {design.response: ((OBS_DIM,), np.asarray(design.y, dtype=float))},
            coords={OBS_DIM: np.arange(design.n)})
    return xr.DataTree.from_dict(groups)
