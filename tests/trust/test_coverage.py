"""Frequentist coverage of the REML Wald intervals with Satterthwaite's df.

Data sets are simulated from a small random-intercept + random-slope model,

    y = 1 + 0.5 x + b0[g] + b1[g] x + e,   (b0, b1) ~ N(0, G),  e ~ N(0, 0.8^2),
    sd(b0) = 1, sd(b1) = 0.5, corr(b0, b1) = 0.3,

on two designs: 10 groups of 6 (balanced; Satterthwaite df = 9 for the
intercept) and 8 unbalanced groups of 3 to 15 rows. About 40 % of these fits
are singular (the slope SD is small for so few groups), which is part of the
realism of the check.

Monte Carlo error. With R replications the count of covering intervals is
Binomial(R, 0.95) when the intervals are exact; the test accepts a rate inside
the central 99 % binomial band (R = 300: about [0.917, 0.977]). The four
per-coefficient checks are at 99 % each (seeded, so deterministic anyway).
The pooled check over all 4 R intervals (not independent across the two
coefficients of one data set, which only widens the true spread a little) is
tighter (about [0.935, 0.965]) and is what gives the test its power: the same
intervals with the normal quantile 1.96 instead of t(df) cover about 0.91
here and fall below the pooled band, which the test asserts, so a wrong df (or
a standard error off by 20 %) would fail it.

``python -m tests.trust.test_coverage [R]`` runs a larger study and prints the
Markdown table recorded in ``bench/results/coverage.md``.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierlm as hl

BETA = np.array([1.0, 0.5])
SD = np.array([1.0, 0.5])
CORR = 0.3
SIGMA = 0.8
LEVEL = 0.95
DESIGNS = {
    "balanced 10 x 6": [6] * 10,
    "unbalanced 8 groups (3-15)": [3, 4, 5, 6, 8, 10, 12, 15],
}


@dataclass
class CoverageRun:
    """Interval hits per replication and coefficient for one design."""

    t_hits: np.ndarray  # (R, 2) Satterthwaite t intervals
    z_hits: np.ndarray  # (R, 2) normal-quantile intervals (deliberately wrong)
    df: np.ndarray  # (R, 2)
    singular: np.ndarray  # (R,)
    seconds: float


def simulate(rng: np.random.Generator, sizes: list[int]) -> pd.DataFrame:
    groups = np.repeat(np.arange(len(sizes)), sizes)
    n = groups.size
    x = rng.uniform(-1.0, 1.0, n)
    cov = np.outer(SD, SD) * np.array([[1.0, CORR], [CORR, 1.0]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=len(sizes))
    y = BETA[0] + BETA[1] * x + b[groups, 0] + b[groups, 1] * x + rng.normal(scale=SIGMA, size=n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in groups]})


def run(sizes: list[int], replications: int, seed: int) -> CoverageRun:
    rng = np.random.default_rng(seed)
    t_hits = np.zeros((replications, 2), dtype=bool)
    z_hits = np.zeros((replications, 2), dtype=bool)
    dfs = np.zeros((replications, 2))
    singular = np.zeros(replications, dtype=bool)
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    clock = time.perf_counter()
    for r in range(replications):
        data = simulate(rng, sizes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hl.errors.SingularFitWarning)
            fit = hl.Model("y ~ x + (x | g)", data).fit(method="reml")
            table = fit.fixef()
            ci = fit.confint(level=LEVEL)
        est, se, df = (table[c].to_numpy() for c in ("estimate", "std_error", "df"))
        t_hits[r] = (ci["lower"].to_numpy() < BETA) & (BETA < ci["upper"].to_numpy())
        z_hits[r] = np.abs(est - BETA) < z * se
        dfs[r] = df
        singular[r] = fit.is_singular
    return CoverageRun(t_hits, z_hits, dfs, singular, time.perf_counter() - clock)


def band(trials: int, p: float = LEVEL, prob: float = 0.99) -> tuple[float, float]:
    """Central ``prob`` band of a Binomial(trials, p) proportion."""
    tail = (1 - prob) / 2
    return (stats.binom.ppf(tail, trials, p) / trials, stats.binom.isf(tail, trials, p) / trials)


@pytest.fixture(scope="module")
def runs() -> dict[str, CoverageRun]:
    return {name: run(sizes, 300, seed=2024 + i) for i, (name, sizes) in enumerate(DESIGNS.items())}


@pytest.mark.slow
@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("coef", [0, 1], ids=["Intercept", "x"])
def test_satterthwaite_wald_interval_covers_at_nominal_rate(runs, design, coef):
    hits = runs[design].t_hits[:, coef]
    lo, hi = band(hits.size)
    assert lo <= hits.mean() <= hi, (design, coef, hits.mean(), (lo, hi))


@pytest.mark.slow
def test_pooled_coverage_is_nominal_and_the_check_has_power(runs):
    t_hits = np.concatenate([r.t_hits.ravel() for r in runs.values()])
    z_hits = np.concatenate([r.z_hits.ravel() for r in runs.values()])
    lo, hi = band(t_hits.size)
    assert lo <= t_hits.mean() <= hi, (t_hits.mean(), (lo, hi))
    # The same estimates and SEs with a normal quantile (df = infinity) under-cover by
    # about 4 points here: the pooled band must reject them, or the check is toothless.
    assert z_hits.mean() < lo, (z_hits.mean(), lo)
    # Satterthwaite's df are small and finite here (about G - 1 for the intercept).
    df = np.concatenate([r.df for r in runs.values()])
    assert np.all(np.isfinite(df)) and 2.0 < np.median(df) < 20.0


def markdown(replications: int) -> str:
    lines = [
        "# Coverage of REML Wald intervals with Satterthwaite df",
        "",
        "Generated by `python -m tests.trust.test_coverage "
        f"{replications}` (seeded). Model `y ~ x + (x | g)`, truth beta = (1, 0.5), "
        f"sd = (1, 0.5), corr = {CORR}, sigma = {SIGMA}; nominal level {LEVEL:.0%}.",
        f"99 % binomial band for one rate with R = {replications}: "
        "[{:.3f}, {:.3f}].".format(*band(replications)),
        "",
        "| design | R | singular fits | mean df (Int, x) | coverage Intercept | coverage x "
        "| z-interval Intercept | z-interval x | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (name, sizes) in enumerate(DESIGNS.items()):
        res = run(sizes, replications, seed=10_000 + i)
        t, z, df = res.t_hits.mean(0), res.z_hits.mean(0), res.df.mean(0)
        lines.append(
            f"| {name} | {replications} | {res.singular.mean():.1%} | {df[0]:.2f}, {df[1]:.2f} "
            f"| {t[0]:.3f} | {t[1]:.3f} | {z[0]:.3f} | {z[1]:.3f} | {res.seconds:.1f} |")
    lines += [
        "",
        "The z-interval columns use the same estimates and standard errors with the normal",
        "quantile instead of t(df): the under-coverage that Satterthwaite's df correct.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
