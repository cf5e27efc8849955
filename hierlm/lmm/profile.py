"""Profile-likelihood confidence intervals of every parameter (lme4's ``confint(fit)``).

For a parameter ``psi`` (an SD, a correlation, sigma or a fixed effect) the
profile deviance ``D(v)`` is the smallest ML deviance among parameter values
with ``psi = v``. The interval at level ``1 - alpha`` is the set of ``v`` with
``D(v) - D_hat <= chi2_1(1 - alpha)`` (a likelihood-ratio test inverted), its
ends found by root finding to about 1e-8 relative. As lme4 does, the ML
deviance is profiled also for REML fits (the REML criterion does not depend on
the fixed effects); lme4 interpolates the profile with splines, so its limits
differ from these exact roots by about 1e-5 relative.

How each profile is computed:

* **fixed effect** ``beta_j = b``: for given theta the best other fixed effects
  cost ``(b - beta_hat_j)^2 / [(R_X'R_X)^-1]_jj`` of extra penalised residual
  sum of squares, sigma is profiled in closed form, and theta is optimised;
* **variance parameters**: the covariance of every block is written as SDs and
  a correlation matrix (canonical partial correlations ``tanh(raw)``, the
  parametrisation of :mod:`hierlm.bayes.prior_draws`), sigma on the log scale;
  the fixed parameter is dropped from the optimisation. A correlation is
  profiled with its block's terms reordered so that it is the first canonical
  partial correlation, hence a coordinate.

With a residual structure as well (``residual=``, random effects per its group), its
parameters are further coordinates, on the kernel's scale (``atanh(rho)``, ``logit(phi)``,
log SD ratios) and reported on the natural one (a monotone map of that one coordinate);
models with a residual structure only go to :mod:`hierlm.lmm.profile_structures`.

Limits that reach the edge of the parameter space are reported at the edge:
0 for an SD (always so for a singular fit), -1 or 1 for a correlation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from hierlm.core.correlation import cholesky_from_raw, lkj_pair_positions
from hierlm.design.covariance import require_lme4_structures
from hierlm.errors import FitError
from hierlm.lmm.optimum import blas_threads
from hierlm.lmm.profile_search import Profile, fixed_effect_profiles, minimise_profile, profile_limit
from hierlm.lmm.profile_structures import (
    require_per_coordinate,
    residual_natural,
    residual_parameter_names,
    structured_profile_confint,
)

__all__ = [
    "profile_confint",
    "parameter_vector",
    "variance_entries",
    "VarianceEntry",
    "VarianceParametrisation",
]

_RAW_LIMIT = 12.0  # |tanh(12)| = 1 - 8e-11: correlations within rounding of +-1
_FAR = 1e20  # deviance reported where it cannot be evaluated (numerically singular systems)


def _psd_cholesky(matrix: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots allowed).

    Plain floats: the blocks are small (q <= ~6) and this runs at every profile step.
    """
    rows = np.asarray(matrix, dtype=float).tolist()
    q = len(rows)
    out = [[0.0] * q for _ in range(q)]
    for j in range(q):
        row_j = out[j]
        pivot = rows[j][j] - sum(v * v for v in row_j[:j])
        diag = math.sqrt(pivot) if pivot > 0.0 else 0.0
        row_j[j] = diag
        for i in range(j + 1, q):
            row_i = out[i]
            rest = rows[i][j] - sum(a * b for a, b in zip(row_i[:j], row_j[:j], strict=True))
            row_i[j] = rest / diag if diag > 0.0 else 0.0
    return np.array(out)


def _correlation_from_raw(raw: np.ndarray, q: int) -> np.ndarray:
    chol = cholesky_from_raw(np.clip(raw, -_RAW_LIMIT, _RAW_LIMIT), q)
    return chol @ chol.T


def _raw_from_correlation(corr: np.ndarray) -> np.ndarray:
    """Canonical partial correlations (as arctanh) of a correlation matrix, row by row."""
    q = corr.shape[0]
    chol = _psd_cholesky(corr)
    out = []
    for i, j in lkj_pair_positions(q):
        remaining = 1.0 - chol[i, :j] @ chol[i, :j]
        cpc = chol[i, j] / np.sqrt(remaining) if remaining > 0 else 0.0
        out.append(np.arctanh(np.clip(cpc, -np.tanh(_RAW_LIMIT), np.tanh(_RAW_LIMIT))))
    return np.array(out)


