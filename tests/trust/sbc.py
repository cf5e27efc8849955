"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari and Gelman 2018).

If parameters are drawn from the prior, data from the model given them, and
the sampler draws from the exact posterior, then the rank of each true
parameter among L independent posterior draws is uniform on {0, ..., L}.
Any error in the likelihood, the priors (including the LKJ transform and its
Jacobian), the constraining transforms or the sampler shows up as non-uniform
ranks: a shifted posterior gives a slope, an over/under-dispersed one a U or
a hump.

Used by ``tests/trust/test_sbc.py`` (reduced, CI) and ``bench/bench_sbc.py``
(full study, ``bench/results/sbc.md``).

A second model checks the binomial full formulation (:func:`run_binomial_sbc`):
``cbind(s, f) ~ x + (1 | g)`` on the same 8 x 6 design with 10 trials per
row, ``b0, b1 ~ normal(0, 1)``, ``sd(u0) ~ half_normal(1)``, logit link.

The model is a random intercept and slope on 8 groups of 6 rows,

    y = b0 + b1 x + u0[g] + u1[g] x + e,

with explicit proper priors (passed with ``priors=``)::

    b0, b1       ~ normal(0, 1)
    sd(u0), sd(u1) ~ half_normal(1)
    corr(u0, u1) ~ LKJ(2)      (for 2 x 2: (r + 1) / 2 ~ Beta(2, 2))
    sigma        ~ half_normal(1)

Posterior draws are thinned (every ``thin``-th draw of each chain) to reduce
autocorrelation, which would otherwise make ranks non-uniform even for an
exact sampler; the number of effective draws per chain is reported alongside.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

import hierlm as hl
from hierlm.bayes.naming import FIXEF, SIGMA
from hierlm.bayes.priors import Prior

__all__ = ["PRIORS", "PARAMETERS", "FORMULA", "SbcRun", "design_frame", "draw_prior", "simulate",
           "run_sbc", "uniformity_pvalue", "binned_counts", "BINOMIAL_FORMULA", "BINOMIAL_PRIORS",
           "BINOMIAL_PARAMETERS", "TRIALS", "binomial_replication", "run_binomial_sbc"]

FORMULA = "y ~ x + (x | g)"
PRIORS = {
    "Intercept": Prior("normal", mu=0.0, sigma=1.0),
    "b": Prior("normal", mu=0.0, sigma=1.0),
    "sd": Prior("half_normal", sigma=1.0),
    "cor": Prior("lkj", eta=2.0),
    "sigma": Prior("half_normal", sigma=1.0),
}
LKJ_ETA = 2.0
PARAMETERS = ["b_Intercept", "b_x", "sd_Intercept", "sd_x", "cor", "sigma"]


def design_frame(n_groups: int = 8, per_group: int = 6) -> pd.DataFrame:
    """The fixed design: x spread evenly in [-1, 1] within each group."""
    groups = np.repeat(np.arange(n_groups), per_group)
    x = np.tile(np.linspace(-1.0, 1.0, per_group), n_groups)
    return pd.DataFrame({"x": x, "g": [f"g{i}" for i in groups], "y": 0.0})


def draw_prior(rng: np.random.Generator) -> dict[str, float]:
    """One draw of every parameter from the priors above."""
    return {
        "b_Intercept": rng.normal(0.0, 1.0),
        "b_x": rng.normal(0.0, 1.0),
        "sd_Intercept": abs(rng.normal(0.0, 1.0)),
        "sd_x": abs(rng.normal(0.0, 1.0)),
        "cor": 2.0 * rng.beta(LKJ_ETA, LKJ_ETA) - 1.0,
        "sigma": abs(rng.normal(0.0, 1.0)),
    }


