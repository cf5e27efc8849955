"""Large-sample uncertainty of a point fit (ML, REML, MAP) in one form for every table.

A point fit holds one "draw" (its estimates, :class:`~hierlm.results.draws.FitDraws`
with ``S = 1``). Its standard errors and intervals come from a
:class:`PointUncertainty`, which each point fit builds from its own engine:

* ``vcov_beta``: covariance of the fixed effects. ML/REML: lme4's ``vcov``,
  ``sigma^2 (R_X'R_X)^-1``; MAP: the Laplace approximation at the mode (see
  :func:`hierlm.bayes.map.laplace_uncertainty`).
* ``cond_var``: per block, the conditional covariance of each level's group
  effects given the estimates (lme4's ``condVar``,
  ``sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda'``), the same for MAP.
* ``varpar`` and ``varpar_cov``: the variance parameters in the engine's own
  coordinates and their covariance (ML/REML: ``(theta, sigma)`` with lmerTest's
  ``2 H^-1``; MAP: ``(theta, log sigma)`` from the Laplace approximation), and
  ``covariances_of``, the engine's map from those coordinates to the blocks'
  covariance matrices and sigma.

Predictions and per-level coefficients (``x' beta + z' b``) get Henderson's
prediction error variance, from the mixed-model equations at the estimates
(:class:`MixedModelEquations`): with ``A = Lambda'Z'Z Lambda + I``,
``w = Lambda' z`` and ``m = X'Z Lambda A^-1 w`` (minus the change of
``z' b-hat`` per unit of ``beta``),

    Var(x' beta-hat + z' b-hat - x' beta - z' b) = (x - m)' V_beta (x - m) + sigma^2 w' A^-1 w,

which accounts for the covariance between the fixed effects and the
conditional modes (lme4 and lmerTest report no such standard error). It
needs ``A^-1`` densely, so above ``MME_LIMIT`` random-effect columns the
covariance between ``beta-hat`` and the modes and between the modes of
different factors is left out (``x' V_beta x + z' C z``), and tables say so
in ``attrs["std_error"]``.

Standard deviations and correlations (the rows of ``varcorr``) get the delta
method's standard error and a Wald interval on the log (SDs) or atanh
(correlations) scale mapped back, so the interval stays inside (0, inf) or
(-1, 1). A component on its boundary (an SD of 0, a correlation of +-1, or
one involving a zero SD) has NaN standard error and interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hierlm.design.blocks import Design

__all__ = ["PointUncertainty", "MixedModelEquations", "varcorr_keys", "varcorr_values",
           "normal_quantile", "MME_LIMIT", "target_z"]

MME_LIMIT = 2000
"""Most random-effect columns for which prediction errors use the dense mixed-model equations.

Their cost is one dense inverse of ``A`` (about a second at this size); above
it the covariances between the fixed effects and the modes are left out.
"""
# Rows of a prediction handled at once.
_ROW_CHUNK = 20_000

# Relative step of the central differences of the delta method.
_STEP = 1e-6


def normal_quantile(prob: float, df: np.ndarray | float | None = None) -> np.ndarray:
    """The ``0.5 + prob / 2`` quantile of N(0, 1), or of Student's t with ``df`` where given."""
    from scipy import stats

    upper = 0.5 + prob / 2.0
    if df is None:
        return np.asarray(stats.norm.ppf(upper))
    df = np.asarray(df, dtype=float)
    return np.where(np.isfinite(df), stats.t.ppf(upper, np.where(np.isfinite(df), df, 1.0)),
                    stats.norm.ppf(upper))


def varcorr_keys(design: Design) -> list[tuple[str, str | None, str | None, int, int, int]]:
    """The rows of ``varcorr``: ``(group, term1, term2, block, i, j)``.

    Per block (lme4's label): one SD row per term (``term2`` None, ``i == j``),
    then one correlation row per pair of a correlated block; a final
    ``Residual`` row (block -1).
    """
    rows: list[tuple[str, str | None, str | None, int, int, int]] = []
    for k, (label, block) in enumerate(zip(design.block_labels(), design.blocks, strict=True)):
        rows += [(label, term, None, k, i, i) for i, term in enumerate(block.columns)]
        if block.correlated and block.q > 1:
            rows += [(label, block.columns[i], block.columns[j], k, i, j)
                     for i in range(block.q) for j in range(i + 1, block.q)]
    rows.append(("Residual", None, None, -1, 0, 0))
    return rows


