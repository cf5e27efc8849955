"""Compiled log posterior of scalar-block GLMMs (binomial logit, Poisson log) for nutpie.

The full formulation through PyTensor costs tens of milliseconds per gradient
on 100,000 rows and, with the data frozen into the graph, numba cannot cache
its compilation between processes. For the common case, every random-effect
block a scalar term (``(1 | g)``, crossed or nested) and the canonical link of
the binomial (logit) or Poisson (log) family, this module writes the log
posterior and its gradient as one numba loop over the rows (data passed as
arguments, so the compiled function is cached on disk and serves every data
set). It is the same model as :func:`hierlm.bayes.full.build_full_model`
(checked against it in ``tests/bayes/test_glmm_kernel.py``):

* unconstrained vector ``x = (beta_c, log sd_1..K, e_1..K)``: ``beta_c`` the
  fixed effects at centred predictors (``beta`` is ``beta_c`` with the
  intercept shifted by ``-xbar'beta_c``; the priors are those of ``beta``),
  ``e_k`` the levels' innovations ``z`` (non-centred, ``b = sd z``) or the
  effects ``b`` themselves (centred blocks,
  :func:`hierlm.bayes.glmm_setup.centred_blocks`);
* ``eta_i = offset_i + xc_i'beta_c + beta_0 + sum_k z_ik b_k[level]`` with
  the binomial log-likelihood ``s eta - n log(1 + e^eta)`` or the Poisson
  ``y eta - e^eta`` (times the prior weights; constants dropped);
* priors from :func:`hierlm.bayes.kernel.log_prior_and_slope`, SDs on the
  log scale with their Jacobian.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.glmm_setup import centred_blocks, glmm_start
from hierlm.bayes.kernel import log_prior_and_slope
from hierlm.bayes.kernel_model import _prior_row
from hierlm.bayes.likelihoods import observed_data
from hierlm.bayes.naming import FIXEF, FIXEF_DIM

__all__ = ["KERNEL_FAMILIES", "glmm_kernel_applies", "GlmmKernel", "compile_glmm_kernel_for_nutpie"]

#: (family, link) pairs the kernel writes, with their code in the compiled loop
KERNEL_FAMILIES = {("binomial", "logit"): 0, ("poisson", "log"): 1}


def glmm_kernel_applies(built: BuiltModel) -> bool:
    """True for a full-formulation model the kernel covers (scalar blocks, canonical link)."""
    family = built.family
    return (built.formulation == "full" and (family.name, family.link.name) in KERNEL_FAMILIES
            and bool(built.design.blocks) and all(b.q == 1 for b in built.design.blocks))


@numba.njit(cache=True, error_model="numpy")
def _logp_grad(x: np.ndarray, grad: np.ndarray, family: int, y: np.ndarray, trials: np.ndarray,
               weights: np.ndarray, offset: np.ndarray, xc: np.ndarray, codes: np.ndarray,
               zcol: np.ndarray, level_start: np.ndarray, centred: np.ndarray, intercept: int,
               xbar: np.ndarray, prior_code: np.ndarray, prior_par: np.ndarray,
               eta: np.ndarray, resid: np.ndarray) -> float:  # pragma: no cover - compiled
    """Log posterior at ``x``; fills ``grad``. ``eta``/``resid`` are work arrays of length n."""
    n, p = xc.shape
    k_blocks = codes.shape[1]
    grad[:] = 0.0
    total = 0.0
    # fixed effects as written: beta = beta_c, intercept shifted by -xbar'beta_c
    shift = 0.0
    for j in range(p):
        shift += xbar[j] * x[j]
    for i in range(n):
        acc = offset[i]
        for j in range(p):
            acc += xc[i, j] * x[j]
        eta[i] = acc
    for k in range(k_blocks):
        sd = math.exp(x[p + k])
        start = p + k_blocks + level_start[k]
        for i in range(n):
            value = x[start + codes[i, k]]
            eta[i] += zcol[i, k] * (value if centred[k] else sd * value)
    for i in range(n):
        e = eta[i]
        if family == 0:
            # s e - n log(1 + exp(e)), stable in both tails, from one exp(-|e|)
            a = math.exp(-abs(e))
            soft = (e if e > 0 else 0.0) + math.log1p(a)
            prob = 1.0 / (1.0 + a) if e >= 0 else a / (1.0 + a)
            total += weights[i] * (y[i] * e - trials[i] * soft)
            resid[i] = weights[i] * (y[i] - trials[i] * prob)
        else:
            mu = math.exp(e)
            total += weights[i] * (y[i] * e - mu)
            resid[i] = weights[i] * (y[i] - mu)
    for i in range(n):
        r = resid[i]
        for j in range(p):
            grad[j] += xc[i, j] * r
    for k in range(k_blocks):
        sd = math.exp(x[p + k])
        start = p + k_blocks + level_start[k]
        for i in range(n):
            slot = start + codes[i, k]
            contribution = zcol[i, k] * resid[i]
            if centred[k]:
                grad[slot] += contribution
            else:
                grad[slot] += sd * contribution
                grad[p + k] += sd * x[slot] * contribution
        levels = level_start[k + 1] - level_start[k]
        for j in range(levels):
            value = x[start + j]
            if centred[k]:
                total += -0.5 * value * value / (sd * sd) - x[p + k]
                grad[start + j] -= value / (sd * sd)
                grad[p + k] += value * value / (sd * sd) - 1.0
            else:
                total += -0.5 * value * value
                grad[start + j] -= value
    # priors of the coefficients as written
    for j in range(p):
        value = x[j] - shift if j == intercept else x[j]
        lp, slope = log_prior_and_slope(prior_code[j], prior_par[j, 0], prior_par[j, 1],
                                        prior_par[j, 2], value)
        total += lp
        grad[j] += slope
    if intercept >= 0:  # d beta_0 / d beta_c,j = -xbar_j
        _, slope0 = log_prior_and_slope(prior_code[intercept], prior_par[intercept, 0],
                                          prior_par[intercept, 1], prior_par[intercept, 2],
                                          x[intercept] - shift)
        for j in range(p):
            if j != intercept:
                grad[j] -= xbar[j] * slope0
    for k in range(k_blocks):
        sd = math.exp(x[p + k])
        row = p + k
        lp, slope = log_prior_and_slope(prior_code[row], prior_par[row, 0], prior_par[row, 1],
                                        prior_par[row, 2], sd)
        total += lp + x[p + k]  # log Jacobian of sd = exp(x)
        grad[p + k] += slope * sd + 1.0
    return total


@dataclass(frozen=True, eq=False)
class GlmmKernel:
    """The data and layout of one model, and ``x -> (log posterior, gradient)``."""

    built: BuiltModel
    family_code: int
    y: np.ndarray
    trials: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    xc: np.ndarray
    codes: np.ndarray
    zcol: np.ndarray
    level_start: np.ndarray
    centred: np.ndarray
    intercept: int
    xbar: np.ndarray
    prior_code: np.ndarray
    prior_par: np.ndarray

    @classmethod
    def from_built(cls, built: BuiltModel) -> GlmmKernel:
        """Pack a built model (see :func:`glmm_kernel_applies`)."""
        design, family = built.design, built.family
        data = observed_data(design)
        binomial = family.name == "binomial"
        X = np.asarray(design.X, dtype=float)
        names = list(design.fixed_names)
        intercept = names.index("Intercept") if "Intercept" in names else -1
        xbar = X.mean(axis=0) if intercept >= 0 else np.zeros(design.p)
        if intercept >= 0:
            xbar[intercept] = 0.0
        xc = X - xbar[None, :]
        rows = [_prior_row(built.priors.fixef(name)) for name in names]
        rows += [_prior_row(built.priors.sd(bn.label, bn.block.columns[0])) for bn in built.names]
        sizes = [b.n_levels for b in design.blocks]
        return cls(
            built=built,
            family_code=KERNEL_FAMILIES[(family.name, family.link.name)],
            y=(data.successes.astype(float) if binomial else data.y.astype(float)),
            trials=(np.rint(data.weights) if binomial else np.ones(design.n)),
            weights=(np.ones(design.n) if binomial else data.weights.astype(float)),
            offset=(data.offset if data.offset is not None else np.zeros(design.n)).astype(float),
            xc=np.ascontiguousarray(xc),
            codes=np.ascontiguousarray(np.column_stack([b.codes for b in design.blocks]).astype(np.int64)),
            zcol=np.ascontiguousarray(np.column_stack([np.asarray(b.z, float)[:, 0] for b in design.blocks])),
            level_start=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            centred=np.array(centred_blocks(design, family), dtype=np.bool_),
            intercept=intercept, xbar=xbar,
            prior_code=np.array([code for code, _ in rows], dtype=np.int64),
            prior_par=np.array([par for _, par in rows], dtype=float),
        )

    @property
    def size(self) -> int:
        """Length of the unconstrained vector."""
        return int(self.xc.shape[1] + len(self.built.names) + self.level_start[-1])

    def logp_function(self) -> Callable[..., tuple[float, np.ndarray]]:
        """``x -> (log posterior, gradient)``."""
        eta, resid = np.empty(self.y.size), np.empty(self.y.size)

        def logp(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
            grad = np.empty(self.size)
            value = _logp_grad(np.asarray(x, dtype=float), grad, self.family_code, self.y, self.trials,
                               self.weights, self.offset, self.xc, self.codes, self.zcol,
                               self.level_start, self.centred, self.intercept, self.xbar,
                               self.prior_code, self.prior_par, eta, resid)
            if not np.isfinite(value):
                return -np.inf, np.zeros_like(grad)
            return value, grad

        return logp

    def expand(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The stored variables (``fixef``, ``sd_<block>``, ``ranef_<block>``) at ``x``."""
        p = self.xc.shape[1]
        beta = np.array(x[:p], dtype=float)
        if self.intercept >= 0:
            beta[self.intercept] -= float(self.xbar @ x[:p])
        out = {FIXEF: beta}
        for k, bn in enumerate(self.built.names):
            sd = float(np.exp(x[p + k]))
            start = p + len(self.built.names) + int(self.level_start[k])
            values = np.array(x[start:start + bn.block.n_levels], dtype=float)
            out[bn.sd] = np.array([sd])
            out[bn.ranef] = (values if self.centred[k] else sd * values)[None, :]
        return out

    def jitter(self) -> np.ndarray:
        """Half-widths of the chains' uniform start jitter, in each coordinate's units.

        PyMC's +-1 on every unconstrained coordinate puts a slope on a
        predictor with an SD of 20 (grouseticks' ``cHEIGHT``) at +-1, i.e. a
        linear predictor of +-60 whose ``exp`` overflows, and a chain started
        there never recovers. Here: +-0.5 / sd(x) for the coefficients,
        +-0.5 on log SDs and +-0.1 on the levels' values.
        """
        p, k = self.xc.shape[1], len(self.built.names)
        out = np.full(self.size, 0.1)
        out[:p] = [0.5 if j == self.intercept else 0.5 / _column_spread(self.xc[:, j]) for j in range(p)]
        out[p:p + k] = 0.5
        return out

    def start(self) -> np.ndarray:
        """Starting point: the full model's start values (intercept at the link of the mean)."""
        start = glmm_start(self.built.design, self.built.family)
        x = np.zeros(self.size)
        x[:self.xc.shape[1]] = start.beta
        x[self.xc.shape[1]:self.xc.shape[1] + len(self.built.names)] = np.log(start.sd)
        return x