def simulate(rng: np.random.Generator, frame: pd.DataFrame, truth: dict[str, float]) -> pd.DataFrame:
    """Data from the model at ``truth``."""
    codes = pd.factorize(frame["g"])[0]
    sd = np.array([truth["sd_Intercept"], truth["sd_x"]])
    corr = np.array([[1.0, truth["cor"]], [truth["cor"], 1.0]])
    chol = np.linalg.cholesky(corr) * sd[:, None]
    u = rng.normal(size=(codes.max() + 1, 2)) @ chol.T
    x = frame["x"].to_numpy()
    y = (truth["b_Intercept"] + truth["b_x"] * x + u[codes, 0] + u[codes, 1] * x
         + rng.normal(0.0, truth["sigma"], size=x.size))
    return frame.assign(y=y)


def posterior(fit: object) -> dict[str, np.ndarray]:
    """(chain, draw) draws of each tested parameter."""
    post = fit.idata["posterior"]  # type: ignore[attr-defined]
    (bn,) = fit.names  # type: ignore[attr-defined]
    beta = np.asarray(post[FIXEF].values)
    sd = np.asarray(post[bn.sd].values)
    return {
        "b_Intercept": beta[..., 0], "b_x": beta[..., 1],
        "sd_Intercept": sd[..., 0], "sd_x": sd[..., 1],
        "cor": np.asarray(post[bn.cor].values).reshape(beta.shape[:2]),
        "sigma": np.asarray(post[SIGMA].values),
    }


@dataclass
class SbcRun:
    """Ranks and diagnostics of one SBC study."""

    formulation: str
    ranks: pd.DataFrame  # (replications, parameters), values in 0..n_ranks-1
    shifted_ranks: pd.DataFrame  # ranks of truth + 1 posterior SD (must be non-uniform)
    n_ranks: int  # L + 1
    divergent_fits: int
    min_ess_per_chain: np.ndarray  # per replication, over the tested parameters
    seconds: float


def run_sbc(replications: int, formulation: str, draws: int, tune: int, chains: int,
            thin: int, seed: int, n_thinned: int | None = None) -> SbcRun:
    """Run ``replications`` SBC iterations with NUTS in the given formulation.

    Each iteration keeps every ``thin``-th draw of each chain, pools the chains
    and uses the first ``n_thinned`` (default: all) as the L posterior draws.
    """
    from hierlm.bayes.diagnostics import min_ess

    rng = np.random.default_rng(seed)
    frame = design_frame()
    available = chains * len(range(0, draws, thin))
    n_thinned = available if n_thinned is None else n_thinned
    if n_thinned > available:
        raise ValueError(f"only {available} thinned draws, asked for {n_thinned}")
    ranks, shifted, ess, divergent = [], [], [], 0
    clock = time.perf_counter()
    for r in range(replications):
        truth = draw_prior(rng)
        data = simulate(rng, frame, truth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hl.errors.HierlmWarning)
            fit = hl.Model(FORMULA, data, priors=PRIORS).fit(
                "nuts", draws=draws, tune=tune, chains=chains, formulation=formulation,
                random_seed=seed * 100_003 + r, progressbar=False, log_likelihood=False)
        divergent += int(fit.diagnostics.divergences > 0)
        draws_by_name = posterior(fit)
        ess.append(min(min_ess(v[..., None]) for v in draws_by_name.values()) / chains)
        row, row_shifted = {}, {}
        for name, values in draws_by_name.items():
            kept = values[:, ::thin].reshape(-1)[:n_thinned]
            row[name] = int(np.sum(kept < truth[name]))
            row_shifted[name] = int(np.sum(kept < truth[name] + kept.std()))
        ranks.append(row)
        shifted.append(row_shifted)
    return SbcRun(formulation, pd.DataFrame(ranks)[PARAMETERS],
                  pd.DataFrame(shifted)[PARAMETERS], n_thinned + 1, divergent, np.array(ess),
                  time.perf_counter() - clock)


BINOMIAL_FORMULA = "cbind(s, f) ~ x + (1 | g)"
BINOMIAL_PRIORS = {"b": Prior("normal", sigma=1.0), "Intercept": Prior("normal", sigma=1.0),
                   "sd": Prior("half_normal", sigma=1.0)}
BINOMIAL_PARAMETERS = ["b_Intercept", "b_x", "sd_Intercept"]
TRIALS = 10