@dataclass(frozen=True)
class VarianceEntry:
    """One SD or correlation of a random-effect block, named as lme4's ``confint`` names it.

    Attributes
    ----------
    name : str
        ``sd_<term>|<group>`` or ``cor_<term j>.<term i>|<group>``.
    block : int
        Index of the design block.
    row : int
        The term (``i``) of an SD, or the first term of a correlation.
    col : int or None
        The second term (``j > i``) of a correlation; None for an SD.
    """

    name: str
    block: int
    row: int
    col: int | None = None


def variance_entries(blocks: tuple[Any, ...]) -> list[VarianceEntry]:
    """Every SD and correlation of the blocks, in lme4's order.

    Per block, column by column of its lower triangle: the SD of a term, then
    its correlations with the later terms.
    """
    out = []
    for b, block in enumerate(blocks):
        correlated = block.correlated and block.q > 1
        for i in range(block.q):
            out.append(VarianceEntry(f"sd_{block.columns[i]}|{block.group}", b, i))
            if correlated:
                out += [VarianceEntry(f"cor_{block.columns[j]}.{block.columns[i]}|{block.group}", b, i, j)
                        for j in range(i + 1, block.q)]
    return out


def parameter_vector(fit: Any) -> pd.Series:
    """Every parameter of a fit in lme4's order: the :func:`variance_entries`, sigma, fixed effects.

    A correlation of a term whose SD is 0 is NaN.
    """
    covariances = fit.covariances()
    values = []
    entries = variance_entries(fit.design.blocks)
    for entry in entries:
        cov = covariances[entry.block]
        sd_i = np.sqrt(max(cov[entry.row, entry.row], 0.0))
        if entry.col is None:
            values.append(sd_i)
            continue
        denom = sd_i * np.sqrt(max(cov[entry.col, entry.col], 0.0))
        values.append(cov[entry.row, entry.col] / denom if denom > 0 else np.nan)
    names = [e.name for e in entries] + ["sigma", *fit.design.fixed_names]
    values += [fit.sigma, *np.asarray(fit.beta, dtype=float)]
    residual = fit.design.residual
    if residual is not None:  # the structure's natural parameters (rho, phi, SD ratios)
        params = np.asarray(fit.theta, dtype=float)[len(fit.theta) - residual.n_params:]
        natural = residual.structure.natural(params[: residual.structure.n_params])
        if residual.variance_function is not None:
            natural.update(residual.variance_function.natural(params[residual.structure.n_params:]))
        names += [f"residual.{name}" for name in natural]
        values += list(natural.values())
    return pd.Series(np.asarray(values, dtype=float), index=pd.Index(names, name="parameter"))


