"""Turn raw draws into the ArviZ DataTree of a fit (same names for every formulation).

Groups: ``posterior`` (see :mod:`hierlm.bayes.naming`), ``sample_stats``,
``observed_data``, ``log_likelihood`` and, when every block shares one
grouping factor, ``log_likelihood_group``.

``log_likelihood`` holds the pointwise log-density of each observation given
all parameters *and* the group effects, under the response's name, for both
formulations (for the marginal one it is computed from the conditional draws
of the group effects), so ``arviz_stats.loo`` means the same thing whichever
formulation ran. ``log_likelihood_group`` holds, per level of the grouping
factor, the log-likelihood of that level's observations with the group
effects integrated out, for leave-one-group-out cross-validation; for the
marginal formulation this is exactly the density the sampler used.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import numpy as np
import xarray as xr

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.conditional import (
    covariance_cholesky,
    draw_group_effects,
    group_loglik,
    pointwise_loglik,
    stack_cholesky,
)
from hierlm.bayes.groupstats import group_stats, shared_group
from hierlm.bayes.naming import FIXEF, FIXEF_DIM, OBS_DIM, SIGMA, BlockNames, observation_coords
from hierlm.bayes.sample import RawSample
from hierlm.errors import HierlmWarning

__all__ = ["LOG_LIKELIHOOD_MAX_ELEMENTS", "assemble_datatree", "posterior_dataset"]

# pointwise log-likelihoods beyond this many numbers (8 GB / 8 bytes / 8) are skipped by default
LOG_LIKELIHOOD_MAX_ELEMENTS = 125_000_000
_SAMPLE_DIMS = ("chain", "draw")


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


def posterior_dataset(built: BuiltModel, raw: RawSample, seed: int) -> xr.Dataset:
    """Posterior variables with named dims; group effects drawn exactly if marginal.

    Parameters
    ----------
    built : BuiltModel
        The sampled model.
    raw : RawSample
        Its draws.
    seed : int
        Seed of the conditional draws of the group effects (marginal formulation).

    Returns
    -------
    xarray.Dataset
        ``fixef``, ``sigma``, ``sd_*``, ``cor_*``, ``ranef_*``.
    """
    draws = raw.draws
    n_chains = draws[FIXEF].shape[0]
    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        FIXEF: ((*_SAMPLE_DIMS, FIXEF_DIM), draws[FIXEF]),
        SIGMA: (_SAMPLE_DIMS, draws[SIGMA]),
    }
    coords: dict[str, object] = {FIXEF_DIM: list(built.design.fixed_names)}
    if built.formulation == "marginal":
        stats = built.stats
        if stats is None:
            raise ValueError("a marginal model needs its group statistics")
        chol = stack_cholesky(_block_cholesky(built.names, draws), stats.block_slices)
        rng = np.random.default_rng([seed, 2])
        effects = draw_group_effects(stats, _flat(draws[FIXEF]), _flat(draws[SIGMA]), chol, rng)
        ranef = {
            bn.ranef: _unflat(effects[:, :, cols], n_chains)
            for bn, cols in zip(built.names, stats.block_slices, strict=True)
        }
    else:
        ranef = {bn.ranef: draws[bn.ranef] for bn in built.names}
    for bn in built.names:
        coords.update(bn.coords())
        data_vars[bn.sd] = ((*_SAMPLE_DIMS, bn.term_dim), draws[bn.sd])
        if bn.cor in draws:
            data_vars[bn.cor] = ((*_SAMPLE_DIMS, bn.pair_dim), draws[bn.cor])
            coords[f"{bn.pair_dim}_term1"] = (bn.pair_dim, [a for a, _ in bn.pair_terms])
            coords[f"{bn.pair_dim}_term2"] = (bn.pair_dim, [b for _, b in bn.pair_terms])
        data_vars[bn.ranef] = ((*_SAMPLE_DIMS, bn.level_dim, bn.term_dim), ranef[bn.ranef])
    dataset = xr.Dataset(data_vars, coords=coords)
    return dataset.assign_coords(chain=np.arange(n_chains), draw=np.arange(dataset.sizes["draw"]))


def _log_likelihood_groups(
    built: BuiltModel, posterior: xr.Dataset, raw: RawSample, mode: bool | str
) -> dict[str, xr.Dataset]:
    """Pointwise and per-group log-likelihood datasets (subject to ``mode`` and size)."""
    design = built.design
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    n_samples = n_chains * n_draws
    chain_draw = {"chain": posterior["chain"].values, "draw": posterior["draw"].values}
    fixef = _flat(posterior[FIXEF].values)
    sigma = _flat(posterior[SIGMA].values)
    out = {}
    if mode is True or (mode == "auto" and n_samples * design.n <= LOG_LIKELIHOOD_MAX_ELEMENTS):
        blocks = [
            (np.asarray(bn.block.codes), np.asarray(bn.block.z, float), _flat(posterior[bn.ranef].values))
            for bn in built.names
        ]
        values = pointwise_loglik(
            np.asarray(design.y, float), np.asarray(design.X, float), fixef, sigma, blocks
        )
        out["log_likelihood"] = xr.Dataset(
            {design.response: ((*_SAMPLE_DIMS, OBS_DIM), _unflat(values, n_chains))},
            coords={OBS_DIM: observation_coords(design), **chain_draw},
        )
    elif mode == "auto":
        warnings.warn(
            f"pointwise log-likelihood not stored: {n_samples} draws x {design.n} observations "
            "would take more than 1 GB; pass log_likelihood=True to force it",
            HierlmWarning,
            stacklevel=4,
        )
    if mode is not False and shared_group(design) is not None:
        stats = built.stats if built.stats is not None else group_stats(design)
        if mode is True or n_samples * stats.n_groups <= LOG_LIKELIHOOD_MAX_ELEMENTS:
            chol = stack_cholesky(_block_cholesky(built.names, raw.draws), stats.block_slices)
            values = group_loglik(stats, fixef, sigma, chol)
            level_dim = built.names[0].level_dim
            out["log_likelihood_group"] = xr.Dataset(
                {design.response: ((*_SAMPLE_DIMS, level_dim), _unflat(values, n_chains))},
                coords={level_dim: list(stats.levels), **chain_draw},
            )
    return out


def assemble_datatree(
    built: BuiltModel,
    raw: RawSample,
    seed: int,
    log_likelihood: bool | str = "auto",
    attrs: dict[str, object] | None = None,
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

    Returns
    -------
    xarray.DataTree
        Groups described in the module docstring.
    """
    posterior = posterior_dataset(built, raw, seed)
    chain_draw = {"chain": posterior["chain"].values, "draw": posterior["draw"].values}
    stats = xr.Dataset(
        {name: (_SAMPLE_DIMS, values) for name, values in raw.stats.items()}, coords=chain_draw
    )
    design = built.design
    observed = xr.Dataset(
        {design.response: ((OBS_DIM,), np.asarray(design.y, dtype=float))},
        coords={OBS_DIM: observation_coords(design)},
    )
    groups: dict[str, xr.Dataset] = {
        "posterior": posterior,
        "sample_stats": stats,
        "observed_data": observed,
    }
    groups.update(_log_likelihood_groups(built, posterior, raw, log_likelihood))
    common = {
        "created_at": datetime.now(UTC).isoformat(),
        "inference_library": "hierlm",
        "formulation": built.formulation,
        **(attrs or {}),
    }
    for dataset in groups.values():
        dataset.attrs.update({k: str(v) for k, v in common.items()})
    return xr.DataTree.from_dict(groups)
