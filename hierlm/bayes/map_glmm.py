"""Posterior mode (MAP) of a non-Gaussian mixed model: Laplace-marginal, as blme's ``bglmer``.

The Gaussian MAP (:mod:`hierlm.bayes.map`) integrates the group effects out
exactly. For the other families the marginal likelihood has no closed form;
it is replaced by its Laplace approximation, the one ``glmer`` maximises
(Bates et al. 2015, sec. 5; the same criterion with priors added is Chung et
al.'s blme). With ``b = Lambda_theta u``, ``u ~ N(0, I)`` and ``G = T T'``
(lme4's ``theta`` layout; there is no residual scale, ``sigma = 1``):

    log p(y | beta, theta) ~= log p(y | beta, u_hat) - |u_hat|^2 / 2 - log|L| ,

``L L' = Lambda'Z'W Z Lambda + I`` at the conditional mode ``u_hat`` (found by
Fisher scoring with step halving on the penalised log-likelihood; ``W`` the
family's :meth:`~hierlm.families.Family.laplace_weights`, the Fisher weights
as in glmer except for NB2, whose observed information makes it glmmTMB's
exact Laplace approximation: the one definition the ML engine uses too).
The posterior mode maximises that plus the log prior density of the natural
parameters (fixed effects, SDs, correlations, the dispersion; no Jacobian
terms), over ``(beta, theta, log theta_NB)`` by L-BFGS-B with bounds
``theta_jj >= 0``, so a zero SD is reachable, and central-difference
gradients. The
intercept's prior is on the intercept at centred predictors (see
:mod:`hierlm.bayes.priors`), as in the full formulation. With
``priors="flat"`` the mode is glmer's Laplace estimate.

Standard errors: the inverse Hessian (central differences) of the negative
log posterior at the mode gives the covariance of the fixed effects and of
``theta`` (entries on their bound get NaN); the group effects' conditional
covariances are lme4's ``condVar``, ``Lambda L^-T L^-1 Lambda'`` per level.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import xarray as xr
from scipy import optimize
from scipy.linalg import cho_factor, cho_solve

from hierlm.bayes.build import BuiltModel, build_model
from hierlm.bayes.likelihoods import dispersion_name, observed_data
from hierlm.bayes.map import _log_density
from hierlm.bayes.naming import FIXEF, FIXEF_DIM, OBS_DIM, observation_coords, response_variable
from hierlm.bayes.result import BayesResult
from hierlm.core.warn import PACKAGE_DIR
from hierlm.design.checks import require_varying_response
from hierlm.design.crossprod import ThetaLayout, theta_layout
from hierlm.errors import ConvergenceWarning, SingularFitWarning
from hierlm.families import Family

__all__ = ["LaplaceMarginal", "fit_map_glmm"]

_NEWTON_TOL = 1e-14
_NEWTON_MAX = 100
_SINGULAR_TOL = 1e-4
_DENSE_CELLS = 4_000_000


@dataclass(frozen=True)
class _Mode:
    u: np.ndarray
    loglik: float
    logdet: float
    factor: Any


class LaplaceMarginal:
    """The Laplace approximation of a GLMM's marginal log-likelihood at (beta, theta, dispersion).

    Parameters
    ----------
    design : Design
        The model's design (any random-effect structure).
    family : Family
        The response family.
    """

    def __init__(self, design: Any, family: Family) -> None:
        self.design = design
        self.family = family
        data = observed_data(design)
        self.y, self.weights = data.y, data.weights
        self.offset = data.offset if data.offset is not None else np.zeros_like(self.y)
        self.X = np.asarray(design.X, dtype=float)
        self.z = design.sparse_z().tocsc()
        self.layout: ThetaLayout = theta_layout(design.blocks)
        self._q = [b.q for b in design.blocks]
        self.m = self.z.shape[1]
        self._u = np.zeros(self.m)
        # small problems: dense Z, where scipy.sparse's per-call overhead would dominate
        self._dense = self.m <= 2500 and self.z.shape[0] * self.m <= _DENSE_CELLS
        self._z_dense = self.z.toarray() if self._dense else None

    def lambda_matrix(self, theta: np.ndarray) -> sp.csc_matrix:
        """Block-diagonal ``Lambda`` (level-major within each block, like ``Design.sparse_z``)."""
        parts = [sp.kron(sp.identity(block.n_levels, format="csc"), sp.csc_matrix(t), format="csc")
                 for block, t in zip(self.design.blocks, self.templates(theta), strict=True)]
        return sp.block_diag(parts, format="csc")

    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per-block lower-triangular factors ``T_b`` (``G_b = T_b T_b'``)."""
        return self.layout.templates(np.asarray(theta, dtype=float), self._q)

    def _loglik(self, eta: np.ndarray, dispersion: float | None) -> float:
        mu = self.family.link.inverse(eta)
        return float(np.sum(self.family.log_likelihood(self.y, mu, self.weights, dispersion)))

    def _zl(self, theta: np.ndarray) -> Any:
        """``Z Lambda``: dense for small problems, sparse otherwise."""
        if self._z_dense is not None:
            lam = np.zeros((self.m, self.m))
            start = 0
            for block, t in zip(self.design.blocks, self.templates(theta), strict=True):
                size = block.n_levels * block.q
                lam[start:start + size, start:start + size] = np.kron(np.eye(block.n_levels), t)
                start += size
            return self._z_dense @ lam
        return (self.z @ self.lambda_matrix(theta)).tocsc()

    def _factor(self, zl: Any, w: np.ndarray) -> tuple[Any, float]:
        if isinstance(zl, np.ndarray):
            a = (zl * w[:, None]).T @ zl + np.eye(self.m)
            chol = cho_factor(a, lower=True)
            return ("dense", chol), 2.0 * float(np.sum(np.log(np.diag(chol[0]))))
        a = (zl.T @ sp.diags(w) @ zl + sp.identity(self.m, format="csc")).tocsc()
        if self.m <= 2500:
            chol = cho_factor(a.toarray(), lower=True)
            return ("dense", chol), 2.0 * float(np.sum(np.log(np.diag(chol[0]))))
        from scipy.sparse.linalg import splu

        lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        return ("sparse", lu), float(np.sum(np.log(np.abs(lu.U.diagonal()))))

    @staticmethod
    def _solve(factor: Any, rhs: np.ndarray) -> np.ndarray:
        kind, value = factor
        return np.asarray(cho_solve(value, rhs) if kind == "dense" else value.solve(rhs))

    def mode(self, beta: np.ndarray, theta: np.ndarray, dispersion: float | None) -> _Mode:
        """Conditional mode of ``u`` by Newton's method (Fisher scoring weights), warm-started."""
        zl = self._zl(theta)
        fixed = self.offset + self.X @ beta
        u = self._u.copy()
        eta = fixed + zl @ u
        objective = self._loglik(eta, dispersion) - 0.5 * float(u @ u)
        if not np.isfinite(objective):  # the warm start is far off for these parameters: restart at 0
            u = np.zeros(self.m)
            eta = fixed.copy()
            objective = self._loglik(eta, dispersion)
        for _ in range(_NEWTON_MAX):
            mu = self.family.link.inverse(eta)
            score = (self.weights * (self.y - mu) / self.family.variance(mu, dispersion)
                     * self.family.link.mu_eta(eta))
            w = self.family.working_weights(eta, self.weights, dispersion)
            factor, _ = self._factor(zl, w)
            step = self._solve(factor, zl.T @ score - u)
            scale = 1.0
            while True:
                trial = u + scale * step
                trial_eta = fixed + zl @ trial
                value = self._loglik(trial_eta, dispersion) - 0.5 * float(trial @ trial)
                if (np.isfinite(value) and value >= objective - 1e-12) or scale < 1e-8:
                    break
                scale /= 2.0
            if not np.isfinite(value):
                break
            change = value - objective
            u, eta, objective = trial, trial_eta, value
            if abs(change) < _NEWTON_TOL * (1.0 + abs(objective)) and scale == 1.0:
                break
        # the log-determinant's weights are the family's (Fisher, as glmer; NB2: observed, as glmmTMB)
        w = self.family.laplace_weights(self.y, eta, self.weights, dispersion)
        factor, logdet = self._factor(zl, w)
        if np.all(np.isfinite(u)):
            self._u = u
        return _Mode(u, self._loglik(eta, dispersion), logdet, factor)

    def laplace(self, beta: np.ndarray, theta: np.ndarray, dispersion: float | None) -> float:
        """Laplace-approximate marginal log-likelihood."""
        found = self.mode(beta, theta, dispersion)
        return found.loglik - 0.5 * float(found.u @ found.u) - 0.5 * found.logdet


