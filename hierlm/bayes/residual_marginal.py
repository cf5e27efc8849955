"""The marginal formulation with a residual structure (``residual=``): PyMC variables and the Op.

The residual structure's variables come from its Bayesian parameterisation
(:func:`hierlm.bayes.structures.residual_structure`): ``rho_residual``
(``cs``, ``ar1``), ``phi_residual`` (``car1``) and ``pacf_residual`` (``toep``)
uniform over their range (PyMC's log-odds transform), ``corr_raw_residual``
with an LKJ density (``un``), and log SD ratios ``log_ratio_residual`` (per
time: ``csh``, ``arh1``, ``toeph``, ``un``) and ``log_ratio_residual_variance``
(per ``variance=`` level) with the prior table's normal priors. Fixed
effects, sigma and the random-effect blocks are those of every marginal model
(:func:`hierlm.bayes.parameters.add_parameters`). The likelihood is
:class:`hierlm.bayes.residual_likelihood.ResidualLikelihood` wrapped as a
PyTensor Op over ``(beta, sigma, T_b, S, level ratios)``, with its exact
gradient; PyTensor chains it through the structure's transforms.

Stored per draw (:func:`residual_variables`): the sampled natural parameters
and the derived ones (``rho_residual`` by lag for ``toep``, ``cor_residual``
by pair for ``un``, ``ratio_residual``, ``ratio_residual_variance``), with
named dims ``residual_lag``, ``residual_pair``, ``residual_time``,
``residual_variance_level``. :func:`residual_parameter_table` summarises them
in the rows of :func:`hierlm.results.structures.structure_parameters`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.bayes.priors import PriorTable
from hierlm.bayes.residual_likelihood import ResidualLikelihood
from hierlm.bayes.structures import (
    INTERVAL_KINDS,
    LKJPart,
    ResidualParameterisation,
    residual_structure,
)
from hierlm.design.blocks import Design
from hierlm.design.residual import ResidualDesign
from hierlm.errors import FitError

__all__ = ["LIKELIHOOD_POTENTIAL", "residual_likelihood_op", "build_residual_marginal_model",
           "residual_variables", "residual_coords", "residual_values_of_draws",
           "residual_parameter_table"]

#: Name of the potential holding the marginal log-likelihood.
LIKELIHOOD_POTENTIAL = "marginal_loglik"


def residual_likelihood_op(likelihood: ResidualLikelihood, q_sizes: list[int]) -> Any:
    """A PyTensor Op ``(beta, sigma, templates, S, levels) -> log p`` with its exact gradient.

    ``templates`` is the flat concatenation of each block's ``T_b`` (row-major
    ``q x q``). Outside the domain (a covariance not positive definite) the
    log density is ``-inf`` with a zero gradient.
    """
    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    bounds = np.concatenate(([0], np.cumsum([q * q for q in q_sizes]))).astype(int)
    cache: dict[str, Any] = {"key": None, "value": None}

    def evaluate(inputs: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
        beta, sigma, flat, s, levels = (np.asarray(v, dtype=float) for v in inputs)
        key = b"".join(v.tobytes() for v in (beta, sigma, flat, s, levels))
        if cache["key"] != key:
            zeros = [np.zeros_like(beta), np.zeros(()), np.zeros_like(flat), np.zeros_like(s),
                     np.zeros_like(levels)]
            value: tuple[float, list[np.ndarray]] = (-np.inf, zeros)
            if np.isfinite(sigma) and sigma > 0 and np.all(np.isfinite(s)) and np.all(levels > 0):
                templates = [flat[bounds[b]:bounds[b + 1]].reshape(q, q)
                             for b, q in enumerate(q_sizes)]
                try:
                    got = likelihood.evaluate(beta, float(sigma), templates, s, levels)
                    value = (got.value, [got.d_beta, np.asarray(got.d_sigma),
                                         np.concatenate([d.ravel() for d in got.d_templates]
                                                        + [np.zeros(0)]),
                                         got.d_s, got.d_levels])
                except FitError:
                    pass
            cache["key"], cache["value"] = key, value
        return cache["value"]  # type: ignore[no-any-return]

    class ResidualLikelihoodGrad(Op):  # type: ignore[misc]
        """Gradient of the marginal log-likelihood in every input."""

        __props__ = ()

        def make_node(self, *args: Any) -> Apply:  # type: ignore[override]
            inputs = [pt.as_tensor_variable(v) for v in args]
            return Apply(self, inputs, [v.type() for v in inputs])

        def perform(self, node: Any, inputs: Any, outputs: Any) -> None:
            _, grads = evaluate(inputs)
            for out, grad in zip(outputs, grads, strict=True):
                out[0] = np.asarray(grad, dtype=float)

    gradient_op = ResidualLikelihoodGrad()

    class ResidualLikelihoodOp(Op):  # type: ignore[misc]
        """The marginal log-likelihood with a residual structure."""

        __props__ = ()

        def make_node(self, *args: Any) -> Apply:  # type: ignore[override]
            inputs = [pt.as_tensor_variable(v) for v in args]
            return Apply(self, inputs, [pt.dscalar()])

        def perform(self, node: Any, inputs: Any, outputs: Any) -> None:
            outputs[0][0] = np.asarray(evaluate(inputs)[0], dtype=float)

        def pullback(self, inputs: Any, outputs: Any, output_grads: Any) -> Any:
            grads: list[Any] = gradient_op(*inputs)  # type: ignore[assignment]
            return [output_grads[0] * g for g in grads]

        def grad(self, inputs: Any, output_grads: Any) -> Any:
            return self.pullback(inputs, [], output_grads)

    return ResidualLikelihoodOp()


def _stored(structure: ResidualParameterisation) -> list[tuple[str, tuple[str, ...]]]:
    out: list[tuple[str, tuple[str, ...]]] = []
    for p in structure.parameters:
        dims = (p.dim,) if p.dim is not None else ()
        if p.kind == "cor":
            out.append((f"cor_{p.block}", dims))
        elif p.kind == "log_ratio":
            out.append((p.name.replace("log_", ""), dims))
        else:
            out.append((p.name, dims))
        if p.kind == "pacf":
            out.append((f"rho_{p.block}", dims))
    return out


def residual_variables(residual: ResidualDesign | None) -> list[tuple[str, tuple[str, ...]]]:
    """The residual structure's variables stored per draw: ``(name, dims)`` (none without one)."""
    return [] if residual is None else _stored(residual_structure(residual))