@dataclass
class VarianceParametrisation:
    """Maps (SDs, correlations, sigma) to lme4's theta and back, for one fit.

    Coordinates: per block its SDs, then (correlated blocks with q > 1) the
    arctanh of its canonical partial correlations in the block's term order
    permuted by ``orders[block]``; then the parameters of a residual structure
    as the kernel takes them (one per ``extra_bounds`` entry, none without one);
    last ``log(sigma)``.
    """

    layout: Any
    blocks: tuple[Any, ...]
    orders: list[np.ndarray]
    extra_bounds: tuple[tuple[float | None, float | None], ...] = ()

    def slices(self) -> list[tuple[slice, slice | None]]:
        """Per block, the coordinates of its SDs and of its raw correlations (None if independent)."""
        out, position = [], 0
        for block in self.blocks:
            q = block.q
            sd = slice(position, position + q)
            position += q
            raw = None
            if block.correlated and q > 1:
                raw = slice(position, position + q * (q - 1) // 2)
                position += q * (q - 1) // 2
            out.append((sd, raw))
        return out

    @property
    def size(self) -> int:
        """Number of coordinates (including log sigma)."""
        return self.n_block_coords + len(self.extra_bounds) + 1

    @property
    def n_block_coords(self) -> int:
        """Number of coordinates of the random-effect blocks (SDs and raw correlations)."""
        slices = self.slices()
        last = slices[-1][1] or slices[-1][0]
        return int(last.stop)

    def covariances(self, coords: np.ndarray) -> tuple[list[np.ndarray], float]:
        """Block covariance matrices and sigma at ``coords``."""
        sigma = float(np.exp(coords[-1]))
        out = []
        for block, order, (sd_slice, raw_slice) in zip(self.blocks, self.orders, self.slices(),
                                                       strict=True):
            sd = coords[sd_slice]
            if raw_slice is None:
                corr = np.eye(block.q)
            else:
                permuted = _correlation_from_raw(coords[raw_slice], block.q)
                inverse = np.argsort(order)
                corr = permuted[np.ix_(inverse, inverse)]
            out.append(sd[:, None] * corr * sd[None, :])
        return out, sigma

    def theta(self, coords: np.ndarray) -> tuple[np.ndarray, float]:
        """lme4's theta (relative factors) and sigma at ``coords``."""
        covariances, sigma = self.covariances(coords)
        factors = [_psd_cholesky(cov) / sigma for cov in covariances]
        layout = self.layout
        theta = np.array([factors[layout.block[k]][layout.row[k], layout.col[k]]
                          for k in range(layout.size)])
        if self.extra_bounds:  # the residual structure's parameters follow the blocks' theta
            theta = np.concatenate([theta, coords[self.n_block_coords:-1]])
        return theta, sigma

    def coords(self, covariances: list[np.ndarray], sigma: float,
               extra: np.ndarray | None = None) -> np.ndarray:
        """Coordinates of given block covariances, residual-structure parameters and sigma."""
        parts = []
        for block, order, cov in zip(self.blocks, self.orders, covariances, strict=True):
            sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            parts.append(sd)
            if block.correlated and block.q > 1:
                scale = np.where(sd > 0, sd, 1.0)
                corr = cov / np.outer(scale, scale)
                np.fill_diagonal(corr, 1.0)
                parts.append(_raw_from_correlation(corr[np.ix_(order, order)]))
        parts.append(np.zeros(0) if extra is None else np.asarray(extra, dtype=float))
        parts.append(np.array([np.log(sigma)]))
        return np.concatenate(parts)

    def bounds(self, log_sigma: float) -> list[tuple[float | None, float | None]]:
        """Optimiser bounds: SDs >= 0, raw correlations within +-12, log sigma within ``log_sigma`` +-15."""
        out: list[tuple[float | None, float | None]] = []
        for sd_slice, raw_slice in self.slices():
            out += [(0.0, None)] * (sd_slice.stop - sd_slice.start)
            if raw_slice is not None:
                out += [(-_RAW_LIMIT, _RAW_LIMIT)] * (raw_slice.stop - raw_slice.start)
        return out + list(self.extra_bounds) + [(log_sigma - 15.0, log_sigma + 15.0)]


def _ml_deviance(kernel: Any, n: int, theta: np.ndarray, sigma: float) -> float:
    """ML deviance at (theta, sigma) with the fixed effects at their best values."""
    try:
        comp = kernel.components(theta, reml=False, gradient=False)
    except FitError:  # theta so large that the system is numerically singular: far from the optimum
        return _FAR
    value = float(comp.ldL2 + n * np.log(2.0 * np.pi * sigma**2) + comp.r2 / sigma**2)
    return value if np.isfinite(value) else _FAR


def _ml_deviance_and_gradient(kernel: Any, n: int, param: VarianceParametrisation,
                              coords: np.ndarray, free: list[int]) -> tuple[float, np.ndarray]:
    """ML deviance at ``coords`` (fixed effects at their best values) and its gradient in ``free``.

    The deviance's gradient in (theta, sigma) is the kernel's exact one (the envelope
    theorem over beta); the map from the coordinates to (theta, sigma) has no data in it,
    so its Jacobian is taken by central differences (relative error about 1e-10, where
    differencing the deviance itself loses about half the digits and strands the optimiser).
    """
    theta, sigma = param.theta(coords)
    try:
        comp = kernel.components(theta, reml=False, gradient=True)
    except FitError:  # theta so large that the system is numerically singular: far from the optimum
        return _FAR, np.zeros(len(free))
    var = sigma**2
    value = float(comp.ldL2 + n * np.log(2.0 * np.pi * var) + comp.r2 / var)
    if not np.isfinite(value):
        return _FAR, np.zeros(len(free))
    d_theta = np.asarray(comp.d_logdet, dtype=float) + np.asarray(comp.d_r2, dtype=float) / var
    d_sigma = 2.0 * n / sigma - 2.0 * comp.r2 / (var * sigma)
    grad = np.empty(len(free))
    for position, k in enumerate(free):
        step = 1e-6 * max(1.0, abs(float(coords[k])))
        up, down = coords.copy(), coords.copy()
        up[k] += step
        down[k] -= step
        theta_up, sigma_up = param.theta(up)
        theta_down, sigma_down = param.theta(down)
        grad[position] = (d_theta @ (theta_up - theta_down) + d_sigma * (sigma_up - sigma_down)) / (2 * step)
    return value, grad


def _raw_of_correlation(value: float) -> float:
    """The raw coordinate (arctanh) of a correlation, kept finite at +-1."""
    return float(np.arctanh(np.clip(value, -0.999999999999, 0.999999999999)))


def _variance_profiles(fit: Any, reference: float) -> list[Profile]:
    """Profiles of the SDs, correlations and sigma of an ML fit."""
    design, kernel = fit.design, fit.kernel
    blocks, n = design.blocks, design.n
    covariances = fit.covariances()
    identity = [np.arange(b.q) for b in blocks]
    extra, extra_bounds = _residual_coordinates(fit)
    natural = VarianceParametrisation(kernel.cp.layout, blocks, identity, extra_bounds)
    slices = natural.slices()
    sd_positions = [k for sd_slice, _ in slices for k in range(sd_slice.start, sd_slice.stop)]
    n_block = natural.n_block_coords
    estimates = parameter_vector(fit)

    def build(orders: list[np.ndarray], index: int, name: str, low: float, high: float,
              to_coord: Callable[[float], float], scale: float,
              estimate: float | None = None) -> Profile:
        param = VarianceParametrisation(kernel.cp.layout, blocks, orders, extra_bounds)
        best = param.coords(covariances, fit.sigma, extra)
        bounds = param.bounds(float(best[-1]))
        free = [k for k in range(best.size) if k != index]
        # an SD at exactly 0 is a stationary point (the deviance depends on its square):
        # the second start lifts SDs off 0
        lifted = best.copy()
        lifted[sd_positions] = np.maximum(best[sd_positions], 0.05 * fit.sigma)
        state = {"start": best[free]}

        def deviance(value: float) -> float:
            def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
                coords = best.copy()
                coords[free] = x
                coords[index] = to_coord(value)
                return _ml_deviance_and_gradient(kernel, n, param, coords, free)

            free_bounds = [bounds[k] for k in free]
            dev, solution = minimise_profile(objective, state["start"], free_bounds, gradient=True)
            # where an SD ended at 0 or a correlation saturated (flat gradient in both cases)
            # the optimiser may be stranded: a second start from the lifted estimate decides
            coords = best.copy()
            coords[free] = solution
            at_zero = np.any(coords[sd_positions] < 1e-3 * fit.sigma)
            saturated = np.any(np.abs(np.delete(coords[:n_block], sd_positions)) > _RAW_LIMIT - 1e-3)
            if at_zero or saturated:
                dev_fresh, fresh = minimise_profile(objective, lifted[free], free_bounds,
                                                     gradient=True)
                if dev_fresh < dev:
                    dev, solution = dev_fresh, fresh
            state["start"] = solution
            return dev - reference

        # a correlation of a term whose SD is 0 is undefined (NaN): its profile starts at 0
        if estimate is None:
            estimate = float(estimates[name])
        return Profile(name, 0.0 if np.isnan(estimate) else estimate, low, high, scale, deviance)

    profiles = []
    for entry in variance_entries(blocks):
        sd_slice, raw_slice = slices[entry.block]
        if entry.col is None:
            sd = float(estimates[entry.name])
            profiles.append(build(identity, sd_slice.start + entry.row, entry.name, 0.0, np.inf, float,
                                  max(0.5 * sd, 1e-3 * fit.sigma)))
            continue
        # with the block reordered to (i, j, ...), the first raw coordinate is r_ij
        q, i, j = blocks[entry.block].q, entry.row, entry.col
        order = np.array([i, j] + [k for k in range(q) if k not in (i, j)])
        orders = [order if k == entry.block else identity[k] for k in range(len(blocks))]
        assert raw_slice is not None  # a correlation exists only in a correlated block
        profiles.append(build(orders, raw_slice.start, entry.name, -1.0, 1.0, _raw_of_correlation, 0.25))
    profiles.append(build(identity, natural.size - 1, "sigma", 1e-3 * fit.sigma, np.inf,
                          lambda v: float(np.log(max(v, 1e-300))), 0.1 * fit.sigma))
    # a residual structure's parameters, on the kernel's scale (mapped to natural ones after)
    names = [] if design.residual is None else residual_parameter_names(design.residual)
    for k, (name, (low, high)) in enumerate(zip(names, extra_bounds, strict=True)):
        profiles.append(build(identity, n_block + k, name,
                              -np.inf if low is None else low, np.inf if high is None else high,
                              float, 0.1, estimate=float(extra[k])))
    return profiles


def _residual_coordinates(fit: Any) -> tuple[np.ndarray, tuple[tuple[float | None, float | None], ...]]:
    """The residual structure's parameters of a fit and their optimiser box (empty without one)."""
    residual = fit.design.residual
    if residual is None:
        return np.zeros(0), ()
    params = np.asarray(fit.theta, dtype=float)[len(fit.theta) - residual.n_params:]
    lower, upper = residual.box()
    bounds = tuple((float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None)
                   for lo, hi in zip(lower, upper, strict=True))
    return params, bounds


def _with(params: np.ndarray, k: int, value: float) -> np.ndarray:
    out = np.array(params, dtype=float)
    out[k] = value
    return out


def profile_confint(fit: Any, level: float = 0.95) -> pd.DataFrame:
    """Profile-likelihood intervals of every parameter of an ML/REML fit.

    Parameters
    ----------
    fit : LmmResult
        The fit; a REML fit is refitted by ML first (as lme4 profiles the ML deviance).
    level : float
        Confidence level.

    Returns
    -------
    pandas.DataFrame
        Index: ``sd_<term>|<group>``, ``cor_<term2>.<term1>|<group>``,
        ``sigma`` and the fixed-effect names (lme4's order and names, with
        hierlm's term names); columns ``estimate`` (ML), ``lower``, ``upper``.
    """
    residual = fit.design.residual
    if residual is not None and not fit.design.blocks:
        return structured_profile_confint(fit, level)
    require_lme4_structures(fit.design.blocks, "Profile-likelihood intervals")
    if residual is not None:
        require_per_coordinate(residual)
    ml = fit.refit(reml=False, warn=False) if fit.reml else fit
    reference = float(ml.deviance)
    cutoff = float(chi2.ppf(level, 1))
    rows = []
    extra, _ = _residual_coordinates(ml)
    natural_names = residual_parameter_names(residual) if residual is not None else []
    with blas_threads(getattr(fit, "threads", 1)):
        for profile in _variance_profiles(ml, reference) + fixed_effect_profiles(ml, reference):
            ends = [profile_limit(profile, cutoff, -1), profile_limit(profile, cutoff, +1)]
            estimate = profile.estimate
            if profile.name in natural_names:  # kernel scale -> rho, phi, SD ratio (monotone)
                k = natural_names.index(profile.name)
                estimate = residual_natural(residual, extra, k)
                ends = sorted(residual_natural(residual, _with(extra, k, end), k) for end in ends)
            rows.append((profile.name, estimate, ends[0], ends[1]))
    frame = pd.DataFrame(rows, columns=["parameter", "estimate", "lower", "upper"])
    return frame.set_index("parameter")
