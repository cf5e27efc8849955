"""A marginal model's log posterior as a compiled prior model joined to a NumPy likelihood.

The log posterior of a marginal PyMC model splits into the prior model
(every variable's prior and transform and the map from the sampler's flat
vector ``x`` to the likelihood's inputs) and the likelihood, which is called
in NumPy with its exact gradient in those inputs. The prior model is a pure
PyTensor graph, compiled into two functions:

* ``forward(x) -> (log prior, its gradient, inputs...)``;
* ``pullback(x, d inputs) -> d x``, the vector-Jacobian product of the map.

Each gradient evaluation is ``forward``, the likelihood and ``pullback``: no
Python Op inside a compiled graph (which numba runs in object mode, about ten
times slower). NUTS uses it with the transforms' Jacobian (the density of the
unconstrained vector); MAP without it (``jacobian=False``: the density of the
natural parameters, whose mode does not depend on the transforms).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Any, cast

import numpy as np

from hierlm.errors import FitError

__all__ = ["SplitDensity", "split_density"]

#: ``likelihood(inputs) -> (log-likelihood, gradient in each input)``; FitError off its domain.
Likelihood = Callable[[list[np.ndarray]], tuple[float, list[np.ndarray]]]


def _single(out: object) -> object:
    """The one output of a compiled function (jitted functions return a tuple)."""
    return out[0] if isinstance(out, (tuple, list)) else out


@dataclass(frozen=True, eq=False)
class SplitDensity:
    """The log posterior over the flat vector of free variables, and its parts.

    Attributes
    ----------
    n_dim : int
        Length of ``x``.
    logp : callable
        ``x -> (log posterior, gradient)`` (``-inf`` and zeros off the domain).
    expand : callable
        ``x -> {stored name: value}``.
    initial_point : callable
        ``seed -> x``, PyMC's jittered initial point.
    free_names : list of str
        The transformed free variables, in ``x`` order.
    free_sizes : list of int
        Their sizes.
    inputs : callable
        ``x -> the likelihood's inputs`` (as the likelihood receives them).
    start : numpy.ndarray
        PyMC's initial point without jitter.
    stored_shapes, dims, coords
        Shapes, dims and coordinates of the stored variables.
    """

    n_dim: int
    logp: Callable[..., tuple[float, np.ndarray]]
    expand: Callable[..., dict[str, np.ndarray]]
    initial_point: Callable[[int], np.ndarray]
    free_names: list[str]
    free_sizes: list[int]
    inputs: Callable[[np.ndarray], list[np.ndarray]]
    start: np.ndarray
    stored_shapes: list[tuple[int, ...]]
    dims: dict[str, tuple[str, ...]]
    coords: dict[str, Any]


def split_density(model: Any, inputs: list[Any], likelihood: Likelihood, var_names: list[str],
                  mode: str = "NUMBA", jacobian: bool = True) -> SplitDensity:
    """Compile the prior model and join it to the likelihood (see the module docstring).

    Parameters
    ----------
    model : pymc.Model
        The prior model (no likelihood term).
    inputs : list of TensorVariable
        The likelihood's inputs as tensors of the model's variables.
    likelihood : callable
        ``inputs -> (value, gradients)``, raising FitError off its domain.
    var_names : list of str
        Variables the expansion returns.
    mode : str
        PyTensor compile mode.
    jacobian : bool
        Include the transforms' log-Jacobian (NUTS) or not (MAP).

    Returns
    -------
    SplitDensity
    """
    import pandas as pd
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt
    from pymc.initial_point import make_initial_point_fn
    from pymc.model.transform.optimization import freeze_dims_and_data
    from pytensor.graph import clone_replace

    from hierlm.bayes.nutpie_adapter import CHEAP_MODE

    n_inputs = len(inputs)
    with model:  # named, so that they survive freezing the model
        for k, tensor in enumerate(inputs):
            pm.Deterministic(f"__likelihood_input_{k}", tensor)
    model = freeze_dims_and_data(model)
    free_values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    point = model.initial_point()
    shapes = {name: tuple(np.shape(value)) for name, value in point.items()}
    sizes = [prod(shapes[v.name]) for v in free_values]
    n_dim = int(sum(sizes))
    flat = pt.vector("flat_point", dtype="float64", shape=(n_dim,))
    replacements, start = {}, 0
    for value, size in zip(free_values, sizes, strict=True):
        replacements[value] = flat[start:start + size].reshape(shapes[value.name]).astype(value.dtype)
        start += size
    by_name = {var.name: var for var in model.unobserved_value_vars}
    lik_inputs = [by_name[f"__likelihood_input_{k}"] for k in range(n_inputs)]
    logp = model.logp(jacobian=jacobian)
    # a flat prior (no transform) leaves its variable out of the log prior's graph
    grads = cast(list[Any], pt.grad(logp, free_values, disconnected_inputs="ignore"))
    gradient = pt.concatenate([g.ravel() for g in grads])
    seeds = [t.type() for t in lik_inputs]
    cost = sum((pt.sum(t * g) for t, g in zip(lik_inputs, seeds, strict=True)), pt.constant(0.0))
    pulled = cast(list[Any], pt.grad(cost, free_values, disconnected_inputs="ignore"))
    pulled_flat = pt.concatenate([g.ravel() for g in pulled])
    stored = [by_name[name] for name in var_names]
    logp, gradient, pulled_flat, *rest = clone_replace(
        [logp, gradient, pulled_flat, *lik_inputs, *stored], replacements)
    lik_graph, stored_graph = rest[:n_inputs], rest[n_inputs:]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping Check", category=UserWarning)
        forward = pytensor.function([flat], [logp, gradient, *lik_graph], mode=mode,
                                    on_unused_input="ignore")
        pullback = pytensor.function([flat, *seeds], pulled_flat, mode=mode,
                                     on_unused_input="ignore")
        expand_fn = pytensor.function([flat], stored_graph, mode=mode, on_unused_input="ignore")
    stored_shapes = [tuple(int(s) for s in model[name].shape.eval()) if name in model.named_vars
                     else () for name in var_names]
    # numba mode: call the jitted functions directly (no PyTensor VM around them)
    forward = getattr(forward.vm, "jit_fn", forward)
    pullback = getattr(pullback.vm, "jit_fn", pullback)

    def logp_and_grad(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
        prior, d_prior, *values = forward(x)
        if not np.isfinite(prior):
            return -np.inf, np.zeros_like(x)
        try:
            value, d_inputs = likelihood([np.asarray(v, dtype=float) for v in values])
        except FitError:
            return -np.inf, np.zeros_like(x)
        d_x = _single(pullback(x, *d_inputs))
        total = float(prior) + value
        grad = np.asarray(d_prior, dtype=float) + np.asarray(d_x, dtype=float)
        if not (np.isfinite(total) and np.all(np.isfinite(grad))):
            return -np.inf, np.zeros_like(x)
        return total, grad

    def inputs_at(x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(v, dtype=float) for v in forward(np.asarray(x, dtype=float))[2:]]

    def expand(x: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
        values = expand_fn(x)
        return {name: np.asarray(v, dtype=np.float64).reshape(shape)
                for name, v, shape in zip(var_names, values, stored_shapes, strict=True)}

    with pytensor.config.change_flags(mode=CHEAP_MODE):
        initial_point = make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs),
                                              return_transformed=True)
    names = [v.name for v in free_values]

    def make_initial_point(seed: int) -> np.ndarray:
        chosen = initial_point(seed)
        return np.concatenate([np.asarray(chosen[name], dtype=np.float64).ravel()
                               for name in names])

    dims = {name: tuple(model.named_vars_to_dims.get(name, ())) for name in var_names}
    used = {dim for names_ in dims.values() for dim in names_}
    coords = {dim: pd.Index(model.coords[dim]) for dim in used}
    start_x = np.concatenate([np.asarray(point[name], dtype=np.float64).ravel() for name in names])
    return SplitDensity(n_dim, logp_and_grad, expand, make_initial_point, names, sizes, inputs_at,
                        start_x, stored_shapes, dims, coords)