def varcorr_values(design: Design, covariances: tuple[np.ndarray, ...] | list[np.ndarray],
                   sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SDs/correlations and variances/covariances of the ``varcorr`` rows, per draw.

    Parameters
    ----------
    design : Design
        The fitted design.
    covariances : sequence of numpy.ndarray
        Per block, covariance draws (S, q, q) on the response scale.
    sigma : numpy.ndarray
        Residual SD draws (S,).

    Returns
    -------
    sdcor, vcov : numpy.ndarray
        Shape (S, rows): the SD (or correlation; NaN when an SD is 0) and the
        variance (or covariance) of each row of :func:`varcorr_keys`.
    """
    keys = varcorr_keys(design)
    sigma = np.asarray(sigma, dtype=float)
    sdcor = np.empty((sigma.size, len(keys)))
    vcov = np.empty_like(sdcor)
    for r, (_, _, term2, k, i, j) in enumerate(keys):
        if k < 0:
            sdcor[:, r], vcov[:, r] = sigma, sigma ** 2
            continue
        cov = np.asarray(covariances[k], dtype=float)
        vcov[:, r] = cov[:, i, j]
        if term2 is None:
            sdcor[:, r] = np.sqrt(np.clip(cov[:, i, i], 0.0, None))
        else:
            denom = np.sqrt(np.clip(cov[:, i, i], 0.0, None) * np.clip(cov[:, j, j], 0.0, None))
            with np.errstate(invalid="ignore", divide="ignore"):
                sdcor[:, r] = np.where(denom > 0, cov[:, i, j] / np.where(denom > 0, denom, 1.0), np.nan)
    return sdcor, vcov


def _is_sd(design: Design) -> np.ndarray:
    return np.array([term2 is None for _, _, term2, *_ in varcorr_keys(design)])


def _link(values: np.ndarray, is_sd: np.ndarray) -> np.ndarray:
    """Log of the SD rows, atanh of the correlation rows (NaN on the boundary)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(is_sd, np.log(np.where(values > 0, values, np.nan)),
                       np.arctanh(np.where(np.abs(values) < 1, values, np.nan)))
    return np.asarray(out)


def target_z(design: Design) -> sp.csr_matrix:
    """Z of a (possibly new) design in the fitted design's column layout; unseen levels get 0."""
    parts = []
    for block in design.blocks:
        codes = np.asarray(block.codes)
        known = codes >= 0
        n, q = block.z.shape
        rows = np.repeat(np.arange(n)[known], q)
        cols = (codes[known, None] * q + np.arange(q)[None, :]).ravel()
        values = np.asarray(block.z, dtype=float)[known].ravel()
        parts.append(sp.csr_matrix((values, (rows, cols)), shape=(n, block.n_levels * q)))
    return sp.hstack(parts, format="csr") if parts else sp.csr_matrix((design.n, 0))


def _root(matrix: np.ndarray) -> np.ndarray:
    """A square root ``T`` with ``T T' = matrix`` of a positive semi-definite matrix."""
    values, vectors = np.linalg.eigh(matrix)
    return np.asarray(vectors * np.sqrt(np.clip(values, 0.0, None)))


class MixedModelEquations:
    """The mixed-model equations of a point fit at its estimates, for prediction error variances.

    Parameters
    ----------
    design : Design
        The fitted design.
    covariances : sequence of numpy.ndarray
        Per block, the estimated covariance matrix (q, q) on the response scale.
    sigma : float
        The estimated residual SD.
    residual_precision : scipy.sparse matrix, optional
        ``Omega^-1`` for a residual structure (``Var(e) = sigma^2 Omega``): the
        equations then weight ``X`` and ``Z`` with it (Henderson's equations with
        ``R = sigma^2 Omega``); identity when None.
    """

    def __init__(self, design: Design, covariances: list[np.ndarray], sigma: float,
                 residual_precision: sp.spmatrix | None = None) -> None:
        self.design = design
        self.sigma = float(sigma)
        roots = [_root(np.asarray(c, dtype=float) / self.sigma ** 2) for c in covariances]
        self.lam = sp.block_diag([sp.kron(sp.identity(b.n_levels), r) for b, r in
                                  zip(design.blocks, roots, strict=True)], format="csr") \
            if roots else sp.csr_matrix((0, 0))
        zl = (design.sparse_z() @ self.lam).tocsc()
        weighted = zl if residual_precision is None else sp.csc_matrix(residual_precision @ zl)
        a = (zl.T @ weighted).toarray() + np.eye(zl.shape[1])
        self.a_inv = np.linalg.inv(a)
        self.a_inv = 0.5 * (self.a_inv + self.a_inv.T)
        # m = P w for w = Lambda' z: P = X'Z Lambda A^-1, (p, m)
        self.p_matrix = np.asarray((weighted.T @ np.asarray(design.X, dtype=float)).T) @ self.a_inv

    def variance(self, x: np.ndarray, z: sp.spmatrix, vcov_beta: np.ndarray) -> np.ndarray:
        """Prediction error variance of ``x_i' beta + z_i' b`` per row (see the module docstring).

        Parameters
        ----------
        x : numpy.ndarray
            Fixed-effect rows, (r, p).
        z : scipy.sparse matrix
            Random-effect rows in the fitted design's layout, (r, m).
        vcov_beta : numpy.ndarray
            Covariance of the fixed effects.

        Returns
        -------
        numpy.ndarray
            Shape (r,).
        """
        x = np.asarray(x, dtype=float)
        out = np.empty(x.shape[0])
        z = sp.csr_matrix(z)
        for start in range(0, x.shape[0], _ROW_CHUNK):
            rows = slice(start, start + _ROW_CHUNK)
            w = sp.csr_matrix(z[rows] @ self.lam)
            d = x[rows] - w @ self.p_matrix.T
            # w' A^-1 w over each row's few nonzero entries (gathered, never densified)
            counts = np.diff(w.indptr)
            width = int(counts.max()) if counts.size else 0
            which = np.repeat(np.arange(counts.size), counts)
            slot = np.arange(w.nnz) - np.repeat(w.indptr[:-1], counts)
            cols = np.zeros((counts.size, width), dtype=np.intp)
            vals = np.zeros((counts.size, width))
            cols[which, slot], vals[which, slot] = w.indices, w.data
            quadratic = np.einsum("ra,rab,rb->r", vals, self.a_inv[cols[:, :, None], cols[:, None, :]], vals)
            out[rows] = np.einsum("ri,ij,rj->r", d, vcov_beta, d) + self.sigma ** 2 * quadratic
        return out


@dataclass(frozen=True, eq=False)
class PointUncertainty:
    """What the tables of a point fit need for standard errors and intervals.

    Attributes
    ----------
    vcov_beta : numpy.ndarray
        Covariance of the fixed effects, (p, p).
    cond_var : tuple of numpy.ndarray
        Per design block, conditional covariances of the levels' effects, (levels, q, q).
    varpar : numpy.ndarray
        The variance parameters in the engine's coordinates.
    varpar_cov : callable
        Zero-argument function returning their covariance (a Hessian is only
        computed when an SD's interval is asked for).
    covariances_of : callable
        ``varpar -> (list of block covariance matrices (q, q), sigma)``.
    source : str
        How the covariances were obtained, for the tables' ``attrs``.
    """

    vcov_beta: np.ndarray
    cond_var: tuple[np.ndarray, ...]
    varpar: np.ndarray
    varpar_cov: Callable[[], np.ndarray]
    covariances_of: Callable[[np.ndarray], tuple[list[np.ndarray], float]]
    source: str = ""
    residual_precision: Callable[[], Any] | None = None
    _mme: dict[str, MixedModelEquations | None] = field(default_factory=dict, repr=False)

    def equations(self, design: Design) -> MixedModelEquations | None:
        """The fit's :class:`MixedModelEquations` (built once); None above ``MME_LIMIT`` columns."""
        if "mme" not in self._mme:
            m = sum(b.n_levels * b.q for b in design.blocks)
            covariances, sigma = self.covariances_of(np.asarray(self.varpar, dtype=float))
            precision = None if self.residual_precision is None else self.residual_precision()
            self._mme["mme"] = (MixedModelEquations(design, covariances, sigma, precision)
                                if m <= MME_LIMIT else None)
        return self._mme["mme"]

    def prediction_variance(self, fitted: Design, x: np.ndarray, z: sp.spmatrix) -> tuple[np.ndarray, str]:
        """Variance of the estimate of ``x_i' beta + z_i' b`` per row, and how it was computed.

        ``z`` holds the rows in the fitted design's random-effect layout
        (:func:`target_z`). Returns the variance and ``"prediction error variance"``,
        or, above ``MME_LIMIT`` columns, ``x' V_beta x + z' C z`` and a note saying so.
        """
        equations = self.equations(fitted)
        if equations is not None:
            return equations.variance(x, z, self.vcov_beta), "prediction error variance"
        x = np.asarray(x, dtype=float)
        variance = np.einsum("ri,ij,rj->r", x, self.vcov_beta, x)
        z = sp.csr_matrix(z)
        offset = 0
        for block, cond_var in zip(fitted.blocks, self.cond_var, strict=True):
            # each row has its entries of this block in one level: gather (r, q) values and the level
            part = z[:, offset:offset + block.n_levels * block.q].tocoo()
            values = np.zeros((x.shape[0], block.q))
            levels = np.full(x.shape[0], -1)
            values[part.row, part.col % block.q] = part.data
            levels[part.row] = part.col // block.q
            known = levels >= 0
            rows = np.einsum("rq,rqs,rs->r", values, cond_var[np.where(known, levels, 0)], values)
            variance += np.where(known, rows, 0.0)
            offset += block.n_levels * block.q
        return variance, ("x' V_beta x + z' condVar z (covariances between beta-hat and the modes "
                          f"left out: more than {MME_LIMIT} random-effect columns)")

    def _sdcor_at(self, design: Design, varpar: np.ndarray) -> np.ndarray:
        covariances, sigma = self.covariances_of(varpar)
        values, _ = varcorr_values(design, [c[None] for c in covariances], np.array([sigma]))
        return values[0]

    def varcorr_intervals(self, design: Design, prob: float) -> tuple[np.ndarray, ...]:
        """Estimate, standard error and Wald interval (link scale) of every ``varcorr`` row.

        Parameters
        ----------
        design : Design
            The fitted design.
        prob : float
            Interval probability.

        Returns
        -------
        estimate, std_error, lower, upper : numpy.ndarray
            One entry per row of :func:`varcorr_keys`.
        """
        x = np.asarray(self.varpar, dtype=float)
        is_sd = _is_sd(design)
        estimate = self._sdcor_at(design, x)
        jacobian = np.empty((estimate.size, x.size))
        for k in range(x.size):
            step = _STEP * max(abs(x[k]), 1e-3)
            up, down = x.copy(), x.copy()
            up[k] += step
            down[k] -= step
            jacobian[:, k] = (_link(self._sdcor_at(design, up), is_sd)
                              - _link(self._sdcor_at(design, down), is_sd)) / (2 * step)
        cov = np.asarray(self.varpar_cov(), dtype=float)
        # coordinates without a covariance (a parameter on its bound, left out of a Laplace
        # approximation) leave the rows that depend on them without a standard error
        known = ~np.isnan(cov).all(axis=1)
        cov = np.where(np.isnan(cov) & known[:, None] & known[None, :], np.nan, np.nan_to_num(cov))
        depends = (np.abs(jacobian[:, ~known]) > 0).any(axis=1)
        with np.errstate(invalid="ignore"):
            se_link = np.sqrt(np.einsum("rk,kl,rl->r", jacobian, cov, jacobian))
        se_link = np.where(depends, np.nan, se_link)
        link = _link(estimate, is_sd)
        se_link = np.where(np.isfinite(link), se_link, np.nan)
        half = float(normal_quantile(prob)) * se_link
        with np.errstate(over="ignore", invalid="ignore"):
            lower = np.where(is_sd, np.exp(link - half), np.tanh(link - half))
            upper = np.where(is_sd, np.exp(link + half), np.tanh(link + half))
            # delta method back from the link scale: d sd = sd d log(sd), d r = (1 - r^2) d atanh(r)
            std_error = np.where(is_sd, estimate, 1.0 - estimate ** 2) * se_link
        return estimate, std_error, lower, upper

    def cond_var_table(self, design: Design) -> dict[str, np.ndarray]:
        """Conditional covariances keyed by block label (lme4's ``condVar`` per block)."""
        return dict(zip(design.block_labels(), self.cond_var, strict=True))

    def vcov_frame(self, design: Design) -> pd.DataFrame:
        """``vcov_beta`` labelled by the fixed-effect names."""
        names = list(design.fixed_names)
        return pd.DataFrame(self.vcov_beta, index=names, columns=names)
