"""Bayesian prediction of new visits under a residual structure, draw by draw.

The predictor is the ML/REML engine's (:func:`hierlm.results.new_visits.visit_conditional`,
one definition) evaluated at each posterior draw's parameters. For a subject
with observed rows ``O`` and new rows ``n``, at draw ``s``,

``y_n | y_O, s ~ N(x_n' beta_s + V_nO V_OO^-1 (y_O - X_O beta_s), V_nn - V_nO V_OO^-1 V_On)``

with ``V = Z G_s Z' + sigma_s^2 M_s Omega_s M_s`` (group effects integrated out, so
the mean is the conditional mean given the subject's observed visits).
``kind="mean"`` gives that mean per draw, ``kind="response"`` one draw from the
conditional Gaussian (jointly over a subject's new rows). Subjects the fit never
saw get the marginal: ``x_n' beta_s`` plus, with ``new_levels="sample"``, a draw
of ``N(0, Z G_s Z')``, and for ``kind="response"`` the residual
``N(0, sigma_s^2 M Omega M)`` (jointly with the effects). Rows at a visit the
subject was observed at are that fitted visit (the prediction of
:func:`hierlm.results.prediction.predictive_draws`), as for ML/REML fits. A MAP
fit (one point) gets the plug-in table of :func:`hierlm.results.new_visits.visit_table`
with its Laplace ``Var(beta)``.

Each draw's residual structure is carried to the engine's parameters
(:func:`engine_parameters`): the natural parameters stored per draw
(``rho_residual``, ``phi_residual``, ``ratio_residual``; the engine's
``natural()`` names them ``rho``, ``rho<k>``, ``phi``, ``ratio.<time>``) are
inverted through the engine's own ``natural()`` by a root solve, ``un`` from its
covariance parameters (the entries of ``S``), the ``variance=`` ratios by ``log``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from hierlm.bayes.residual_marginal import residual_values_of_draws, residual_variables
from hierlm.errors import FitError
from hierlm.results.new_visits import (
    VisitParameters,
    visit_conditional,
    visit_rows,
    visit_table,
)

__all__ = ["engine_parameters", "draw_visit_parameters", "predict_new_visits"]


def _natural_target(structure: Any, values: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
    """The engine's natural parameters (by name) from one draw's stored variables."""
    labels = list(structure.time_labels[1:]) if hasattr(structure, "time_labels") else []
    out = []
    for key in keys:
        if key == "rho":
            out.append(float(np.asarray(values["rho_residual"]).reshape(-1)[0]))
        elif key.startswith("rho") and key[3:].isdigit():
            out.append(float(np.asarray(values["rho_residual"]).reshape(-1)[int(key[3:]) - 1]))
        elif key == "phi":
            out.append(float(values["phi_residual"]))
        elif key.startswith("ratio."):
            out.append(float(np.asarray(values["ratio_residual"]).reshape(-1)[labels.index(key[6:])]))
        else:  # pragma: no cover - every engine structure names its parameters so
            raise FitError(f"no posterior variable for the residual parameter {key!r}")
    return np.asarray(out, dtype=float)


def engine_parameters(structure: Any, values: dict[str, np.ndarray], s_matrix: np.ndarray,
                      start: np.ndarray | None = None) -> np.ndarray:
    """The engine's structure parameters of one draw (see the module docstring).

    Parameters
    ----------
    structure : ResidualStructure
        The fit's engine structure (``design.residual.structure``).
    values : dict
        The draw's stored residual variables (natural scale).
    s_matrix : numpy.ndarray
        The draw's relative covariance over the distinct times.
    start : numpy.ndarray, optional
        Where the root solve starts (the previous draw's answer).

    Returns
    -------
    numpy.ndarray
        Parameters with ``structure.natural(params)`` (or ``over_times``) equal to the draw's.

    Raises
    ------
    FitError
        If the inversion does not reproduce the draw (to 1e-9).
    """
    if structure.base == "un":
        t = structure.n_times
        entries = [(i, j) for j in range(t) for i in range(j, t)]
        gamma = np.array([s_matrix[i, j] for i, j in entries])
        return np.asarray(structure.from_covariance_parameters(gamma)[0], dtype=float)
    keys = list(structure.natural(structure.start()).keys())
    if not keys:
        return np.zeros(structure.n_params)
    target = _natural_target(structure, values, keys)

    def gap(params: np.ndarray) -> np.ndarray:
        natural = structure.natural(params)
        return np.array([natural[k] for k in keys]) - target

    first = structure.start() if start is None else start
    found = optimize.root(gap, first, method="hybr", tol=1e-14)
    if np.max(np.abs(gap(found.x))) > 1e-9 and start is not None:
        found = optimize.root(gap, structure.start(), method="hybr", tol=1e-14)
    if np.max(np.abs(gap(found.x))) > 1e-9:
        drawn = dict(zip(keys, target, strict=True))
        raise FitError(f"residual {structure.name}: the posterior draw {drawn} could not be "
                       "carried to the engine's parameters.")
    return np.asarray(found.x, dtype=float)


def draw_visit_parameters(fit: Any) -> list[VisitParameters]:
    """Every posterior draw (one for MAP) as the new-visit predictor's parameters."""
    residual = fit.design.residual
    draws = fit.draws()
    names = [name for name, _ in residual_variables(residual)]
    pooled = {name: fit._pooled(name) for name in names}
    n = int(draws.beta.shape[0])
    s_all, levels_all = residual_values_of_draws(
        residual, {name: value[None] for name, value in pooled.items()} or
        {"sigma": np.asarray(draws.sigma)[None]})
    structure = residual.structure
    out, previous = [], None
    for k in range(n):
        values = {name: value[k] for name, value in pooled.items()}
        struct = engine_parameters(structure, values, s_all[k], previous)
        previous = struct if struct.size else None
        ratios = np.log(np.asarray(levels_all[k], dtype=float)[1:]) if residual.n_variance \
            else np.zeros(0)
        out.append(VisitParameters(np.asarray(draws.beta[k], dtype=float),
                                   float(draws.sigma[k]) ** 2, struct, ratios,
                                   [np.asarray(c[k], dtype=float) for c in draws.covariances]))
    return out


def _root(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
    return vectors * np.sqrt(np.clip(values, 0.0, None))[None, :]


def predict_new_visits(fit: Any, new_data: pd.DataFrame, design: Any, base: Any,
                       include_random: bool = True, kind: str = "mean",
                       new_levels: str = "sample", seed: Any = None,
                       prob: float | None = None) -> Any:
    """Draws (S, n) of new visits of a Bayesian fit with ``residual=``; MAP: the point table.

    Parameters
    ----------
    fit : BayesResult
        A NUTS or MAP fit with ``residual=``.
    new_data : pandas.DataFrame
        The rows to predict.
    design : Design
        ``fit.model.new_design(new_data)``.
    base : numpy.ndarray or pandas.DataFrame
        NUTS: the draws (S, n) of :func:`hierlm.results.prediction.predictive_draws`
        (kept at fitted visits); MAP: the plug-in table of the fitted visits.
    include_random, kind, new_levels, seed, prob
        As :meth:`hierlm.results.methods.ResultMethods.predict`.

    Returns
    -------
    numpy.ndarray or pandas.DataFrame
        NUTS: draws (S, n); MAP: the plug-in table.
    """
    rows = visit_rows(fit.design.residual, fit.design, new_data, design)
    params = draw_visit_parameters(fit)
    if fit.method == "map":
        vcov = np.asarray(fit.info.get("vcov_beta", np.full((design.p, design.p), np.nan)),
                          dtype=float)
        return visit_table(rows, params[0], vcov, base, include_random, kind, prob, new_levels)
    rng = np.random.default_rng(seed)
    out = np.array(base, dtype=float, copy=True)
    for k, at in enumerate(params):
        got = visit_conditional(rows, at, include_random, new_levels)
        predicted = ~got.observed_visit
        out[k, predicted] = got.estimate[predicted]
        for row_set, random_cov, residual_cov in zip(got.sets, got.random_cov, got.residual_cov,
                                                     strict=True):
            cov = random_cov + residual_cov if kind == "response" else random_cov
            if np.any(cov):
                out[k, row_set] += _root(cov) @ rng.standard_normal(row_set.size)
    return out
