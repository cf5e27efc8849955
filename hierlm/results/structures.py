"""Tables of covariance structures: their parameters, the implied matrices, and AIC/BIC rankings.

* :func:`structure_parameters`: the natural-scale parameters of every
  patterned random-effect structure (``rho`` of ``cs``/``ar1``, the lag
  correlations of ``toep``) and of the residual structure (``rho``, ``phi``,
  the SD ratios by time and of ``variance=``).
* :func:`residual_covariance`: the residual covariance over the distinct
  times, ``sigma^2 M S M`` (:mod:`hierlm.design.residual`), and its correlation.

:func:`hierlm.selection.compare_structures` ranks fits of several structures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import FitError

__all__ = ["structure_parameters", "residual_covariance", "residual_covariance_at",
           "require_single_residual_variance"]


def _grouped_parts(fit: Any) -> tuple[Any, np.ndarray]:
    residual = fit.design.residual
    if residual is None:
        raise FitError("The model has no residual structure (residual= / variance=).")
    return residual, np.asarray(fit.theta, dtype=float)[len(fit.theta) - residual.n_params:]


def structure_parameters(fit: Any) -> pd.DataFrame:
    """Natural-scale parameters of the fit's patterned and residual covariance structures.

    Parameters
    ----------
    fit : LmmResult
        An ML/REML fit.

    Returns
    -------
    pandas.DataFrame
        Columns ``structure`` (e.g. ``"ar1(week | id)"``), ``parameter``
        (``rho``, ``rho1``, ``phi``, ``ratio.<level>``) and ``estimate``.
        Empty when every structure is ``us``/``diag`` with independent residuals.
    """
    rows = []
    offset = 0
    for block in fit.design.blocks:
        size = block.structure.n_params
        part = np.asarray(fit.theta[offset:offset + size], dtype=float)
        offset += size
        for name, value in block.structure.natural(part).items():
            rows.append({"structure": block.term, "parameter": name, "estimate": value})
    residual = fit.design.residual
    if residual is not None:
        _, params = _grouped_parts(fit)
        structure = residual.structure
        for name, value in structure.natural(params[: structure.n_params]).items():
            rows.append({"structure": residual.describe(), "parameter": name, "estimate": value})
        if residual.variance_function is not None:
            ratios = residual.variance_function.natural(params[structure.n_params:])
            for name, value in ratios.items():
                rows.append({"structure": residual.describe(), "parameter": name,
                             "estimate": value})
    return pd.DataFrame(rows, columns=["structure", "parameter", "estimate"])


def residual_covariance(fit: Any, correlation: bool = False) -> pd.DataFrame:
    """The residual covariance (or correlation) matrix over the distinct times.

    Parameters
    ----------
    fit : LmmResult
        A fit with ``residual=``.
    correlation : bool
        Return the correlation matrix instead.

    Returns
    -------
    pandas.DataFrame
        Rows and columns labelled by the time values. For ``variance=`` the
        matrix is that of the first level (SD ratio 1).
    """
    residual, params = _grouped_parts(fit)
    return residual_covariance_at(residual, params[: residual.structure.n_params],
                                  float(fit.sigma), correlation)


def residual_covariance_at(residual: Any, struct: np.ndarray, sigma: float,
                           correlation: bool = False) -> pd.DataFrame:
    """The table of :func:`residual_covariance` at given structure parameters (any engine).

    Parameters
    ----------
    residual : ResidualDesign
        The design's residual structure.
    struct : numpy.ndarray
        The structure's parameters on the ML/REML engine's scale (no ``variance=`` ratios).
    sigma : float
        The residual SD.
    correlation : bool
        Return the correlation matrix instead.

    Returns
    -------
    pandas.DataFrame
        ``sigma^2 S`` over the distinct times (``S`` from the structure's
        ``over_times``), rows and columns labelled by the time values.
    """
    matrix = sigma ** 2 * residual.structure.over_times(np.asarray(struct, dtype=float))[0]
    if correlation:
        sd = np.sqrt(np.diag(matrix))
        matrix = matrix / np.outer(sd, sd)
    labels = pd.Index(residual.structure.time_labels, name=residual.spec.time or "position")
    return pd.DataFrame(matrix, index=labels, columns=labels)


def require_single_residual_variance(fit: Any, quantity: str) -> None:
    """Refuse a variance share (R², ICC) where the residual variance is not one number.

    With homogeneous residual structures (``cs``, ``ar1``, ``toep``, ``car1``)
    every observation has residual variance ``sigma^2``, and Nakagawa's R² and
    the ICC are defined with it; heterogeneous ones (``csh``, ``arh1``,
    ``toeph``, ``un``, ``variance=``) have one per time or level.

    Raises
    ------
    FitError
        Naming the structure and what to do instead.
    """
    design = getattr(fit, "design", None)
    residual = getattr(design, "residual", None)
    if residual is None:
        return
    structure = residual.structure
    if structure.heterogeneous or residual.variance_function is not None:
        raise FitError(
            f"{quantity} needs one residual variance, and residual={residual.describe()!r} has "
            "one per time or level; use a homogeneous structure (cs, ar1, toep, car1), whose "
            "residual variance sigma^2 is every observation's, or read the variance components "
            "from fit.residual_covariance().")
