"""Choose a formulation and build the PyMC model of a design.

The marginal formulation exists for every Gaussian model (one grouping
factor, nested and crossed factors alike): NUTS moves only over the fixed
effects and the covariance parameters, with the group effects integrated out
by the one Gaussian likelihood (:mod:`hierlm.lmm.likelihood`), and every group
effect is drawn afterwards from its exact conditional. With one grouping
factor the compiled twin of that likelihood (:mod:`hierlm.bayes.kernel`,
per-level statistics ``stats``) is used; designs of scalar terms on distinct
grouping factors (``(1 | a) + (1 | b)``, ``(1 | a / b)``) use the compiled
blocked twin :mod:`hierlm.bayes.crossed_kernel`; any other design calls the
likelihood itself (:mod:`hierlm.bayes.likelihood_model`), in Python.

``formulation="auto"`` picks the marginal form where it has a compiled
likelihood, which is where it is the faster one:

* every random-effect term on one grouping factor (5-6x bambi on sleepstudy);
* crossed or nested designs whose terms are scalar (one column each, one term
  per grouping factor) where the cost model :func:`marginal_is_faster` says the
  marginal form needs fewer seconds per effective draw. After eliminating the
  factor with most levels, the other factors' ``m_z`` columns form a dense Schur
  complement that every gradient factors (``m_z^3 / 3`` flops, and ``dpotri``'s
  ``2/3 m_z^3`` more up to ``PROBED_GRADIENT_WIDTH`` columns), against the full
  formulation's gradient, linear in the rows, of which NUTS needs about 100 times
  more per effective draw (InstEval: 26 leapfrog steps per draw at 0.05 effective
  draws per draw; the marginal form: 3-4 steps at about 0.5). Penicillin
  ``(1 | plate) + (1 | sample)`` (6 columns), Pastes ``(1 | batch / cask)`` (10) and
  InstEval ``(1 | s) + (1 | d) + (1 | dept)`` (1142 columns, 73,421 rows) are
  marginal; a dense part of thousands of columns over few rows stays full.

Other nested and crossed designs (vector-valued terms such as
``(Days | Subject) + (1 | Days)``, or a dense part too wide for its rows) keep the
full, non-centred formulation under ``"auto"``: the Python likelihood (about
2.5-10 ms per gradient) is slower per effective sample there;
``formulation="marginal"`` asks for the marginal form explicitly. Patterned random-effect
structures (``cs``, ``ar1``, ``toep``) have a marginal form too
(:mod:`hierlm.bayes.structured_marginal`: their PyMC variables, the one
likelihood as an Op), also in Python, so ``"auto"`` keeps the full formulation
for them. Residual structures (``residual=``) have the marginal form only
(:mod:`hierlm.bayes.residual_marginal`: the group effects are integrated out
and the likelihood carries the residual covariance), with or without random
effects. Non-Gaussian families use the full formulation (no closed-form
marginal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hierlm.bayes.groupstats import GroupStats, group_stats, scalar_terms_only, shared_group
from hierlm.bayes.likelihoods import family_name, family_of, likelihood_of
from hierlm.bayes.naming import BlockNames, block_names
from hierlm.bayes.priors import PriorTable, resolve_priors
from hierlm.design.blocks import Design
from hierlm.errors import FitError
from hierlm.families import Family, get_family

__all__ = [
    "FORMULATIONS",
    "BuiltModel",
    "MARGINAL_DENSE_LIMIT",
    "marginal_is_faster",
    "choose_formulation",
    "dense_width",
    "DEFAULT_TUNE",
    "STANDARDISED_TUNE",
    "default_tune",
    "design_and_priors",
    "model_family",
    "build_model",
]

Formulation = Literal["auto", "full", "marginal"]
FORMULATIONS = ("auto", "full", "marginal")


@dataclass(eq=False)
class BuiltModel:
    """A model ready to sample, with what is needed to interpret its draws.

    The PyMC model is built on first access of :attr:`pymc_model` (importing
    PyMC costs about half a second, and the default sampler of the marginal
    formulation does not need it).

    Attributes
    ----------
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
    family : Family
        The response family.
    """

    formulation: str
    design: Design
    priors: PriorTable
    names: list[BlockNames]
    stats: GroupStats | None
    family: Family = field(default_factory=lambda: get_family("gaussian"))
    _pymc_model: Any = field(default=None, repr=False)

    @property
    def pymc_model(self) -> Any:
        """The PyMC model (``pymc.Model``) of this formulation, built once."""
        if self._pymc_model is None:
            if self.formulation == "marginal" and self.design.residual is not None:
                from hierlm.bayes.residual_marginal import build_residual_marginal_model

                self._pymc_model = build_residual_marginal_model(self.design, self.priors)
            elif self.formulation == "marginal" and not all(
                    block.structure.is_lme4 for block in self.design.blocks):
                from hierlm.bayes.structured_marginal import build_structured_marginal_model

                self._pymc_model = build_structured_marginal_model(self.design, self.priors)
            elif self.formulation == "marginal" and self.stats is None:
                raise FitError(
                    "the marginal formulation of a design with more than one grouping factor has "
                    "no PyMC model (its density is hierlm.lmm.likelihood, sampled with nutpie); "
                    "use sampler='nutpie' or formulation='full'")
            elif self.formulation == "marginal":
                from hierlm.bayes.marginal import build_marginal_model

                self._pymc_model, _ = build_marginal_model(self.design, self.priors, self.stats)
            else:
                from hierlm.bayes.full import build_full_model

                self._pymc_model = build_full_model(self.design, self.priors, self.family)
        return self._pymc_model


#: Dense Schur complements up to this width are always marginal under ``"auto"`` (where the
#: cost model is not needed: a few milliseconds per gradient at most).
MARGINAL_DENSE_LIMIT = 200
#: Cost model of ``formulation="auto"`` for scalar crossed designs (:func:`marginal_is_faster`),
#: measured on one core of the project's machine: dense Cholesky flop rate (``dpotrf`` of
#: InstEval's 1142 columns: 47 ms) ...
DENSE_FLOPS_PER_SECOND = 1.0e10
#: ... the full kernel's seconds per (row x column of [Z | X]) and per gradient call (session 5:
#: 3-15 ms per InstEval gradient at load 11-17, about 7x a quiet core: 1.4-6 ns per entry) ...
FULL_SECONDS_PER_ENTRY = 3.0e-9
CALL_SECONDS = 2.0e-5
#: ... and gradients per effective draw of the slowest parameter: the marginal form (InstEval:
#: 5.4 leapfrog steps per draw, 0.79 effective draws per draw, so 6.8) against the full
#: formulation on crossed data (InstEval: 26 steps per draw, 0.01-0.07 effective draws per draw).
GRADIENTS_PER_ESS_MARGINAL = 8.0
GRADIENTS_PER_ESS_FULL = 500.0


def marginal_is_faster(design: Design) -> bool:
    """Whether the marginal form of a scalar-term crossed design costs less per effective draw.

    Seconds per effective draw: ``GRADIENTS_PER_ESS_* x`` seconds per gradient, with the
    marginal gradient's dense flops (``m_z^3 / 3`` for the factorisation, ``m_z^3`` with the
    exact inverse up to ``PROBED_GRADIENT_WIDTH`` columns, plus the probes' solves beyond) at
    ``DENSE_FLOPS_PER_SECOND``, and the full formulation's linear pass over ``[Z | X]``.
    """
    from hierlm.bayes.crossed_kernel import EXACT_TRACE_LEVELS, N_PROBES, PROBED_GRADIENT_WIDTH

    width = dense_width(design)
    if width <= MARGINAL_DENSE_LIMIT:
        return True
    if width <= PROBED_GRADIENT_WIDTH:
        flops = float(width) ** 3
    else:
        small = sum(b.n_levels for b in design.blocks if b.n_levels <= EXACT_TRACE_LEVELS)
        flops = float(width) ** 3 / 3.0 + 2.0 * (N_PROBES + small) * float(width) ** 2
    marginal = GRADIENTS_PER_ESS_MARGINAL * (flops / DENSE_FLOPS_PER_SECOND + CALL_SECONDS)
    entries = float(design.n) * (len(design.blocks) + design.p)
    full = GRADIENTS_PER_ESS_FULL * (entries * FULL_SECONDS_PER_ENTRY + CALL_SECONDS)
    return marginal < full


def dense_width(design: Design) -> int:
    """Random-effect columns left dense after eliminating the factor with most columns."""
    widths: dict[str, int] = {}
    for block in design.blocks:
        widths[block.group] = widths.get(block.group, 0) + block.n_levels * block.q
    return sum(widths.values()) - max(widths.values(), default=0)


#: Warm-up iterations per chain when ``tune`` is not given ...
DEFAULT_TUNE = 1000
#: ... and for a marginal posterior sampled standardised at its mode
#: (:func:`hierlm.bayes.crossed_precondition.precondition_applies`): the chains start in the
#: bulk, within about one posterior SD of the mode, in coordinates where the posterior's
#: scales and correlations there are the identity, so the warm-up only tunes the step size
#: and refines the mass matrix; nutpie's own default warm-up. InstEval, 4 chains: 200 warm-up
#: iterations already gave a bulk ESS of 0.98 per draw for the slowest parameter, no divergences,
#: posterior means at the REML estimates (``bench/results/bayes.md``).
STANDARDISED_TUNE = 300


def default_tune(built: BuiltModel) -> int:
    """Warm-up iterations per chain used when ``tune`` is not given.

    ``STANDARDISED_TUNE`` for the marginal formulation of scalar-term crossed designs whose
    dense part is wide enough to be sampled standardised at the mode
    (:mod:`hierlm.bayes.crossed_precondition`; InstEval), ``DEFAULT_TUNE`` otherwise.
    """
    from hierlm.bayes.crossed_precondition import precondition_applies

    design = built.design
    standardised = (built.formulation == "marginal" and built.stats is None
                    and design.residual is None and scalar_terms_only(design)
                    and precondition_applies(dense_width(design)))
    return STANDARDISED_TUNE if standardised else DEFAULT_TUNE


def choose_formulation(design: Design, formulation: str = "auto", family: Any = "gaussian") -> str:
    """Resolve ``"auto"`` and check that a forced formulation is possible.

    Parameters
    ----------
    design : Design
        The model's design.
    formulation : {"auto", "full", "marginal"}
        Requested formulation.
    family : str or Family
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
    family = family_name(family)
    marginal_ok = family == "gaussian"  # any grouping: the one likelihood integrates b out
    # cs, ar1, toep blocks: the marginal form through the one likelihood (structured_marginal),
    # in Python, so "auto" keeps the full formulation for them
    patterned = any(not block.structure.is_lme4 for block in design.blocks)
    if formulation == "marginal" and not marginal_ok:
        groups = sorted({b.group for b in design.blocks})
        reason = (
            f"it integrates the group effects out in closed form, which needs a Gaussian "
            f"response, got family={family!r}"
            if family != "gaussian"
            else "it needs every random-effect term on one grouping factor, "
            f"this model has {', '.join(groups) or 'none'}"
        )
        raise FitError(f"formulation='marginal' is not available: {reason}; use 'full' or 'auto'")
    residual = getattr(design, "residual", None)
    if residual is not None:  # residual=: the marginal form only
        if formulation == "full":
            raise FitError(
                f"The full formulation does not take residual structures (residual="
                f"{residual.describe()!r}): its group effects are sampled and the "
                "residuals would be independent; use formulation='marginal' (or 'auto'), which "
                "integrates the group effects out and carries the residual covariance.")
        return "marginal"
    if formulation == "auto":
        # a compiled likelihood (see the module docstring): one factor, or scalar crossed terms
        compiled = shared_group(design) is not None or (
            scalar_terms_only(design) and marginal_is_faster(design))
        return "marginal" if marginal_ok and compiled and not patterned else "full"
    return formulation


