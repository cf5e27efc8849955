r"""The compiled GLMM kernel as nutpie C callbacks (:mod:`hierlm.bayes.nutpie_callbacks`).

Through the Python route every gradient is a Python call; on cbpp (56 rows,
about 58,000 gradients for 4 chains x 2000 iterations) that wrapper is some 60
microseconds per gradient against about one of arithmetic, and chains cannot
run in parallel since they queue for the GIL. The callbacks here do what the
Python route does (the same compiled pieces:
:func:`hierlm.bayes.glmm_centring.to_kernel`,
:func:`hierlm.bayes.glmm_kernel.logp_grad`,
:func:`hierlm.bayes.glmm_centring.to_sampler_gradient` and
:func:`hierlm.bayes.glmm_kernel.expand_into`), so the sampler sees the same
log posterior to the last bit (``tests/bayes/test_glmm_cfunc.py``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pandas as pd

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.glmm_centring import centring_map, sampler_start, to_kernel, to_sampler_gradient
from hierlm.bayes.glmm_kernel import GlmmKernel, expand_into, expand_plan, logp_grad
from hierlm.bayes.kernel_model import parameter_coords
from hierlm.bayes.nutpie_callbacks import (
    EXPAND_SIGNATURE,
    LOGP_SIGNATURE,
    CallbackTable,
    nutpie_callback_model,
    owned,
    pointer,
)

__all__ = ["callback_table", "logp_callback", "expand_callback", "nutpie_cfunc_model",
           "compile_glmm_kernel_for_nutpie"]

# slots of the int64 table behind user_data: addresses of the arrays, then the sizes
_ARRAYS = ("y", "trials", "weights", "offset", "xc", "codes", "zcol", "level_start", "centred",
           "xbar", "prior_code", "prior_par", "columns", "values", "plan")
(_Y, _TRIALS, _WEIGHTS, _OFFSET, _XC, _CODES, _ZCOL, _LEVEL_START, _CENTRED, _XBAR, _PRIOR_CODE,
 _PRIOR_PAR, _COLUMNS, _VALUES, _PLAN) = range(len(_ARRAYS))
_N, _P, _K, _FAMILY, _INTERCEPT, _FIRST, _LAST, _N_COLUMNS, _SIZE, _N_PRIORS, _N_PLAN, \
    _N_EXPANDED = range(len(_ARRAYS), len(_ARRAYS) + 12)
_TABLE_LENGTH = len(_ARRAYS) + 12


def callback_table(kernel: GlmmKernel, var_names: list[str]) -> CallbackTable:
    """Pack ``kernel``'s data, its centring map and the stored variables' plan for the callbacks."""
    first, last, columns, values = centring_map(kernel)
    plan, n_expanded = expand_plan(kernel, var_names)
    arrays = {
        "y": kernel.y, "trials": kernel.trials, "weights": kernel.weights, "offset": kernel.offset,
        "xc": kernel.xc, "codes": kernel.codes, "zcol": kernel.zcol, "level_start": kernel.level_start,
        "centred": kernel.centred.astype(np.uint8), "xbar": kernel.xbar,
        "prior_code": kernel.prior_code, "prior_par": kernel.prior_par,
        "columns": columns, "values": values, "plan": plan,
    }
    dtypes = {"codes": np.int64, "level_start": np.int64, "prior_code": np.int64, "columns": np.int64,
              "plan": np.int64, "centred": np.uint8}
    # at least one element each, so that every address points into memory this table owns
    kept = tuple(owned(arrays[name], dtypes.get(name, np.float64)) for name in _ARRAYS)
    table = np.zeros(_TABLE_LENGTH, dtype=np.int64)
    for slot, array in enumerate(kept):
        table[slot] = array.ctypes.data
    n, p = kernel.xc.shape
    table[_N], table[_P], table[_K] = n, p, kernel.codes.shape[1]
    table[_FAMILY], table[_INTERCEPT] = kernel.family_code, kernel.intercept
    table[_FIRST], table[_LAST], table[_N_COLUMNS] = first, last, columns.size
    table[_SIZE], table[_N_PRIORS] = kernel.size, kernel.prior_code.size
    table[_N_PLAN], table[_N_EXPANDED] = plan.shape[0], n_expanded
    return CallbackTable(table=table, arrays=kept, size=int(kernel.size), n_expanded=int(n_expanded))


@numba.cfunc(LOGP_SIGNATURE, cache=True, error_model="numpy")
def logp_callback(dim, x_pointer, grad_pointer, logp_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The log-density callback: 0, or 3 (non-finite gradient) / 4 (non-finite value), recoverable."""
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    n, p, k, size = t[_N], t[_P], t[_K], t[_SIZE]
    if dim != size:
        return -1
    x = numba.carray(x_pointer, (size,))
    grad = numba.carray(grad_pointer, (size,))
    out = numba.carray(logp_pointer, (1,))
    columns = numba.carray(pointer(t[_COLUMNS]), (t[_N_COLUMNS],), np.int64)
    values = numba.carray(pointer(t[_VALUES]), (max(t[_LAST] - t[_FIRST], 0), t[_N_COLUMNS]), np.float64)
    inner = np.empty(size)
    to_kernel(x, inner, t[_FIRST], t[_LAST], columns, values)
    value = logp_grad(
        inner, grad, t[_FAMILY],
        numba.carray(pointer(t[_Y]), (n,), np.float64),
        numba.carray(pointer(t[_TRIALS]), (n,), np.float64),
        numba.carray(pointer(t[_WEIGHTS]), (n,), np.float64),
        numba.carray(pointer(t[_OFFSET]), (n,), np.float64),
        numba.carray(pointer(t[_XC]), (n, p), np.float64),
        numba.carray(pointer(t[_CODES]), (n, k), np.int64),
        numba.carray(pointer(t[_ZCOL]), (n, k), np.float64),
        numba.carray(pointer(t[_LEVEL_START]), (k + 1,), np.int64),
        numba.carray(pointer(t[_CENTRED]), (k,), np.uint8),
        t[_INTERCEPT],
        numba.carray(pointer(t[_XBAR]), (p,), np.float64),
        numba.carray(pointer(t[_PRIOR_CODE]), (t[_N_PRIORS],), np.int64),
        numba.carray(pointer(t[_PRIOR_PAR]), (t[_N_PRIORS], 3), np.float64),
        np.empty(k),
    )
    to_sampler_gradient(grad, t[_FIRST], t[_LAST], columns, values)
    out[0] = value
    if not np.isfinite(value):
        return 4
    for j in range(size):
        if not np.isfinite(grad[j]):
            return 3
    return 0


