"""Hand a PyMC model to nutpie through Python callbacks around a PyTensor-compiled function.

``nutpie.compile_pymc_model`` with its numba backend wraps the PyTensor
function in a ``numba.cfunc`` that numba cannot cache, which costs 15-20 s of
LLVM work in every new process, even for a two-parameter model. The
PyTensor-compiled function itself is cached on disk by PyTensor, so compiling
it costs about 2 s once the cache is warm. Here that function is called from
nutpie's Rust sampler through ``nutpie.compiled_pyfunc.from_pyfunc`` instead:
the Python call adds a few microseconds per gradient evaluation, far less than
the compile time saved for the models this package builds (whose
log-densities are small, as in the marginal formulation, or dominated by
vectorised work on the rows, as in the full one).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from math import prod
from typing import Any, cast

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
from nutpie.compiled_pyfunc import from_pyfunc
from pymc.initial_point import make_initial_point_fn
from pymc.model.transform.optimization import freeze_dims_and_data
from pytensor.graph import clone_replace

__all__ = ["compile_for_nutpie", "CHEAP_MODE"]

# Mode for functions called a handful of times (initial points): no compilation at all.
CHEAP_MODE = "FAST_COMPILE"


def _shapes_at_initial_point(model: pm.Model) -> dict[str, tuple[int, ...]]:
    """Shapes of free value variables and of the variables to be stored."""
    point = model.initial_point()
    return {name: tuple(np.shape(value)) for name, value in point.items()}


def compile_for_nutpie(
    model: pm.Model,
    var_names: Sequence[str],
    mode: str = "NUMBA",
) -> Any:
    """Compile a PyMC model into a nutpie model that calls Python for each gradient.

    Parameters
    ----------
    model : pymc.Model
        Model with continuous free variables only.
    var_names : sequence of str
        Variables to store per draw (constrained free variables and deterministics).
    mode : str
        PyTensor compile mode of the log-density and of the expansion function.

    Returns
    -------
    nutpie compiled model
        Ready for ``nutpie.sample``.
    """
    # constant dims and data: the compiled function then takes the point as its only input
    model = freeze_dims_and_data(model)
    free_values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    shapes = _shapes_at_initial_point(model)
    sizes = [prod(shapes[v.name]) for v in free_values]
    n_dim = int(sum(sizes))
    flat = pt.vector("flat_point", dtype="float64", shape=(n_dim,))
    replacements, start = {}, 0
    for value, size in zip(free_values, sizes, strict=True):
        piece = flat[start : start + size].reshape(shapes[value.name]).astype(value.dtype)
        replacements[value] = piece
        start += size

    logp = model.logp()
    grads = cast(list[Any], pt.grad(logp, free_values))
    gradient = pt.concatenate([g.ravel() for g in grads])
    logp, gradient = clone_replace([logp, gradient], replacements)
    by_name = {var.name: var for var in model.unobserved_value_vars}
    stored = clone_replace([by_name[name] for name in var_names], replacements)
    with warnings.catch_warnings():
        # JAX drops PyMC's parameter checks; every parameter here is valid by construction
        warnings.filterwarnings("ignore", message="Skipping Check", category=UserWarning)
        logp_fn = pytensor.function([flat], [logp, gradient], mode=mode, on_unused_input="ignore")
        expand_fn = pytensor.function([flat], stored, mode=mode, on_unused_input="ignore")
    stored_shapes = [
        tuple(int(s) for s in model[name].shape.eval()) if name in model.named_vars else ()
        for name in var_names
    ]

    logp_jit = logp_fn.vm.jit_fn if hasattr(logp_fn.vm, "jit_fn") else None
    expand_jit = expand_fn.vm.jit_fn if hasattr(expand_fn.vm, "jit_fn") else None

    def make_logp_func() -> Callable[..., tuple[float, np.ndarray]]:
        def logp_and_grad(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
            if logp_jit is not None:
                value, grad = logp_jit(x)
            else:
                value, grad = logp_fn(x)
            return float(value), np.asarray(grad, dtype=np.float64)

        return logp_and_grad

    def make_expand_func(seed1: int, seed2: int, chain: int) -> Callable[..., dict]:
        def expand(x: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
            values = expand_jit(x) if expand_jit is not None else expand_fn(x)
            return {
                name: np.asarray(val, dtype=np.float64).reshape(shape)
                for name, val, shape in zip(var_names, values, stored_shapes, strict=True)
            }

        return expand

    with pytensor.config.change_flags(mode=CHEAP_MODE):
        initial_point = make_initial_point_fn(
            model=model, jitter_rvs=set(model.free_RVs), return_transformed=True
        )
    names = [v.name for v in free_values]

    def make_initial_point(seed: int) -> np.ndarray:
        point = initial_point(seed)
        return np.concatenate([np.asarray(point[name], dtype=np.float64).ravel() for name in names])

    dims = {name: tuple(model.named_vars_to_dims.get(name, ())) for name in var_names}
    used_dims = {dim for names_ in dims.values() for dim in names_}
    coords = {dim: pd.Index(model.coords[dim]) for dim in used_dims}
    return from_pyfunc(
        ndim=n_dim,
        make_logp_fn=make_logp_func,
        make_expand_fn=make_expand_func,
        make_initial_point_fn=make_initial_point,
        expanded_dtypes=[np.dtype("float64")] * len(var_names),
        expanded_shapes=stored_shapes,
        expanded_names=list(var_names),
        coords=coords,
        dims={k: v for k, v in dims.items() if v},
    )