def model_family(model: Any) -> Family:
    """The Family of a Model (Gaussian for a bare Design or a model without one)."""
    return family_of(None if isinstance(model, Design) else getattr(model, "family", None))


def design_and_priors(model: Any, priors: Any = None) -> tuple[Design, PriorTable, str]:
    """Extract the design, resolved priors and family from a Model or a bare Design.

    Parameters
    ----------
    model : hierlm.Model or Design
        Anything with a ``design`` attribute (and optionally ``priors`` and
        ``family``), or a :class:`~hierlm.design.blocks.Design`.
    priors : dict, "flat", PriorTable or None
        Overrides the model's priors when given.

    Returns
    -------
    tuple
        ``(design, prior_table, family_name)``.

    Raises
    ------
    FitError
        If ``model`` is neither.
    """
    design = model if isinstance(model, Design) else getattr(model, "design", None)
    if not isinstance(design, Design):
        raise FitError(f"expected a hierlm Model or a Design, got {type(model).__name__}")
    family = model_family(model)
    if design.residual is not None and family.name != "gaussian":
        raise FitError(f"residual={design.residual.describe()!r} needs a Gaussian response (the "
                       f"residual covariance of a {family.name} model is not defined); drop "
                       "residual= or use family='gaussian'.")
    if priors is None and not isinstance(model, Design):
        priors = getattr(model, "user_priors", getattr(model, "priors", None))
    return design, resolve_priors(design, priors, family), family.name


