r"""Compiled log densities as nutpie C callbacks: sampling without Python in the loop.

Through :func:`nutpie.compiled_pyfunc.from_pyfunc` every gradient is a Python
call: nutpie's Rust takes the GIL, a wrapper unpacks the vector, numba
dispatches the kernel's arguments, and the gradient comes back as a new
array, so the chains queue for the GIL and the wrapper costs more than the
arithmetic on small models.

nutpie's numba route for PyMC models takes two C function pointers instead
(``logp(dim, x, grad, logp, user_data)`` and ``expand(dim, n_expanded, x,
out, user_data)``; non-zero return codes mark a failed point, positive ones
recoverable, i.e. a divergence), which its Rust threads call directly. The
kernels that use this route (:mod:`hierlm.bayes.glmm_cfunc`,
:mod:`hierlm.bayes.kernel_cfunc`) write both as numba ``cfunc``\\ s; the data
reach them through ``user_data``: the address of an int64 table of array
addresses and sizes (:class:`CallbackTable`), so the callbacks use no dynamic
globals and numba caches them on disk. This module holds what they share: the
table, the pointer intrinsic, the two signatures and the nutpie model.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["CallbackTable", "owned", "pointer", "LOGP_SIGNATURE", "EXPAND_SIGNATURE", "LOGP_CTYPES",
           "EXPAND_CTYPES", "nutpie_callback_model"]


@dataclass(frozen=True, eq=False)
class CallbackTable:
    """The ``user_data`` of a pair of callbacks and the arrays its addresses point into.

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


def owned(array: Any, dtype: Any) -> np.ndarray:
    """``array`` as a C-contiguous array of ``dtype`` with at least one element (a valid address)."""
    out = np.ascontiguousarray(array, dtype=dtype)
    return out if out.size else np.zeros(1, dtype=dtype)


def _pointer_typing(typingctx: Any, address: Any) -> Any:  # pragma: no cover - compiled
    """Typing and code of :data:`pointer`: the integer ``address`` as a ``void *``."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


#: ``pointer(address)`` in compiled code: an int64 address as a ``void *`` for :func:`numba.carray`
pointer: Any = intrinsic(_pointer_typing)

#: ``int64 logp(uint64 dim, double *x, double *grad, double *logp, void *user_data)``
LOGP_SIGNATURE = types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                             types.CPointer(types.double), types.voidptr)
#: ``int64 expand(uint64 dim, uint64 n_expanded, double *x, double *out, void *user_data)``
EXPAND_SIGNATURE = types.int64(types.uint64, types.uint64, types.CPointer(types.double),
                               types.CPointer(types.double), types.voidptr)
#: the same two signatures as ctypes function types, to call a callback from Python
LOGP_CTYPES = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_void_p)
EXPAND_CTYPES = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_void_p)


def nutpie_callback_model(logp_callback: Any, expand_callback: Any, table: CallbackTable,
                          var_names: list[str], shapes: list[tuple[int, ...]], start: np.ndarray,
                          jitter: np.ndarray,
                          coords_and_dims: tuple[dict[str, Any], dict[str, tuple[str, ...]]]) -> Any:
    """A nutpie model whose log density and stored draws are the compiled callbacks.

    Built as nutpie's own numba route builds one for a PyMC model
    (:class:`nutpie.compile_pymc.CompiledPyMCModel`), with the chains' start
    points drawn as in :func:`hierlm.bayes.kernel_model.nutpie_model`: ``start``
    plus ``jitter`` times a uniform draw on ``[-1, 1]`` per coordinate, seeded by
    nutpie. ``shapes`` are those of the stored variables ``var_names``, whose
    flattened values the expand callback writes one after another.
    """
    from nutpie.compile_pymc import CompiledPyMCModel

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
