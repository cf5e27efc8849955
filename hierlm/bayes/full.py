"""Full formulation: group effects are sampled, non-centred.

For every block, ``ranef = L z`` with ``z`` standard normal (terms x
levels, the layout of :mod:`hierlm.bayes.naming`) and ``L`` the Cholesky
factor of the block's covariance (``diag(sd)`` times the LKJ correlation
factor for a correlated block, ``diag(sd)`` for independent terms). The
linear predictor ``eta = offset + X beta + Z b`` adds, for row ``i``, the
block's columns ``z_i`` times the effects of the row's level. Works for every
structure (nested, crossed, several blocks on one factor) and every family:
the observed node is the family's entry of
:data:`hierlm.bayes.likelihoods.LIKELIHOODS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierlm.bayes.likelihoods import family_of, likelihood_of, observed_data
from hierlm.bayes.naming import OBS_DIM, observation_coords
from hierlm.bayes.parameters import GlmmStart, add_parameters, model_coords
from hierlm.bayes.priors import PriorTable
from hierlm.design.blocks import Design
from hierlm.errors import FitError
from hierlm.families import Family

__all__ = ["CENTRED_INFORMATION", "build_full_model", "centred_blocks", "glmm_start",
           "observation_coords"]  # observation_coords re-exported


def glmm_start(design: Design, family: Family) -> GlmmStart:
    """Starting values and centring of a non-Gaussian full model.

    The intercept starts at the link of the overall mean response (per unit of
    exposure when there is an offset), the other coefficients at 0 and every
    SD at 0.5 on the link scale. When the model has an intercept the sampler
    moves over the coefficients at centred predictors (the priors are those
    of the coefficients as written; see
    :class:`hierlm.bayes.parameters.GlmmStart`).
    """
    data = observed_data(design)
    exposure = np.exp(data.offset) if data.offset is not None else np.ones_like(data.y)
    mean = float(np.sum(data.weights * data.y) / np.sum(data.weights * exposure))
    X = np.asarray(design.X, dtype=float)
    names = list(design.fixed_names)
    beta = np.zeros(design.p)
    centre = None
    if "Intercept" in names:
        k = names.index("Intercept")
        low, high = (1e-3, 1 - 1e-3) if family.name == "binomial" else (1e-3, np.inf)
        beta[k] = float(family.link.link(np.array([min(max(mean, low), high)]))[0])
        centre = X.mean(axis=0)
        centre[k] = 0.0
        if not np.any(centre):
            centre = None
    dispersion = family.dispersion_name if likelihood_of(family).dispersion else None
    return GlmmStart(dispersion=dispersion, beta=beta, sd=0.5, centre=centre)


#: a scalar block is sampled centred when its levels' median Fisher information is at least this
CENTRED_INFORMATION = 4.0


def centred_blocks(design: Design, family: Family) -> list[bool]:
    """Which blocks of a non-Gaussian model are sampled centred (``b ~ N(0, sd^2)`` directly).

    Non-centred effects (``b = sd z``) suit levels the data say little about;
    when the data pin a level's effect down, ``sd`` and ``z`` become strongly
    dependent and the sampler crawls (Papaspiliopoulos, Roberts & Skold 2007,
    Statist. Sci. 22: 59-73). The rule: a scalar block is centred when the
    median over its levels of the Fisher information about the level's effect
    at the overall mean, ``sum_i w_i z_i^2 (d mu / d eta)^2 / V(mu)``, is at
    least :data:`CENTRED_INFORMATION` (the effect known to +-0.5 on the link
    scale from its own data, less than typical group SDs). Blocks with
    several terms stay non-centred.
    """
    data = observed_data(design)
    start = glmm_start(design, family)
    eta = np.full(design.n, start.beta[list(design.fixed_names).index("Intercept")]
                  if "Intercept" in design.fixed_names else 0.0)
    if data.offset is not None:
        eta = eta + data.offset
    weights = np.asarray(family.working_weights(eta, data.weights, 1.0 if family.has_dispersion
                                                else None), dtype=float)
    out = []
    for block in design.blocks:
        if block.q != 1:
            out.append(False)
            continue
        info = np.bincount(np.asarray(block.codes), weights=weights * np.asarray(block.z)[:, 0] ** 2,
                           minlength=block.n_levels)
        out.append(bool(np.median(info) >= CENTRED_INFORMATION))
    return out


def build_full_model(design: Design, priors: PriorTable, family: Any = None) -> pm.Model:
    """Build the full (non-centred) PyMC model of a mixed model of any family.

    Parameters
    ----------
    design : Design
        Response, fixed-effect matrix, random-effect blocks, weights and offset.
    priors : PriorTable
        Resolved priors.
    family : str or Family, optional
        The response family (Gaussian when None).

    Returns
    -------
    pymc.Model
        Free variables: ``fixef`` (``fixef_centred`` for non-Gaussian models
        with an intercept, ``fixef`` then a deterministic), ``sigma``
        (Gaussian) or the family's dispersion (``theta``), ``sd_<block>``,
        ``corr_raw_<block>`` (correlated blocks) and ``z_<block>``;
        deterministics ``cor_<block>`` and ``ranef_<block>``; the observed
        variable is named after the response, with dim ``obs``.
    """
    if design.residual is not None:
        raise FitError(
            f"The full formulation does not take residual structures (residual="
            f"{design.residual.describe()!r}): its group effects are sampled and the residuals "
            "are independent given them. Use formulation='marginal', which integrates the group "
            "effects out and carries the residual covariance, or method='reml'/'ml'.")
    fam = family_of(family)
    likelihood = likelihood_of(fam)
    data = observed_data(design)
    coords: dict[str, list[Any]] = dict(model_coords(design))
    coords[OBS_DIM] = observation_coords(design)
    X = np.asarray(design.X, dtype=float)
    gaussian = fam.name == "gaussian"
    with pm.Model(coords=coords) as model:
        params = add_parameters(design, priors, None if gaussian else glmm_start(design, fam))
        eta = pt.sum(pt.as_tensor(X) * params.fixef[None, :], axis=1)
        if data.offset is not None:
            eta = eta + pt.as_tensor(data.offset)
        centred = [False] * len(params.names) if gaussian else centred_blocks(design, fam)
        for k, (bn, chol) in enumerate(zip(params.names, params.chols, strict=True)):
            block = bn.block
            # terms x levels, the layout of hierlm.bayes.naming (shared term dim first)
            if centred[k]:
                ranef = pm.Normal(bn.ranef, 0.0, params.sds[k][:, None], dims=bn.ranef_dims)
            else:
                innovations = pm.Normal(bn.z_std, 0.0, 1.0, dims=bn.ranef_dims)
                if block.q == 1:
                    effects = innovations * params.sds[k][:, None]
                else:
                    effects = pt.dot(chol, innovations)
                ranef = pm.Deterministic(bn.ranef, effects, dims=bn.ranef_dims)
            codes = pt.as_tensor(np.asarray(block.codes, dtype=np.int64))
            z = np.asarray(block.z, dtype=float)
            if block.q == 1:
                eta = eta + pt.as_tensor(z[:, 0]) * ranef[0, codes]
            else:
                eta = eta + pt.sum(pt.as_tensor(z) * ranef[:, codes].T, axis=1)
        likelihood.observed(design.response, eta, fam, params.sigma, data, OBS_DIM)
    return model