def build_model(model: Any, priors: Any = None, formulation: str = "auto") -> BuiltModel:
    """Build the PyMC model of a hierlm Model (or Design) in the requested formulation.

    Parameters
    ----------
    model : hierlm.Model or Design
        The model; a bare Design is taken as Gaussian.
    priors : dict, "flat", PriorTable or None
        Prior overrides; default: the model's priors (or the defaults).
    formulation : {"auto", "full", "marginal"}
        See the module docstring.

    Returns
    -------
    BuiltModel
        The PyMC model (``.pymc_model``), the formulation used and metadata.

    Raises
    ------
    FitError
        For an unknown family or formulation, or a design without random effects.
    PriorError
        For invalid prior overrides.
    """
    design, prior_table, _ = design_and_priors(model, priors)
    family = model_family(model)
    likelihood_of(family)  # refuses a family without a likelihood here
    if not design.blocks and design.residual is None:
        raise FitError("the model has no random-effect terms; add a (term | group) to the formula")
    chosen = choose_formulation(design, formulation, family)
    names = block_names(design)
    lme4_blocks = all(block.structure.is_lme4 for block in design.blocks)
    one_factor = (chosen == "marginal" and shared_group(design) is not None and lme4_blocks
                  and design.residual is None)
    stats = group_stats(design) if one_factor else None
    return BuiltModel(chosen, design, prior_table, names, stats, family)
