"""The compiled marginal kernel as nutpie C callbacks (:mod:`hierlm.bayes.nutpie_callbacks`).

The one-factor Gaussian marginal model (:mod:`hierlm.bayes.kernel`) costs a
few microseconds per gradient; through the Python route the wrapper, numba's
dispatch of sixteen arguments and the GIL that four chains queue for cost
more than that. Here the same compiled function (the variant
:func:`hierlm.bayes.kernel.marginal_kernel` picks) is called from a C callback
that nutpie's threads call directly, so the chains run in parallel and the
sampler sees the same log posterior to the last bit
(``tests/bayes/test_kernel_cfunc.py``).

The sampler stores the unconstrained vector itself (the expand callback is a
copy); the named variables are computed from all draws at once afterwards by
:func:`hierlm.bayes.kernel_model.expand_draws`, the map the Python route uses
point by point. Only the callback of the model's block width is compiled (each
is cached on disk by numba), so a random-intercept-and-slope model does not
compile the general per-level Cholesky loop.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numba
import numpy as np

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.kernel import (
    marginal_logp_grad_1,
    marginal_logp_grad_2,
    marginal_logp_grad_any,
)
from hierlm.bayes.kernel_model import KernelLayout, _start, expand_draws, kernel_layout
from hierlm.bayes.nutpie_callbacks import (
    EXPAND_SIGNATURE,
    LOGP_SIGNATURE,
    CallbackTable,
    nutpie_callback_model,
    owned,
    pointer,
)

__all__ = ["UNCONSTRAINED", "callback_table", "logp_callback", "expand_callback", "compile_kernel_for_nutpie"]

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


def callback_table(built: BuiltModel, layout: KernelLayout) -> CallbackTable:
    """Pack the group statistics, the priors and the block layout for the callbacks."""
    stats = built.stats
    if stats is None:
        raise ValueError("the kernel needs the marginal formulation's group statistics")
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


@numba.njit(cache=True, nogil=True, no_cpython_wrapper=True)
def _arguments(t: np.ndarray) -> tuple:  # type: ignore[type-arg]  # pragma: no cover - compiled
    """The kernel's data arguments (after ``x`` and ``grad``), read from the table."""
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


@numba.njit(cache=True, nogil=True, no_cpython_wrapper=True)
def _status(value: float, out: np.ndarray) -> int:  # pragma: no cover - compiled
    """Store the value; 0, or 4 for a point of zero density (the kernel's ``-inf``; recoverable)."""
    out[0] = value
    return 0 if np.isfinite(value) else 4


# one callback per kernel variant (module-level, for numba's disk cache: see hierlm.bayes.kernel)
def _logp_1(dim, x_pointer, grad_pointer, logp_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    if dim != t[_SIZE]:
        return -1
    x, grad = numba.carray(x_pointer, (dim,)), numba.carray(grad_pointer, (dim,))
    value = marginal_logp_grad_1(x, grad, *_arguments(t))
    return _status(value, numba.carray(logp_pointer, (1,)))


def _logp_2(dim, x_pointer, grad_pointer, logp_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    if dim != t[_SIZE]:
        return -1
    x, grad = numba.carray(x_pointer, (dim,)), numba.carray(grad_pointer, (dim,))
    value = marginal_logp_grad_2(x, grad, *_arguments(t))
    return _status(value, numba.carray(logp_pointer, (1,)))


def _logp_any(dim, x_pointer, grad_pointer, logp_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    if dim != t[_SIZE]:
        return -1
    x, grad = numba.carray(x_pointer, (dim,)), numba.carray(grad_pointer, (dim,))
    value = marginal_logp_grad_any(x, grad, *_arguments(t))
    return _status(value, numba.carray(logp_pointer, (1,)))


def _expand(dim, n_expanded, x_pointer, out_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    if dim != t[_SIZE] or n_expanded != dim:
        return -1
    x, out = numba.carray(x_pointer, (dim,)), numba.carray(out_pointer, (dim,))
    for k in range(dim):
        out[k] = x[k]
    return 0


@cache
def logp_callback(q_total: int) -> Any:
    """The compiled log-density callback for stacked blocks of width ``q_total`` (compiled on first use).

    It returns 0, 4 at a point of zero density (recoverable: a divergence) and
    -1 when nutpie's dimension is not the table's.
    """
    function = {1: _logp_1, 2: _logp_2}.get(q_total, _logp_any)
    return numba.cfunc(LOGP_SIGNATURE, cache=True, error_model="numpy")(function)


@cache
def expand_callback() -> Any:
    """The compiled expand callback: a copy of the unconstrained vector (the one stored variable)."""
    return numba.cfunc(EXPAND_SIGNATURE, cache=True, error_model="numpy")(_expand)


def compile_kernel_for_nutpie(built: BuiltModel, var_names: list[str]
                              ) -> tuple[Any, Callable[[np.ndarray], dict[str, np.ndarray]]]:
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
        Draws of :data:`UNCONSTRAINED` (..., size) to the draws of ``var_names``.
    """
    layout = kernel_layout(built)
    unknown = sorted(set(var_names) - set(expand_draws(np.zeros(layout.size), layout)))
    if unknown:
        raise ValueError(f"the marginal kernel does not store {unknown}")
    compiled = nutpie_callback_model(
        logp_callback(layout.q_total), expand_callback(), callback_table(built, layout), [UNCONSTRAINED],
        [(layout.size,)], _start(built, layout), np.ones(layout.size), ({}, {}))

    def expand(unconstrained: np.ndarray) -> dict[str, np.ndarray]:
        values = expand_draws(unconstrained, layout)
        return {name: values[name] for name in var_names}

    return compiled, expand