def _log_lkj(corr: np.ndarray, eta: float) -> float:
    """LKJ(eta) log-density of a correlation matrix, up to its constant."""
    sign, logdet = np.linalg.slogdet(corr)
    return (eta - 1.0) * logdet if sign > 0 else -np.inf


class _Posterior:
    """Negative log posterior over ``x = (beta, theta, [log dispersion])``."""

    def __init__(self, built: BuiltModel, density: LaplaceMarginal) -> None:
        self.built, self.density = built, density
        design = built.design
        self.p, self.t = design.p, density.layout.size
        self.dispersion = dispersion_name(built.family)

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
        beta, theta = x[:self.p], x[self.p:self.p + self.t]
        return beta, theta, (float(np.exp(x[-1])) if self.dispersion else None)

    def log_prior(self, beta: np.ndarray, theta: np.ndarray, dispersion: float | None) -> float:
        priors, design = self.built.priors, self.built.design
        total = sum(_log_density(priors.fixef(name), float(v))
                    for name, v in zip(design.fixed_names, beta, strict=True))
        for bn, template in zip(self.built.names, self.density.templates(theta), strict=True):
            cov = template @ template.T
            sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            total += sum(_log_density(priors.sd(bn.label, term), float(s))
                         for term, s in zip(bn.block.columns, sd, strict=True))
            if bn.block.correlated and bn.block.q > 1 and np.all(sd > 0):
                total += _log_lkj(cov / np.outer(sd, sd), priors.cor(bn.label).param("eta"))
        if dispersion is not None and self.dispersion is not None:
            total += _log_density(priors.dispersion(self.dispersion), dispersion)
        return float(total)

    def __call__(self, x: np.ndarray) -> float:
        beta, theta, dispersion = self.split(x)
        value = self.density.laplace(beta, theta, dispersion) + self.log_prior(beta, theta, dispersion)
        return -value if np.isfinite(value) else 1e300


