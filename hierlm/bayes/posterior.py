"""Turn raw draws into the ArviZ DataTree of a fit (same names for every formulation).

Groups: ``posterior`` (see :mod:`hierlm.bayes.naming`), ``sample_stats``,
``observed_data``, ``posterior_predictive``, ``log_likelihood`` and, when
every block shares one grouping factor, ``log_likelihood_group``. With these
ArviZ works on ``fit.idata`` as on a PyMC trace: ``az.summary``,
``az.plot_ppc_dist``, ``az.loo`` and ``az.plot_loo_pit``.

``posterior_predictive`` holds one replicated response per posterior draw and
observation, ``y_rep = X beta + Z b + e`` with the draw's group effects and
``e ~ N(0, sigma^2)``, under the response's name with dim ``obs`` (as
``observed_data``).

With a residual structure (``residual=``) the residuals of a group are
correlated: the replicates carry that covariance, and ``log_likelihood``
holds one value per residual group instead, the joint density of its
observations with the group effects integrated out (its attribute ``unit``
says so; :mod:`hierlm.bayes.residual_posterior`).

``log_likelihood`` holds the pointwise log-density of each observation given
all parameters *and* the group effects, under the response's name, for both
formulations (for the marginal one it is computed from the conditional draws
of the group effects), so ``arviz_stats.loo`` means the same thing whichever
formulation ran. ``log_likelihood_group`` holds, per level of the grouping
factor, the log-likelihood of that level's observations with the group
effects integrated out, for leave-one-group-out cross-validation; for the
marginal formulation this is exactly the density the sampler used.

The per-observation groups take draws x observations numbers each; beyond
:data:`LOG_LIKELIHOOD_MAX_ELEMENTS` (1 GB) they are skipped with a warning
unless asked for explicitly (``log_likelihood=True``,
``posterior_predictive=True``), and ``False`` skips them for huge data.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

import numpy as np
import xarray as xr

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.conditional import (
    covariance_cholesky,
    draw_group_effects,
    group_loglik,
    linear_predictor,
    stack_cholesky,
)
from hierlm.bayes.groupstats import group_stats, shared_group
from hierlm.bayes.likelihoods import (
    dispersion_name,
    likelihood_of,
    observed_data,
    pointwise_log_likelihood,
)
from hierlm.bayes.naming import (
    FIXEF,
    FIXEF_DIM,
    OBS_DIM,
    SIGMA,
    BlockNames,
    observation_coords,
    response_variable,
)
from hierlm.bayes.residual_marginal import residual_coords, residual_variables
from hierlm.bayes.sample import RawSample
from hierlm.bayes.structure_model import structure_coords, structure_variables
from hierlm.errors import HierlmWarning
from hierlm.results.ic import level_sums

__all__ = ["LOG_LIKELIHOOD_MAX_ELEMENTS", "assemble_datatree", "posterior_dataset"]

# pointwise log-likelihoods and replicates beyond this many numbers (1 GB) are skipped by default
LOG_LIKELIHOOD_MAX_ELEMENTS = 125_000_000
_SAMPLE_DIMS = ("chain", "draw")
_CHUNK_ELEMENTS = 4_000_000


def _flat(draws: np.ndarray) -> np.ndarray:
    """(chain, draw, ...) -> (chain * draw, ...)."""
    return draws.reshape(draws.shape[0] * draws.shape[1], *draws.shape[2:])


def _unflat(values: np.ndarray, n_chains: int) -> np.ndarray:
    """(chain * draw, ...) -> (chain, draw, ...)."""
    return values.reshape(n_chains, values.shape[0] // n_chains, *values.shape[1:])


def _block_cholesky(names: list[BlockNames], draws: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Per-block covariance Cholesky factors (S, q, q) from the SD and correlation draws."""
    out = []
    for bn in names:
        corr = _flat(draws[bn.corr_chol]) if bn.corr_chol in draws else None
        out.append(covariance_cholesky(_flat(draws[bn.sd]), corr))
    return out


