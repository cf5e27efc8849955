"""nutpie model of the marginal formulation with a residual structure: compiled priors, NumPy likelihood.

The log posterior splits into the prior model (every variable's prior and
transform, the residual structure's correlations, LKJ densities, and the
map from the sampler's vector ``x`` to the likelihood's inputs ``(beta,
sigma, T_b, S, level ratios)``) and the likelihood
(:class:`hierlm.bayes.residual_likelihood.ResidualLikelihood`). The prior
model is a pure PyTensor graph (:func:`hierlm.bayes.residual_marginal.
build_residual_marginal_model` without its likelihood), compiled with
numba (cached on disk by PyTensor) into two functions:

* ``forward(x) -> (log prior, its gradient, inputs...)``;
* ``pullback(x, d inputs) -> d x``, the vector-Jacobian product of the map.

Each gradient evaluation is then ``forward``, the likelihood with its
gradient in the inputs, and ``pullback``: no Python Op inside a compiled
graph (which numba runs in object mode, about ten times slower here).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Any, cast

import numpy as np

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.residual_likelihood import ResidualLikelihood
from hierlm.errors import FitError

__all__ = ["ResidualDensity", "compile_residual_for_nutpie", "residual_density"]


def _single(out: object) -> object:
    """The one output of a compiled function (jitted functions return a tuple)."""
    return out[0] if isinstance(out, (tuple, list)) else out


@dataclass(frozen=True, eq=False)
class ResidualDensity:
    """The log posterior of a residual-structure model over nutpie's flat vector, and its parts."""

    n_dim: int
    logp: Callable[..., tuple[float, np.ndarray]]
    expand: Callable[..., dict[str, np.ndarray]]
    initial_point: Callable[[int], np.ndarray]
    free_names: list[str]
    stored_shapes: list[tuple[int, ...]]
    dims: dict[str, tuple[str, ...]]
    coords: dict[str, Any]


def compile_residual_for_nutpie(built: BuiltModel, var_names: list[str], mode: str = "NUMBA"
                                ) -> Any:
    """A nutpie model of a marginal ``BuiltModel`` with ``residual=``.

    Parameters
    ----------
    built : BuiltModel
        Marginal formulation of a Gaussian design with a residual structure.
    var_names : list of str
        Variables to store (see :func:`hierlm.bayes.sample.stored_variables`).
    mode : str
        PyTensor compile mode of the prior model.

    Returns
    -------
    nutpie compiled model
        Chains start at PyMC's jittered initial points.
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    density = residual_density(built, var_names, mode)
    return from_pyfunc(
        ndim=density.n_dim,
        make_logp_fn=lambda: density.logp,
        make_expand_fn=lambda seed1, seed2, chain: density.expand,
        make_initial_point_fn=density.initial_point,
        expanded_dtypes=[np.dtype("float64")] * len(var_names),
        expanded_shapes=density.stored_shapes,
        expanded_names=list(var_names),
        coords=density.coords,
        dims={k: v for k, v in density.dims.items() if v},
    )


def residual_density(built: BuiltModel, var_names: list[str], mode: str = "NUMBA"
                     ) -> ResidualDensity:
    """Compile the prior model and join it to the likelihood (see the module docstring).

    Parameters
    ----------
    built : BuiltModel
        Marginal formulation of a Gaussian design with a residual structure.
    var_names : list of str
        Variables the expansion returns.
    mode : str
        PyTensor compile mode of the prior model.

    Returns
    -------
    ResidualDensity
        ``logp(x) -> (log posterior, gradient)`` over the free variables of
        :func:`~hierlm.bayes.residual_marginal.build_residual_marginal_model`
        (transformed, flattened in ``free_names`` order), the expansion to the
        stored variables and the initial points.
    """
    import pandas as pd
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt
    from pymc.initial_point import make_initial_point_fn
    from pymc.model.transform.optimization import freeze_dims_and_data
    from pytensor.graph import clone_replace

    from hierlm.bayes.nutpie_adapter import CHEAP_MODE
    from hierlm.bayes.residual_marginal import build_residual_marginal_model

    design = built.design
    likelihood = ResidualLikelihood(design)
    q_sizes = [b.q for b in design.blocks]
    bounds = np.concatenate(([0], np.cumsum([q * q for q in q_sizes]))).astype(int)
    model, inputs = build_residual_marginal_model(design, built.priors, with_likelihood=False)
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
    logp = model.logp()
    grads = cast(list[Any], pt.grad(logp, free_values))
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
        prior, d_prior, beta, sigma, templates_flat, s, levels = forward(x)
        if not np.isfinite(prior):
            return -np.inf, np.zeros_like(x)
        templates = [np.asarray(templates_flat[bounds[b]:bounds[b + 1]]).reshape(q, q)
                     for b, q in enumerate(q_sizes)]
        try:
            got = likelihood.evaluate(beta, float(sigma), templates, s, levels)
        except FitError:
            return -np.inf, np.zeros_like(x)
        d_templates = (np.concatenate([d.ravel() for d in got.d_templates]) if q_sizes
                       else np.zeros(0))
        d_x = _single(pullback(x, got.d_beta, np.asarray(got.d_sigma), d_templates, got.d_s,
                       got.d_levels))
        value = float(prior) + got.value
        grad = np.asarray(d_prior, dtype=float) + np.asarray(d_x, dtype=float)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return -np.inf, np.zeros_like(x)
        return value, grad

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
    return ResidualDensity(n_dim, logp_and_grad, expand, make_initial_point, names,
                           stored_shapes, dims, coords)
