"""Entry point of the Bayesian engine: ``fit_bayes(model, method="nuts" | "map", ...)``.

``fit_bayes`` hands its options to :func:`fit_nuts` or
:func:`hierlm.bayes.map.fit_map` and refuses those the method does not use
(``draws`` or ``sampler`` for MAP, ``reml`` for NUTS) instead of ignoring
them. Every value is checked before any work starts; a constant response is
refused as the ML/REML engine refuses it.

Interrupting a NUTS run (Ctrl-C) stops the sampler and raises
``KeyboardInterrupt``: no fit, and no half-filled posterior, is returned (see
:func:`hierlm.bayes.sample.run_sampler`).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np

from hierlm.bayes.build import (
    build_model,
    choose_formulation,
    default_tune,
    dense_width,
    design_and_priors,
    model_family,
)
from hierlm.bayes.crossed_kernel import PARALLEL_DRAW_WIDTH
from hierlm.bayes.diagnostics import diagnose, warn_if_problems
from hierlm.bayes.effect_summary import resolve_group_effects
from hierlm.bayes.glmm_kernel import glmm_kernel_applies
from hierlm.bayes.groupstats import scalar_terms_only
from hierlm.bayes.likelihoods import dispersion_name
from hierlm.bayes.naming import FIXEF
from hierlm.bayes.posterior import assemble_datatree
from hierlm.bayes.residual_marginal import residual_variables
from hierlm.bayes.result import BayesResult, DeferredModel
from hierlm.bayes.sample import (
    SamplerSettings,
    available_samplers,
    default_progressbar,
    resolve_backend,
    run_sampler,
)
from hierlm.design.checks import require_varying_response
from hierlm.errors import FitError, HierlmWarning
from hierlm.options import check_options, require_bool, require_seed

__all__ = ["METHODS", "DEFAULT_TARGET_ACCEPT", "PARALLEL_CHAIN_LEVELS", "fit_bayes", "fit_nuts",
           "new_seed"]

METHODS = ("nuts", "map")


def new_seed() -> int:
    """A fresh random seed (recorded in the result so the fit can be repeated)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


# target_accept by formulation when the user gives none (see fit_bayes)
DEFAULT_TARGET_ACCEPT = {"marginal": 0.8, "full": 0.95}


def fit_bayes(model: Any, method: str = "nuts", **options: Any) -> BayesResult:
    """Fit a Gaussian mixed model by NUTS or find its posterior mode.

    Parameters
    ----------
    model : hierlm.Model or Design
        The model (its ``design``, ``priors`` and ``family`` are used).
    method : {"nuts", "map"}
        Sample the posterior (:func:`fit_nuts`), or maximise it
        (:func:`hierlm.bayes.map.fit_map`).
    **options
        The options of that function: ``priors``, ``draws``, ``chains``,
        ``random_seed``... for NUTS; ``priors`` and ``reml`` for MAP.

    Returns
    -------
    BayesResult

    Raises
    ------
    FitError
        For an unknown method, an option the method does not take, or a bad value.
    """
    if method not in METHODS:
        raise FitError(f"method={method!r}; choose one of {', '.join(METHODS)}")
    if method == "map":
        if model_family(model).name != "gaussian":
            from hierlm.bayes.map_glmm import fit_map_glmm

            if options.get("reml"):
                raise FitError("REML is defined for Gaussian models only (as in lme4); "
                               "use reml=False for a posterior mode of this family")
            options.pop("reml", None)
            check_options(fit_map_glmm, method, options, exclude=("model",))
            return fit_map_glmm(model, **options)
        from hierlm.bayes.map import fit_map

        check_options(fit_map, method, options, exclude=("model",))
        return fit_map(model, **options)
    check_options(fit_nuts, method, options, exclude=("model",))
    return fit_nuts(model, **options)


def _default_target_accept(built: Any) -> float:
    """:data:`DEFAULT_TARGET_ACCEPT` by formulation; 0.8 for a non-Gaussian model with every block centred.

    Blocks are centred exactly where their levels' data are informative
    (:func:`hierlm.bayes.glmm_setup.centred_blocks`), where the funnel that
    the full formulation's 0.95 guards against does not arise; 0.8 then
    halves the leapfrog steps per draw (cbpp: 7 instead of 14, the same
    effective sample size).
    """
    if built.family.name != "gaussian" and built.formulation == "full":
        from hierlm.bayes.glmm_setup import centred_blocks

        if all(centred_blocks(built.design, built.family)):
            return 0.8
    return DEFAULT_TARGET_ACCEPT[built.formulation]


#: Levels from which the one-factor compiled kernel runs chains in parallel by default.
PARALLEL_CHAIN_LEVELS = 2_000


