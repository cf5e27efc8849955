"""PyMC random variables shared by both formulations: fixed effects, SDs, correlations, sigma.

Both model builders call :func:`add_parameters` inside a ``pm.Model`` context, so
that the full and the marginal formulation have exactly the same parameters,
priors, names and dims; they differ only in how the likelihood is written.

A correlated block gets its SDs and its correlation matrix as separate
parameters (LKJ prior on the Cholesky factor of the correlation matrix, one
prior per SD), rather than ``pm.LKJCholeskyCov``, whose single ``sd_dist``
cannot give each term its own prior family.

Graphs avoid matrix products (``pt.dot``) and PyMC's LKJ transform: with the
numba backend every distinct kernel is a separate numba compilation (about a
second each on a cold cache, 20 s for one ``Dot``), so small models are written
with elementwise operations and sums over broadcast axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from hierlm.bayes.glmm_setup import GlmmStart
from hierlm.bayes.naming import FIXEF, FIXEF_DIM, SIGMA, BlockNames, block_names
from hierlm.bayes.prior_draws import draw_lkj_raw
from hierlm.bayes.priors import Prior, PriorTable
from hierlm.bayes.structure_math import lkj_cholesky
from hierlm.bayes.structure_model import add_structure_block, structure_coords
from hierlm.design.blocks import Design

__all__ = [
    "ModelParameters",
    "add_parameters",
    "model_coords",
    "prior_variable",
    "lkj_corr_cholesky",
    "correlations_from_cholesky",
]


@dataclass(frozen=True)
class ModelParameters:
    """Symbolic parameters of one model.

    Attributes
    ----------
    fixef : TensorVariable
        Fixed effects, shape (p,).
    sigma : TensorVariable or None
        Residual SD (scalar), or the family's dispersion parameter (the
        negative binomial's ``theta``); None for families without one.
    sds : list of TensorVariable
        SDs of each block, shape (q,) each.
    chols : list of TensorVariable
        Cholesky factor ``L`` of each block's covariance ``G = L L'``, shape (q, q).
    names : list of BlockNames
        Names of the blocks, aligned with ``sds`` and ``chols``.
    """

    fixef: TensorVariable
    sigma: TensorVariable | None
    sds: list[TensorVariable]
    chols: list[TensorVariable]
    names: list[BlockNames]


def model_coords(design: Design) -> dict[str, list[str]]:
    """Return the coords of every dimension a model of ``design`` uses."""
    coords: dict[str, list[str]] = {FIXEF_DIM: list(design.fixed_names)}
    names = block_names(design)
    for bn in names:
        coords.update(bn.coords())
    coords.update(structure_coords(names))
    return coords


def _single_family_rv(
    name: str,
    priors: Sequence[Prior],
    positive: bool,
    dims: str | None,
    initval: np.ndarray | float | None,
) -> TensorVariable:
    """One PyMC variable for priors of one family (vector parameters when ``dims``)."""
    family = priors[0].family

    def values(param: str) -> np.ndarray | float:
        vals = np.array([p.param(param) for p in priors])
        return vals if dims is not None else float(vals[0])

    kwargs: dict[str, object] = {"dims": dims} if dims is not None else {}
    if initval is not None:
        kwargs["initval"] = initval
    if family == "flat":
        return (pm.HalfFlat if positive else pm.Flat)(name, **kwargs)
    if family == "normal":
        return pm.Normal(name, mu=values("mu"), sigma=values("sigma"), **kwargs)
    if family == "student_t":
        return pm.StudentT(name, nu=values("nu"), mu=values("mu"), sigma=values("sigma"), **kwargs)
    if family == "half_normal":
        return pm.HalfNormal(name, sigma=values("sigma"), **kwargs)
    if family == "half_student_t":
        return pm.HalfStudentT(name, nu=values("nu"), sigma=values("sigma"), **kwargs)
    if family == "half_cauchy":
        return pm.HalfCauchy(name, beta=values("sigma"), **kwargs)
    if family == "exponential":
        return pm.Exponential(name, lam=values("lam"), **kwargs)
    raise ValueError(f"family {family!r} cannot be a prior of {name}")


def prior_variable(
    name: str,
    priors: Sequence[Prior],
    positive: bool,
    dim: str | None,
    labels: Sequence[str] = (),
    initval: np.ndarray | float | None = None,
) -> TensorVariable:
    """Create the PyMC variable of one parameter (scalar) or one vector of parameters.

    Parameters
    ----------
    name : str
        Variable name in the model and the posterior.
    priors : sequence of Prior
        One prior per element (one for a scalar).
    positive : bool
        True for SDs and sigma (flat becomes ``HalfFlat``).
    dim : str or None
        Dimension of a vector; None for a scalar.
    labels : sequence of str
        Coordinate labels of the elements (used to name parts when families differ).
    initval : array or float, optional
        Starting value for the sampler/optimiser.

    Returns
    -------
    TensorVariable
        The parameter. A vector whose elements have priors of different
        families is a ``pm.Deterministic`` stacking one scalar variable per
        element (named ``<name>__<label>``).
    """
    families = {p.family for p in priors}
    if dim is None or len(families) == 1:
        return _single_family_rv(name, priors, positive, dim, initval)
    parts = []
    for k, (label, prior) in enumerate(zip(labels, priors, strict=True)):
        start = None if initval is None else float(np.asarray(initval)[k])
        parts.append(_single_family_rv(f"{name}__{label}", [prior], positive, None, start))
    return pm.Deterministic(name, pt.stack(parts), dims=dim)


def _start_values(design: Design) -> tuple[np.ndarray, float]:
    """Least-squares fixed effects and residual SD, used as the samplers' starting point."""
    X = np.asarray(design.X, dtype=float)
    y = np.asarray(design.y, dtype=float)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    sigma = float(np.sqrt(resid @ resid / max(len(y) - X.shape[1], 1)))
    return beta, sigma if sigma > 0 else 1.0