def _column_spread(column: np.ndarray) -> float:
    spread = float(np.std(column))
    return spread if np.isfinite(spread) and spread > 0 else 1.0


def compile_glmm_kernel_for_nutpie(built: BuiltModel, var_names: list[str]) -> Any:
    """The kernel as a nutpie model storing ``var_names`` (:func:`hierlm.bayes.sample.stored_variables`).

    The sampler's vector carries the intercept in one centred block's level values
    (:func:`hierlm.bayes.glmm_centring.intercept_block`).
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    from hierlm.bayes.glmm_centring import intercept_centred

    kernel = GlmmKernel.from_built(built)
    logp, to_kernel, start = intercept_centred(kernel)
    logp(start)  # compile (or load from numba's cache) before sampling starts
    example = kernel.expand(to_kernel(start))
    shapes = [tuple(np.shape(example[name])) for name in var_names]

    def make_expand_fn(seed1: int, seed2: int, chain: int) -> Callable[..., dict[str, np.ndarray]]:
        def expand(x: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
            values = kernel.expand(to_kernel(x))
            return {name: values[name] for name in var_names}

        return expand

    jitter = kernel.jitter()

    def make_initial_point(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return start + jitter * rng.uniform(-1.0, 1.0, size=start.size)

    coords: dict[str, Any] = {FIXEF_DIM: pd.Index(list(built.design.fixed_names))}
    dims: dict[str, tuple[str, ...]] = {FIXEF: (FIXEF_DIM,)}
    for bn in built.names:
        for dim, labels in bn.coords().items():
            coords[dim] = pd.Index(labels)
        dims[bn.sd] = (bn.term_dim,)
        dims[bn.ranef] = bn.ranef_dims
    return from_pyfunc(
        ndim=kernel.size,
        make_logp_fn=lambda: logp,
        make_expand_fn=make_expand_fn,
        make_initial_point_fn=make_initial_point,
        expanded_dtypes=[np.dtype("float64")] * len(var_names),
        expanded_shapes=shapes,
        expanded_names=list(var_names),
        coords=coords,
        dims={name: dims[name] for name in var_names if name in dims},
    )
