"""Compiled log posterior of scalar-block mixed models (Gaussian, binomial logit, Poisson log) for nutpie.

The full formulation through PyTensor costs tens of milliseconds per gradient
on 100,000 rows and, with the data frozen into the graph, numba cannot cache
its compilation between processes. For the common case, every random-effect
block a scalar term (``(1 | g)`` or ``(0 + x | g)``, crossed or nested) and
the Gaussian identity, binomial logit or Poisson log family, this module
writes the log posterior and its gradient as one numba loop over the rows
(data passed as arguments, so the compiled function is cached on disk and
serves every data set). It is the same model as
:func:`hierlm.bayes.full.build_full_model` (checked against it in
``tests/bayes/test_glmm_kernel.py``):

* unconstrained vector ``x = (beta_c, log sd_1..K, [log sigma], e_1..K)``:
  ``beta_c`` the fixed effects at centred predictors (``beta`` is ``beta_c``
  with the intercept shifted by ``-xbar'beta_c``; the priors are those of
  ``beta``), ``log sigma`` for the Gaussian family only, ``e_k`` the levels'
  innovations ``z`` (non-centred, ``b = sd z``) or the effects ``b``
  themselves (centred blocks, :func:`hierlm.bayes.glmm_setup.centred_blocks`);
* ``eta_i = offset_i + xc_i'beta_c + beta_0 + sum_k z_ik b_k[level]`` with
  the Gaussian log-likelihood ``-w (y - eta)^2 / (2 sigma^2) - log sigma``
  (prior weights ``w`` scale the residual variance to ``sigma^2 / w``), the
  binomial ``s eta - n log(1 + e^eta)`` or the Poisson ``y eta - e^eta``
  (times the prior weights); constants dropped;
* priors from :func:`hierlm.bayes.kernel.log_prior_and_slope`, SDs and sigma
  on the log scale with their Jacobian.

For Gaussian crossed designs whose marginal form would carry a wide dense
Schur complement (InstEval: 1142 columns), this is the route of
``formulation="auto"`` (:mod:`hierlm.bayes.build`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.glmm_setup import centred_blocks, glmm_start
from hierlm.bayes.kernel import log_prior_and_slope
from hierlm.bayes.kernel_model import _prior_row
from hierlm.bayes.likelihoods import observed_data
from hierlm.bayes.naming import FIXEF, SIGMA

__all__ = ["KERNEL_FAMILIES", "glmm_kernel_applies", "logp_grad", "expand_plan", "expand_into",
           "GlmmKernel"]

#: (family, link) pairs the kernel writes, with their code in the compiled loop
KERNEL_FAMILIES = {("binomial", "logit"): 0, ("poisson", "log"): 1, ("gaussian", "identity"): 2}


def glmm_kernel_applies(built: BuiltModel) -> bool:
    """True for a full-formulation model the kernel covers.

    Every block a scalar term, the family and link in :data:`KERNEL_FAMILIES`,
    and independent residuals (a residual structure needs the marginal form).
    """
    family = built.family
    return (built.formulation == "full" and (family.name, family.link.name) in KERNEL_FAMILIES
            and built.design.residual is None
            and bool(built.design.blocks) and all(b.q == 1 for b in built.design.blocks))


@numba.njit(cache=True, error_model="numpy", nogil=True)
def logp_grad(x: np.ndarray, grad: np.ndarray, family: int, y: np.ndarray, trials: np.ndarray,
               weights: np.ndarray, offset: np.ndarray, xc: np.ndarray, codes: np.ndarray,
               zcol: np.ndarray, level_start: np.ndarray, centred: np.ndarray, intercept: int,
               xbar: np.ndarray, prior_code: np.ndarray, prior_par: np.ndarray,
               scale: np.ndarray) -> float:  # pragma: no cover - compiled
    """Log posterior at ``x``; fills ``grad``. ``scale`` is a work array of length K.

    Releases the GIL, so chains on several threads run in parallel.
    """
    n, p = xc.shape
    k_blocks = codes.shape[1]
    gaussian = family == 2
    levels_at = p + k_blocks + (1 if gaussian else 0)  # log sigma sits after the log SDs
    grad[:] = 0.0
    total = 0.0
    # fixed effects as written: beta = beta_c, intercept shifted by -xbar'beta_c
    shift = 0.0
    for j in range(p):
        shift += xbar[j] * x[j]
    for k in range(k_blocks):  # b = scale * e: 1 for centred blocks, sd for non-centred ones
        scale[k] = 1.0 if centred[k] else math.exp(x[p + k])
    precision = math.exp(-2.0 * x[p + k_blocks]) if gaussian else 1.0
    squares = 0.0
    # one pass over the rows: linear predictor, log-likelihood, d/d eta scattered to the gradient
    for i in range(n):
        e = offset[i]
        for j in range(p):
            e += xc[i, j] * x[j]
        for k in range(k_blocks):
            e += zcol[i, k] * scale[k] * x[levels_at + level_start[k] + codes[i, k]]
        if family == 0:
            # s e - n log(1 + exp(e)), stable in both tails, from one exp(-|e|)
            a = math.exp(-abs(e))
            soft = (e if e > 0 else 0.0) + math.log1p(a)
            prob = 1.0 / (1.0 + a) if e >= 0 else a / (1.0 + a)
            total += weights[i] * (y[i] * e - trials[i] * soft)
            r = weights[i] * (y[i] - trials[i] * prob)
        elif family == 1:
            mu = math.exp(e)
            total += weights[i] * (y[i] * e - mu)
            r = weights[i] * (y[i] - mu)
        else:
            # y ~ N(eta, sigma^2 / w): -w (y - eta)^2 / (2 sigma^2) - log sigma (+ constants)
            d = y[i] - e
            squares += weights[i] * d * d
            r = weights[i] * d * precision
        for j in range(p):
            grad[j] += xc[i, j] * r
        for k in range(k_blocks):
            slot = levels_at + level_start[k] + codes[i, k]
            contribution = zcol[i, k] * r
            grad[slot] += scale[k] * contribution
            if not centred[k]:
                grad[p + k] += scale[k] * x[slot] * contribution
    if gaussian:
        total += -0.5 * squares * precision - n * x[p + k_blocks]
        grad[p + k_blocks] += squares * precision - n
    for k in range(k_blocks):
        sd = math.exp(x[p + k])
        start = levels_at + level_start[k]
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
    if gaussian:  # sigma's prior (row p + K), on the log scale with its Jacobian
        row = p + k_blocks
        sigma = math.exp(x[row])
        lp, slope = log_prior_and_slope(prior_code[row], prior_par[row, 0], prior_par[row, 1],
                                        prior_par[row, 2], sigma)
        total += lp + x[row]
        grad[row] += slope * sigma + 1.0
    return total


#: kinds of stored variables in an expand plan: fixed effects, sigma, a block's SD, a block's effects
_FIXEF, _SIGMA, _SD, _RANEF = range(4)


def expand_plan(kernel: GlmmKernel, var_names: list[str]) -> tuple[np.ndarray, int]:
    """``(plan, total)``: rows ``(kind, block)`` of ``var_names`` for :func:`expand_into`; their length."""
    kinds: dict[str, tuple[int, int]] = {FIXEF: (_FIXEF, 0), SIGMA: (_SIGMA, 0)}
    for k, bn in enumerate(kernel.built.names):
        kinds[bn.sd] = (_SD, k)
        kinds[bn.ranef] = (_RANEF, k)
    unknown = [name for name in var_names if name not in kinds or (name == SIGMA and not kernel.gaussian)]
    if unknown:
        raise ValueError(f"the GLMM kernel does not store {unknown}")
    plan = np.array([kinds[name] for name in var_names], dtype=np.int64).reshape(-1, 2)
    return plan, sum(_plan_size(kernel, int(kind), int(block)) for kind, block in plan)


def _plan_size(kernel: GlmmKernel, kind: int, block: int) -> int:
    if kind == _FIXEF:
        return int(kernel.xc.shape[1])
    if kind == _RANEF:
        return int(kernel.level_start[block + 1] - kernel.level_start[block])
    return 1


@numba.njit(cache=True, nogil=True)
def expand_into(x: np.ndarray, out: np.ndarray, p: int, k_blocks: int, family: int,
                level_start: np.ndarray, centred: np.ndarray, intercept: int, xbar: np.ndarray,
                plan: np.ndarray) -> None:  # pragma: no cover - compiled
    """The stored variables at the kernel's vector ``x``, one after another in ``plan``'s order.

    ``fixef`` (the intercept shifted back by ``-xbar'beta_c``), ``sigma``,
    a block's SD, or its levels' effects (``sd z`` for non-centred blocks).
    """
    levels_at = p + k_blocks + (1 if family == 2 else 0)
    at = 0
    for row in range(plan.shape[0]):
        kind, k = plan[row, 0], plan[row, 1]
        if kind == 0:
            shift = 0.0
            for j in range(p):
                shift += xbar[j] * x[j]
            for j in range(p):
                out[at + j] = x[j] - shift if j == intercept else x[j]
            at += p
        elif kind == 1:
            out[at] = math.exp(x[p + k_blocks])
            at += 1
        elif kind == 2:
            out[at] = math.exp(x[p + k])
            at += 1
        else:
            scale = 1.0 if centred[k] else math.exp(x[p + k])
            start = levels_at + level_start[k]
            for j in range(level_start[k + 1] - level_start[k]):
                out[at + j] = scale * x[start + j]
            at += level_start[k + 1] - level_start[k]


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
        if family.name == "gaussian":
            rows.append(_prior_row(built.priors.sigma))
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
    def gaussian(self) -> bool:
        """True when the residual SD ``sigma`` is a parameter (at ``x[p + K]``, as ``log sigma``)."""
        return self.family_code == KERNEL_FAMILIES[("gaussian", "identity")]

    @property
    def levels_at(self) -> int:
        """Index of the first level value in the unconstrained vector."""
        return int(self.xc.shape[1] + len(self.built.names) + self.gaussian)

    @property
    def size(self) -> int:
        """Length of the unconstrained vector."""
        return self.levels_at + int(self.level_start[-1])

    def logp_function(self) -> Callable[..., tuple[float, np.ndarray]]:
        """``x -> (log posterior, gradient)``."""
        def logp(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
            # fresh work arrays per call: chains may call it from several threads at once
            grad, scale = np.empty(self.size), np.empty(len(self.built.names))
            value = logp_grad(np.asarray(x, dtype=float), grad, self.family_code, self.y, self.trials,
                               self.weights, self.offset, self.xc, self.codes, self.zcol,
                               self.level_start, self.centred, self.intercept, self.xbar,
                               self.prior_code, self.prior_par, scale)
            if not np.isfinite(value):
                return -np.inf, np.zeros_like(grad)
            return value, grad

        return logp

    def expand(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The stored variables (``fixef``, ``sigma``, ``sd_<block>``, ``ranef_<block>``) at ``x``."""
        names = self.variable_names()
        plan, total = expand_plan(self, names)
        flat = np.empty(total)
        expand_into(np.asarray(x, dtype=float), flat, self.xc.shape[1], len(self.built.names),
                    self.family_code, self.level_start, self.centred, self.intercept, self.xbar, plan)
        out, at = {}, 0
        for name, (kind, block) in zip(names, plan, strict=True):
            size = _plan_size(self, int(kind), int(block))
            values = flat[at:at + size]
            out[name] = (values if kind == _FIXEF else values.reshape(()) if kind == _SIGMA
                         else values[None, :] if kind == _RANEF else values.copy())
            at += size
        return out

    def variable_names(self) -> list[str]:
        """Every variable :meth:`expand` gives, in the order of the stored variables."""
        names = [FIXEF] + ([SIGMA] if self.gaussian else [])
        for bn in self.built.names:
            names += [bn.sd, bn.ranef]
        return names

    def _scale(self) -> float:
        """Unit of the linear predictor: the start's residual SD (Gaussian), 1 on a link scale."""
        return float(np.exp(self.start()[self.levels_at - 1])) if self.gaussian else 1.0

    def jitter(self) -> np.ndarray:
        """Half-widths of the chains' uniform start jitter, in each coordinate's units.

        PyMC's +-1 on every unconstrained coordinate puts a slope on a
        predictor with an SD of 20 (grouseticks' ``cHEIGHT``) at +-1, i.e. a
        linear predictor of +-60 whose ``exp`` overflows, and a chain started
        there never recovers. Here, in units ``u`` of the linear predictor
        (the starting residual SD of a Gaussian model, 1 on a link scale):
        +-0.5 u / sd(x) for the coefficients (+-0.5 u for the intercept),
        +-0.5 on log SDs and log sigma, +-0.1 u on centred levels' effects and
        +-0.1 on non-centred innovations.
        """
        p = self.xc.shape[1]
        unit = self._scale()
        out = np.full(self.size, 0.1)
        out[:p] = [unit * (0.5 if j == self.intercept else 0.5 / _column_spread(self.xc[:, j]))
                   for j in range(p)]
        out[p:self.levels_at] = 0.5
        for block, centred in enumerate(self.centred):
            if centred:
                start = self.levels_at + int(self.level_start[block])
                out[start:self.levels_at + int(self.level_start[block + 1])] = 0.1 * unit
        return out

    def start(self) -> np.ndarray:
        """Starting point: the full model's start values, level values at 0.

        Non-Gaussian: the intercept at the link of the mean, SDs 0.5
        (:func:`hierlm.bayes.glmm_setup.glmm_start`). Gaussian: least-squares
        coefficients (at centred predictors), sigma their residual SD and
        every SD half of it, as the marginal kernel starts.
        """
        p, k = self.xc.shape[1], len(self.built.names)
        x = np.zeros(self.size)
        if self.gaussian:
            target = self.y - self.offset
            root = np.sqrt(self.weights)
            beta, *_ = np.linalg.lstsq(self.xc * root[:, None], target * root, rcond=None)
            resid = (target - self.xc @ beta) * root
            sigma = float(np.sqrt(resid @ resid / max(self.y.size - p, 1))) or 1.0
            x[:p] = beta
            x[p:p + k] = np.log(sigma / 2)
            x[p + k] = np.log(sigma)
            return x
        start = glmm_start(self.built.design, self.built.family)
        x[:p] = start.beta
        x[p:p + k] = np.log(start.sd)
        return x


def _column_spread(column: np.ndarray) -> float:
    spread = float(np.std(column))
    return spread if np.isfinite(spread) and spread > 0 else 1.0
