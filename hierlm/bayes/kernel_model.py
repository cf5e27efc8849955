"""Wrap the compiled marginal log-density (:mod:`hierlm.bayes.kernel`) as a nutpie model.

The nutpie model stores, per draw, the same variables as the PyMC route
(``fixef``, ``sigma``, ``sd_<block>``, ``cor_<block>``, ``corr_chol_<block>``)
so everything after sampling is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.kernel import FAMILY_CODES
from hierlm.bayes.naming import FIXEF, FIXEF_DIM, SIGMA, BlockNames
from hierlm.bayes.priors import Prior
from hierlm.core.correlation import cholesky_from_raw

__all__ = ["KernelLayout", "kernel_layout", "expand_draws", "expand_point",
           "nutpie_model_of_layout", "nutpie_model", "parameter_coords"]


def _prior_row(prior: Prior) -> tuple[int, tuple[float, float, float]]:
    """Family code and (a, b, c) parameters of a prior, in the kernel's convention."""
    kw = prior.kwargs
    family = prior.family
    if family == "flat":
        return FAMILY_CODES["flat"], (0.0, 0.0, 0.0)
    if family == "normal":
        return FAMILY_CODES["normal"], (kw["mu"], kw["sigma"], 0.0)
    if family == "student_t":
        return FAMILY_CODES["student_t"], (kw["nu"], kw["mu"], kw["sigma"])
    if family == "half_student_t":
        return FAMILY_CODES["half_student_t"], (kw["nu"], kw["sigma"], 0.0)
    if family in ("half_normal", "half_cauchy"):
        return FAMILY_CODES[family], (0.0, kw["sigma"], 0.0)
    if family == "exponential":
        return FAMILY_CODES["exponential"], (kw["lam"], 0.0, 0.0)
    raise ValueError(f"prior family {family!r} has no kernel code")


@dataclass(frozen=True, eq=False)
class KernelLayout:
    """Where each parameter sits in the unconstrained vector, and the packed priors."""

    p: int
    q_total: int
    n_raw: int
    prior_code: np.ndarray
    prior_par: np.ndarray
    block_start: np.ndarray
    block_q: np.ndarray
    block_corr: np.ndarray
    block_raw: np.ndarray
    block_eta: np.ndarray
    names: list[BlockNames]

    @property
    def size(self) -> int:
        """Length of the unconstrained vector."""
        return self.p + 1 + self.q_total + self.n_raw


def kernel_layout(built: BuiltModel) -> KernelLayout:
    """Pack the priors and block structure of a marginal model for the kernel."""
    design, priors = built.design, built.priors
    rows = [_prior_row(priors.fixef(name)) for name in design.fixed_names]
    rows.append(_prior_row(priors.sigma))
    starts, widths, correlated, raw_at, etas = [], [], [], [], []
    column, raw = 0, 0
    for bn in built.names:
        block = bn.block
        rows += [_prior_row(priors.sd(bn.label, term)) for term in block.columns]
        is_corr = block.correlated and block.q > 1
        starts.append(column)
        widths.append(block.q)
        correlated.append(is_corr)
        raw_at.append(raw)
        etas.append(priors.cor(bn.label).param("eta") if is_corr else 1.0)
        column += block.q
        raw += block.q * (block.q - 1) // 2 if is_corr else 0
    return KernelLayout(
        p=design.p,
        q_total=column,
        n_raw=raw,
        prior_code=np.array([code for code, _ in rows], dtype=np.int64),
        prior_par=np.array([par for _, par in rows], dtype=float),
        block_start=np.array(starts, dtype=np.int64),
        block_q=np.array(widths, dtype=np.int64),
        block_corr=np.array(correlated, dtype=np.bool_),
        block_raw=np.array(raw_at, dtype=np.int64),
        block_eta=np.array(etas, dtype=float),
        names=built.names,
    )


def expand_draws(x: np.ndarray, layout: KernelLayout) -> dict[str, np.ndarray]:
    """Constrained parameters (the stored variables) of unconstrained points ``x`` (..., size).

    Fixed effects, sigma, per block its SDs and, for correlated blocks, the
    correlation Cholesky factor (Stan's transform of the raw values) and the
    correlations in lme4's pair order; leading axes (chains, draws) are kept.
    """
    x = np.asarray(x, dtype=float)
    p, q_total = layout.p, layout.q_total
    out = {FIXEF: x[..., :p].copy(), SIGMA: np.exp(x[..., p])}
    sd = np.exp(x[..., p + 1 : p + 1 + q_total])
    raw = x[..., p + 1 + q_total :]
    for k, bn in enumerate(layout.names):
        start, q = int(layout.block_start[k]), int(layout.block_q[k])
        out[bn.sd] = sd[..., start : start + q].copy()
        if layout.block_corr[k]:
            offset, n_raw = int(layout.block_raw[k]), q * (q - 1) // 2
            flat = raw[..., offset : offset + n_raw].reshape(-1, n_raw)
            chol = cholesky_from_raw(flat, q).reshape(*x.shape[:-1], q, q)
            out[bn.corr_chol] = chol
            out[bn.cor] = np.stack([np.sum(chol[..., i, : i + 1] * chol[..., j, : i + 1], axis=-1)
                                    for i, j in bn.pairs], axis=-1)
    return out