@numba.cfunc(EXPAND_SIGNATURE, cache=True, error_model="numpy")
def expand_callback(dim, n_expanded, x_pointer, out_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The expand callback: the stored variables of one draw, in the plan's order."""
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    p, k, size = t[_P], t[_K], t[_SIZE]
    if dim != size or n_expanded != t[_N_EXPANDED]:
        return -1
    x = numba.carray(x_pointer, (size,))
    out = numba.carray(out_pointer, (t[_N_EXPANDED],))
    columns = numba.carray(pointer(t[_COLUMNS]), (t[_N_COLUMNS],), np.int64)
    values = numba.carray(pointer(t[_VALUES]), (max(t[_LAST] - t[_FIRST], 0), t[_N_COLUMNS]), np.float64)
    inner = np.empty(size)
    to_kernel(x, inner, t[_FIRST], t[_LAST], columns, values)
    expand_into(inner, out, p, k, t[_FAMILY],
                numba.carray(pointer(t[_LEVEL_START]), (k + 1,), np.int64),
                numba.carray(pointer(t[_CENTRED]), (k,), np.uint8),
                t[_INTERCEPT], numba.carray(pointer(t[_XBAR]), (p,), np.float64),
                numba.carray(pointer(t[_PLAN]), (t[_N_PLAN], 2), np.int64))
    return 0


def nutpie_cfunc_model(kernel: GlmmKernel, var_names: list[str], start: np.ndarray,
                       jitter: np.ndarray, coords_and_dims: tuple[dict[str, Any], dict[str, tuple[str, ...]]]
                       ) -> Any:
    """A nutpie model whose log density and draws are the compiled callbacks above."""
    example = kernel.expand(kernel.start())  # the shapes do not depend on the point
    shapes = [tuple(np.shape(example[name])) for name in var_names]
    return nutpie_callback_model(logp_callback, expand_callback, callback_table(kernel, var_names),
                                 var_names, shapes, start, jitter, coords_and_dims)


def _level_coords(built: BuiltModel) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """Coords of the stored variables, the levels' effects ``ranef_<block>`` included."""
    coords, dims = parameter_coords(built)
    for bn in built.names:
        for dim, labels in bn.coords().items():
            coords[dim] = pd.Index(labels)
        dims[bn.ranef] = bn.ranef_dims
    return coords, dims


def compile_glmm_kernel_for_nutpie(built: BuiltModel, var_names: list[str]) -> Any:
    """The kernel as a nutpie model storing ``var_names`` (:func:`hierlm.bayes.sample.stored_variables`).

    The sampler's vector carries the intercept in one centred block's level values
    (:func:`hierlm.bayes.glmm_centring.intercept_block`); nutpie calls the compiled
    log density and expansion directly (:mod:`hierlm.bayes.glmm_cfunc`).
    """
    kernel = GlmmKernel.from_built(built)
    return nutpie_cfunc_model(kernel, var_names, sampler_start(kernel), kernel.jitter(),
                              _level_coords(built))
