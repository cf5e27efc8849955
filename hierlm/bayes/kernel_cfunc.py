"""The compiled log posterior of the one-factor marginal model: nutpie C callbacks, one per block width.

The one-factor Gaussian marginal model costs a few microseconds per gradient
(the pieces are in :mod:`hierlm.bayes.kernel`). Through nutpie's Python route
a wrapper, numba's dispatch of its arguments and the GIL that four chains
queue for would cost more than that, so the log posterior is written as C
callbacks (:mod:`hierlm.bayes.nutpie_callbacks`, the route of the GLMM
kernel) that nutpie's threads call directly: the chains run in parallel.
Python callers (:func:`kernel_logp`: tests, the scale benchmark) call the very
same callback through ctypes, so there is one compiled log posterior.

There is one callback per block width: closed forms for one column (a random
intercept or slope) and for two (intercept and slope), the per-level Cholesky
otherwise; only the model's own is compiled (each is cached on disk by numba),
so a random-intercept-and-slope model does not compile the general loop.
The sampler stores the unconstrained vector (the expand callback is a copy);
the named variables are computed from all draws at once afterwards by
:func:`hierlm.bayes.kernel_model.expand_draws`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numba
import numpy as np

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.groupstats import GroupStats
from hierlm.bayes.kernel import (
    COMPILED_ONLY,
    group_sums,
    group_sums_1,
    group_sums_2,
    log_posterior,
    relative_factor,
)
from hierlm.bayes.kernel_model import KernelLayout, _start, expand_draws, kernel_layout
from hierlm.bayes.nutpie_callbacks import (
    EXPAND_SIGNATURE,
    LOGP_CTYPES,
    LOGP_SIGNATURE,
    CallbackTable,
    nutpie_callback_model,
    owned,
    pointer,
)
from hierlm.errors import FitError

__all__ = ["UNCONSTRAINED", "callback_table", "logp_callback", "expand_callback", "kernel_logp",
           "compile_kernel_for_nutpie"]

#: name of the stored variable: the sampler's unconstrained vector
UNCONSTRAINED = "unconstrained"

# slots of the int64 table behind user_data: addresses of the arrays, then the sizes
_ARRAYS = ("ztz", "ztx", "zty", "xty", "xtx", "scalars", "prior_code", "prior_par", "block_start",
           "block_q", "block_corr", "block_raw", "block_eta")
(_ZTZ, _ZTX, _ZTY, _XTY, _XTX, _SCALARS, _PRIOR_CODE, _PRIOR_PAR, _BLOCK_START, _BLOCK_Q, _BLOCK_CORR,
 _BLOCK_RAW, _BLOCK_ETA) = range(len(_ARRAYS))
_GROUPS, _Q, _P, _BLOCKS, _SIZE, _N_PRIORS = range(len(_ARRAYS), len(_ARRAYS) + 6)
_TABLE_LENGTH = len(_ARRAYS) + 6
_DTYPES = {"prior_code": np.int64, "block_start": np.int64, "block_q": np.int64, "block_corr": np.bool_,
           "block_raw": np.int64}


def callback_table(stats: GroupStats, layout: KernelLayout) -> CallbackTable:
    """Pack the group statistics, the priors and the block layout for the callbacks."""
    arrays = {
        "ztz": stats.ztz, "ztx": stats.ztx, "zty": stats.zty, "xty": stats.xty, "xtx": stats.xtx,
        "scalars": np.array([float(stats.yty), float(stats.n)]),
        "prior_code": layout.prior_code, "prior_par": layout.prior_par,
        "block_start": layout.block_start, "block_q": layout.block_q, "block_corr": layout.block_corr,
        "block_raw": layout.block_raw, "block_eta": layout.block_eta,
    }
    kept = tuple(owned(arrays[name], _DTYPES.get(name, np.float64)) for name in _ARRAYS)
    table = np.zeros(_TABLE_LENGTH, dtype=np.int64)
    for slot, array in enumerate(kept):
        table[slot] = array.ctypes.data
    table[_GROUPS], table[_Q], table[_P] = stats.zty.shape[0], layout.q_total, layout.p
    table[_BLOCKS], table[_SIZE], table[_N_PRIORS] = layout.block_q.size, layout.size, layout.prior_code.size
    return CallbackTable(table=table, arrays=kept, size=int(layout.size), n_expanded=int(layout.size))


@numba.njit(**COMPILED_ONLY)
def _unpack(t: np.ndarray) -> tuple:  # type: ignore[type-arg]  # pragma: no cover - compiled
    """The model's arrays and scalars, read from the table behind ``user_data``."""
    groups, q, p, blocks, n_priors = t[_GROUPS], t[_Q], t[_P], t[_BLOCKS], t[_N_PRIORS]
    scalars = numba.carray(pointer(t[_SCALARS]), (2,), np.float64)
    return (numba.carray(pointer(t[_ZTZ]), (groups, q, q), np.float64),
            numba.carray(pointer(t[_ZTX]), (groups, q, p), np.float64),
            numba.carray(pointer(t[_ZTY]), (groups, q), np.float64),
            scalars[0],
            numba.carray(pointer(t[_XTY]), (p,), np.float64),
            numba.carray(pointer(t[_XTX]), (p, p), np.float64),
            scalars[1],
            numba.carray(pointer(t[_PRIOR_CODE]), (n_priors,), np.int64),
            numba.carray(pointer(t[_PRIOR_PAR]), (n_priors, 3), np.float64),
            numba.carray(pointer(t[_BLOCK_START]), (blocks,), np.int64),
            numba.carray(pointer(t[_BLOCK_Q]), (blocks,), np.int64),
            numba.carray(pointer(t[_BLOCK_CORR]), (blocks,), np.bool_),
            numba.carray(pointer(t[_BLOCK_RAW]), (blocks,), np.int64),
            numba.carray(pointer(t[_BLOCK_ETA]), (blocks,), np.float64))