def residual_coords(residual: ResidualDesign | None) -> dict[str, list[str]]:
    """Coordinates of the residual structure's dims (lags, pairs, times, variance levels)."""
    if residual is None:
        return {}
    return {p.dim: list(p.coords) for p in residual_structure(residual).parameters
            if p.dim is not None}


def _relative_covariance(structure: ResidualParameterisation, values: dict[str, Any]) -> Any:
    """``S`` over the distinct times (NumPy or PyTensor)."""
    from hierlm.bayes import structure_math as sm

    corr = (structure.correlation_at(values, structure.structure.times)
            if structure.is_continuous else structure.correlation(values))
    scales = structure.time_scales(values)
    xp = sm.namespace(corr, scales)
    if xp is np:
        return np.asarray(corr, dtype=float) * np.outer(scales, scales)
    return corr * (scales[:, None] * scales[None, :])


def _level_ratios(residual: ResidualDesign, values: dict[str, Any]) -> Any:
    """SD ratio of every ``variance=`` level (the first is 1); ``[1]`` without ``variance=``."""
    from hierlm.bayes import structure_math as sm

    if not residual.n_variance:
        return np.ones(max(len(residual.variance_labels), 1))
    ratio = values["ratio_residual_variance"]
    xp = sm.namespace(ratio)
    return (np.concatenate([[1.0], np.asarray(ratio, dtype=float)]) if xp is np
            else xp.concatenate([xp.ones(1), ratio]))


