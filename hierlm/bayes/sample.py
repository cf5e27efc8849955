"""Sampling driver: run NUTS with one of several samplers and return plain arrays.

Samplers
--------
``"nutpie"`` (default)
    nutpie's Rust NUTS with its gradient-based mass-matrix adaptation, calling
    a compiled log-density through Python, or directly as C callbacks for the
    compiled full-formulation kernel (:mod:`hierlm.bayes.glmm_cfunc`).
``"pymc"``
    PyMC's own NUTS (chains in separate processes).
``"numpyro"``
    NumPyro's NUTS through PyMC's JAX bridge, chains vectorised; needs ``jax``
    and ``numpyro``.

Backends (how the log-density is compiled)
------------------------------------------
``"kernel"``
    Marginal formulation only: with one grouping factor, the hand-written
    numba log-density and gradient of :mod:`hierlm.bayes.kernel` (checked
    against the PyMC model and the one likelihood in the tests; compiled
    once and cached on disk; a few microseconds per gradient); with nested
    or crossed factors, the one Gaussian likelihood of
    :mod:`hierlm.lmm.likelihood` (:mod:`hierlm.bayes.likelihood_model`).
``"numba"``
    The PyMC graph compiled by PyTensor's numba backend
    (:mod:`hierlm.bayes.nutpie_adapter`): fast per gradient and cached on disk,
    but every fused kernel is a separate numba compilation, 20-40 s on an empty
    cache, plus about 2 s of graph rewriting in every fit.
``"jax"``
    The PyMC graph compiled with JAX: about a second to compile with nothing
    cached, but 30-60 microseconds per gradient on CPU.
``"auto"``
    ``"kernel"`` for the marginal formulation, ``"numba"`` for the full one
    (whose many gradient evaluations per draw make JAX's per-call cost the
    larger one even against a cold numba cache). The benchmark
    (``bench/bench_bayes.py``, ``bench/results/bayes.md``) has the numbers.

The driver returns the draws of the requested variables as NumPy arrays with
leading (chain, draw) axes and the sampler statistics under common names
(``diverging``, ``reached_max_treedepth``, ``tree_depth``, ``step_size``,
``n_steps``, ``lp``, ``energy``, ``acceptance_rate``), so that everything
after sampling is sampler-independent.

Interrupting
------------
nutpie and PyMC catch ``KeyboardInterrupt`` themselves and return the draws
made so far as if sampling had finished. :func:`run_sampler` watches for
Ctrl-C (SIGINT) while the sampler runs; when it came, the sampler has
stopped (its own cleanup ran) and ``KeyboardInterrupt`` is raised again, so
no half-empty posterior is ever reported as a finished fit. A sample that
comes back short without an interrupt raises a
:class:`~hierlm.errors.FitError`.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from hierlm.bayes.build import BuiltModel
from hierlm.bayes.likelihoods import dispersion_name
from hierlm.bayes.naming import FIXEF
from hierlm.bayes.residual_marginal import residual_variables
from hierlm.bayes.structure_model import structure_variables
from hierlm.errors import FitError

__all__ = [
    "SAMPLERS",
    "BACKENDS",
    "SamplerSettings",
    "RawSample",
    "available_samplers",
    "resolve_backend",
    "default_progressbar",
    "stored_variables",
    "run_sampler",
]

SAMPLERS = ("nutpie", "pymc", "numpyro")
BACKENDS = ("auto", "kernel", "numba", "jax")


def _installed(module: str) -> bool:
    """True when ``module`` can be imported, without importing it.

    A module already in ``sys.modules`` may be a lazy-loading stub (some
    libraries register ``numpyro`` that way); ``find_spec`` would read its
    ``__spec__`` and so import it (with JAX: about a second).
    """
    if sys.modules.get(module) is not None:
        return True
    return importlib.util.find_spec(module) is not None


def available_samplers() -> list[str]:
    """Samplers usable in this environment, fastest first."""
    out = []
    if _installed("nutpie"):
        out.append("nutpie")
    if _installed("numpyro") and _installed("jax"):
        out.append("numpyro")
    out.append("pymc")
    return out


def resolve_backend(backend: str, formulation: str = "marginal") -> str:
    """Return the backend a run will use (see the module docstring).

    Parameters
    ----------
    backend : {"auto", "kernel", "numba", "jax"}
        Requested backend.
    formulation : {"marginal", "full"}
        The formulation being sampled.

    Returns
    -------
    str
        ``"kernel"``, ``"numba"`` or ``"jax"``.

    Raises
    ------
    FitError
        For an unknown backend, ``"kernel"`` with the full formulation, or
        ``"jax"`` without JAX installed.
    """
    if backend not in BACKENDS:
        raise FitError(f"backend={backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "kernel" if formulation == "marginal" else "numba"
    if backend == "kernel" and formulation != "marginal":
        raise FitError("backend='kernel' exists for the marginal formulation only; use 'numba' or 'jax'")
    if backend == "jax" and not _installed("jax"):
        raise FitError("backend='jax' needs JAX: pip install jax")
    return backend


def default_progressbar() -> bool:
    """Show progress in terminals and notebooks, not when output goes to a file or pipe."""
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@dataclass(frozen=True)
class SamplerSettings:
    """Everything that controls one sampling run.

    Attributes
    ----------
    sampler : str
        One of :data:`SAMPLERS`.
    backend : str
        ``"kernel"``, ``"numba"`` or ``"jax"`` (resolved).
    chains, draws, tune : int
        Number of chains, kept draws per chain and warm-up iterations per chain.
    target_accept : float
        Target mean acceptance probability of the step-size adaptation.
    max_treedepth : int
        Maximum depth of the NUTS trajectory tree.
    seed : int
        Master seed; the same seed gives identical draws.
    progressbar : bool
        Whether to display progress.
    cores : int
        Chains run at once (nutpie with Python callbacks is fastest with 1).
    """

    sampler: str
    backend: str
    chains: int
    draws: int
    tune: int
    target_accept: float
    max_treedepth: int
    seed: int
    progressbar: bool
    cores: int = 1

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise FitError(f"sampler={self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        for name in ("chains", "draws", "max_treedepth", "cores", "tune"):
            value = getattr(self, name)
            lowest = 0 if name == "tune" else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
                what = "an integer >= 0" if name == "tune" else "a positive integer"
                raise FitError(f"{name} must be {what}, got {value!r}")
        if isinstance(self.target_accept, bool) or not isinstance(
                self.target_accept, (int, float, np.number)) or not 0 < self.target_accept < 1:
            raise FitError(f"target_accept must be in (0, 1), got {self.target_accept!r}")


@dataclass
class RawSample:
    """Draws and statistics of one run, as NumPy arrays with (chain, draw) leading axes.

    Attributes
    ----------
    draws : dict of str to ndarray
        Stored variables.
    stats : dict of str to ndarray
        Sampler statistics under the common names of the module docstring.
    timing : dict of str to float
        Seconds spent compiling and sampling.
    """

    draws: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    timing: dict[str, float] = field(default_factory=dict)


def stored_variables(built: BuiltModel) -> list[str]:
    """Variables to keep per draw: parameters, correlation factors, full-model effects."""
    dispersion = dispersion_name(built.family)
    names = [FIXEF] + ([dispersion] if dispersion is not None else [])
    for bn in built.names:
        names.append(bn.sd)
        if bn.block.correlated and bn.block.q > 1:
            names += [bn.cor, bn.corr_chol]
        if built.formulation == "full":
            names.append(bn.ranef)
    names += [name for name, _ in structure_variables(built.names)]  # rho_<b>, pacf_<b> ...
    names += [name for name, _ in residual_variables(built.design.residual)]  # rho_residual ...
    return names


def _common_stats(stats: Any, max_treedepth: int) -> dict[str, np.ndarray]:
    """Copy sampler statistics under common names."""
    aliases = {
        "diverging": ("diverging",),
        "tree_depth": ("tree_depth", "depth"),
        "reached_max_treedepth": ("reached_max_treedepth", "maxdepth_reached"),
        "step_size": ("step_size",),
        "n_steps": ("n_steps",),
        "lp": ("lp", "logp"),
        "energy": ("energy",),
        "acceptance_rate": ("acceptance_rate", "mean_tree_accept"),
    }
    out = {}
    for name, candidates in aliases.items():
        for candidate in candidates:
            if candidate in stats:
                out[name] = np.asarray(stats[candidate])
                break
    if "reached_max_treedepth" not in out and "tree_depth" in out:
        out["reached_max_treedepth"] = out["tree_depth"] >= max_treedepth
    if "diverging" in out:
        out["diverging"] = out["diverging"].astype(bool)
    return out


def _raw_sample(trace: Any, names: list[str], settings: SamplerSettings, timing: dict[str, float],
                expand: Callable[[Any], dict[str, np.ndarray]] | None = None) -> RawSample:
    """Draws of ``names`` and the common sampler statistics of an ArviZ trace.

    ``expand`` maps the posterior dataset to the draws of ``names`` where the
    sampler stored something else (the compiled kernel's callbacks store the
    unconstrained vector only, :mod:`hierlm.bayes.kernel_cfunc`).
    """
    posterior = trace["posterior"].to_dataset()
    if expand is not None:
        draws = expand(posterior)
    else:
        draws = {name: np.asarray(posterior[name].values) for name in names}
    return RawSample(
        draws=draws,
        stats=_common_stats(trace["sample_stats"].to_dataset(), settings.max_treedepth),
        timing=timing,
    )


def _run_nutpie(built: BuiltModel, settings: SamplerSettings, names: list[str]) -> RawSample:
    import nutpie

    start = time.perf_counter()
    expand = None  # set where the sampler stores the unconstrained vector only
    patterned = not all(block.structure.is_lme4 for block in built.design.blocks)
    if settings.backend == "kernel" and built.formulation == "full":
        # non-Gaussian scalar-block models: the compiled GLMM kernel (hierlm.bayes.glmm_kernel)
        from hierlm.bayes.glmm_cfunc import compile_glmm_kernel_for_nutpie

        compiled = compile_glmm_kernel_for_nutpie(built, names)
    elif settings.backend == "kernel" and built.design.residual is not None:
        # residual=: compiled priors and transforms, the compiled per-group density; one
        # compiled log posterior for ar1/cs/car1 without random effects (residual_fast)
        from hierlm.bayes.residual_fast import FastResidualDensity, fast_route_applies
        from hierlm.bayes.residual_nutpie import compile_residual_for_nutpie

        compiled = (FastResidualDensity(built).nutpie_model(names) if fast_route_applies(built)
                    else compile_residual_for_nutpie(built, names))
    elif settings.backend == "kernel" and built.formulation == "marginal" and patterned:
        # cs, ar1, toep blocks: the structures' variables in PyMC, the one likelihood as an Op
        from hierlm.bayes.nutpie_adapter import compile_for_nutpie

        with warnings.catch_warnings():  # the likelihood Op is Python: numba's object mode
            warnings.filterwarnings("ignore", message="Numba will use object mode")
            compiled = compile_for_nutpie(built.pymc_model, names)
    elif settings.backend == "kernel" and built.stats is None:
        # nested or crossed factors: the one Gaussian likelihood itself
        from hierlm.bayes.likelihood_model import compile_likelihood_for_nutpie

        compiled = compile_likelihood_for_nutpie(built, names)
    elif settings.backend == "kernel":
        from hierlm.bayes.kernel_cfunc import compile_kernel_for_nutpie

        compiled, expand = compile_kernel_for_nutpie(built, names)
    else:
        from hierlm.bayes.nutpie_adapter import compile_for_nutpie

        compiled = compile_for_nutpie(built.pymc_model, names, mode=settings.backend.upper())
    compiled_at = time.perf_counter()
    # one BLAS thread per chain for the crossed/nested marginal kernel: its LAPACK calls (dense
    # Schur complement) with OpenBLAS's own threads on top of the chains' run up to 80x slower
    # on a busy 2-core machine
    crossed = built.formulation == "marginal" and built.stats is None
    with threadpool_limits(limits=1, user_api="blas") if crossed else nullcontext():
        trace = nutpie.sample(
            compiled,
            draws=settings.draws,
            tune=max(settings.tune, 1),
            chains=settings.chains,
            cores=settings.cores,
            seed=settings.seed,
            save_warmup=False,
            progress_bar=settings.progressbar,
            target_accept=settings.target_accept,
            maxdepth=settings.max_treedepth,
        )
    done = time.perf_counter()
    return _raw_sample(trace, names, settings, {"compile": compiled_at - start, "sample": done - compiled_at},
                       expand)


def _run_pymc(built: BuiltModel, settings: SamplerSettings, names: list[str]) -> RawSample:
    import pymc as pm

    start = time.perf_counter()
    kwargs: dict[str, Any] = {
        "draws": settings.draws,
        "tune": settings.tune,
        "chains": settings.chains,
        "random_seed": settings.seed,
        "progressbar": settings.progressbar,
        "var_names": names,
        "compute_convergence_checks": False,
        "model": built.pymc_model,
    }
    if settings.sampler == "numpyro":
        kwargs["nuts_sampler"] = "numpyro"
        kwargs["nuts"] = {
            "target_accept": settings.target_accept,
            "max_tree_depth": settings.max_treedepth,
            "chain_method": "vectorized",
        }
    else:
        kwargs["nuts_sampler"] = "pymc"
        kwargs["cores"] = min(settings.chains, os.cpu_count() or 1)
        kwargs["nuts"] = {
            "target_accept": settings.target_accept,
            "max_treedepth": settings.max_treedepth,
        }
        mode = "NUMBA" if settings.backend == "kernel" else settings.backend.upper()
        kwargs["compile_kwargs"] = {"mode": mode}
    trace = pm.sample(**kwargs)
    done = time.perf_counter()
    return _raw_sample(trace, names, settings, {"compile": float("nan"), "sample": done - start})


def run_sampler(built: BuiltModel, settings: SamplerSettings) -> RawSample:
    """Sample the posterior of a built model.

    Parameters
    ----------
    built : BuiltModel
        Model and metadata (:func:`hierlm.bayes.build.build_model`).
    settings : SamplerSettings
        Sampler, backend, chains, draws, seed...

    Returns
    -------
    RawSample
        Draws of :func:`stored_variables` and the sampler statistics.

    Raises
    ------
    FitError
        If the requested sampler is not installed, or it returned fewer
        (or non-finite) draws than asked for.
    KeyboardInterrupt
        When sampling was interrupted (Ctrl-C): the sampler has stopped, and
        nothing is returned.
    """
    if settings.sampler not in available_samplers():
        raise FitError(
            f"sampler={settings.sampler!r} is not installed; available: " + ", ".join(available_samplers())
        )
    names = stored_variables(built)
    runner = _run_nutpie if settings.sampler == "nutpie" else _run_pymc
    with _watch_interrupt() as interrupted:
        try:
            raw = runner(built, settings, names)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                "Sampling was interrupted (Ctrl-C); the sampler was stopped and no fit is returned."
            ) from None
    shortfall = _shortfall(raw, settings)
    if interrupted.is_set():
        raise KeyboardInterrupt(
            "Sampling was interrupted (Ctrl-C)" + (f" {shortfall}" if shortfall else "")
            + "; the sampler was stopped and no fit is returned, since a partial posterior "
            "would look finished. Run again (with fewer draws if time is short)."
        )
    if shortfall:
        raise FitError(f"The {settings.sampler} sampler returned an incomplete sample: {shortfall}.")
    return raw


@contextmanager
def _watch_interrupt() -> Iterator[threading.Event]:
    """Set the yielded event when SIGINT arrives, then let the usual handler run.

    Samplers that catch ``KeyboardInterrupt`` and return what they have would
    otherwise hide the interrupt. Outside the main thread (where Python
    delivers no signals) the event is never set.
    """
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        interrupted.set()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _shortfall(raw: RawSample, settings: SamplerSettings) -> str:
    """What is missing from a sample (wrong shape or non-finite draws); empty when complete."""
    shape = raw.draws[FIXEF].shape[:2] if FIXEF in raw.draws else (0, 0)
    if tuple(shape) != (settings.chains, settings.draws):
        return (f"after {shape[1]} of {settings.draws} draws per chain "
                f"({shape[0]} of {settings.chains} chains)")
    bad = [name for name, values in raw.draws.items() if not np.all(np.isfinite(values))]
    if bad:
        return f"with non-finite draws of {', '.join(bad)}"
    return ""
