r"""The compiled GLMM kernel as C callbacks for nutpie: sampling without Python in the loop.

Through :func:`nutpie.compiled_pyfunc.from_pyfunc` every gradient is a Python
call: nutpie's Rust takes the GIL, the wrapper of
:mod:`hierlm.bayes.glmm_centring` maps the sampler's vector, numba dispatches
its 17 arguments, and the gradient comes back as a new array. On cbpp (56
rows, about 58,000 gradients for 4 chains x 2000 iterations) that wrapper is
some 60 microseconds per gradient against about one of arithmetic, and chains
cannot run in parallel since they queue for the GIL.

nutpie's numba route for PyMC models takes two C function pointers instead
(``logp(dim, x, grad, logp, user_data)`` and ``expand(dim, n_expanded, x,
out, user_data)``, non-zero return codes for a failed point, positive ones
recoverable, i.e. a divergence), which its Rust threads call directly. This
module writes both as numba ``cfunc``\\ s that do what the Python route does
(the same compiled pieces: :func:`hierlm.bayes.glmm_centring.to_kernel`,
:func:`hierlm.bayes.glmm_kernel.logp_grad`,
:func:`hierlm.bayes.glmm_centring.to_sampler_gradient` and
:func:`hierlm.bayes.glmm_kernel.expand_into`), so the sampler sees the same
log posterior to the last bit (``tests/bayes/test_glmm_cfunc.py``). The data
reach the callbacks through ``user_data``: a table of the arrays' addresses
and the model's sizes (:class:`CallbackTable`), so the callbacks use no
dynamic globals and numba caches them on disk like the kernel itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.glmm_centring import centring_map, sampler_start, to_kernel, to_sampler_gradient
from hierlm.bayes.glmm_kernel import GlmmKernel, expand_into, expand_plan, logp_grad
from hierlm.bayes.kernel_model import parameter_coords

__all__ = ["CallbackTable", "callback_table", "logp_callback", "expand_callback", "nutpie_cfunc_model",
           "compile_glmm_kernel_for_nutpie"]

# slots of the int64 table behind user_data: addresses of the arrays, then the sizes
_ARRAYS = ("y", "trials", "weights", "offset", "xc", "codes", "zcol", "level_start", "centred",
           "xbar", "prior_code", "prior_par", "columns", "values", "plan")
(_Y, _TRIALS, _WEIGHTS, _OFFSET, _XC, _CODES, _ZCOL, _LEVEL_START, _CENTRED, _XBAR, _PRIOR_CODE,
 _PRIOR_PAR, _COLUMNS, _VALUES, _PLAN) = range(len(_ARRAYS))
_N, _P, _K, _FAMILY, _INTERCEPT, _FIRST, _LAST, _N_COLUMNS, _SIZE, _N_PRIORS, _N_PLAN, \
    _N_EXPANDED = range(len(_ARRAYS), len(_ARRAYS) + 12)
_TABLE_LENGTH = len(_ARRAYS) + 12


@dataclass(frozen=True, eq=False)
class CallbackTable:
    """The ``user_data`` of the callbacks and the arrays its addresses point into.

    Attributes
    ----------
    table : numpy.ndarray
        int64: the arrays' addresses, then the sizes (its address is ``user_data``).
    arrays : tuple of numpy.ndarray
        The C-contiguous arrays the addresses point into, kept alive with the table.
    size, n_expanded : int
        Lengths of the sampler's vector and of the stored values per draw.
    """

    table: np.ndarray
    arrays: tuple[np.ndarray, ...]
    size: int
    n_expanded: int

    @property
    def address(self) -> int:
        """``user_data``: the table's address."""
        return int(self.table.ctypes.data)


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
    kept = tuple(_owned(arrays[name], dtypes.get(name, np.float64)) for name in _ARRAYS)
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


def _owned(array: np.ndarray, dtype: Any) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=dtype)
    return out if out.size else np.zeros(1, dtype=dtype)


