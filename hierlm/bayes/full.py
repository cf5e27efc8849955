"""Full formulation: group effects are sampled (non-centred, or centred where the data pin them down).

For every block, ``ranef = L z`` with ``z`` standard normal (terms x
levels, the layout of :mod:`hierlm.bayes.naming`) and ``L`` the Cholesky
factor of the block's covariance (``diag(sd)`` times the LKJ correlation
factor for a correlated block, ``diag(sd)`` for independent terms). The
linear predictor ``eta = offset + X beta + Z b`` adds, for row ``i``, the
block's columns ``z_i`` times the effects of the row's level. Works for every
structure (nested, crossed, several blocks on one factor) and every family:
the observed node is the family's entry of
:data:`hierlm.bayes.likelihoods.LIKELIHOODS`. Scalar blocks whose levels each
carry much data are sampled centred instead, ``ranef ~ N(0, sd^2)``
(:func:`hierlm.bayes.glmm_setup.centred_blocks`, the rule of the compiled
kernel :mod:`hierlm.bayes.glmm_kernel` too).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierlm.bayes.glmm_setup import CENTRED_INFORMATION, centred_blocks, glmm_start
from hierlm.bayes.likelihoods import family_of, likelihood_of, observed_data
from hierlm.bayes.naming import OBS_DIM, observation_coords
from hierlm.bayes.parameters import add_parameters, model_coords
from hierlm.bayes.priors import PriorTable
from hierlm.design.blocks import Design
from hierlm.errors import FitError

__all__ = ["CENTRED_INFORMATION", "build_full_model", "centred_blocks", "glmm_start",
           "observation_coords"]  # observation_coords re-exported


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
        centred = centred_blocks(design, fam)  # the compiled kernel's choice too
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