def _lkj_map(raw: Any, q: int, eta: Any) -> tuple[TensorVariable, TensorVariable]:
    """Cholesky factor of the correlation matrix and LKJ log-density (with Jacobian) of ``raw``.

    The one definition is :func:`hierlm.bayes.structure_math.lkj_cholesky`
    (NumPy and PyTensor alike).
    """
    return lkj_cholesky(raw, q, eta)


def lkj_corr_cholesky(bn: BlockNames, eta: float) -> TensorVariable:
    """Cholesky factor of a block's correlation matrix with an LKJ(eta) prior.

    The free variable ``corr_raw_<block>`` (one real per pair) maps to the
    factor through Stan's transform: canonical partial correlations
    ``z = tanh(raw)``, then row ``i`` of ``L`` is filled left to right with
    ``L[i, j] = z * sqrt(1 - sum_{k<j} L[i, k]^2)`` and a diagonal that gives
    the row unit length. Its log-density is the LKJ log-density of ``L``,
    ``sum_i (q - i + 2 eta - 2) log L[i, i]`` (1-based ``i``), plus the log
    Jacobian of the transform. It is a ``pm.CustomDist`` whose random draws
    come from :func:`hierlm.bayes.prior_draws.draw_lkj_raw`, so that
    ``pymc.sample_prior_predictive`` works on the model.

    Everything is elementwise on scalars, so the graph compiles quickly on
    every backend (``pm.LKJCorr``'s transform does not).

    Parameters
    ----------
    bn : BlockNames
        The correlated block.
    eta : float
        LKJ shape (1 = uniform over correlation matrices).

    Returns
    -------
    TensorVariable
        Lower-triangular (q, q) factor with unit-length rows.
    """
    q = bn.block.q
    n_free = q * (q - 1) // 2

    # the zero vector only carries the length of the variable (the signature needs a parameter for it)
    def logp(value: TensorVariable, shape: TensorVariable, _length: TensorVariable) -> TensorVariable:
        return _lkj_map(value, q, shape)[1]

    def random(
        shape: np.ndarray, _length: np.ndarray, rng: np.random.Generator | None = None, size: Any = None
    ) -> np.ndarray:
        batch = () if size is None else tuple(np.atleast_1d(size))
        count = int(np.prod(batch)) if batch else 1
        draws = draw_lkj_raw(float(np.asarray(shape).ravel()[0]), q, count, rng or np.random.default_rng())
        return draws.reshape(*batch, n_free)

    raw = pm.CustomDist(
        f"corr_raw_{bn.label}", eta, np.zeros(n_free), logp=logp, random=random, signature="(),(k)->(k)"
    )
    chol, _ = _lkj_map(raw, q, eta)
    return pm.Deterministic(bn.corr_chol, chol)


def correlations_from_cholesky(corr_chol: TensorVariable, pairs: list[tuple[int, int]]):
    """Correlations ``R[i, j] = sum_k L[i, k] L[j, k]`` for the given index pairs."""
    values = [pt.sum(corr_chol[i, : i + 1] * corr_chol[j, : i + 1]) for i, j in pairs]
    return pt.stack(values)