def _pointer_typing(typingctx: Any, address: Any) -> Any:  # pragma: no cover - compiled
    """Typing and code of :data:`_pointer`: the integer ``address`` as a ``void *``."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


#: ``_pointer(address)`` in compiled code: an int64 address as a ``void *`` for :func:`numba.carray`
_pointer: Any = intrinsic(_pointer_typing)


_LOGP_SIGNATURE = types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                              types.CPointer(types.double), types.voidptr)
_EXPAND_SIGNATURE = types.int64(types.uint64, types.uint64, types.CPointer(types.double),
                                types.CPointer(types.double), types.voidptr)


@numba.cfunc(_LOGP_SIGNATURE, cache=True, error_model="numpy")
def logp_callback(dim, x_pointer, grad_pointer, logp_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The log-density callback: 0, or 3 (non-finite gradient) / 4 (non-finite value), recoverable."""
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    n, p, k, size = t[_N], t[_P], t[_K], t[_SIZE]
    if dim != size:
        return -1
    x = numba.carray(x_pointer, (size,))
    grad = numba.carray(grad_pointer, (size,))
    out = numba.carray(logp_pointer, (1,))
    columns = numba.carray(_pointer(t[_COLUMNS]), (t[_N_COLUMNS],), np.int64)
    values = numba.carray(_pointer(t[_VALUES]), (max(t[_LAST] - t[_FIRST], 0), t[_N_COLUMNS]), np.float64)
    inner = np.empty(size)
    to_kernel(x, inner, t[_FIRST], t[_LAST], columns, values)
    value = logp_grad(
        inner, grad, t[_FAMILY],
        numba.carray(_pointer(t[_Y]), (n,), np.float64),
        numba.carray(_pointer(t[_TRIALS]), (n,), np.float64),
        numba.carray(_pointer(t[_WEIGHTS]), (n,), np.float64),
        numba.carray(_pointer(t[_OFFSET]), (n,), np.float64),
        numba.carray(_pointer(t[_XC]), (n, p), np.float64),
        numba.carray(_pointer(t[_CODES]), (n, k), np.int64),
        numba.carray(_pointer(t[_ZCOL]), (n, k), np.float64),
        numba.carray(_pointer(t[_LEVEL_START]), (k + 1,), np.int64),
        numba.carray(_pointer(t[_CENTRED]), (k,), np.uint8),
        t[_INTERCEPT],
        numba.carray(_pointer(t[_XBAR]), (p,), np.float64),
        numba.carray(_pointer(t[_PRIOR_CODE]), (t[_N_PRIORS],), np.int64),
        numba.carray(_pointer(t[_PRIOR_PAR]), (t[_N_PRIORS], 3), np.float64),
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


@numba.cfunc(_EXPAND_SIGNATURE, cache=True, error_model="numpy")
def expand_callback(dim, n_expanded, x_pointer, out_pointer, user_data):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The expand callback: the stored variables of one draw, in the plan's order."""
    t = numba.carray(user_data, (_TABLE_LENGTH,), np.int64)
    p, k, size = t[_P], t[_K], t[_SIZE]
    if dim != size or n_expanded != t[_N_EXPANDED]:
        return -1
    x = numba.carray(x_pointer, (size,))
    out = numba.carray(out_pointer, (t[_N_EXPANDED],))
    columns = numba.carray(_pointer(t[_COLUMNS]), (t[_N_COLUMNS],), np.int64)
    values = numba.carray(_pointer(t[_VALUES]), (max(t[_LAST] - t[_FIRST], 0), t[_N_COLUMNS]), np.float64)
    inner = np.empty(size)
    to_kernel(x, inner, t[_FIRST], t[_LAST], columns, values)
    expand_into(inner, out, p, k, t[_FAMILY],
                numba.carray(_pointer(t[_LEVEL_START]), (k + 1,), np.int64),
                numba.carray(_pointer(t[_CENTRED]), (k,), np.uint8),
                t[_INTERCEPT], numba.carray(_pointer(t[_XBAR]), (p,), np.float64),
                numba.carray(_pointer(t[_PLAN]), (t[_N_PLAN], 2), np.int64))
    return 0


def nutpie_cfunc_model(kernel: GlmmKernel, var_names: list[str], start: np.ndarray,
                       jitter: np.ndarray, coords_and_dims: tuple[dict[str, Any], dict[str, tuple[str, ...]]]
                       ) -> Any:
    """A nutpie model whose log density and draws are the compiled callbacks above.

    Built as nutpie's own numba route builds one for a PyMC model
    (:class:`nutpie.compile_pymc.CompiledPyMCModel`), with the chains' start
    points drawn as in :func:`hierlm.bayes.kernel_model.nutpie_model`.
    """
    from nutpie.compile_pymc import CompiledPyMCModel

    table = callback_table(kernel, var_names)
    example = kernel.expand(kernel.start())  # the shapes do not depend on the point
    shapes = [tuple(np.shape(example[name])) for name in var_names]
    if sum(int(np.prod(shape)) for shape in shapes) != table.n_expanded:
        raise AssertionError("the expand plan and the stored variables' shapes disagree")
    coords, dims = coords_and_dims

    def initial_point(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return start + jitter * rng.uniform(-1.0, 1.0, size=start.size)

    ends = np.cumsum([0] + [int(np.prod(shape)) for shape in shapes])
    return CompiledPyMCModel(
        _n_dim=table.size,
        dims={name: dims[name] for name in var_names if name in dims},
        _coords=coords,
        _shapes=dict(zip(var_names, shapes, strict=True)),
        compiled_logp_func=logp_callback,
        compiled_expand_func=expand_callback,
        initial_point_func=initial_point,
        shared_data={},
        shared_var_keys={},
        user_data=table.table,
        n_expanded=table.n_expanded,
        shape_info=(list(var_names), [slice(a, b) for a, b in zip(ends[:-1], ends[1:], strict=True)],
                    shapes),
        logp_func=table,  # keeps the table's arrays alive as long as the model
        expand_func=None,
    )


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