def build_residual_marginal_model(design: Design, priors: PriorTable,
                                  with_likelihood: bool = True) -> Any:
    """The marginal PyMC model of a Gaussian design with a residual structure.

    Parameters
    ----------
    design : Design
        With ``design.residual`` set; random-effect blocks (if any) are per
        residual group.
    priors : PriorTable
        Resolved priors (with the residual structure's rows).
    with_likelihood : bool
        Add the likelihood potential (False: the prior model only, for
        :mod:`hierlm.bayes.residual_nutpie`, which calls the likelihood itself).

    Returns
    -------
    pymc.Model or tuple
        Free variables of the parameters, no group effects, and the potential
        :data:`LIKELIHOOD_POTENTIAL`; without the likelihood, ``(model,
        inputs)`` with the likelihood's inputs ``[beta, sigma, templates, S,
        levels]`` as tensors of the model's variables.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from hierlm.bayes.parameters import add_parameters, model_coords, prior_variable  # imports PyMC

    residual = design.residual
    if residual is None:
        raise FitError("build_residual_marginal_model needs a design with residual=")
    structure = residual_structure(residual)
    likelihood = ResidualLikelihood(design)
    op = residual_likelihood_op(likelihood, [b.q for b in design.blocks])
    coords = {**model_coords(design), **residual_coords(residual)}
    with pm.Model(coords=coords) as model:
        params = add_parameters(design, priors)
        assert params.sigma is not None  # Gaussian
        values: dict[str, Any] = {}
        for p in structure.parameters:
            kwargs: dict[str, Any] = {"dims": p.dim} if p.dim is not None else {}
            if p.kind in INTERVAL_KINDS:
                lower, upper = structure.bounds(p, priors)
                values[p.name] = pm.Uniform(p.name, lower=lower, upper=upper, **kwargs)
            elif p.kind == "log_ratio":
                values[p.name] = prior_variable(
                    p.name, [priors.structure(p.kind, p.block, t) for t in p.terms],
                    positive=False, dim=p.dim, labels=p.coords, initval=np.zeros(p.size))
            elif p.kind == "cor":
                values[p.name] = pm.Flat(p.name, initval=np.zeros(p.size), **kwargs)
            else:  # pragma: no cover - residual structures have no other kinds
                raise FitError(f"no PyMC variable for {p.kind!r} of the residual structure")
        structure.derive(values)
        for p in structure.parameters:  # the uniform and normal densities are the variables'
            if p.kind == "cor":
                part = next(x for x in structure.parts if isinstance(x, LKJPart))
                eta = priors.structure("cor", p.block, "").param("eta")
                pm.Potential(f"lkj_{p.block}", part.correlation_cholesky(values, eta)[1])
        for name, dims in _stored(structure):
            if name not in (p.name for p in structure.parameters):
                pm.Deterministic(name, values[name], dims=dims or None)
        s = _relative_covariance(structure, values)
        levels = pt.as_tensor_variable(_level_ratios(residual, values))
        templates = [(chol / params.sigma).ravel() for chol in params.chols]
        flat = pt.concatenate(templates) if templates else pt.zeros(0)
        inputs = [params.fixef, params.sigma, flat, s, levels]
        if not with_likelihood:
            return model, inputs
        pm.Potential(LIKELIHOOD_POTENTIAL, op(*inputs))
    return model


def residual_values_of_draws(residual: ResidualDesign, draws: dict[str, np.ndarray]
                             ) -> tuple[np.ndarray, np.ndarray]:
    """``S`` (S, T, T) and the level ratios (S, L) of each draw from the stored variables."""
    structure = residual_structure(residual)
    stored = dict(_stored(structure))
    first = next(iter(draws.values()))
    n = first.shape[0] * first.shape[1]
    flat = {name: np.asarray(draws[name]).reshape(n, *np.shape(draws[name])[2:])
            for name in stored if name in draws}
    s_all, levels_all = [], []
    for k in range(n):
        values: dict[str, Any] = {}
        for p in structure.parameters:
            if p.kind == "cor":
                part = next(x for x in structure.parts if isinstance(x, LKJPart))
                corr = np.eye(part.q)
                rows, cols = zip(*part.pairs, strict=True)
                corr[list(rows), list(cols)] = flat[f"cor_{p.block}"][k]
                corr[list(cols), list(rows)] = flat[f"cor_{p.block}"][k]
                values[part.chol_name] = np.linalg.cholesky(corr)
            elif p.kind == "log_ratio":
                values[p.name] = np.log(flat[p.name.replace("log_", "")][k])
            else:
                values[p.name] = flat[p.name][k]
        for name in ("log_ratio_residual", "log_ratio_residual_variance"):
            if name in values:
                values[name.replace("log_", "")] = np.exp(values[name])
        s_all.append(_matrix_from_values(structure, values))
        levels_all.append(_level_ratios(residual, values))
    return np.array(s_all), np.array(levels_all)


def _matrix_from_values(structure: ResidualParameterisation, values: dict[str, Any]) -> np.ndarray:
    """``S`` from natural values (UN: from the stored correlation's Cholesky factor)."""
    part = structure.parts[0]
    if isinstance(part, LKJPart):
        chol = values[part.chol_name]
        scales = np.asarray(structure.time_scales(values), dtype=float)
        return np.asarray(chol @ chol.T) * np.outer(scales, scales)
    return np.asarray(_relative_covariance(structure, values), dtype=float)


def residual_parameter_table(residual: ResidualDesign | None, posterior: Any,
                             prob: float | None = None) -> Any:
    """Posterior summaries of the residual structure's parameters.

    Rows as :func:`hierlm.results.structures.structure_parameters` names them:
    ``structure`` is the residual design's description (``ar1(week | id)``),
    ``parameter`` is ``rho``, ``rho<k>`` (Toeplitz lags), ``phi``, ``cor.<t1>.<t2>``
    (UN), ``ratio.<time>`` and ``ratio.<column>.<level>``; then the posterior protocol columns.
    """
    import pandas as pd

    from hierlm.results.tables import structure_posterior_table

    if residual is None:
        return pd.DataFrame(columns=["structure", "parameter"])
    structure = residual_structure(residual)
    keys, columns = [], []
    variables: list[tuple[str, int]] = []
    n_chains = 1
    column = residual.variance_function.column if residual.variance_function is not None else ""
    for name, dims in _stored(structure):
        if name not in posterior:
            continue
        values = np.asarray(posterior[name].values, dtype=float)
        n_chains = values.shape[0]
        flat = values.reshape(values.shape[0] * values.shape[1], -1)
        base = name.removesuffix("_residual").removesuffix("_residual_variance")
        if not dims:
            labels = [base]
        elif name == "rho_residual" or name == "pacf_residual":
            labels = [f"{base}{k}" for k in range(1, flat.shape[1] + 1)]
        elif name == "ratio_residual_variance":
            labels = [f"ratio.{column}.{c}" for c in posterior[name].coords[dims[0]].values]
        else:
            labels = [f"{base}.{c}" for c in posterior[name].coords[dims[0]].values]
        for k, label in enumerate(labels):
            keys.append((residual.describe(), label))
            columns.append(flat[:, k])
            variables.append((name, k))
    table = structure_posterior_table(keys, columns, n_chains, prob)
    table.attrs["variables"] = variables  # (stored variable, flat index) of each row
    return table
