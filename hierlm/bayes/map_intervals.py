"""Laplace intervals of the covariance-structure parameters of a MAP fit.

The Laplace approximation at the mode (:func:`hierlm.bayes.map_structured.laplace`)
is a Gaussian for the unconstrained vector ``x`` the mode was found over, with
covariance ``C = H^-1`` (``fit.info["laplace_x"]``). Each natural parameter ``v``
of a structure (``rho``, ``pacf``, ``phi``, the lag correlations of ``toep``, the
correlations of ``un``, the SD ratios) gets

* its standard error by the delta method, ``sqrt(J C J')`` with ``J = dv/dx`` at
  the mode (central differences of the model's own map from ``x``);
* an interval that is Gaussian on an unconstrained scale ``u = g(v)`` and mapped
  back, ``g^-1(u +- z sqrt(g'(v)^2 J C J'))``: ``g`` is the log-odds on the
  parameter's range ``(lo, hi)`` (``rho``, ``pacf``, ``phi``: the range of the
  transform the model samples them by, their prior's; a correlation derived from
  several coordinates: ``(-1, 1)``, whose log-odds is ``2 atanh``, the scale of the
  correlation rows of ``varcorr``) or ``log`` for the ratios. For a parameter that
  is itself one coordinate of ``x`` (``rho`` of ``ar1``/``cs``, ``phi``, ``pacf``,
  the log ratios) ``g(v)`` is that coordinate, so the interval is exactly the
  coordinate's Laplace interval transformed back.

The Jacobians are taken when the fit is made (``fit.info["structure_jacobian"]``),
so a saved and loaded fit gives the same table without rebuilding the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.results.uncertainty import normal_quantile

__all__ = ["structure_jacobians", "laplace_structure_columns"]


def _ranges(problem: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The sampled interval parameters' transform ranges, by stored variable name."""
    from hierlm.bayes.structures import INTERVAL_KINDS, design_structures

    built = problem.built
    blocks, residual = design_structures(built.names, built.design.residual)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for part in [*blocks, *([residual] if residual is not None else [])]:
        for p in part.parameters:
            if p.kind in INTERVAL_KINDS:
                low, high = part.bounds(p, built.priors)
                out[p.name] = (
                    np.atleast_1d(np.asarray(low, dtype=float)),
                    np.atleast_1d(np.asarray(high, dtype=float)),
                )
    return out


def structure_jacobians(problem: Any, x: np.ndarray) -> dict[str, Any]:
    """At the mode ``x``: ``dv/dx`` and the range of every stored structure variable.

    Parameters
    ----------
    problem : StructuredProblem
        The fit's density (:func:`hierlm.bayes.map_structured.structured_problem`).
    x : numpy.ndarray
        The mode (unconstrained).

    Returns
    -------
    dict
        Per variable name (``rho_<b>``, ``rho_residual``, ``phi_residual``,
        ``pacf_residual``, ``cor_residual``, ``ratio_residual`` ...):
        ``{"jacobian": (size, len(x)), "low": (size,), "high": (size,)}``.
    """
    from hierlm.bayes.residual_marginal import residual_variables
    from hierlm.bayes.structure_model import structure_variables

    built = problem.built
    names = [n for n, _ in structure_variables(built.names)]
    names += [n for n, _ in residual_variables(built.design.residual)]
    names = [n for n in names if n in problem.var_names]
    if not names:
        return {}
    expand = problem.density.expand
    jac = {n: np.zeros((np.asarray(expand(x)[n]).size, x.size)) for n in names}
    for k in range(x.size):
        step = 1e-6 * max(1.0, abs(float(x[k])))
        up, down = x.copy(), x.copy()
        up[k] += step
        down[k] -= step
        high_values, low_values = expand(up), expand(down)
        for n in names:
            jac[n][:, k] = (np.ravel(high_values[n]) - np.ravel(low_values[n])) / (2 * step)
    ranges = _ranges(problem)
    out: dict[str, Any] = {}
    for n in names:
        size = jac[n].shape[0]
        if n in ranges:  # sampled by the log-odds on this range: u is the coordinate itself
            low, high = (np.broadcast_to(r, (size,)).astype(float) for r in ranges[n])
        elif n.startswith("ratio"):  # exp of a log ratio
            low, high = np.zeros(size), np.full(size, np.inf)
        else:  # a correlation derived from several coordinates (toep lags, un)
            low, high = np.full(size, -1.0), np.full(size, 1.0)
        out[n] = {"jacobian": jac[n], "low": low, "high": high}
    return out


def _forward(v: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``u = g(v)`` and ``g'(v)``: log-odds on ``(low, high)``, ``log(v - low)`` when high is inf."""
    bounded = np.isfinite(high)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(bounded, np.log((v - low) / (high - v)), np.log(v - low))
        slope = np.where(bounded, 1.0 / (v - low) + 1.0 / (high - v), 1.0 / (v - low))
    return u, slope


def _backward(u: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    bounded = np.isfinite(high)
    with np.errstate(over="ignore", invalid="ignore"):
        span = np.where(bounded, high - low, 0.0)
        return np.where(bounded, low + span / (1.0 + np.exp(-u)), low + np.exp(u))


def laplace_structure_columns(
    info: dict[str, Any], variables: list[tuple[str, int]], estimate: np.ndarray, prob: float
) -> pd.DataFrame | None:
    """``std_error`` and the interval bounds of structure rows (see the module docstring).

    Parameters
    ----------
    info : dict
        The MAP fit's record (``laplace_x`` and ``structure_jacobian``).
    variables : list of (str, int)
        Each row's stored variable and flat index.
    estimate : numpy.ndarray
        The rows' modes.
    prob : float
        Interval probability.

    Returns
    -------
    pandas.DataFrame or None
        Columns ``std_error``, ``lower``, ``upper`` (one row per variable);
        None when the fit holds no Jacobians (saved before they were stored).
    """
    stored = info.get("structure_jacobian")
    cov = info.get("laplace_x")
    if not stored or cov is None:
        return None
    cov = np.asarray(cov, dtype=float)
    z = float(normal_quantile(prob))
    rows = []
    for (name, k), v in zip(variables, np.asarray(estimate, dtype=float), strict=True):
        entry = stored[name]
        j = np.asarray(entry["jacobian"], dtype=float)[k]
        low = np.atleast_1d(np.asarray(entry["low"], dtype=float))[k : k + 1]
        high = np.atleast_1d(np.asarray(entry["high"], dtype=float))[k : k + 1]
        var = float(j @ cov @ j)
        u, slope = _forward(np.array([v]), low, high)
        half = z * abs(float(slope[0])) * np.sqrt(max(var, 0.0))
        inside = bool(np.isfinite(u[0]))  # a mode on the range's edge has no interval
        rows.append(
            {
                "std_error": np.sqrt(var) if np.isfinite(var) and var >= 0 else np.nan,
                "lower": float(_backward(u - half, low, high)[0]) if inside else np.nan,
                "upper": float(_backward(u + half, low, high)[0]) if inside else np.nan,
            }
        )
    return pd.DataFrame(rows)