@numba.njit(**COMPILED_ONLY)
def _status(value: float, out: np.ndarray) -> int:  # pragma: no cover - compiled
    """Store the value; 0, or 4 for a point of zero density (``-inf``; recoverable: a divergence)."""
    out[0] = value
    return 0 if np.isfinite(value) else 4


# One callback per block width, differing in the per-level loop only. They are module-level
# functions because numba caches nothing else on disk: a callback made by a factory (a closure)
# or taking the loop as a function-valued argument is compiled again in every process (measured).
def _logp_1(dim, x_pointer, grad_pointer, logp_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The log posterior of one one-column block; writes the gradient (see :func:`logp_callback`)."""
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    if dim != t[_SIZE]:
        return -1
    x, grad = numba.carray(x_pointer, (dim,)), numba.carray(grad_pointer, (dim,))
    ztz, ztx, zty, yty, xty, xtx, n_obs, codes, pars, starts, widths, corr, raw, eta = _unpack(t)
    p = t[_P]
    chol, cor, sd = relative_factor(x, p, 1, starts, widths, corr, raw)
    g_chol, g_beta, sigma = np.zeros((1, 1)), np.zeros(p), math.exp(x[p])
    sums = group_sums_1(ztz, ztx, zty, x[:p], chol[0, 0], sigma * sigma, g_chol, g_beta)
    value = log_posterior(x, grad, sums, g_chol, g_beta, cor, sd, t[_GROUPS], yty, xty, xtx, n_obs,
                          codes, pars, starts, widths, corr, raw, eta)
    return _status(value, numba.carray(logp_pointer, (1,)))


def _logp_2(dim, x_pointer, grad_pointer, logp_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The log posterior of one two-column block (2 x 2 systems in closed form); writes the gradient."""
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    if dim != t[_SIZE]:
        return -1
    x, grad = numba.carray(x_pointer, (dim,)), numba.carray(grad_pointer, (dim,))
    ztz, ztx, zty, yty, xty, xtx, n_obs, codes, pars, starts, widths, corr, raw, eta = _unpack(t)
    p = t[_P]
    chol, cor, sd = relative_factor(x, p, 2, starts, widths, corr, raw)
    g_chol, g_beta, sigma = np.zeros((2, 2)), np.zeros(p), math.exp(x[p])
    sums = group_sums_2(ztz, ztx, zty, x[:p], chol, sigma * sigma, g_chol, g_beta)
    value = log_posterior(x, grad, sums, g_chol, g_beta, cor, sd, t[_GROUPS], yty, xty, xtx, n_obs,
                          codes, pars, starts, widths, corr, raw, eta)
    return _status(value, numba.carray(logp_pointer, (1,)))


def _logp_any(dim, x_pointer, grad_pointer, logp_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The log posterior of stacked blocks of any width (per-level Cholesky); writes the gradient."""
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    if dim != t[_SIZE]:
        return -1
    x, grad = numba.carray(x_pointer, (dim,)), numba.carray(grad_pointer, (dim,))
    ztz, ztx, zty, yty, xty, xtx, n_obs, codes, pars, starts, widths, corr, raw, eta = _unpack(t)
    p, q = t[_P], t[_Q]
    chol, cor, sd = relative_factor(x, p, q, starts, widths, corr, raw)
    g_chol, g_beta, sigma = np.zeros((q, q)), np.zeros(p), math.exp(x[p])
    sums = group_sums(ztz, ztx, zty, x[:p], chol, sigma * sigma, g_chol, g_beta)
    value = log_posterior(x, grad, sums, g_chol, g_beta, cor, sd, t[_GROUPS], yty, xty, xtx, n_obs,
                          codes, pars, starts, widths, corr, raw, eta)
    return _status(value, numba.carray(logp_pointer, (1,)))


def _expand(dim, n_expanded, x_pointer, out_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The stored values of one draw: a copy of the unconstrained vector."""
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    if dim != t[_SIZE] or n_expanded != dim:
        return -1
    x, out = numba.carray(x_pointer, (dim,)), numba.carray(out_pointer, (dim,))
    for k in range(dim):
        out[k] = x[k]
    return 0


@cache
def logp_callback(q_total: int) -> Any:
    """The compiled log-posterior callback for stacked blocks of width ``q_total`` (compiled on first use).

    ``logp(dim, x, grad, logp, user_data)`` with ``user_data`` a
    :func:`callback_table`'s address writes the log posterior at the
    unconstrained ``x`` and its gradient; it returns 0, 4 at a point of zero
    density (the value is ``-inf``: underflow or overflow far out in the
    tails; recoverable, a divergence for nutpie) and -1 when ``dim`` is not the
    table's.
    """
    function = {1: _logp_1, 2: _logp_2}.get(q_total, _logp_any)
    return numba.cfunc(LOGP_SIGNATURE, cache=True, error_model="numpy")(function)


@cache
def expand_callback() -> Any:
    """The compiled expand callback: a copy of the unconstrained vector (the one stored variable)."""
    return numba.cfunc(EXPAND_SIGNATURE, cache=True, error_model="numpy")(_expand)


def kernel_logp(stats: GroupStats, layout: KernelLayout) -> Callable[..., tuple[float, np.ndarray]]:
    """``x -> (log posterior, gradient)`` over the unconstrained vector: the callback through ctypes.

    A point of zero density gives ``(-inf, zeros)``, which samplers treat as a divergence.
    """
    table = callback_table(stats, layout)
    function = LOGP_CTYPES(logp_callback(layout.q_total).address)
    size = layout.size

    def logp_and_grad(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
        point = np.ascontiguousarray(x, dtype=np.float64)
        grad, value = np.empty(size), np.empty(1)
        code = function(point.size, point.ctypes.data, grad.ctypes.data, value.ctypes.data, table.address)
        if code < 0:
            raise FitError(f"the kernel's vector has {size} entries, not {point.size}")
        if code:
            return -np.inf, np.zeros(size)
        return float(value[0]), grad

    return logp_and_grad  # its closure holds the table, and so the arrays its addresses point into


def compile_kernel_for_nutpie(built: BuiltModel, var_names: list[str]
                              ) -> tuple[Any, Callable[[Any], dict[str, np.ndarray]]]:
    """A nutpie model of a marginal ``BuiltModel`` whose density is the compiled kernel's callback.

    Parameters
    ----------
    built : BuiltModel
        Marginal formulation (``built.stats`` set).
    var_names : list of str
        Variables to store (see :func:`hierlm.bayes.sample.stored_variables`).

    Returns
    -------
    compiled : nutpie compiled model
        Ready for ``nutpie.sample``; it stores :data:`UNCONSTRAINED`. Chains start
        at jittered least-squares values (uniform jitter of +-1 on every
        unconstrained coordinate, as PyMC does), seeded by nutpie's seed.
    expand : callable
        The sampler's posterior dataset (its :data:`UNCONSTRAINED` draws, chains x
        draws x size) to the draws of ``var_names``.
    """
    if built.stats is None:
        raise FitError("the kernel needs the marginal formulation's group statistics")
    layout = kernel_layout(built)
    unknown = sorted(set(var_names) - set(expand_draws(np.zeros(layout.size), layout)))
    if unknown:
        raise FitError(f"the marginal kernel does not store {unknown}")
    table = callback_table(built.stats, layout)
    compiled = nutpie_callback_model(logp_callback(layout.q_total), expand_callback(), table, [UNCONSTRAINED],
                                     [(layout.size,)], _start(built, layout), np.ones(layout.size), ({}, {}))

    def expand(posterior: Any) -> dict[str, np.ndarray]:
        values = expand_draws(np.asarray(posterior[UNCONSTRAINED].values), layout)
        return {name: values[name] for name in var_names}

    return compiled, expand