def _gradient(f: _Posterior, x: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Central-difference gradient (one-sided at a lower bound).

    The inner Newton iterations converge to about 1e-14 relative, so a step of
    1e-5 keeps the gradient's error near 1e-9 (the default 1e-8 forward step of
    L-BFGS-B would leave errors of order 1e-2 and stop the search early).
    """
    out = np.empty_like(x)
    for k in range(x.size):
        h = 1e-5 * max(1.0, abs(x[k]))
        up, down = x.copy(), x.copy()
        up[k] += h
        if x[k] - h < lower[k]:
            out[k] = (f(up) - f(x)) / h
            continue
        down[k] -= h
        out[k] = (f(up) - f(down)) / (2 * h)
    return out


def _minimize(f: _Posterior, x0: np.ndarray, lower: np.ndarray, bounds: list[tuple[float, float]],
              restarts: int = 10) -> Any:
    """L-BFGS-B, restarted from its end point while the projected gradient is not yet small.

    A line search that steps onto a bound where the inner Newton iterations
    fail ends L-BFGS-B early ("relative reduction of f") although the
    gradient is still large; a fresh start from that point continues.
    """
    x = x0
    evaluations = 0
    for _ in range(restarts):
        found = optimize.minimize(f, x, jac=lambda v: _gradient(f, v, lower), method="L-BFGS-B",
                                  bounds=bounds, options={"maxiter": 2000, "maxfun": 50000})
        evaluations += int(found.nfev)
        gradient = _gradient(f, found.x, lower)
        projected = np.where((found.x <= lower) & (gradient > 0), 0.0, gradient)
        moved = np.max(np.abs(found.x - x)) if found.x.size else 0.0
        x = found.x
        if np.max(np.abs(projected)) < 1e-3 or moved < 1e-10:
            break
    found.nfev = evaluations
    found.success = bool(np.max(np.abs(projected)) < 1e-2)
    return found


def _hessian(f: _Posterior, x: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Central-difference Hessian of ``f`` over the coordinates ``free``."""
    idx = np.flatnonzero(free)
    h = 1e-4 * np.maximum(1.0, np.abs(x[idx]))
    out = np.empty((idx.size, idx.size))
    f0 = f(x)
    for a, i in enumerate(idx):
        for b in range(a, idx.size):
            j = idx[b]
            if a == b:
                e = np.zeros_like(x)
                e[i] = h[a]
                out[a, a] = (f(x + e) - 2 * f0 + f(x - e)) / h[a] ** 2
                continue
            ei, ej = np.zeros_like(x), np.zeros_like(x)
            ei[i], ej[j] = h[a], h[b]
            out[a, b] = out[b, a] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej)
                                     + f(x - ei - ej)) / (4 * h[a] * h[b])
    return out


