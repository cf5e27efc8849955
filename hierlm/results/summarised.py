"""``ranef``/``coef`` tables of a fit whose group effects are kept as summaries, not draws.

A NUTS fit with many groups may keep, instead of every draw of every group
effect, the exact Rao-Blackwellised posterior moments of each level
(:mod:`hierlm.bayes.effect_summary`; ``FitDraws.effect_summary``). The
tables then take the estimate (posterior mean) and ``std_error`` (posterior
SD) from those moments, and the interval bounds and diagnostics from exact
conditional draws made chunk by chunk of levels and dropped after use, so
memory stays at one chunk of draws.

The summary object is duck-typed: ``mean`` (J, Q), ``cov`` (J, Q, Q),
``cov_fixef`` (J, p, Q), ``block_columns(k)`` and ``chunks()`` yielding
``(levels, draws (S, chunk, Q))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["summarised_levels", "ranef_summary_body", "coef_summary_body"]


def summarised_levels(summary: Any, values_of: Callable[[np.ndarray], np.ndarray],
                      estimate: np.ndarray, variance: np.ndarray,
                      table: Callable[[np.ndarray], pd.DataFrame]) -> pd.DataFrame:
    """Term-major protocol rows of per-level quantities, from chunks of draws.

    Parameters
    ----------
    summary : EffectSummary
        The fit's summaries.
    values_of : callable
        ``draws (S, chunk, Q) -> values (S, chunk, T)`` of the quantities.
    estimate, variance : numpy.ndarray
        Posterior means and variances (J, T) from the summaries.
    table : callable
        ``(S, k) draws -> protocol table`` (the posterior table of the fit).
    """
    parts: list[list[pd.DataFrame]] = []
    for levels, draws in summary.chunks():
        values = values_of(draws)
        n_terms = values.shape[2]
        body = table(np.swapaxes(values, 1, 2).reshape(values.shape[0], -1))
        size = levels.stop - levels.start
        parts.append([body.iloc[t * size:(t + 1) * size] for t in range(n_terms)])
    n_terms = len(parts[0]) if parts else 0
    body = pd.concat([chunk[t] for t in range(n_terms) for chunk in parts], ignore_index=True)
    body["estimate"] = estimate.T.ravel()
    body["std_error"] = np.sqrt(np.clip(variance.T.ravel(), 0.0, None))
    return body


def ranef_summary_body(draws: Any, index: int,
                       table: Callable[[np.ndarray], pd.DataFrame]) -> pd.DataFrame:
    """Rows of block ``index``'s group effects (term-major, as ``ranef``)."""
    summary = draws.effect_summary
    cols = summary.block_columns(index)
    variance = np.diagonal(summary.cov, axis1=1, axis2=2)[:, cols]
    return summarised_levels(summary, lambda d: d[:, :, cols], summary.mean[:, cols], variance,
                             table)


def coef_summary_body(draws: Any, blocks: list[int], terms: list[str],
                      table: Callable[[np.ndarray], pd.DataFrame] | None) -> pd.DataFrame:
    """Rows of ``beta_t + b_lt`` for one grouping factor's ``blocks`` (term-major, as ``coef``).

    The posterior variance is ``Var(beta_t) + Var(b_lt) + 2 Cov(beta_t, b_lt)``
    summed over the blocks holding the term. With ``table`` None only the
    estimates (levels x terms, a frame with one column per term) are made.
    """
    summary = draws.effect_summary
    design = draws.design
    fixed = list(design.fixed_names)
    beta = np.asarray(draws.beta, dtype=float)
    n_levels = summary.mean.shape[0]
    fixed_of = [fixed.index(t) if t in fixed else -1 for t in terms]
    effect_of = [[summary.block_columns(k).start + list(design.blocks[k].columns).index(t)
                  for k in blocks if t in design.blocks[k].columns] for t in terms]
    beta_var = beta.var(axis=0, ddof=1) if beta.shape[0] > 1 else np.full(beta.shape[1], np.nan)
    estimate = np.zeros((n_levels, len(terms)))
    variance = np.zeros((n_levels, len(terms)))
    for t, (j, cols) in enumerate(zip(fixed_of, effect_of, strict=True)):
        if j >= 0:
            estimate[:, t] += beta[:, j].mean()
            variance[:, t] += beta_var[j]
        for c in cols:
            estimate[:, t] += summary.mean[:, c]
            if j >= 0:
                variance[:, t] += 2.0 * summary.cov_fixef[:, j, c]
        for c in cols:
            for c2 in cols:
                variance[:, t] += summary.cov[:, c, c2]

    if table is None:
        return pd.DataFrame(estimate, columns=terms)

    def values_of(chunk: np.ndarray) -> np.ndarray:
        out = np.zeros((chunk.shape[0], chunk.shape[1], len(terms)))
        for t, (j, cols) in enumerate(zip(fixed_of, effect_of, strict=True)):
            if j >= 0:
                out[:, :, t] += beta[:, j][:, None]
            for c in cols:
                out[:, :, t] += chunk[:, :, c]
        return out

    return summarised_levels(summary, values_of, estimate, variance, table)
