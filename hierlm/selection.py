"""Choosing a covariance structure: ML fits of one formula ranked by AIC and BIC.

The lecture notes' section 7 compares the within-subject covariance
structures (CS, UN, CSH, AR(1), ARH(1), Toeplitz) by AIC and BIC from ML fits
with the same fixed part; :func:`compare_structures` does that in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from hierlm.errors import FitError
from hierlm.model import Model

__all__ = ["compare_structures"]


def compare_structures(formula: str, data: pd.DataFrame, structures: Sequence[str],
                       method: str = "ml", **model_options: Any) -> pd.DataFrame:
    """Fit one formula under several residual structures and rank them by AIC and BIC.

    Parameters
    ----------
    formula : str
        The model formula (fixed part and any random effects), the same for every fit.
    data : pandas.DataFrame
        The data.
    structures : sequence of str
        Residual structures, e.g. ``["independent(id)", "cs(id)", "ar1(week | id)"]``
        (:data:`hierlm.design.residual.RESIDUAL_STRUCTURES`).
    method : {"ml", "reml"}
        ML by default: AIC/BIC of structures are compared on ML fits (with
        the same fixed effects, REML ones are comparable too).
    **model_options
        Passed to :class:`hierlm.Model` (e.g. ``variance=``).

    Returns
    -------
    pandas.DataFrame
        One row per structure, sorted by AIC: ``npar``, ``logLik``, ``AIC``,
        ``BIC``, ``delta_AIC``, ``rank_AIC``, ``rank_BIC``.
    """
    if method not in ("ml", "reml"):
        raise FitError(f"compare_structures fits by 'ml' or 'reml', not {method!r}.")
    if not structures:
        raise FitError("compare_structures needs at least one structure.")
    rows = []
    for structure in structures:
        fit = Model(formula, data, residual=structure, **model_options).fit(method=method)
        rows.append({"structure": structure, "npar": fit.n_params,
                     "logLik": fit.loglik, "AIC": fit.aic, "BIC": fit.bic})
    table = pd.DataFrame(rows).set_index("structure")
    table["delta_AIC"] = table["AIC"] - table["AIC"].min()
    table["rank_AIC"] = table["AIC"].rank(method="min").astype(int)
    table["rank_BIC"] = table["BIC"].rank(method="min").astype(int)
    return table.sort_values("AIC")