def _glmm_fixef(design: Design, priors: PriorTable, start: GlmmStart) -> TensorVariable:
    """Fixed effects of a non-Gaussian model, sampled at centred predictors when asked."""
    fixef_priors = [priors.fixef(name) for name in design.fixed_names]
    if start.centre is None:
        return prior_variable(FIXEF, fixef_priors, positive=False, dim=FIXEF_DIM,
                              labels=design.fixed_names, initval=start.beta)
    k = list(design.fixed_names).index("Intercept")
    sampled = [Prior.flat() if j == k else prior for j, prior in enumerate(fixef_priors)]
    centred = prior_variable(f"{FIXEF}_centred", sampled, positive=False, dim=FIXEF_DIM,
                             labels=design.fixed_names, initval=start.beta)
    intercept = np.array([j == k for j in range(design.p)], dtype=float)
    shift = pt.sum(pt.as_tensor(start.centre) * centred)
    fixef = pm.Deterministic(FIXEF, centred - pt.as_tensor(intercept) * shift, dims=FIXEF_DIM)
    prior = fixef_priors[k]
    if prior.family == "normal":
        pm.Potential("intercept_prior", pm.logp(pm.Normal.dist(**prior.kwargs), fixef[k]))
    elif prior.family == "student_t":
        pm.Potential("intercept_prior", pm.logp(pm.StudentT.dist(**prior.kwargs), fixef[k]))
    elif prior.family != "flat":
        raise ValueError(f"prior family {prior.family!r} cannot be the Intercept's prior")
    return fixef


def add_parameters(design: Design, priors: PriorTable, glmm: GlmmStart | None = None) -> ModelParameters:
    """Create fixed effects, SDs, correlations and sigma in the current ``pm.Model``.

    The correlations of a block are stored as the deterministic ``cor_<block>``
    (one value per pair, dims ``<block>_pair``); the sampled variable is
    ``corr_raw_<block>``, mapped to the Cholesky factor ``corr_chol_<block>``
    of the correlation matrix (see :func:`lkj_corr_cholesky`).

    Parameters
    ----------
    design : Design
        The model's design.
    priors : PriorTable
        Resolved priors (:func:`hierlm.bayes.priors.resolve_priors`).
    glmm : GlmmStart, optional
        For non-Gaussian families: the dispersion parameter (or none), the
        starting values and the centring of the fixed effects.

    Returns
    -------
    ModelParameters
        The symbolic parameters and each block's covariance Cholesky factor.
    """
    sigma: TensorVariable | None
    if glmm is None:
        beta_start, sigma_start = _start_values(design)
        fixef = prior_variable(
            FIXEF,
            [priors.fixef(name) for name in design.fixed_names],
            positive=False,
            dim=FIXEF_DIM,
            labels=design.fixed_names,
            initval=beta_start,
        )
        sigma = prior_variable(SIGMA, [priors.sigma], positive=True, dim=None, initval=sigma_start)
    else:
        fixef = _glmm_fixef(design, priors, glmm)
        sigma_start = 2.0 * glmm.sd
        sigma = (None if glmm.dispersion is None else prior_variable(
            glmm.dispersion, [priors.dispersion(glmm.dispersion)], positive=True, dim=None, initval=1.0))
    sds, chols = [], []
    names = block_names(design)
    for bn in names:
        if not bn.block.structure.is_lme4:  # cs, ar1, toep: hierlm.bayes.structure_model
            sd, chol = add_structure_block(bn, priors, sigma_start / 2, prior_variable)
            sds.append(sd)
            chols.append(chol)
            continue
        columns = bn.block.columns
        sd = prior_variable(
            bn.sd,
            [priors.sd(bn.label, term) for term in columns],
            positive=True,
            dim=bn.term_dim,
            labels=columns,
            initval=np.full(len(columns), sigma_start / 2),
        )
        sds.append(sd)
        if bn.block.correlated and bn.block.q > 1:
            eta = priors.cor(bn.label).param("eta")
            corr_chol = lkj_corr_cholesky(bn, eta)
            pm.Deterministic(bn.cor, correlations_from_cholesky(corr_chol, bn.pairs), dims=bn.pair_dim)
            chols.append(sd[:, None] * corr_chol)
        else:
            chols.append(pt.diag(sd))
    return ModelParameters(fixef=fixef, sigma=sigma, sds=sds, chols=chols, names=names)
