"""Choose a formulation and build the PyMC model of a design.

``formulation="auto"`` takes the marginal formulation whenever it applies
(Gaussian response, every random-effect block on one grouping factor) because
NUTS then moves only over the fixed effects and the covariance parameters:
fewer dimensions, no funnel between SDs and group effects, several times the
effective samples per second. Everything else (crossed or nested factors,
other families) uses the full, non-centred formulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pymc as pm

from hierlm.bayes.full import build_full_model
from hierlm.bayes.groupstats import GroupStats
from hierlm.bayes.marginal import build_marginal_model, can_marginalize
from hierlm.bayes.naming import BlockNames, block_names
from hierlm.bayes.priors import PriorTable
from hierlm.design.blocks import Design
from hierlm.errors import FitError

__all__ = ["FORMULATIONS", "BuiltModel", "choose_formulation", "build_model"]

Formulation = Literal["auto", "full", "marginal"]
FORMULATIONS = ("auto", "full", "marginal")


@dataclass(frozen=True, eq=False)
class BuiltModel:
    """A PyMC model together with what is needed to interpret its draws.

    Attributes
    ----------
    pymc_model : pymc.Model
        The model.
    formulation : str
        ``"full"`` or ``"marginal"``.
    design : Design
        The design it was built from.
    priors : PriorTable
        The priors it uses.
    names : list of BlockNames
        Names of the random-effect blocks.
    stats : GroupStats or None
        Per-level cross-products (marginal formulation only).
    """

    pymc_model: pm.Model
    formulation: str
    design: Design
    priors: PriorTable
    names: list[BlockNames]
    stats: GroupStats | None


def choose_formulation(design: Design, formulation: str = "auto", family: str = "gaussian") -> str:
    """Resolve ``"auto"`` and check that a forced formulation is possible.

    Parameters
    ----------
    design : Design
        The model's design.
    formulation : {"auto", "full", "marginal"}
        Requested formulation.
    family : str
        Response family.

    Returns
    -------
    str
        ``"full"`` or ``"marginal"``.

    Raises
    ------
    FitError
        For an unknown formulation, or ``"marginal"`` where it does not apply.
    """
    if formulation not in FORMULATIONS:
        raise FitError(f"formulation={formulation!r}; choose one of {', '.join(FORMULATIONS)}")
    marginal_ok = can_marginalize(design, family)
    if formulation == "marginal" and not marginal_ok:
        groups = sorted({b.group for b in design.blocks})
        reason = (
            f"it needs a Gaussian response, got family={family!r}"
            if family != "gaussian"
            else "it needs every random-effect term on one grouping factor, "
            f"this model has {', '.join(groups) or 'none'}"
        )
        raise FitError(f"formulation='marginal' is not available: {reason}; use 'full' or 'auto'")
    if formulation == "auto":
        return "marginal" if marginal_ok else "full"
    return formulation


def build_model(
    design: Design, priors: PriorTable, formulation: str = "auto", family: str = "gaussian"
) -> BuiltModel:
    """Build the PyMC model of ``design`` in the requested formulation.

    Parameters
    ----------
    design : Design
        The model's design.
    priors : PriorTable
        Resolved priors (:func:`hierlm.bayes.priors.resolve_priors`).
    formulation : {"auto", "full", "marginal"}
        See the module docstring.
    family : str
        Response family (only ``"gaussian"`` is implemented).

    Returns
    -------
    BuiltModel
        The model and its metadata.

    Raises
    ------
    FitError
        For an unknown family or formulation, or a design without random effects.
    """
    if family != "gaussian":
        raise FitError(f"family={family!r} is not implemented in the Bayesian engine yet")
    if not design.blocks:
        raise FitError("the model has no random-effect terms; add a (term | group) to the formula")
    chosen = choose_formulation(design, formulation, family)
    if chosen == "marginal":
        model, stats = build_marginal_model(design, priors)
        return BuiltModel(model, "marginal", design, priors, block_names(design), stats)
    return BuiltModel(build_full_model(design, priors), "full", design, priors, block_names(design), None)
