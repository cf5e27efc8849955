"""One compiled log posterior for the common residual models: no random effects, one correlation.

``weight ~ week`` with ``residual="ar1(week | id)"`` (or ``cs``, ``car1``): the
sampler's vector is ``[beta | log sigma | u]`` with the correlation
``rho = low + (high - low) logistic(u)`` (PyMC's interval transform, so the
same coordinates and the same density as the general route of
:mod:`hierlm.bayes.residual_nutpie`, which the tests check). The log
posterior and its gradient are written out: the priors of the coefficients
and sigma (:func:`hierlm.bayes.kernel.log_prior_and_slope`), the uniform
prior of the correlation with its log-Jacobian, the residual matrix over the
distinct times and its derivative in ``rho`` (numba), and the per-group
density of :mod:`hierlm.bayes.residual_kernel` (shared ``W`` for groups with
the same times, one factorisation per group otherwise), without the two
compiled PyTensor calls and the NumPy glue of the general route.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.kernel import log_prior_and_slope
from hierlm.bayes.naming import FIXEF, FIXEF_DIM, SIGMA
from hierlm.bayes.residual_kernel import general_batch, shared_batch
from hierlm.bayes.residual_likelihood import ResidualLikelihood
from hierlm.bayes.structures import residual_structure

__all__ = ["FAST_STRUCTURES", "fast_route_applies", "FastResidualDensity"]

#: Residual structures with the compiled route (one correlation parameter, one variance).
FAST_STRUCTURES = {"ar1": 0, "cs": 1, "car1": 2}
_LOG_2PI = math.log(2.0 * math.pi)


def fast_route_applies(built: BuiltModel) -> bool:
    """True without random effects or ``variance=``, for a homogeneous ``ar1``, ``cs`` or ``car1``."""
    design = built.design
    residual = design.residual
    if residual is None or design.blocks or residual.n_variance:
        return False
    structure = residual.structure
    if structure.heterogeneous or structure.base not in FAST_STRUCTURES:
        return False
    from hierlm.bayes.kernel_model import _prior_row

    kinds = {p.kind for p in residual_structure(residual).parameters}
    try:  # every prior of the coefficients and sigma has a compiled density
        for prior in [built.priors.fixef(name) for name in design.fixed_names] + [built.priors.sigma]:
            _prior_row(prior)
    except (ValueError, KeyError):
        return False
    return kinds <= {"rho", "phi"}


@njit(cache=True, error_model="numpy")
def _matrix(kind: int, rho: float, lags: np.ndarray, s: np.ndarray, d_s: np.ndarray) -> None:
    """``S`` (T, T) and ``dS/d rho`` of ar1 (integer lags), cs or car1 (real lags)."""
    n = lags.shape[0]
    for a in range(n):
        for b in range(n):
            lag = lags[a, b]
            if kind == 1:  # cs
                s[a, b] = 1.0 if a == b else rho
                d_s[a, b] = 0.0 if a == b else 1.0
            elif lag == 0.0:
                s[a, b] = 1.0
                d_s[a, b] = 0.0
            else:
                s[a, b] = rho ** lag
                d_s[a, b] = lag * rho ** (lag - 1.0)


@njit(cache=True, error_model="numpy")
def _shared_logp(x: np.ndarray, grad: np.ndarray, p: int, kind: int, low: float, high: float,
                 lags: np.ndarray, codes: np.ndarray, pars: np.ndarray, slots: np.ndarray,
                 copies: int, cxx: np.ndarray, cxy: np.ndarray, cyy: np.ndarray, n: int) -> float:
    """The log posterior and its gradient (in place) when every group shares one ``W``."""
    beta = x[:p]
    sigma = math.exp(x[p])
    u = x[p + 1]
    logistic = 1.0 / (1.0 + math.exp(-u)) if u > -700.0 else 0.0
    rho = low + (high - low) * logistic
    n_times = lags.shape[0]
    s = np.empty((n_times, n_times))
    d_s = np.empty((n_times, n_times))
    _matrix(kind, rho, lags, s, d_s)
    var = sigma * sigma
    d_beta = np.zeros(p)
    gs = np.zeros((n_times, n_times))
    logdet, quad = shared_batch(beta, var, s, slots, copies, cxx, cxy, cyy, True, d_beta, gs)
    value = -0.5 * (logdet + n * (_LOG_2PI + math.log(var)) + quad / var)
    for k in range(p):
        grad[k] = d_beta[k]
    grad[p] = -n + quad / var
    d_rho = 0.0
    for a in range(n_times):
        for b in range(n_times):
            d_rho += gs[a, b] * d_s[a, b]
    grad[p + 1] = d_rho * (high - low) * logistic * (1.0 - logistic)
    for k in range(p):
        lp, slope = log_prior_and_slope(codes[k], pars[k, 0], pars[k, 1], pars[k, 2], beta[k])
        value += lp
        grad[k] += slope
    lp, slope = log_prior_and_slope(codes[p], pars[p, 0], pars[p, 1], pars[p, 2], sigma)
    value += lp + x[p]
    grad[p] += slope * sigma + 1.0
    value += math.log(max(logistic * (1.0 - logistic), 1e-300))
    grad[p + 1] += 1.0 - 2.0 * logistic
    return value


class FastResidualDensity:
    """The compiled log posterior of a model :func:`fast_route_applies` to.

    Parameters
    ----------
    built : BuiltModel
        The marginal model.
    """

    def __init__(self, built: BuiltModel) -> None:
        from hierlm.bayes.kernel_model import _prior_row

        design = built.design
        residual = design.residual
        assert residual is not None
        self.built = built
        self.p = design.p
        self.kind = FAST_STRUCTURES[residual.structure.base]
        parameterisation = residual_structure(residual)
        self.parameter = parameterisation.parameters[0]
        self.low, self.high = (float(v) for v in parameterisation.bounds(self.parameter,
                                                                         built.priors))
        rows = [_prior_row(built.priors.fixef(name)) for name in design.fixed_names]
        rows.append(_prior_row(built.priors.sigma))
        self.codes = np.array([code for code, _ in rows], dtype=np.int64)
        self.pars = np.array([par for _, par in rows], dtype=float)
        structure = residual.structure
        if structure.base == "car1":
            times = np.asarray(structure.times, dtype=float)
            self.lags = np.abs(times[:, None] - times[None, :])
        else:
            grid = getattr(structure, "_grid", None)
            slots = (np.asarray(grid, dtype=float) if grid is not None
                     else np.arange(structure.n_times, dtype=float))
            self.lags = np.abs(slots[:, None] - slots[None, :])
        self.likelihood = ResidualLikelihood(design)
        batches = self.likelihood.batches
        #: the one batch when every group has the same times (balanced data)
        self.shared = batches[0] if len(batches) == 1 and batches[0].shared else None
        self.size = self.p + 2

    def logp(self, x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
        """``(log posterior, gradient)`` at the unconstrained ``x``."""
        x = np.ascontiguousarray(x, dtype=float)
        grad = np.zeros(self.size)
        try:
            if self.shared is not None:  # one compiled call
                batch = self.shared
                assert batch.cxx is not None and batch.cxy is not None and batch.cyy is not None
                value = _shared_logp(x, grad, self.p, self.kind, self.low, self.high, self.lags,
                                     self.codes, self.pars, batch.slots[0], batch.rows.shape[0],
                                     batch.cxx, batch.cxy, batch.cyy, self.likelihood.n)
            else:
                n_times = self.lags.shape[0]
                value = self._value(x, grad, np.empty((n_times, n_times)),
                                    np.empty((n_times, n_times)))
        except (np.linalg.LinAlgError, ZeroDivisionError, ValueError):
            return -np.inf, np.zeros_like(x)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return -np.inf, np.zeros_like(x)
        return value, grad

    def _value(self, x: np.ndarray, grad: np.ndarray, s: np.ndarray, d_s: np.ndarray) -> float:
        p = self.p
        beta, sigma = x[:p], math.exp(x[p])
        u = x[p + 1]
        logistic = 1.0 / (1.0 + math.exp(-u)) if u > -700 else 0.0
        rho = self.low + (self.high - self.low) * logistic
        _matrix(self.kind, rho, self.lags, s, d_s)
        var = sigma * sigma
        d_beta = np.zeros(p)
        gs = np.zeros_like(s)
        logdet, quad = 0.0, 0.0
        for batch in self.likelihood.batches:
            if batch.shared:
                assert batch.cxx is not None and batch.cxy is not None and batch.cyy is not None
                part = shared_batch(beta, var, s, batch.slots[0], batch.rows.shape[0],
                                    batch.cxx, batch.cxy, batch.cyy, True, d_beta, gs)
            else:
                part = general_batch(beta, var, s, np.ones(1), np.zeros((0, 0)), batch.x,
                                     batch.y, batch.slots, batch.codes, batch.z_all, True,
                                     d_beta, gs, np.zeros(1), np.zeros((0, 0)))
            logdet += part[0]
            quad += part[1]
        n = self.likelihood.n
        value = -0.5 * (logdet + n * (_LOG_2PI + math.log(var)) + quad / var)
        grad[:p] = d_beta
        grad[p] = (-n + quad / var)  # d/d log sigma
        d_rho = float(np.sum(gs * d_s))
        grad[p + 1] = d_rho * (self.high - self.low) * logistic * (1.0 - logistic)
        # priors: coefficients, sigma (with the log-Jacobian), uniform rho (with its Jacobian)
        for k in range(p):
            lp, slope = log_prior_and_slope(int(self.codes[k]), self.pars[k, 0], self.pars[k, 1],
                                            self.pars[k, 2], float(beta[k]))
            value += lp
            grad[k] += slope
        lp, slope = log_prior_and_slope(int(self.codes[p]), self.pars[p, 0], self.pars[p, 1],
                                        self.pars[p, 2], sigma)
        value += lp + x[p]
        grad[p] += slope * sigma + 1.0
        value += math.log(max(logistic * (1.0 - logistic), 1e-300))
        grad[p + 1] += 1.0 - 2.0 * logistic
        return float(value)

    def expand(self, x: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
        """The stored variables of one point."""
        u = float(x[self.p + 1])
        rho = self.low + (self.high - self.low) / (1.0 + math.exp(-u))
        return {FIXEF: np.array(x[:self.p]), SIGMA: np.array(math.exp(float(x[self.p]))),
                self.parameter.name: np.array(rho)}

    def start(self) -> np.ndarray:
        """Least-squares coefficients and SD, the correlation at its range's middle."""
        design = self.built.design
        x, y = np.asarray(design.X, float), np.asarray(design.y, float)
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        resid = y - x @ beta
        sigma = float(np.sqrt(resid @ resid / max(len(y) - x.shape[1], 1))) or 1.0
        return np.concatenate([beta, [np.log(sigma), 0.0]])

    def nutpie_model(self, var_names: list[str]) -> Any:
        """A nutpie model over ``[beta | log sigma | u]``, chains jittered by +-1 around :meth:`start`."""
        import pandas as pd

        from hierlm.bayes.kernel_model import nutpie_model

        coords = {FIXEF_DIM: pd.Index(list(self.built.design.fixed_names))}
        return nutpie_model(self.size, self.logp, self.expand, self.start(), np.ones(self.size),
                            var_names, (coords, {FIXEF: (FIXEF_DIM,)}))
