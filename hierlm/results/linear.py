"""Linear functions of the fixed and group effects, estimated on any fit.

Estimated marginal means, their contrasts, predictions, comparisons and
slopes are all linear in the parameters: each output row ``r`` is

    theta_r = a_r' beta + sum_k w_kr' vec(b_k),

with ``a_r`` weights on the fixed effects and ``w_kr`` weights on the group
effects of block k (zero unless group effects are included). A
:class:`LinearFunction` holds the weights; :func:`estimate_linear` evaluates
them on a fit, the same way for every engine:

* **NUTS** fits: ``theta_r`` per posterior draw; the tables summarise the draws.
* **ML/REML** fits: the estimate with the delta-method variance
  ``a' V_beta a + sum_k w_k' C_k w_k`` (``V_beta`` lme4's ``vcov``, ``C_k`` the
  conditional covariance of each level's effects, lme4's ``condVar``; the
  covariance between the fixed effects and the modes is left out, as in
  ``predict``, and levels are taken as independent). The df are
  Satterthwaite's, ``2 v^2 / (g' A g)``, with ``g`` the derivative of the
  variance ``v`` with respect to ``(theta, sigma)`` and ``A`` lmerTest's
  covariance of those: for fixed-only rows exactly lmerTest's
  ``contest1D`` (:func:`hierlm.lmm.satterthwaite.contrast_test`), with group
  effects through central differences of ``condVar``. ``ddf="kenward-roger"``
  uses the adjusted covariance and df of :mod:`hierlm.lmm.kenward_roger`
  (fixed-only rows).
* **MAP** fits: the Laplace approximation's covariance and normal intervals;
  the tables treat it as a (normal) posterior.

Tables: :func:`interval_table` (``estimate``, ``std_error``, ``df``,
``lower``, ``upper``) and :func:`comparison_table` (point fits: ``estimate``,
``std_error``, ``df``, ``t_value``, ``p_value`` with a multiple-comparison
adjustment; posterior draws: ``estimate``, ``std_error``, ``lower``, ``upper``
and ``prob_direction``, the posterior probability of the estimate's sign).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hierlm.core.ddf import check_ddf
from hierlm.design.blocks import Design
from hierlm.errors import AdjustmentError, FitError
from hierlm.results.common import as_draws
from hierlm.results.summary import interval_spec

__all__ = [
    "ADJUSTMENTS",
    "LinearFunction",
    "LinearEstimates",
    "check_adjust",
    "adjust_p_values",
    "estimate_linear",
    "interval_table",
    "comparison_table",
]

ADJUSTMENTS = ("tukey", "holm", "bonferroni", "none")


@dataclass(frozen=True, eq=False)
class LinearFunction:
    """Weights of ``k`` linear functions of ``(beta, b)``.

    Attributes
    ----------
    fixed : numpy.ndarray
        ``(k, p)`` weights on the fixed effects.
    random : tuple of scipy.sparse matrices, or None
        Per design block, ``(k, n_levels * q)`` weights on the block's effects
        (level-major: entry ``level * q + j`` is term j of that level); None
        when no group effect enters.
    """

    fixed: np.ndarray
    random: tuple[sp.csr_matrix, ...] | None = None

    @property
    def size(self) -> int:
        """Number of functions k."""
        return int(self.fixed.shape[0])

    def combine(self, matrix: np.ndarray) -> LinearFunction:
        """The functions ``matrix @ self``: sums, differences, averages of these rows."""
        m = np.atleast_2d(np.asarray(matrix, dtype=float))
        random = None if self.random is None else tuple(
            sp.csr_matrix(sp.csr_matrix(m) @ w) for w in self.random)
        return LinearFunction(m @ self.fixed, random)

    @classmethod
    def from_design(cls, design: Design, include_random: bool,
                    weights: np.ndarray | None = None) -> LinearFunction:
        """The (weighted averages of the) rows' means ``x_i' beta (+ z_i' b)`` of a design.

        Parameters
        ----------
        design : Design
            Rows built with the model's spec (``model.new_design``); rows of a
            level the model never saw get no group effect of that block.
        include_random : bool
            Add the group effects.
        weights : numpy.ndarray, optional
            ``(k, n)`` row weights; the identity (one function per row) when None.
        """
        X = np.asarray(design.X, dtype=float)
        R = sp.identity(design.n, format="csr") if weights is None else sp.csr_matrix(weights)
        fixed = np.asarray(R @ X)
        if not include_random:
            return cls(fixed, None)
        blocks = []
        for block in design.blocks:
            codes = np.asarray(block.codes)
            z = np.asarray(block.z, dtype=float)
            known = np.flatnonzero(codes >= 0)
            rows = np.repeat(known, block.q)
            cols = (codes[known][:, None] * block.q + np.arange(block.q)[None, :]).ravel()
            values = z[known].ravel()
            expanded = sp.csr_matrix((values, (rows, cols)), shape=(design.n, block.n_levels * block.q))
            blocks.append(sp.csr_matrix(R @ expanded))
        return cls(fixed, tuple(blocks))

    def __sub__(self, other: LinearFunction) -> LinearFunction:
        if (self.random is None) != (other.random is None):
            raise ValueError("cannot subtract functions with and without group effects")
        random = None if self.random is None or other.random is None else tuple(
            sp.csr_matrix(a - b) for a, b in zip(self.random, other.random, strict=True))
        return LinearFunction(self.fixed - other.fixed, random)

    def scaled(self, factor: float) -> LinearFunction:
        """The functions times ``factor``."""
        random = None if self.random is None else tuple(sp.csr_matrix(w * factor) for w in self.random)
        return LinearFunction(self.fixed * factor, random)


@dataclass(frozen=True, eq=False)
class LinearEstimates:
    """The functions evaluated on a fit.

    Attributes
    ----------
    estimate : numpy.ndarray
        ``(k,)``: the estimate (point fits) or the posterior mean.
    std_error : numpy.ndarray
        ``(k,)``: the standard error or the posterior SD.
    df : numpy.ndarray
        ``(k,)``: denominator df (infinite for MAP fits, NaN for draws).
    draws : numpy.ndarray or None
        ``(S, k)`` posterior draws; None for point fits.
    n_chains : int
        Chains of the draws (chain-major).
    bayesian : bool
        A posterior (NUTS draws, or MAP's normal approximation at the mode):
        tables show posterior probabilities instead of df and p-values.
    """

    estimate: np.ndarray
    std_error: np.ndarray
    df: np.ndarray
    draws: np.ndarray | None = None
    n_chains: int = 1
    bayesian: bool = False

    @property
    def point(self) -> bool:
        """True for a point fit (no draws)."""
        return self.draws is None


def _block_covariance(cond_var: np.ndarray) -> sp.csr_matrix:
    """Block-diagonal sparse matrix of the per-level (q, q) covariances, level-major."""
    return sp.csr_matrix(sp.block_diag(list(np.asarray(cond_var, dtype=float)), format="csr"))


def _quadratic(weights: sp.csr_matrix, covariance: sp.csr_matrix) -> np.ndarray:
    """Row-wise ``w_r' C w_r`` of a sparse weight matrix."""
    return np.asarray((weights @ covariance).multiply(weights).sum(axis=1)).ravel()


def _random_variance(function: LinearFunction, cond_var: Sequence[np.ndarray]) -> np.ndarray:
    """``sum_k w_k' C_k w_k`` per row."""
    out = np.zeros(function.size)
    if function.random is not None:
        for weights, cv in zip(function.random, cond_var, strict=True):
            out += _quadratic(weights, _block_covariance(cv))
    return out


MME_LIMIT = 4000  # random-effect columns up to which the mixed-model equations are solved densely

_CACHE: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _fit_cache(fit: Any) -> dict[str, Any]:
    cache = _CACHE.get(fit)
    if cache is None:
        cache = _CACHE[fit] = {}
    return cache


def _theta_steps(fit: Any) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Central-difference points ``(up, down, 2h)`` for every theta entry (lmerTest's steps)."""
    theta = np.asarray(fit.theta, dtype=float)
    unit = np.asarray(fit.kernel.column_scale(fit.design), dtype=float)
    out = []
    for j in range(theta.size):
        h = 1e-4 * max(abs(theta[j]) * unit[j], 1e-2) / unit[j]
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        out.append((up, down, 2.0 * h))
    return out


def _unscaled_pev(fit: Any, function: LinearFunction, theta: np.ndarray) -> np.ndarray:
    """Prediction error variance of the functions over sigma², at ``theta`` (Henderson's equations).

    ``Var(a' beta_hat + w' b_hat - a' beta - w' b) / sigma^2 = d' U d + v' A^-1 v`` with
    ``v = Lambda' w``, ``A = Lambda' Z'Z Lambda + I``, ``d = a - X'Z Lambda A^-1 v`` and
    ``U = (R_X'R_X)^-1``: the covariance of the fixed effects and the modes is included.
    """
    cache = _fit_cache(fit)
    design = fit.design
    if "z" not in cache:
        cache["z"] = sp.csr_matrix(sp.hstack(LinearFunction.from_design(design, True).random or [],
                                             format="csr"))
    z = cache["z"]
    qs = [b.q for b in design.blocks]
    to_theta = getattr(fit.kernel, "theta", None)  # structured kernels map their parameters to theta
    templates = fit.kernel.cp.layout.templates(to_theta(theta) if callable(to_theta) else theta, qs)
    lam = sp.block_diag([sp.kron(sp.identity(b.n_levels), t) for b, t in
                         zip(design.blocks, templates, strict=True)], format="csr")
    zl = sp.csr_matrix(z @ lam)
    a = (zl.T @ zl).toarray() + np.eye(zl.shape[1])
    xzl = np.asarray((zl.T @ np.asarray(design.X, dtype=float)).T)
    assert function.random is not None
    v = np.asarray((sp.hstack(list(function.random), format="csr") @ lam).todense())
    solved = np.linalg.solve(a, v.T).T
    d = function.fixed - solved @ xzl.T
    unscaled = fit.kernel.solution(theta, fit.reml, cond_var=False).unscaled_vcov
    return np.asarray(np.einsum("ri,ij,rj->r", d, unscaled, d) + np.einsum("rm,rm->r", v, solved))


def _cond_var_jacobian(fit: Any) -> list[tuple[np.ndarray, ...]]:
    """Derivatives of each block's ``condVar`` w.r.t. ``(theta, sigma)`` (central differences)."""
    cache = _fit_cache(fit)
    if "dcv" in cache:
        return list(cache["dcv"])
    sigma = float(fit.sigma)

    def unscaled(at: np.ndarray) -> list[np.ndarray]:
        sol = fit.kernel.solution(at, fit.reml, cond_var=True)
        return [np.asarray(c) / sol.sigma ** 2 for c in sol.cond_var]

    out: list[tuple[np.ndarray, ...]] = [
        tuple(sigma ** 2 * (a - b) / width for a, b in zip(unscaled(up), unscaled(down), strict=True))
        for up, down, width in _theta_steps(fit)]
    out.append(tuple(2.0 * np.asarray(c) / sigma for c in fit.solution.cond_var))
    cache["dcv"] = out
    return out


def _random_part(fit: Any, function: LinearFunction) -> tuple[np.ndarray, np.ndarray]:
    """Variance of functions with group effects and its gradient in ``(theta, sigma)``.

    Up to :data:`MME_LIMIT` random-effect columns: the prediction error variance
    (:func:`_unscaled_pev`); beyond: ``a' V_beta a + sum_k w_k' C_k w_k``.
    """
    sigma = float(fit.sigma)
    if sum(b.n_levels * b.q for b in fit.design.blocks) <= MME_LIMIT:
        base = _unscaled_pev(fit, function, np.asarray(fit.theta, dtype=float))
        grad = [sigma ** 2 * (_unscaled_pev(fit, function, up) - _unscaled_pev(fit, function, down))
                / width for up, down, width in _theta_steps(fit)]
        grad.append(2.0 * sigma * base)
        return sigma ** 2 * base, np.column_stack(grad)
    cov = fit.varpar_covariance
    A = function.fixed
    variance = np.einsum("ri,ij,rj->r", A, cov.vcov_beta, A)
    variance = variance + _random_variance(function, fit.solution.cond_var)
    grad_fixed = np.einsum("ri,kij,rj->rk", A, cov.jacobian, A)
    for k, derivative in enumerate(_cond_var_jacobian(fit)):
        grad_fixed[:, k] += _random_variance(function, derivative)
    return variance, grad_fixed


def _lmm_estimates(fit: Any, function: LinearFunction, ddf: str, noise: bool) -> LinearEstimates:
    """Estimates, SEs and Satterthwaite / Kenward-Roger df on an ML/REML fit."""
    ddf = check_ddf(ddf)
    draws = fit.draws()
    A = function.fixed
    estimate = A @ draws.beta[0]
    if function.random is not None:
        for weights, effects in zip(function.random, draws.effects, strict=True):
            estimate = estimate + weights @ effects[0].ravel()
    if ddf == "kenward-roger":
        if function.random is not None and any(w.nnz for w in function.random):
            raise FitError("ddf='kenward-roger' adjusts the fixed part only; with group effects "
                           "included (include_random=True) use ddf='satterthwaite'.")
        if noise:
            raise FitError("Prediction intervals of new observations use ddf='satterthwaite'.")
        rows = [fit.contrast(a, ddf="kenward-roger") for a in A]
        return LinearEstimates(estimate=np.asarray(estimate, dtype=float),
                               std_error=np.array([r["std_error"] for r in rows]),
                               df=np.array([r["df"] for r in rows], dtype=float))
    cov = fit.varpar_covariance
    if function.random is not None and any(w.nnz for w in function.random):
        if getattr(fit.design, "residual", None) is not None:
            raise FitError("Standard errors with group effects assume independent residuals; under "
                           f"residual={fit.design.residual.describe()!r} use include_random=False.")
        variance, grad = _random_part(fit, function)
    else:
        variance = np.einsum("ri,ij,rj->r", A, cov.vcov_beta, A)
        grad = np.einsum("ri,kij,rj->rk", A, cov.jacobian, A)
    if noise:  # a new observation: + sigma^2, whose derivative in (theta, sigma) is (0, 2 sigma)
        from hierlm.results.structures import require_single_residual_variance

        require_single_residual_variance(fit, "A prediction interval of a new observation")
        variance = variance + fit.sigma ** 2
        grad[:, -1] += 2.0 * fit.sigma
    denom = np.einsum("rk,kl,rl->r", grad, cov.vcov_varpar, grad)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, 2.0 * variance ** 2 / np.where(denom > 0, denom, 1.0), np.inf)
    return LinearEstimates(estimate=np.asarray(estimate, dtype=float),
                           std_error=np.sqrt(np.clip(variance, 0.0, None)), df=df)


def estimate_linear(fit: Any, function: LinearFunction, ddf: str = "satterthwaite",
                    observation_noise: bool = False, seed: int | None = None) -> LinearEstimates:
    """Evaluate linear functions of ``(beta, b)`` on a fit (see the module docstring).

    Parameters
    ----------
    fit : fit result
        An ML/REML, MAP or NUTS fit.
    function : LinearFunction
        The weights.
    ddf : {"satterthwaite", "kenward-roger"}
        Denominator df of ML/REML fits (ignored by the other engines).
    observation_noise : bool
        Add the residual noise of a new observation: ``sigma^2`` to the
        variance of point fits (with its share in Satterthwaite's df), a draw
        of ``N(0, sigma_s^2)`` to every posterior draw (prediction intervals).
    seed : int, optional
        Seed of those noise draws.

    Returns
    -------
    LinearEstimates
    """
    if hasattr(fit, "varpar_covariance") and hasattr(fit, "kernel"):
        return _lmm_estimates(fit, function, ddf, observation_noise)
    draws = as_draws(fit)
    values = draws.beta @ function.fixed.T
    if function.random is not None:
        for weights, effects in zip(function.random, draws.effects, strict=True):
            flat = effects.reshape(effects.shape[0], -1)
            values = values + np.asarray((weights @ flat.T).T)
    if draws.point:
        method = getattr(fit, "_point_uncertainty", None)
        unc = method() if callable(method) else None
        if unc is None:
            se = np.full(function.size, np.nan)
        else:
            A = function.fixed
            variance = np.einsum("ri,ij,rj->r", A, np.asarray(unc.vcov_beta), A)
            variance = variance + _random_variance(function, unc.cond_var)
            if observation_noise:
                variance = variance + float(draws.sigma[0]) ** 2
            se = np.sqrt(np.clip(variance, 0.0, None))
        # MAP's normal approximation reads as a posterior; ML fits (GLMMs) get z statistics
        return LinearEstimates(estimate=values[0], std_error=se, df=np.full(function.size, np.inf),
                               bayesian=unc is not None and getattr(fit, "method", None) == "map")
    if observation_noise:
        rng = np.random.default_rng(seed)
        values = values + draws.sigma[:, None] * rng.standard_normal(values.shape)
    std = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.zeros(function.size)
    return LinearEstimates(estimate=values.mean(axis=0), std_error=std,
                           df=np.full(function.size, np.nan), draws=values,
                           n_chains=int(draws.n_chains), bayesian=True)


def _quantile(prob: float, df: np.ndarray) -> np.ndarray:
    """The ``0.5 + prob / 2`` quantile of Student's t with ``df`` (normal where df is infinite)."""
    from scipy import stats

    df = np.asarray(df, dtype=float)
    finite = np.isfinite(df)
    upper = 0.5 + prob / 2.0
    return np.where(finite, stats.t.ppf(upper, np.where(finite, df, 1.0)), stats.norm.ppf(upper))


def interval_table(est: LinearEstimates, prob: float | None = None) -> pd.DataFrame:
    """``estimate``, ``std_error``, ``df``, ``lower``, ``upper`` (t, normal or equal-tailed posterior).

    Posteriors (draws, or a MAP fit's normal approximation) have no ``df``
    column; ``attrs["prob"]`` records the level.
    """
    spec = interval_spec(prob, "eti")
    if est.point:
        half = _quantile(spec.prob, est.df) * est.std_error
        table = pd.DataFrame({"estimate": est.estimate, "std_error": est.std_error, "df": est.df,
                              "lower": est.estimate - half, "upper": est.estimate + half})
        if est.bayesian:
            table = table.drop(columns="df")
    else:
        assert est.draws is not None
        lower, upper = spec.bounds(est.draws)
        table = pd.DataFrame({"estimate": est.estimate, "std_error": est.std_error,
                              "lower": lower, "upper": upper})
    table.attrs["prob"] = spec.prob
    return table


def check_adjust(adjust: object) -> str:
    """Normalise ``adjust=`` or raise :class:`~hierlm.errors.AdjustmentError` naming the choices."""
    key = adjust.lower() if isinstance(adjust, str) else adjust
    if key not in ADJUSTMENTS:
        raise AdjustmentError(f"adjust={adjust!r} is not an adjustment; choose one of "
                              f"{', '.join(repr(a) for a in ADJUSTMENTS)}.")
    return str(key)


def adjust_p_values(t_value: np.ndarray, df: np.ndarray, adjust: str, n_means: int) -> np.ndarray:
    """Two-sided p-values of t statistics, adjusted over the family (all entries).

    Parameters
    ----------
    t_value, df : numpy.ndarray
        Statistics and their df (infinite: normal).
    adjust : {"tukey", "holm", "bonferroni", "none"}
        Tukey: ``P(Q > sqrt(2) |t|)`` for the studentized range of ``n_means``
        means (emmeans's ``ptukey``); Holm: step-down; Bonferroni: ``min(1, m p)``.
    n_means : int
        Number of means compared (Tukey only).
    """
    from scipy import stats

    adjust = check_adjust(adjust)
    t_value = np.abs(np.asarray(t_value, dtype=float))
    df = np.asarray(df, dtype=float)
    finite = np.isfinite(df)
    if adjust == "tukey" and n_means >= 2:
        big = np.where(finite, df, 1e6)
        return np.array([float(stats.studentized_range.sf(np.sqrt(2.0) * t, n_means, d))
                         for t, d in zip(t_value, big, strict=True)])
    raw = np.where(finite, 2.0 * stats.t.sf(t_value, np.where(finite, df, 1.0)),
                   2.0 * stats.norm.sf(t_value))
    m = raw.size
    if adjust == "bonferroni":
        return np.minimum(1.0, raw * m)
    if adjust == "holm" and m:
        order = np.argsort(raw)
        stepped = np.maximum.accumulate((m - np.arange(m)) * raw[order])
        out = np.empty(m)
        out[order] = np.minimum(1.0, stepped)
        return out
    return raw


def comparison_table(est: LinearEstimates, adjust: str = "none", n_means: int = 0,
               prob: float | None = None, families: np.ndarray | None = None) -> pd.DataFrame:
    """Tests of ``theta_r = 0``: t and adjusted p (point fits) or the posterior sign probability.

    Parameters
    ----------
    est : LinearEstimates
        The contrasts.
    adjust : str
        Multiple-comparison adjustment, within each family.
    n_means : int
        Means per family (Tukey).
    prob : float, optional
        Interval probability of the posterior columns.
    families : numpy.ndarray, optional
        Family label of each row (``by`` groups); one family when None.

    Returns
    -------
    pandas.DataFrame
        ML/REML fits: ``estimate, std_error, df, t_value, p_value``. Posteriors
        (NUTS draws; MAP's normal approximation): ``estimate, std_error,
        lower, upper, prob_direction``.
    """
    adjust = check_adjust(adjust)
    if est.bayesian:
        table = interval_table(est, prob)
        if est.draws is not None:
            positive = np.mean(est.draws > 0, axis=0)
        else:  # MAP: the normal approximation at the mode
            from scipy import stats

            with np.errstate(divide="ignore", invalid="ignore"):
                positive = stats.norm.sf(-est.estimate / est.std_error)
        table["prob_direction"] = np.where(est.estimate >= 0, positive, 1.0 - positive)
        return table
    with np.errstate(divide="ignore", invalid="ignore"):
        t_value = est.estimate / est.std_error
    p_value = np.empty(t_value.size)
    groups = np.zeros(t_value.size, dtype=int) if families is None else np.asarray(families)
    for label in pd.unique(groups):
        rows = groups == label
        p_value[rows] = adjust_p_values(t_value[rows], est.df[rows], adjust, n_means)
    table = pd.DataFrame({"estimate": est.estimate, "std_error": est.std_error, "df": est.df,
                          "t_value": t_value, "p_value": p_value})
    table.attrs["adjust"] = adjust
    return table