def _cond_var(density: LaplaceMarginal, theta: np.ndarray, factor: Any) -> list[np.ndarray]:
    """lme4's condVar: per block and level, ``Lambda A^-1 Lambda'`` restricted to the level."""
    lam = density.lambda_matrix(theta).toarray() if density.m <= 2500 else None
    out, offset = [], 0
    for block in density.design.blocks:
        size = block.n_levels * block.q
        if lam is None:
            out.append(np.full((block.n_levels, block.q, block.q), np.nan))
        else:
            rows = lam[offset:offset + size]
            cov = rows @ density._solve(factor, rows.T)
            out.append(np.stack([cov[j * block.q:(j + 1) * block.q, j * block.q:(j + 1) * block.q]
                                 for j in range(block.n_levels)]))
        offset += size
    return out


def _map_tree(built: BuiltModel, beta: np.ndarray, templates: list[np.ndarray], b: np.ndarray,
              dispersion: float | None) -> xr.DataTree:
    """The ``map`` group (estimates under the posterior's names) and ``observed_data``."""
    design = built.design
    data_vars: dict[str, tuple[tuple[str, ...], Any]] = {FIXEF: ((FIXEF_DIM,), beta)}
    name = dispersion_name(built.family)
    if name is not None and dispersion is not None:
        data_vars[name] = ((), dispersion)
    coords: dict[str, Any] = {FIXEF_DIM: list(design.fixed_names)}
    offset = 0
    for bn, template in zip(built.names, templates, strict=True):
        q, levels = bn.block.q, bn.block.n_levels
        cov = template @ template.T
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        coords.update(bn.coords())
        data_vars[bn.sd] = ((bn.term_dim,), sd)
        if bn.block.correlated and q > 1:
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = cov / np.outer(sd, sd)
            data_vars[bn.cor] = ((bn.pair_dim,), np.array([corr[i, j] for i, j in bn.pairs]))
        effects = b[offset:offset + q * levels].reshape(levels, q).T  # (term, level)
        data_vars[bn.ranef] = (bn.ranef_dims, effects)
        offset += q * levels
    observed = xr.Dataset({response_variable(design): ((OBS_DIM,), np.asarray(design.y, dtype=float))},
                          coords={OBS_DIM: observation_coords(design)})
    return xr.DataTree.from_dict({"map": xr.Dataset(data_vars, coords=coords), "observed_data": observed})