def posterior_dataset(built: BuiltModel, raw: RawSample, seed: int,
                      group_effects: str = "draws") -> xr.Dataset:
    """Posterior variables with named dims; group effects drawn exactly if marginal.

    Parameters
    ----------
    built : BuiltModel
        The sampled model.
    raw : RawSample
        Its draws.
    seed : int
        Seed of the conditional draws of the group effects (marginal formulation).
    group_effects : {"draws", "summary"}
        ``"summary"``: no ``ranef_*`` draws (their summaries are the
        ``group_effects`` group, :mod:`hierlm.bayes.effect_summary`).

    Returns
    -------
    xarray.Dataset
        ``fixef``, ``sigma``, ``sd_*``, ``cor_*``, ``ranef_*``.
    """
    draws = raw.draws
    n_chains = draws[FIXEF].shape[0]
    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        FIXEF: ((*_SAMPLE_DIMS, FIXEF_DIM), draws[FIXEF]),
    }
    dispersion = dispersion_name(built.family)
    if dispersion is not None:
        data_vars[dispersion] = (_SAMPLE_DIMS, draws[dispersion])
    coords: dict[str, object] = {FIXEF_DIM: list(built.design.fixed_names)}
    ranef: dict[str, np.ndarray] = {}
    if group_effects == "summary":
        pass
    elif built.formulation == "marginal":
        stats = built.stats
        rng = np.random.default_rng([seed, 2])
        if built.design.residual is not None:  # residual=: exact draws given its covariance
            from hierlm.bayes.residual_posterior import residual_draws

            per_block = residual_draws(built, draws).effects(rng)
            ranef = {bn.ranef: _unflat(np.swapaxes(effects, 1, 2), n_chains)
                     for bn, effects in zip(built.names, per_block, strict=True)}
        elif stats is None:  # nested or crossed factors: one sparse solve per draw
            from hierlm.bayes.likelihood_model import draw_effects_any_design

            per_block = draw_effects_any_design(built, draws, rng)
            ranef = {bn.ranef: _unflat(np.swapaxes(effects, 1, 2), n_chains)
                     for bn, effects in zip(built.names, per_block, strict=True)}
        else:
            chol = stack_cholesky(_block_cholesky(built.names, draws), stats.block_slices)
            effects = draw_group_effects(stats, _flat(draws[FIXEF]), _flat(draws[SIGMA]), chol, rng)
            # (S, levels, terms) -> (chain, draw, terms, levels), the layout of naming.py
            ranef = {
                bn.ranef: _unflat(np.swapaxes(effects[:, :, cols], 1, 2), n_chains)
                for bn, cols in zip(built.names, stats.block_slices, strict=True)
            }
    else:
        ranef = {bn.ranef: draws[bn.ranef] for bn in built.names}  # sampled as (term, level)
    for bn in built.names:
        coords.update(bn.coords())
        data_vars[bn.sd] = ((*_SAMPLE_DIMS, bn.term_dim), draws[bn.sd])
        if bn.cor in draws:
            data_vars[bn.cor] = ((*_SAMPLE_DIMS, bn.pair_dim), draws[bn.cor])
        if bn.ranef in ranef:
            data_vars[bn.ranef] = ((*_SAMPLE_DIMS, *bn.ranef_dims), ranef[bn.ranef])
    for name, dims in structure_variables(built.names):  # rho_<b>, pacf_<b>, sd_common_<b>
        data_vars[name] = ((*_SAMPLE_DIMS, *dims), draws[name])
    coords.update(structure_coords(built.names))
    for name, dims in residual_variables(built.design.residual):  # rho_residual, ratio_residual ...
        data_vars[name] = ((*_SAMPLE_DIMS, *dims), draws[name])
    coords.update(residual_coords(built.design.residual))
    dataset = xr.Dataset(data_vars, coords=coords)
    return dataset.assign_coords(chain=np.arange(n_chains), draw=np.arange(dataset.sizes["draw"]))


def _with_effect_draws(built: BuiltModel, posterior: xr.Dataset, summary: xr.Dataset) -> xr.Dataset:
    """The posterior with the on-demand exact draws of the group effects of a summarised fit."""
    from hierlm.bayes.effect_summary import EffectSummary

    assert built.stats is not None
    tree = {"posterior": posterior, "group_effects": summary}
    effects = EffectSummary.from_idata(tree, built.stats, built.names).draws()
    n_chains = posterior.sizes["chain"]
    return posterior.assign({
        bn.ranef: ((*_SAMPLE_DIMS, *bn.ranef_dims),
                   _unflat(np.swapaxes(effects[:, :, cols], 1, 2), n_chains))
        for bn, cols in zip(built.names, built.stats.block_slices, strict=True)})