def expand_point(x: np.ndarray, layout: KernelLayout) -> dict[str, np.ndarray]:
    """Constrained parameters (the stored variables) of one unconstrained point."""
    draws = expand_draws(np.asarray(x, dtype=float)[None], layout)
    return {name: np.asarray(value[0]) for name, value in draws.items()}


def _start(built: BuiltModel, layout: KernelLayout) -> np.ndarray:
    """Least-squares fixed effects, residual SD, half of it for every SD, zero correlations."""
    X, y = np.asarray(built.design.X, float), np.asarray(built.design.y, float)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    sigma = float(np.sqrt(resid @ resid / max(len(y) - X.shape[1], 1))) or 1.0
    return np.concatenate(
        [beta, [np.log(sigma)], np.full(layout.q_total, np.log(sigma / 2)), np.zeros(layout.n_raw)]
    )


def parameter_coords(built: BuiltModel) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """Coords and dims of the stored parameters: fixed effects, SDs and correlations."""
    coords: dict[str, Any] = {FIXEF_DIM: pd.Index(list(built.design.fixed_names))}
    dims: dict[str, tuple[str, ...]] = {FIXEF: (FIXEF_DIM,)}
    for bn in built.names:
        coords[bn.term_dim] = pd.Index(list(bn.block.columns))
        dims[bn.sd] = (bn.term_dim,)
        if bn.block.correlated and bn.block.q > 1:
            coords[bn.pair_dim] = pd.Index(bn.coords()[bn.pair_dim])
            dims[bn.cor] = (bn.pair_dim,)
    return coords, dims


def nutpie_model_of_layout(built: BuiltModel, layout: KernelLayout,
                           logp: Callable[..., tuple[float, np.ndarray]],
                           var_names: list[str]) -> Any:
    """A nutpie model over ``layout``'s unconstrained vector with log-density ``logp``.

    Shared by the compiled one-factor kernel and the one-likelihood model of
    :mod:`hierlm.bayes.likelihood_model`: chains start at jittered least-squares
    values (uniform jitter of +-1 per coordinate, seeded by nutpie), and the
    stored variables carry the fixed-effect, SD and correlation coords.
    """
    start = _start(built, layout)
    return nutpie_model(layout.size, logp, lambda x: expand_point(x, layout), start,
                        np.ones(layout.size), var_names, parameter_coords(built))


def nutpie_model(size: int, logp: Callable[..., tuple[float, np.ndarray]],
                 expand: Callable[[np.ndarray], dict[str, np.ndarray]], start: np.ndarray,
                 jitter: np.ndarray, var_names: list[str],
                 coords_and_dims: tuple[dict[str, Any], dict[str, tuple[str, ...]]]) -> Any:
    """A nutpie model of a compiled log-density over an unconstrained vector of length ``size``.

    Parameters
    ----------
    size : int
        Length of the unconstrained vector.
    logp : callable
        ``x -> (log posterior, gradient)``.
    expand : callable
        ``x -> {name: value}``, the stored variables at ``x`` (a superset of ``var_names``).
    start : numpy.ndarray
        Chains' centre of starting points.
    jitter : numpy.ndarray
        Half-widths of the uniform start jitter per coordinate (seeded by nutpie's seed).
    var_names : list of str
        Variables to store.
    coords_and_dims : (dict, dict)
        Coords of the dimensions and dims of each stored variable (those not
        stored are ignored): :func:`parameter_coords`, or a caller's
        extension of it (the full formulation adds the levels' effects).

    Returns
    -------
    nutpie compiled model
        Ready for ``nutpie.sample``.
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    logp(start)  # compile (or load from numba's cache) before sampling starts
    example = expand(start)
    shapes = [tuple(np.shape(example[name])) for name in var_names]

    def make_expand_fn(seed1: int, seed2: int, chain: int) -> Callable[..., dict[str, np.ndarray]]:
        def expand_stored(x: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
            values = expand(x)
            return {name: values[name] for name in var_names}

        return expand_stored

    def make_initial_point(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return start + jitter * rng.uniform(-1.0, 1.0, size=start.size)

    coords, dims = coords_and_dims
    return from_pyfunc(
        ndim=size,
        make_logp_fn=lambda: logp,
        make_expand_fn=make_expand_fn,
        make_initial_point_fn=make_initial_point,
        expanded_dtypes=[np.dtype("float64")] * len(var_names),
        expanded_shapes=shapes,
        expanded_names=list(var_names),
        coords=coords,
        dims={name: dims[name] for name in var_names if name in dims},
    )