def fit_map_glmm(model: Any, priors: Any = None) -> BayesResult:
    """Posterior mode of a non-Gaussian mixed model (Laplace-approximate marginal posterior).

    Parameters
    ----------
    model : hierlm.Model
        A model with a non-Gaussian family.
    priors : dict, "flat", PriorTable or None
        Prior overrides (``"flat"``: glmer's Laplace estimate).

    Returns
    -------
    BayesResult
        ``method="map"``; ``idata["map"]`` holds the mode (group effects:
        their conditional modes), ``info`` the optimiser's record and the
        Laplace covariances.

    Raises
    ------
    FitError
        For a model without random effects or a constant response.
    """
    start_time = time.perf_counter()
    built = build_model(model, priors, formulation="full")
    design, family = built.design, built.family
    require_varying_response(design.y, design.X, design.response)
    density = LaplaceMarginal(design, family)
    objective = _Posterior(built, density)
    data = observed_data(design)
    beta0 = np.zeros(design.p)
    names = list(design.fixed_names)
    if "Intercept" in names:
        exposure = np.exp(density.offset)
        mean = float(np.sum(data.weights * data.y) / np.sum(data.weights * exposure))
        low, high = (1e-3, 1 - 1e-3) if family.name == "binomial" else (1e-3, np.inf)
        beta0[names.index("Intercept")] = float(family.link.link(np.array([min(max(mean, low), high)]))[0])
    x0 = np.concatenate([beta0, density.layout.start()] + ([np.zeros(1)] if objective.dispersion else []))
    lower = np.concatenate([np.full(design.p, -np.inf), density.layout.lower]
                           + ([np.full(1, -np.inf)] if objective.dispersion else []))
    bounds = list(zip(lower, np.full(x0.size, np.inf), strict=True))
    found = _minimize(objective, x0, lower, bounds)
    if not found.success:
        warnings.warn(f"the posterior mode search did not converge: {found.message}",
                      ConvergenceWarning, skip_file_prefixes=(PACKAGE_DIR,))
    beta, theta, dispersion = objective.split(found.x)
    diagonal = density.layout.is_diagonal
    on_bound = diagonal & (theta < _SINGULAR_TOL)
    boundary = [density.layout.names[k] for k in np.flatnonzero(on_bound)]
    if boundary:
        warnings.warn("posterior mode on the boundary (singular fit): " + ", ".join(boundary)
                      + " = 0", SingularFitWarning, skip_file_prefixes=(PACKAGE_DIR,))
    free = np.concatenate([np.ones(design.p, bool), ~on_bound]
                          + ([np.ones(1, bool)] if objective.dispersion else []))
    cov = np.full((found.x.size, found.x.size), np.nan)
    hessian = _hessian(objective, found.x, free)
    if np.all(np.isfinite(hessian)) and np.all(np.linalg.eigvalsh(hessian) > 0):
        idx = np.flatnonzero(free)
        cov[np.ix_(idx, idx)] = np.linalg.inv(hessian)
    conditional = density.mode(beta, theta, dispersion)
    b = density.lambda_matrix(theta) @ conditional.u
    p, t = design.p, density.layout.size
    laplace_cov = np.zeros((t + 1, t + 1))  # (theta, log sigma); sigma is 1 here
    laplace_cov[:t, :t] = cov[p:p + t, p:p + t]
    elapsed = time.perf_counter() - start_time
    return BayesResult(
        idata=_map_tree(built, beta, density.templates(theta), b, dispersion),
        pymc_model=None,
        formulation="laplace",
        sampler="L-BFGS-B",
        method="map",
        design=design,
        priors=built.priors,
        names=built.names,
        timing={"optimize": elapsed, "total": elapsed},
        settings={"reml": False},
        info={"theta": theta, "theta_names": density.layout.names, "objective": float(found.fun),
              "loglik": density.laplace(beta, theta, dispersion), "evaluations": int(found.nfev),
              "converged": bool(found.success), "message": str(found.message),
              "boundary": boundary, "singular": bool(boundary), "reml": False,
              "vcov_beta": cov[:p, :p], "laplace_cov": laplace_cov,
              "fixef_std_error": np.sqrt(np.diag(cov[:p, :p])),
              "dispersion_std_error": (float(np.sqrt(cov[-1, -1])) * dispersion
                                       if dispersion is not None else None),
              "cond_var": _cond_var(density, theta, conditional.factor)},
        family=family,
    )
