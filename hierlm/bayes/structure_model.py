"""PyMC variables of a patterned random-effect structure (``cs``, ``ar1``, ``toep``, hom/het).

:func:`add_structure_block` creates, inside a ``pm.Model`` context, the
variables of one block from its parameterisation
(:func:`hierlm.bayes.structures.block_structure`): the SDs (``sd_<b>``, or
``sd_common_<b>`` shared by every term of a homogeneous block, with
``sd_<b>`` then a deterministic over the terms), the interval parameters as
``pm.Uniform`` over their prior's range (``rho_<b>``, ``pacf_<b>``; PyMC's
log-odds transform is :func:`hierlm.bayes.structure_math.interval_forward`),
and the deterministics every formulation reads: ``rho_<b>`` of ``toep`` (the
lag correlations), ``cor_<b>`` (pairs in lme4's order) and ``corr_chol_<b>``
(the correlation's Cholesky factor). It returns the SD vector and the factor
``L_G = diag(sd) chol(R)`` of the block's covariance, which the full
formulation multiplies into the standard-normal innovations (``b = L_G z``).

:func:`structure_variables` lists the extra variables (name and dims) a fit
stores per draw, and :func:`structure_coords` their coordinates;
:func:`structure_parameter_table` summarises their posterior in the rows of
:func:`hierlm.results.structures.structure_parameters` (columns ``structure``
and ``parameter``: ``rho``, ``rho1 ...``), so the two tables join.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hierlm.bayes.naming import BlockNames
from hierlm.bayes.priors import PriorTable
from hierlm.bayes.structures import INTERVAL_KINDS, BlockParameterisation, block_structure

__all__ = ["add_structure_block", "structure_variables", "structure_coords",
           "structure_parameter_table"]


def _interval_variable(structure: BlockParameterisation, index: int, priors: PriorTable) -> Any:
    import pymc as pm

    p = structure.parameters[index]
    lower, upper = structure.bounds(p, priors)
    kwargs: dict[str, Any] = {"dims": p.dim} if p.dim is not None else {}
    return pm.Uniform(p.name, lower=lower, upper=upper, **kwargs)


def add_structure_block(bn: BlockNames, priors: PriorTable, sd_start: float,
                        prior_variable: Callable[..., Any]) -> tuple[Any, Any]:
    """Create a patterned block's variables; return its SD vector and covariance factor.

    Parameters
    ----------
    bn : BlockNames
        A block whose structure is not lme4's (``cs``, ``ar1``, ``toep``).
    priors : PriorTable
        Resolved priors (``sd``/``sd_common`` rows and the structure's rows).
    sd_start : float
        Starting value of the SDs.
    prior_variable : callable
        :func:`hierlm.bayes.parameters.prior_variable` (the SDs get the same
        PyMC variables as ``us`` blocks).

    Returns
    -------
    sd, chol : TensorVariable
        ``sd_<b>`` (q,) and ``L_G`` (q, q).
    """
    import pymc as pm
    import pytensor.tensor as pt

    structure = block_structure(bn)
    values: dict[str, Any] = {}
    for k, p in enumerate(structure.parameters):
        if p.kind == "sd":
            values[p.name] = prior_variable(p.name, [priors.sd(bn.label, t) for t in p.coords],
                                            positive=True, dim=p.dim, labels=p.coords,
                                            initval=np.full(len(p.coords), sd_start))
        elif p.kind == "sd_common":
            values[p.name] = prior_variable(p.name, [priors.structure(p.kind, p.block)],
                                            positive=True, dim=None, initval=sd_start)
        elif p.kind in INTERVAL_KINDS:
            values[p.name] = _interval_variable(structure, k, priors)
        else:  # pragma: no cover - patterned blocks have no other kinds
            raise ValueError(f"no PyMC variable for {p.kind!r} of {bn.label}")
    structure.derive(values)
    if structure.homogeneous:
        values[bn.sd] = pm.Deterministic(bn.sd, values[bn.sd], dims=bn.term_dim)
    rho = f"rho_{bn.label}"
    if any(p.kind == "pacf" for p in structure.parameters):
        values[rho] = pm.Deterministic(rho, values[rho], dims=f"{bn.label}_lag")
    if bn.block.q > 1:
        corr_chol = pm.Deterministic(bn.corr_chol, _correlation_cholesky(structure, values))
        pm.Deterministic(bn.cor, values[bn.cor], dims=bn.pair_dim)
        return values[bn.sd], values[bn.sd][:, None] * corr_chol
    return values[bn.sd], pt.diag(values[bn.sd])


def _correlation_cholesky(structure: BlockParameterisation, values: dict[str, Any]) -> Any:
    from hierlm.bayes import structure_math as sm

    return sm.cholesky(structure.correlation(values), structure.q)


def structure_variables(names: list[BlockNames]) -> list[tuple[str, tuple[str, ...]]]:
    """Extra variables of the patterned blocks to store per draw: ``(name, dims)``.

    ``sd_common_<b>`` (scalar), ``rho_<b>`` (scalar; ``toep``: dims
    ``<b>_lag``) and ``pacf_<b>`` (``<b>_lag``). ``sd_<b>``, ``cor_<b>`` and
    ``corr_chol_<b>`` are stored as for every block.
    """
    out: list[tuple[str, tuple[str, ...]]] = []
    for bn in names:
        if bn.block.structure.is_lme4:
            continue
        for p in block_structure(bn).parameters:
            if p.kind == "sd":
                continue
            out.append((p.name, (p.dim,) if p.dim is not None else ()))
            if p.kind == "pacf":
                out.append((f"rho_{bn.label}", (p.dim,) if p.dim is not None else ()))
    return out


def structure_coords(names: list[BlockNames]) -> dict[str, list[str]]:
    """Coordinates of the patterned blocks' extra dimensions (``<b>_lag``: ``1 .. q-1``)."""
    coords: dict[str, list[str]] = {}
    for bn in names:
        if bn.block.structure.is_lme4:
            continue
        for p in block_structure(bn).parameters:
            if p.dim is not None and p.kind != "sd":
                coords[p.dim] = list(p.coords)
    return coords


def structure_parameter_table(names: list[BlockNames], posterior: Any,
                              prob: float | None = None) -> Any:
    """Posterior summaries of the patterned blocks' correlation parameters.

    Parameters
    ----------
    names : list of BlockNames
        The fit's blocks.
    posterior : xarray.Dataset or DataTree group
        Holding ``rho_<b>`` (scalar, or by lag for ``toep``), chains first.
    prob : float, optional
        Interval probability.

    Returns
    -------
    pandas.DataFrame
        ``structure`` (the term, as in the ML/REML table), ``parameter``
        (``rho``; ``rho1 ...`` for ``toep``) and the protocol columns.
    """
    from hierlm.results.tables import structure_posterior_table

    keys, columns = [], []
    variables: list[tuple[str, int]] = []
    n_chains = 1
    for bn in names:
        name = f"rho_{bn.label}"
        if bn.block.structure.is_lme4 or name not in posterior:
            continue
        values = np.asarray(posterior[name].values, dtype=float)
        n_chains = values.shape[0]
        flat = values.reshape(values.shape[0] * values.shape[1], -1)
        labels = (["rho"] if flat.shape[1] == 1 and values.ndim == 2
                  else [f"rho{k}" for k in range(1, flat.shape[1] + 1)])
        for k, label in enumerate(labels):
            keys.append((bn.block.term, label))
            columns.append(flat[:, k])
            variables.append((name, k))
    table = structure_posterior_table(keys, columns, n_chains, prob)
    table.attrs["variables"] = variables  # (stored variable, flat index) of each row
    return table
