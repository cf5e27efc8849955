"""nutpie model of the marginal formulation with a residual structure: compiled priors, NumPy likelihood.

The log posterior splits into the prior model (every variable's prior and
transform, the residual structure's correlations, LKJ densities, and the
map from the sampler's vector ``x`` to the likelihood's inputs ``(beta,
sigma, T_b, S, level ratios)``) and the likelihood
(:class:`hierlm.bayes.residual_likelihood.ResidualLikelihood`). The prior
model is a pure PyTensor graph (:func:`hierlm.bayes.residual_marginal.
build_residual_marginal_model` without its likelihood), compiled with
numba (cached on disk by PyTensor) and joined to the likelihood by
:func:`hierlm.bayes.prior_split.split_density` (``forward``, the likelihood
with its gradient in the inputs, ``pullback``: no Python Op inside a compiled
graph). MAP uses the same density without the transforms' Jacobian.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.prior_split import SplitDensity, split_density
from hierlm.bayes.residual_likelihood import ResidualLikelihood

__all__ = ["ResidualDensity", "compile_residual_for_nutpie", "residual_density"]


#: The density nutpie samples (kept under its old name).
ResidualDensity = SplitDensity


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


def residual_density(built: BuiltModel, var_names: list[str], mode: str = "NUMBA",
                     jacobian: bool = True) -> SplitDensity:
    """Compile the prior model and join it to the likelihood (see the module docstring).

    Parameters
    ----------
    built : BuiltModel
        Marginal formulation of a Gaussian design with a residual structure.
    var_names : list of str
        Variables the expansion returns.
    mode : str
        PyTensor compile mode of the prior model.
    jacobian : bool
        Include the transforms' log-Jacobian (NUTS) or not (MAP).

    Returns
    -------
    SplitDensity
        ``logp(x) -> (log posterior, gradient)`` over the free variables of
        :func:`~hierlm.bayes.residual_marginal.build_residual_marginal_model`
        (transformed, flattened in ``free_names`` order), the expansion to the
        stored variables and the initial points.
    """
    from hierlm.bayes.residual_marginal import build_residual_marginal_model

    design = built.design
    likelihood = ResidualLikelihood(design)
    q_sizes = [b.q for b in design.blocks]
    bounds = np.concatenate(([0], np.cumsum([q * q for q in q_sizes]))).astype(int)
    model, inputs = build_residual_marginal_model(design, built.priors, with_likelihood=False)

    def evaluate(values: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
        beta, sigma, templates_flat, s, levels = values
        templates = [np.asarray(templates_flat[bounds[b]:bounds[b + 1]]).reshape(q, q)
                     for b, q in enumerate(q_sizes)]
        got = likelihood.evaluate(beta, float(sigma), templates, s, levels)
        d_templates = (np.concatenate([d.ravel() for d in got.d_templates]) if q_sizes
                       else np.zeros(0))
        return got.value, [got.d_beta, np.asarray(got.d_sigma), d_templates, got.d_s,
                           got.d_levels]

    return split_density(model, inputs, evaluate, var_names, mode=mode, jacobian=jacobian)
