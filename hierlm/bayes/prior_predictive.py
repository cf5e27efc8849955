"""Prior predictive draws: parameters from their priors, then group effects, then responses.

Each draw ``s`` takes fixed effects, SDs, LKJ correlations and sigma from the
model's priors (exactly, by :mod:`hierlm.bayes.prior_draws`), group effects
``b_j ~ N(0, G_s)`` for every level, and a response for every row of the
data, ``y_i = x_i' beta_s + sum_k z_ki' b_k[level_i] + e_i`` with
``e_i ~ N(0, sigma_s^2)`` (``sigma_s^2 / w_i`` with prior weights). The rows
are those of the model's data (same predictors and grouping levels), so the
draws show what the priors say about data like the data in hand before
seeing the response.

Non-Gaussian families draw their responses from the family given the mean
``mu_i = g^-1(offset_i + x_i' beta_s + sum_k z_ki' b_k[level_i])`` (and the
NB2 dispersion from its prior), by the same replicate functions as the
posterior predictive (:mod:`hierlm.bayes.likelihoods`): binomial successes
out of the row's trials, Poisson or NB2 counts, as integers; ``observed_data``
is on the same scale (successes for the binomial).

The result is a DataTree with groups ``prior`` (the same variable names,
dims and coords as a fit's ``posterior``, see :mod:`hierlm.bayes.naming`, so
``az.summary(tree, group="prior")`` labels every value right),
``prior_predictive`` (the response, dims ``obs``) and ``observed_data``, so
ArviZ plots of the prior predictive work on it (``group="prior_predictive"``).
No PyMC model is built and nothing is compiled; both formulations have the
same prior predictive distribution. For a transformed response
(``log(y) ~ ...``) the draws are on the model's (transformed) scale.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import xarray as xr

from hierlm.bayes.build import design_and_priors, model_family
from hierlm.bayes.conditional import covariance_cholesky, linear_predictor
from hierlm.bayes.likelihoods import dispersion_name, likelihood_of, observed_data
from hierlm.bayes.naming import (
    FIXEF,
    FIXEF_DIM,
    OBS_DIM,
    block_names,
    observation_coords,
    response_variable,
)
from hierlm.bayes.prior_draws import cholesky_from_raw, draw_lkj_raw, draw_prior, draw_priors
from hierlm.bayes.priors import PriorTable
from hierlm.errors import FitError, InputTypeError, PriorError

__all__ = ["MAX_PREDICTIVE_ELEMENTS", "sample_prior_predictive"]

# draws x rows beyond this (1 GB of float64) raise, naming the fix
MAX_PREDICTIVE_ELEMENTS = 125_000_000
_SAMPLE_DIMS = ("chain", "draw")


def _flat_override_keys(table: PriorTable) -> list[str]:
    """Keys a user would give to replace every flat prior in ``table``."""
    keys = []
    for row in table.rows:
        if row.prior.family != "flat":
            continue
        if row.kind == "fixef":
            keys.append(row.term)
        elif row.kind == "sd":
            keys.append(f"sd:{row.block}:{row.term}")
        else:
            keys.append(row.kind)
    return keys


def _check_request(draws: object, n_rows: int, table: PriorTable) -> int:
    """Validate the number of draws and that every prior is proper; return ``draws``."""
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)):
        raise InputTypeError(f"draws must be a positive integer, got {draws!r}")
    if draws < 1:
        raise FitError(f"draws={draws}: need at least one prior predictive draw")
    if int(draws) * n_rows > MAX_PREDICTIVE_ELEMENTS:
        raise FitError(
            f"{draws} draws x {n_rows} rows would take more than 1 GB; "
            f"use draws <= {MAX_PREDICTIVE_ELEMENTS // n_rows}"
        )
    flat = _flat_override_keys(table)
    if flat:
        raise PriorError(
            "prior predictive draws need proper priors, but these are flat (improper): "
            + ", ".join(flat)
            + "; give them proper priors, e.g. priors={"
            + ", ".join(f"{key!r}: Prior(...)" for key in flat[:2])
            + "}"
        )
    return int(draws)


def sample_prior_predictive(
    model: Any, draws: int = 500, random_seed: int | None = None, priors: Any = None
) -> xr.DataTree:
    """Draw parameters, group effects and responses from the prior.

    Parameters
    ----------
    model : hierlm.Model or Design
        The model (its formula, data and priors).
    draws : int
        Number of draws (one chain).
    random_seed : int, optional
        Seed; the same seed gives the same draws.
    priors : dict or PriorTable, optional
        Prior overrides instead of the model's own.

    Returns
    -------
    xarray.DataTree
        Groups ``prior``, ``prior_predictive`` and ``observed_data`` (see the module docstring).

    Raises
    ------
    PriorError
        When a prior is flat (improper): the message lists the keys to override.
    FitError
        For fewer than one draw, or more than about 1 GB of responses.
    """
    design, table, _ = design_and_priors(model, priors)
    family = model_family(model)
    likelihood = likelihood_of(family)
    n_draws = _check_request(draws, design.n, table)
    rng = np.random.default_rng(random_seed)
    names = design.fixed_names
    fixef = draw_priors([table.fixef(t) for t in names], n_draws, rng, [f"fixef[{t}]" for t in names])
    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        FIXEF: ((*_SAMPLE_DIMS, FIXEF_DIM), fixef[None]),
    }
    dispersion = None
    name = dispersion_name(family)
    if name is not None:
        dispersion = draw_prior(table.dispersion(name), n_draws, rng, name)
        data_vars[name] = (_SAMPLE_DIMS, dispersion[None])
    coords: dict[str, object] = {FIXEF_DIM: list(names)}
    blocks = []
    for bn in block_names(design):
        columns, q = bn.block.columns, bn.block.q
        sd = draw_priors(
            [table.sd(bn.label, t) for t in columns], n_draws, rng, [f"{bn.sd}[{t}]" for t in columns]
        )
        corr_chol = None
        coords.update(bn.coords())
        data_vars[bn.sd] = ((*_SAMPLE_DIMS, bn.term_dim), sd[None])
        if bn.block.correlated and q > 1:
            eta = table.cor(bn.label).param("eta")
            corr_chol = cholesky_from_raw(draw_lkj_raw(eta, q, n_draws, rng), q)
            cor = np.stack([np.sum(corr_chol[:, i, : i + 1] * corr_chol[:, j, : i + 1], axis=1)
                            for i, j in bn.pairs], axis=1)
            data_vars[bn.cor] = ((*_SAMPLE_DIMS, bn.pair_dim), cor[None])
        chol = covariance_cholesky(sd, corr_chol)
        innovations = rng.standard_normal((n_draws, bn.block.n_levels, q))
        effects = np.einsum("sjk,slk->sjl", innovations, chol)
        # stored as (terms, levels), the layout of naming.py that ArviZ labels right
        data_vars[bn.ranef] = ((*_SAMPLE_DIMS, *bn.ranef_dims), np.swapaxes(effects, 1, 2)[None])
        blocks.append((np.asarray(bn.block.codes), np.asarray(bn.block.z, dtype=float), effects))
    data = observed_data(design)
    predictor = linear_predictor(np.asarray(design.X, dtype=float), fixef, blocks)
    if data.offset is not None:
        predictor = predictor + data.offset[None, :]
    response = likelihood.replicate(rng, data, family.link.inverse(predictor), dispersion)
    observed = data.successes if family.name == "binomial" else np.asarray(design.y, dtype=float)
    chain_draw = {"chain": [0], "draw": np.arange(n_draws)}
    obs = {OBS_DIM: observation_coords(design)}
    variable = response_variable(design)
    groups = {
        "prior": xr.Dataset(data_vars, coords={**coords, **chain_draw}),
        "prior_predictive": xr.Dataset(
            {variable: ((*_SAMPLE_DIMS, OBS_DIM), response[None])}, coords={**obs, **chain_draw}
        ),
        "observed_data": xr.Dataset({variable: ((OBS_DIM,), observed)}, coords=obs),
    }
    attrs = {"created_at": datetime.now(UTC).isoformat(), "inference_library": "hierlm",
             "random_seed": str(random_seed)}
    for dataset in groups.values():
        dataset.attrs.update(attrs)
    return xr.DataTree.from_dict(groups)
