"""Full formulation: group effects are sampled, non-centred.

For every block, ``ranef = L z`` with ``z`` standard normal (terms x
levels, the layout of :mod:`hierlm.bayes.naming`) and ``L`` the Cholesky
factor of the block's covariance (``diag(sd)`` times the LKJ correlation
factor for a correlated block, ``diag(sd)`` for independent terms). The
linear predictor adds, for row ``i``, the block's columns ``z_i`` times the
effects of the row's level. Works for every structure (nested, crossed,
several blocks on one factor).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierlm.bayes.naming import OBS_DIM, observation_coords
from hierlm.bayes.parameters import add_parameters, model_coords
from hierlm.bayes.priors import PriorTable
from hierlm.design.blocks import Design

__all__ = ["build_full_model", "observation_coords"]  # observation_coords re-exported


def build_full_model(design: Design, priors: PriorTable) -> pm.Model:
    """Build the full (non-centred) PyMC model of a Gaussian mixed model.

    Parameters
    ----------
    design : Design
        Response, fixed-effect matrix and random-effect blocks.
    priors : PriorTable
        Resolved priors.

    Returns
    -------
    pymc.Model
        Free variables: ``fixef``, ``sigma``, ``sd_<block>``,
        ``corr_chol_<block>`` (correlated blocks) and ``z_<block>``;
        deterministics ``cor_<block>`` and ``ranef_<block>``; the observed
        variable is named after the response, with dim ``obs``.
    """
    coords: dict[str, list[Any]] = dict(model_coords(design))
    coords[OBS_DIM] = observation_coords(design)
    X = np.asarray(design.X, dtype=float)
    y = np.asarray(design.y, dtype=float)
    with pm.Model(coords=coords) as model:
        params = add_parameters(design, priors)
        mu = pt.sum(pt.as_tensor(X) * params.fixef[None, :], axis=1)
        for bn, chol in zip(params.names, params.chols, strict=True):
            block = bn.block
            # terms x levels, the layout of hierlm.bayes.naming (shared term dim first)
            innovations = pm.Normal(bn.z_std, 0.0, 1.0, dims=bn.ranef_dims)
            if block.q == 1:
                effects = innovations * params.sds[params.names.index(bn)][:, None]
            else:
                effects = pt.dot(chol, innovations)
            ranef = pm.Deterministic(bn.ranef, effects, dims=bn.ranef_dims)
            codes = pt.as_tensor(np.asarray(block.codes, dtype=np.int64))
            z = np.asarray(block.z, dtype=float)
            if block.q == 1:
                mu = mu + pt.as_tensor(z[:, 0]) * ranef[0, codes]
            else:
                mu = mu + pt.sum(pt.as_tensor(z) * ranef[:, codes].T, axis=1)
        pm.Normal(design.response, mu=mu, sigma=params.sigma, observed=y, dims=OBS_DIM)
    return model