def binomial_replication(rng: np.random.Generator, frame: pd.DataFrame) -> tuple[dict[str, float],
                                                                                pd.DataFrame]:
    """Truth from the binomial priors and successes out of :data:`TRIALS` given it."""
    truth = {"b_Intercept": rng.normal(), "b_x": rng.normal(), "sd_Intercept": abs(rng.normal())}
    codes = pd.factorize(frame["g"])[0]
    u = rng.normal(0.0, truth["sd_Intercept"], size=codes.max() + 1)
    eta = truth["b_Intercept"] + truth["b_x"] * frame["x"].to_numpy() + u[codes]
    successes = rng.binomial(TRIALS, 1.0 / (1.0 + np.exp(-eta)))
    return truth, frame.drop(columns="y", errors="ignore").assign(s=successes, f=TRIALS - successes)


def run_binomial_sbc(replications: int, draws: int, tune: int, chains: int, thin: int, seed: int,
                     n_thinned: int, centred_information: float | None = None) -> SbcRun:
    """SBC ranks of the binomial full formulation (the model above).

    ``centred_information`` overrides the rule that centres a block
    (:data:`hierlm.bayes.glmm_setup.CENTRED_INFORMATION`; 0 centres every block,
    ``inf`` none); None keeps the default, which centres this design's block.
    """
    import hierlm.bayes.glmm_setup as setup
    from hierlm.bayes.diagnostics import min_ess

    default = setup.CENTRED_INFORMATION
    if centred_information is not None:
        setup.CENTRED_INFORMATION = centred_information
    rng = np.random.default_rng(seed)
    frame = design_frame()
    ranks, shifted, ess, divergent = [], [], [], 0
    clock = time.perf_counter()
    try:
        for r in range(replications):
            truth, data = binomial_replication(rng, frame)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", hl.errors.HierlmWarning)
                fit = hl.Model(BINOMIAL_FORMULA, data, family="binomial",
                               priors=BINOMIAL_PRIORS).fit(
                    "nuts", draws=draws, tune=tune, chains=chains, random_seed=seed * 100_003 + r,
                    progressbar=False, log_likelihood=False, posterior_predictive=False)
            divergent += int(fit.diagnostics.divergences > 0)
            post = fit.idata["posterior"]
            beta = np.asarray(post[FIXEF].values)
            (bn,) = fit.names
            values = {"b_Intercept": beta[..., 0], "b_x": beta[..., 1],
                      "sd_Intercept": np.asarray(post[bn.sd].values)[..., 0]}
            ess.append(min(min_ess(v[..., None]) for v in values.values()) / chains)
            row, row_shifted = {}, {}
            for name, v in values.items():
                kept = v[:, ::thin].reshape(-1)[:n_thinned]
                row[name] = int(np.sum(kept < truth[name]))
                row_shifted[name] = int(np.sum(kept < truth[name] + kept.std()))
            ranks.append(row)
            shifted.append(row_shifted)
    finally:
        setup.CENTRED_INFORMATION = default
    return SbcRun("full (binomial)", pd.DataFrame(ranks)[BINOMIAL_PARAMETERS],
                  pd.DataFrame(shifted)[BINOMIAL_PARAMETERS], n_thinned + 1, divergent, np.array(ess),
                  time.perf_counter() - clock)


def binned_counts(ranks: np.ndarray, n_ranks: int, bins: int) -> np.ndarray:
    """Counts of ranks (0..n_ranks-1) in ``bins`` equal bins (n_ranks divisible by bins)."""
    if n_ranks % bins:
        raise ValueError(f"{n_ranks} rank values do not split into {bins} equal bins")
    return np.bincount(np.asarray(ranks) // (n_ranks // bins), minlength=bins)


def uniformity_pvalue(ranks: np.ndarray, n_ranks: int, bins: int) -> float:
    """Pearson chi-square test of uniform ranks over equal bins (``bins - 1`` df)."""
    return float(stats.chisquare(binned_counts(ranks, n_ranks, bins)).pvalue)
