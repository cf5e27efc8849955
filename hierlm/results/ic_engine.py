"""Per-observation LOO and WAIC of a NUTS fit on data held by an engine, in batches of rows.

The pointwise log-likelihood has one value per draw and row (4000 x 1M = 32 GB
at a million rows), so it is never formed whole. The engine streams the
model's rows as design columns (:meth:`hierlm.sources.learn.SourceRows.design_batches`);
each batch's ``(draws, rows)`` log-densities ``log N(y_i | x_i'beta + z_i'b, sigma^2)``
(with the group effects of each draw, as for an in-memory fit) are reduced to
the batch's pointwise elpd, p and Pareto k and dropped. Everything per unit is
per row, so the result is that of the whole array: PSIS smooths each row's
weights on its own, and its relative efficiency (one number, the mean over
rows) is found in a first pass over the batches. Above
:data:`ENGINE_ELPD_MAX` log-densities (draws x rows) the computation is
refused with its size: it would take hours; ``level="group"`` is the
scalable alternative.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from hierlm.core.warn import PACKAGE_DIR
from hierlm.errors import FitError, HierlmWarning
from hierlm.results.common import as_draws
from hierlm.results.ic import P_WAIC_LIMIT, ElpdResult, loo, relative_efficiency, waic

__all__ = ["ENGINE_ELPD_MAX", "BATCH_ELEMENTS", "engine_elpd"]

#: Largest draws x rows for per-observation LOO/WAIC on engine data (about 1M rows x 4000 draws x 2.5).
ENGINE_ELPD_MAX = 10_000_000_000
#: Log-densities per batch (draws x rows): 20M numbers, 160 MB.
BATCH_ELEMENTS = 20_000_000


def _batch_loglik(draws: Any, effects: list[np.ndarray], batch: dict[str, Any]) -> np.ndarray:
    """(chains, draws, rows) Gaussian log-densities of one batch of rows."""
    mean = draws.beta @ batch["X"].T
    for values, z, codes in zip(effects, batch["z"], batch["codes"], strict=True):
        known = codes >= 0
        mean += np.einsum("snq,nq->sn", values[:, np.where(known, codes, 0), :], z) * known
    sigma = np.asarray(draws.sigma, dtype=float)[:, None]
    values = -0.5 * ((batch["y"][None, :] - mean) / sigma) ** 2 - np.log(sigma) \
        - 0.5 * np.log(2 * np.pi)
    return values.reshape(draws.n_chains, -1, values.shape[1])


def engine_elpd(fit: Any, kind: str) -> ElpdResult:
    """``loo()``/``waic()`` per observation of a NUTS fit on engine data, batch by batch.

    Parameters
    ----------
    fit : fit result
        A NUTS fit of a model on engine data.
    kind : {"loo", "waic"}
        The estimate.

    Raises
    ------
    FitError
        For a point fit, or above :data:`ENGINE_ELPD_MAX` log-densities.
    """
    draws = as_draws(fit)
    design = draws.design
    if draws.point:
        raise FitError("WAIC and LOO need posterior draws, but this fit holds a point estimate "
                       "(ML/REML/MAP); fit with method='nuts'.")
    size = draws.n_draws * design.n
    if size > ENGINE_ELPD_MAX:
        raise FitError(
            f"{kind}() per observation needs {draws.n_draws} draws x {design.n} rows = "
            f"{size:.2e} log-densities, above the {ENGINE_ELPD_MAX:.0e} computed on engine data "
            "(hours of work, streamed in batches); use level='group' (exact, per level of a "
            "grouping factor), or fit fewer draws.")
    plan: Any = design.summary.source if design.summary is not None else None
    if plan is None:
        raise FitError(f"{kind}() in batches is for fits on engine data; this fit has its rows.")
    rows_per_batch = max(1, BATCH_ELEMENTS // draws.n_draws)
    effects = [np.asarray(e, dtype=float) for e in draws.effects]
    reff = None
    if kind == "loo" and draws.n_chains > 1:
        total, count = 0.0, 0
        for batch in plan.design_batches(rows_per_batch):
            values = _batch_loglik(draws, effects, batch)
            flat = values.reshape(-1, values.shape[-1])
            varying = np.ptp(flat, axis=0) > 0
            if varying.any():
                efficiency = relative_efficiency(values[..., varying])
                total += float(efficiency.sum())
                count += int(efficiency.size)
        reff = total / count if count else 1.0
    parts: list[pd.DataFrame] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # one message for all batches, below
        for batch in plan.design_batches(rows_per_batch):
            values = _batch_loglik(draws, effects, batch)
            chains = draws.n_chains
            result = (loo(values, chains=chains, reff=reff) if kind == "loo"
                      else waic(values, chains=chains))
            parts.append(result.pointwise)
    pointwise = pd.concat(parts, ignore_index=True)
    pointwise.index = pd.Index([str(i) for i in range(len(pointwise))], name="unit")
    elpd_i = pointwise["elpd"].to_numpy()
    n_points = elpd_i.size
    message = ""
    if kind == "loo":
        k = pointwise["pareto_k"].to_numpy()
        good_k = min(1.0 - 1.0 / np.log10(draws.n_draws), 0.7)  # ArviZ's threshold
        bad = int((~(k <= good_k)).sum())
        if bad:
            message = (f"{bad} of {n_points} points have Pareto k > {good_k:.2f}; their LOO estimates "
                       "are unreliable (consider exact refits or K-fold CV).")
    else:
        flagged = int((pointwise["p"].to_numpy() > P_WAIC_LIMIT).sum())
        if flagged:
            message = (f"{flagged} of {n_points} points have p_waic > {P_WAIC_LIMIT}; WAIC may "
                       "be unreliable there (Vehtari, Gelman & Gabry 2017), prefer loo().")
    if message:
        warnings.warn(message, HierlmWarning, skip_file_prefixes=(PACKAGE_DIR,))
    return ElpdResult(
        kind=kind, level="observation", group=None, elpd=float(elpd_i.sum()),
        se=float(np.sqrt(n_points * elpd_i.var(ddof=1))) if n_points > 1 else 0.0,
        p=float(pointwise["p"].sum()), pointwise=pointwise, n_draws=draws.n_draws,
        warning=message, note="rows in the engine's order")