def _effect_blocks(
    built: BuiltModel, posterior: xr.Dataset
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per block: level codes (n,), columns (n, q) and pooled effect draws (S, J, q)."""
    return [
        (np.asarray(bn.block.codes), np.asarray(bn.block.z, float), _flat(bn.effects(posterior)))
        for bn in built.names
    ]


def _dispersion_draws(built: BuiltModel, posterior: xr.Dataset) -> np.ndarray | None:
    """Pooled draws (S,) of the family's dispersion parameter, None when it has none."""
    name = dispersion_name(built.family)
    return None if name is None else _flat(posterior[name].values)


def _response_mean(built: BuiltModel, posterior: xr.Dataset, part: slice) -> np.ndarray:
    """Means on the response scale (S_part, n): the inverse link of ``offset + X beta + Z b``."""
    design = built.design
    blocks = [(codes, z, eff[part]) for codes, z, eff in _effect_blocks(built, posterior)]
    eta = linear_predictor(np.asarray(design.X, float), _flat(posterior[FIXEF].values)[part], blocks)
    offset = observed_data(design).offset
    if offset is not None:
        eta = eta + offset[None, :]
    return np.asarray(built.family.link.inverse(eta))


def _conditional_group_loglik(built: BuiltModel, pointwise: xr.Dataset | None,
                              chain_draw: dict[str, np.ndarray]) -> dict[str, xr.Dataset]:
    """Per-level sums of the pointwise log-likelihoods of a non-Gaussian model.

    For leave-one-group-out PSIS on one shared grouping factor: the group
    effects of the draw stay in (the Gaussian marginal has no closed form here).
    """
    group = shared_group(built.design)
    if pointwise is None or group is None:
        return {}
    values = np.asarray(pointwise[response_variable(built.design)].values)
    bn = built.names[0]
    sums = _unflat(level_sums(_flat(values), bn.block.codes, bn.block.n_levels), values.shape[0])
    return {"log_likelihood_group": xr.Dataset(
        {response_variable(built.design): ((*_SAMPLE_DIMS, bn.level_dim), sums)},
        coords={bn.level_dim: [str(v) for v in bn.block.levels], **chain_draw},
        attrs={"kind": "conditional: sum of the level's pointwise log-likelihoods"})}


def _too_big(what: str, n_samples: int, n_units: int, option: str) -> None:
    """Warn that a per-observation group was not stored because of its size."""
    warnings.warn(
        f"{what} not stored: {n_samples} draws x {n_units} observations "
        f"would take more than 1 GB; pass {option}=True to force it",
        HierlmWarning,
        stacklevel=5,
    )


def _posterior_predictive_group(
    built: BuiltModel, posterior: xr.Dataset, seed: int, mode: bool | str
) -> dict[str, xr.Dataset]:
    """The ``posterior_predictive`` group: one replicated response per draw (subject to ``mode``)."""
    design = built.design
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    n_samples = n_chains * n_draws
    if mode is False:
        return {}
    if mode == "auto" and n_samples * design.n > LOG_LIKELIHOOD_MAX_ELEMENTS:
        _too_big("posterior predictive draws", n_samples, design.n, "posterior_predictive")
        return {}
    rng = np.random.default_rng([seed, 3])
    if design.residual is not None:  # residuals correlated within a group
        return {"posterior_predictive": xr.Dataset(
            {response_variable(design): ((*_SAMPLE_DIMS, OBS_DIM),
                                         _unflat(_residual_replicates(built, posterior, rng),
                                                 n_chains))},
            coords={OBS_DIM: observation_coords(design), "chain": posterior["chain"].values,
                    "draw": posterior["draw"].values})}
    likelihood = likelihood_of(built.family)
    data = observed_data(design)
    dispersion = _dispersion_draws(built, posterior)
    replicates = np.empty((n_samples, design.n), dtype=np.int64 if likelihood.integer else float)
    step = max(1, _CHUNK_ELEMENTS // max(design.n, 1))
    for start in range(0, n_samples, step):
        part = slice(start, min(start + step, n_samples))
        mu = _response_mean(built, posterior, part)
        replicates[part] = likelihood.replicate(
            rng, data, mu, None if dispersion is None else dispersion[part])
    return {
        "posterior_predictive": xr.Dataset(
            {response_variable(design): ((*_SAMPLE_DIMS, OBS_DIM), _unflat(replicates, n_chains))},
            coords={OBS_DIM: observation_coords(design), "chain": posterior["chain"].values,
                    "draw": posterior["draw"].values},
        )
    }


def _residual_draws(built: BuiltModel, posterior: xr.Dataset) -> Any:
    """The per-draw parameters of a fit with ``residual=`` (from the posterior group)."""
    from hierlm.bayes.residual_posterior import residual_draws

    return residual_draws(built, {str(name): np.asarray(posterior[name].values)
                                  for name in posterior.data_vars})


def _residual_replicates(built: BuiltModel, posterior: xr.Dataset,
                         rng: np.random.Generator) -> np.ndarray:
    """Replicated responses (S, n) with the structured residual covariance."""
    effects = [eff for _, _, eff in _effect_blocks(built, posterior)]
    return np.asarray(_residual_draws(built, posterior).replicates(effects, rng))


def _residual_log_likelihood(built: BuiltModel, posterior: xr.Dataset) -> dict[str, xr.Dataset]:
    """The ``log_likelihood`` group of a fit with ``residual=``: one joint density per group."""
    from hierlm.bayes.residual_posterior import RESIDUAL_UNIT_DIM, unit_note

    residual = built.design.residual
    assert residual is not None
    values = _residual_draws(built, posterior).group_logdensity()
    return {"log_likelihood": xr.Dataset(
        {response_variable(built.design): ((*_SAMPLE_DIMS, RESIDUAL_UNIT_DIM),
                                           _unflat(values, posterior.sizes["chain"]))},
        coords={RESIDUAL_UNIT_DIM: [str(v) for v in residual.group_labels],
                "chain": posterior["chain"].values, "draw": posterior["draw"].values},
        attrs={"unit": unit_note(built), "group": residual.spec.group})}


def _log_likelihood_groups(
    built: BuiltModel, posterior: xr.Dataset, raw: RawSample, mode: bool | str
) -> dict[str, xr.Dataset]:
    """Pointwise and per-group log-likelihood datasets (subject to ``mode`` and size)."""
    design = built.design
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    n_samples = n_chains * n_draws
    chain_draw = {"chain": posterior["chain"].values, "draw": posterior["draw"].values}
    fixef = _flat(posterior[FIXEF].values)
    out = {}
    if design.residual is not None:  # observations of a group are not conditionally independent
        return {} if mode is False else _residual_log_likelihood(built, posterior)
    if design.rowless:  # data held by an engine: no rows here; the per-group part is exact
        pass
    elif mode is True or (mode == "auto" and n_samples * design.n <= LOG_LIKELIHOOD_MAX_ELEMENTS):
        dispersion = _dispersion_draws(built, posterior)
        values = np.empty((n_samples, design.n))
        data = observed_data(design)
        step = max(1, _CHUNK_ELEMENTS // max(design.n, 1))
        for start in range(0, n_samples, step):
            part = slice(start, min(start + step, n_samples))
            values[part] = pointwise_log_likelihood(
                built.family, data, _response_mean(built, posterior, part),
                None if dispersion is None else dispersion[part])
        out["log_likelihood"] = xr.Dataset(
            {response_variable(design): ((*_SAMPLE_DIMS, OBS_DIM), _unflat(values, n_chains))},
            coords={OBS_DIM: observation_coords(design), **chain_draw},
        )
    elif mode == "auto":
        _too_big("pointwise log-likelihood", n_samples, design.n, "log_likelihood")
    if mode is not False and built.family.name != "gaussian":
        out.update(_conditional_group_loglik(built, out.get("log_likelihood"), chain_draw))
    elif mode is not False and shared_group(design) is not None:
        sigma = _flat(posterior[SIGMA].values)
        stats = built.stats if built.stats is not None else group_stats(design)
        if mode is True or n_samples * stats.n_groups <= LOG_LIKELIHOOD_MAX_ELEMENTS:
            chol = stack_cholesky(_block_cholesky(built.names, raw.draws), stats.block_slices)
            values = group_loglik(stats, fixef, sigma, chol)
            level_dim = built.names[0].level_dim
            out["log_likelihood_group"] = xr.Dataset(
                {response_variable(design): ((*_SAMPLE_DIMS, level_dim), _unflat(values, n_chains))},
                coords={level_dim: list(stats.levels), **chain_draw},
            )
    return out


def assemble_datatree(
    built: BuiltModel,
    raw: RawSample,
    seed: int,
    log_likelihood: bool | str = "auto",
    attrs: dict[str, object] | None = None,
    posterior_predictive: bool | str = "auto",
    group_effects: str = "draws",
) -> xr.DataTree:
    """Build the fit's DataTree from raw draws.

    Parameters
    ----------
    built : BuiltModel
        The sampled model.
    raw : RawSample
        Draws and sampler statistics.
    seed : int
        Seed for the conditional draws of the group effects.
    log_likelihood : bool or "auto"
        Store log-likelihood groups: always, never, or unless they would take
        more than about 1 GB each (then a warning says so).
    attrs : dict, optional
        Extra attributes for every group (sampler, formulation, ...).
    posterior_predictive : bool or "auto"
        Store the ``posterior_predictive`` group: always, never, or unless it
        would take more than about 1 GB (then a warning says so).
    group_effects : {"draws", "summary"}
        Store every draw of the group effects, or their exact summaries
        (group ``group_effects``; :mod:`hierlm.bayes.effect_summary`).

    Returns
    -------
    xarray.DataTree
        Groups described in the module docstring.
    """
    posterior = posterior_dataset(built, raw, seed, group_effects)
    chain_draw = {"chain": posterior["chain"].values, "draw": posterior["draw"].values}
    stats = xr.Dataset(
        {name: (_SAMPLE_DIMS, values) for name, values in raw.stats.items()}, coords=chain_draw
    )
    design = built.design
    # the scale of the replicates: successes for the binomial, the response otherwise
    observed_y = (observed_data(design).successes if built.family.name == "binomial"
                  else np.asarray(design.y, dtype=float))
    observed = xr.Dataset(
        {response_variable(design): ((OBS_DIM,), observed_y)},
        # (a row-less design's square-root rows are dropped below)
        coords={OBS_DIM: np.arange(design.y.size) if design.rowless else observation_coords(design)},
    )
    groups: dict[str, xr.Dataset] = {
        "posterior": posterior,
        "sample_stats": stats,
        "observed_data": observed,
    }
    per_row = posterior  # the posterior the per-observation groups read their effects from
    if group_effects == "summary":
        from hierlm.bayes.effect_summary import SUMMARY_GROUP, summary_dataset

        assert built.stats is not None
        groups[SUMMARY_GROUP] = summary_dataset(built.stats, built.names, posterior, seed)
        n_rows = posterior.sizes["chain"] * posterior.sizes["draw"] * design.n
        if not design.rowless and (True in (posterior_predictive, log_likelihood) or (
                "auto" in (posterior_predictive, log_likelihood)
                and n_rows <= LOG_LIKELIHOOD_MAX_ELEMENTS)):
            per_row = _with_effect_draws(built, posterior, groups[SUMMARY_GROUP])
    if design.rowless:  # data held by an engine: no rows to observe or replicate here
        del groups["observed_data"]
    else:
        groups.update(_posterior_predictive_group(built, per_row, seed, posterior_predictive))
    groups.update(_log_likelihood_groups(built, per_row, raw, log_likelihood))
    common = {
        "created_at": datetime.now(UTC).isoformat(),
        "inference_library": "hierlm",
        "formulation": built.formulation,
        **(attrs or {}),
    }
    for dataset in groups.values():
        dataset.attrs.update({k: str(v) for k, v in common.items()})
    return xr.DataTree.from_dict(groups)
