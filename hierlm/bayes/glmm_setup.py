"""Set-up of a non-Gaussian full model that needs no PyMC: starting values, centring, parametrisation.

Shared by the PyMC model builder (:mod:`hierlm.bayes.full`) and the compiled
kernel (:mod:`hierlm.bayes.glmm_kernel`), so both sample the same model; the
kernel's route never imports PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.bayes.likelihoods import likelihood_of, observed_data
from hierlm.design.blocks import Design, RandomBlock
from hierlm.families import Family

__all__ = ["CENTRED_INFORMATION", "CENTRED_SD", "GlmmStart", "glmm_start", "centred_blocks",
           "moment_sd"]


@dataclass(frozen=True)
class GlmmStart:
    """What a non-Gaussian full model needs besides the Gaussian defaults.

    Attributes
    ----------
    dispersion : str or None
        Name (and prior key) of the dispersion parameter, None when the family has none.
    beta : numpy.ndarray
        Starting fixed effects (at centred predictors when ``centre`` is set).
    sd : float
        Starting value of every group-level SD.
    centre : numpy.ndarray or None
        Column means of ``X`` (0 for the intercept column): the sampler moves
        over the fixed effects at centred predictors (``fixef_centred``,
        which removes the correlation between the intercept and the slopes)
        and ``fixef`` is the deterministic map back. The priors stay those of
        ``fixef`` as written: the slopes are the same in both, and the
        intercept's prior is added as a potential on ``fixef[Intercept]``
        (the map is linear with unit Jacobian).
    """

    dispersion: str | None
    beta: np.ndarray
    sd: float
    centre: np.ndarray | None


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
#: the group SD that :data:`CENTRED_INFORMATION` assumes (information x SD^2 >= 1 at 4 and 0.5)
CENTRED_SD = 0.5


def centred_blocks(design: Design, family: Family) -> list[bool]:
    """Which blocks of a full-formulation model are sampled centred (``b ~ N(0, sd^2)`` directly).

    Non-centred effects (``b = sd z``) suit levels the data say little about;
    when the data pin a level's effect down, ``sd`` and ``z`` become strongly
    dependent and the sampler crawls (Papaspiliopoulos, Roberts & Skold 2007,
    Statist. Sci. 22: 59-73). The rule: a scalar block is centred when the
    median over its levels of the Fisher information about the level's effect
    at the overall mean, ``sum_i w_i z_i^2 (d mu / d eta)^2 / V(mu)``, is at
    least :data:`CENTRED_INFORMATION` (the effect known to +-0.5 on the link
    scale from its own data, less than typical group SDs). That threshold
    assumes an SD of :data:`CENTRED_SD` (0.5: information x SD^2 >= 1); for
    non-Gaussian families the information is scaled by ``(sd_hat / 0.5)^2``
    when the data suggest a smaller SD (:func:`moment_sd`), since a centred
    block funnels as its SD goes to 0 (the binomial SBC study, 8 levels of 60
    trials, SDs from a half-normal(1) prior: 13 of 48 fits with divergences
    centred by information alone, 4 with the scaling; cbpp and the other
    reference models keep their choice). For the Gaussian
    family the information is taken in units of the residual variance,
    ``sum_i w_i z_i^2``: a ``(1 | g)`` block is centred when its levels have
    a median of at least 4 rows (the effect known to +-0.5 residual SD).
    Blocks with several terms stay non-centred, and so does a block with
    another block's factor nested in it (every level of the other factor
    within one of its levels: InstEval's lecturers within departments): the
    data see only the sum of its effect and the nested effects, so they do
    not pin it down however many rows its levels have.
    """
    data = observed_data(design)
    start = glmm_start(design, family)
    eta = np.full(design.n, start.beta[list(design.fixed_names).index("Intercept")]
                  if "Intercept" in design.fixed_names else 0.0)
    if data.offset is not None:
        eta = eta + data.offset
    dispersion = 1.0 if family.has_dispersion else None
    weights = np.asarray(family.working_weights(eta, data.weights, dispersion), dtype=float)
    gaussian = family.name == "gaussian"
    out = []
    for block in design.blocks:
        if block.q != 1:
            out.append(False)
            continue
        z = np.asarray(block.z, dtype=float)[:, 0]
        info = np.bincount(np.asarray(block.codes), weights=weights * z ** 2, minlength=block.n_levels)
        # non-Gaussian: the information counts at the SD the data suggest, if below CENTRED_SD
        shrink = 1.0 if gaussian else min(1.0, (moment_sd(block, data, family, eta) / CENTRED_SD) ** 2)
        out.append(bool(np.median(info) * shrink >= CENTRED_INFORMATION)
                   and not any(_nested_in(other, block) for other in design.blocks))
    return out


def moment_sd(block: RandomBlock, data: Any, family: Family, eta: np.ndarray) -> float:
    """A method-of-moments estimate of a scalar block's SD on the link scale, for the centring rule.

    Each level's one-step estimate ``b_j = U_j / I_j`` from the model without
    group effects at ``eta`` (``U_j`` the level's score, ``I_j`` its Fisher
    information) has variance about ``sd^2 + 1 / I_j``; the estimate is
    ``sqrt(max(0, var_j(b_j) - mean_j(1 / I_j)))`` over the levels with data.
    Predictors constant within levels inflate it, which only keeps the
    block centred as :data:`CENTRED_INFORMATION` alone would.
    """
    mu = family.link.inverse(eta)
    dispersion = 1.0 if family.has_dispersion else None
    z = np.asarray(block.z, dtype=float)[:, 0]
    score = data.weights * (data.y - mu) * family.link.mu_eta(eta) / family.variance(mu, dispersion)
    codes = np.asarray(block.codes)
    info = np.bincount(codes, weights=family.working_weights(eta, data.weights, dispersion) * z ** 2,
                       minlength=block.n_levels)
    total = np.bincount(codes, weights=score * z, minlength=block.n_levels)
    seen = info > 0
    if np.count_nonzero(seen) < 2:
        return np.inf
    effects = total[seen] / info[seen]
    return float(np.sqrt(max(0.0, np.var(effects, ddof=1) - np.mean(1.0 / info[seen]))))


def _nested_in(inner: RandomBlock, outer: RandomBlock) -> bool:
    """True when ``inner``'s factor is not ``outer``'s and each of its levels lies in one of ``outer``'s."""
    if inner.group == outer.group or inner.n_levels <= outer.n_levels:
        return False
    pairs = np.unique(np.asarray(inner.codes, dtype=np.int64) * outer.n_levels
                      + np.asarray(outer.codes, dtype=np.int64))
    return bool(pairs.size == np.unique(np.asarray(inner.codes)).size)