def _default_cores(built: Any, backend: str, chains: int) -> int:
    """Chains run at once when ``cores`` is not given: see :func:`fit_nuts`."""
    big_kernel = (backend == "kernel" and built.formulation == "marginal" and built.stats is not None
                  and all(block.structure.is_lme4 for block in built.design.blocks)
                  and built.stats.n_groups >= PARALLEL_CHAIN_LEVELS)
    # the full-formulation kernel runs as C callbacks with no Python (hierlm.bayes.glmm_cfunc)
    full_kernel = backend == "kernel" and glmm_kernel_applies(built)
    # the crossed kernel releases the GIL; from PARALLEL_DRAW_WIDTH dense columns a gradient
    # costs far more than the Python call around it (InstEval: 1142 columns, ~50 ms)
    wide_crossed = (backend == "kernel" and built.formulation == "marginal" and built.stats is None
                    and built.design.residual is None and scalar_terms_only(built.design)
                    and dense_width(built.design) >= PARALLEL_DRAW_WIDTH)
    return (max(1, min(chains, os.cpu_count() or 1)) if big_kernel or full_kernel or wide_crossed
            else 1)


def _other_formulation_available(design: Any, formulation: str, family: Any = "gaussian") -> bool:
    """Whether the formulation not used could fit the design, for actionable hints."""
    other = "marginal" if formulation == "full" else "full"
    try:
        choose_formulation(design, other, family)
    except FitError:
        return False
    return True


def fit_nuts(
    model: Any,
    *,
    priors: Any = None,
    formulation: str = "auto",
    sampler: str | None = None,
    backend: str = "auto",
    chains: int = 4,
    draws: int = 1000,
    tune: int | None = None,
    target_accept: float | None = None,
    max_treedepth: int = 10,
    random_seed: int | None = None,
    progressbar: bool | None = None,
    log_likelihood: bool | str = "auto",
    posterior_predictive: bool | str = "auto",
    cores: int | None = None,
    group_effects: str = "auto",
) -> BayesResult:
    """Sample the posterior of a Gaussian mixed model by NUTS.

    Parameters
    ----------
    model : hierlm.Model or Design
        The model (its ``design``, ``priors`` and ``family`` are used).
    priors : dict, "flat", PriorTable or None
        Override the model's priors (see :mod:`hierlm.bayes.priors`).
    formulation : {"auto", "full", "marginal"}
        ``"auto"`` integrates the group effects out whenever the structure
        allows (see :mod:`hierlm.bayes.build`).
    sampler : {"nutpie", "pymc", "numpyro"}, optional
        Default: the first of :func:`~hierlm.bayes.sample.available_samplers`.
    backend : {"auto", "kernel", "numba", "jax"}
        How the log-density is compiled (see :mod:`hierlm.bayes.sample`).
    chains, draws, tune : int
        Chains, kept draws per chain, warm-up iterations per chain. Default ``tune``:
        1000, or 300 where the posterior is sampled standardised at its mode (crossed
        designs with a wide dense part, such as InstEval; see
        :func:`hierlm.bayes.build.default_tune`).
    target_accept : float, optional
        Target acceptance rate of step-size adaptation; raise it (0.9-0.99)
        when there are divergences. Default: 0.8 for the marginal formulation
        and 0.95 for the full one, whose non-centred group effects leave a
        funnel when the data say little about an SD (25 small simulated data
        sets, 8 groups of 6 rows: fits with divergences 4 at 0.8, 1 at 0.9,
        0 at 0.95, at about the same run time); 0.8 for non-Gaussian models
        whose blocks are all sampled centred (see ``_default_target_accept``).
    max_treedepth : int
        Maximum NUTS tree depth.
    random_seed : int, optional
        Seed of the sampler and of the conditional draws of the group effects,
        an integer in ``[0, 2**64)``; the same seed gives identical results. A
        fresh seed is drawn (and stored in the result) when None.
    progressbar : bool, optional
        Default: on in terminals and notebooks.
    log_likelihood : bool or "auto"
        Store log-likelihoods (see :mod:`hierlm.bayes.posterior`).
    posterior_predictive : bool or "auto"
        Store one replicated response per draw in ``idata["posterior_predictive"]``
        (``"auto"``: unless it would take more than about 1 GB; False skips
        it for huge data).
    cores : int, optional
        Chains run concurrently by nutpie. Default: 1 (fastest for the
        Python-callback log-densities of small models, see the benchmark),
        but as many as there are CPUs (at most ``chains``) for the compiled
        one-factor kernel with at least :data:`PARALLEL_CHAIN_LEVELS` levels,
        whose gradient releases the GIL and costs milliseconds (50,000
        groups: about 8 ms of CPU), so chains then run on separate cores;
        the same for the compiled full-formulation kernel
        (:mod:`hierlm.bayes.glmm_kernel`) at any size, which nutpie calls
        without Python (:mod:`hierlm.bayes.glmm_cfunc`).
    group_effects : {"auto", "draws", "summary"}
        ``"draws"`` stores one exact draw of every group effect per posterior
        draw; ``"summary"`` (marginal formulation, one grouping factor) stores
        their exact Rao-Blackwellised posterior moments per level instead, so
        ``ranef``/``coef`` keep exact means and SDs, and makes draws on demand
        (``fit.group_draws(levels=...)``, the same for the same seed); see
        :mod:`hierlm.bayes.effect_summary`. ``"auto"``: ``"summary"`` when the
        draws would exceed
        :data:`~hierlm.bayes.effect_summary.GROUP_DRAWS_MAX_ELEMENTS` numbers
        (400 MB), with a note.

    Returns
    -------
    BayesResult
        Draws (``idata``), model, formulation, sampler, timing, diagnostics.

    Raises
    ------
    FitError
        For an unknown sampler, backend, formulation, bad settings or a constant response.
    KeyboardInterrupt
        When sampling is interrupted: the sampler is stopped and no fit is returned.
    """
    seed_given = require_seed(random_seed)
    require_bool(progressbar, "progressbar", allow_none=True)
    for name, mode in (("log_likelihood", log_likelihood), ("posterior_predictive", posterior_predictive)):
        if mode not in (True, False, "auto"):
            raise FitError(f"{name} must be True, False or 'auto', got {mode!r}")
    seed = new_seed() if seed_given is None else seed_given
    start = time.perf_counter()
    design, prior_table, _ = design_and_priors(model, priors)
    require_varying_response(design.y, design.X, design.response)
    built = build_model(model, prior_table, formulation)
    if target_accept is None:
        target_accept = _default_target_accept(built)
    if tune is None:
        tune = default_tune(built)
    built_at = time.perf_counter()
    chosen_backend = ("kernel" if backend in ("auto", "kernel") and glmm_kernel_applies(built)
                      else resolve_backend(backend, built.formulation))
    if cores is None:
        cores = _default_cores(built, chosen_backend, chains)
    settings = SamplerSettings(
        sampler=sampler or available_samplers()[0],
        backend=chosen_backend,
        chains=chains,
        draws=draws,
        tune=tune,
        target_accept=target_accept,
        max_treedepth=max_treedepth,
        seed=seed,
        progressbar=default_progressbar() if progressbar is None else bool(progressbar),
        cores=cores,
    )
    kept = resolve_group_effects(group_effects, built.formulation, built.stats, chains * draws)
    if kept == "summary" and group_effects == "auto":
        assert built.stats is not None
        warnings.warn(
            f"{chains * draws} draws of {built.stats.n_groups * built.stats.q_total} group effects "
            f"would take {chains * draws * built.stats.n_groups * built.stats.q_total * 8 / 1e9:.1f} "
            "GB: the fit keeps their exact posterior means and covariances per level instead "
            "(ranef/coef are exact; intervals from draws made on demand); fit.group_draws(levels=...) "
            "gives the draws of chosen levels. Pass group_effects='draws' to store every draw.",
            HierlmWarning, stacklevel=3)
    raw = run_sampler(built, settings)
    sampled_at = time.perf_counter()
    idata = assemble_datatree(
        built,
        raw,
        seed,
        log_likelihood,
        attrs={"sampler": settings.sampler, "backend": settings.backend, "seed": seed},
        posterior_predictive=posterior_predictive,
        group_effects=kept,
    )
    checked = {FIXEF: raw.draws[FIXEF]}
    dispersion = dispersion_name(built.family)
    if dispersion is not None:
        checked[dispersion] = raw.draws[dispersion]
    for bn in built.names:
        checked[bn.sd] = raw.draws[bn.sd]
        if bn.cor in raw.draws:
            checked[bn.cor] = raw.draws[bn.cor]
    for name, _ in residual_variables(design.residual):  # rho_residual, ratio_residual ...
        checked[name] = raw.draws[name]
    report = diagnose(
        checked,
        raw.stats.get("diverging"),
        raw.stats.get("reached_max_treedepth"),
        built.formulation,
        target_accept,
        other_available=_other_formulation_available(design, built.formulation, built.family),
    )
    done = time.perf_counter()
    warn_if_problems(report)
    timing = {
        "build": built_at - start,
        **raw.timing,
        "postprocess": done - sampled_at,
        "total": done - start,
    }
    return BayesResult(
        idata=idata,
        pymc_model=DeferredModel(lambda: built.pymc_model),
        formulation=built.formulation,
        sampler=settings.sampler,
        method="nuts",
        design=design,
        priors=prior_table,
        names=built.names,
        timing=timing,
        seed=seed,
        settings={
            "chains": chains,
            "draws": draws,
            "tune": tune,
            "target_accept": target_accept,
            "max_treedepth": max_treedepth,
            "backend": settings.backend,
            "cores": cores,
            "group_effects": kept,
        },
        diagnostics=report,
        family=built.family,
    )
