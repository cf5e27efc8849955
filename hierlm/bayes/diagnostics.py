"""MCMC diagnostics as pure functions on arrays, and the warning raised after a fit.

Thresholds (Vehtari, Gelman, Simpson, Carpenter and Buerkner 2021, "Rank-
normalization, folding, and localization: an improved R-hat", Bayesian
Analysis 16(2), and Stan's defaults):

* any divergent transition after warm-up;
* rank-normalised split R-hat above 1.01;
* bulk or tail effective sample size below 100 per chain (Vehtari et al.
  recommend at least 100 per chain for R-hat and ESS estimates to be
  reliable, i.e. 400 with four chains);
* any transition that stopped at the maximum tree depth (an efficiency
  problem rather than a bias, but one worth knowing about);
* a check that could not be made: R-hat needs at least two chains, R-hat
  and ESS need at least four draws per chain, and neither exists for draws
  that are constant or not finite. A sample too small to be checked is
  reported as a problem, never passed silently.

Every function here takes plain NumPy arrays with leading ``(chain, draw)``
axes and returns plain numbers or arrays, so they can be tested without a
sampler.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from arviz_base import rcParams
from arviz_stats.base.array import array_stats

from hierlm.core.warn import PACKAGE_DIR
from hierlm.errors import SamplingWarning
from hierlm.results.display import html_report

__all__ = [
    "RHAT_MAX",
    "ESS_PER_CHAIN_MIN",
    "MIN_DRAWS",
    "count_true",
    "max_rhat",
    "min_ess",
    "DiagnosticReport",
    "diagnose",
    "warn_if_problems",
]

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
MIN_DRAWS = 4  # fewest draws per chain for (split) R-hat and ESS


def count_true(flags: np.ndarray | None) -> int:
    """Number of True entries (divergences, tree-depth hits); 0 for None."""
    return 0 if flags is None else int(np.count_nonzero(flags))


def _as_chain_draw_matrix(draws: np.ndarray) -> np.ndarray:
    """Reshape (chain, draw, ...) to (chain, draw, k)."""
    draws = np.asarray(draws, dtype=float)
    return draws.reshape(draws.shape[0], draws.shape[1], -1)


def max_rhat(draws: np.ndarray) -> float:
    """Largest rank-normalised split R-hat over the trailing axes of (chain, draw, ...) draws."""
    with np.errstate(invalid="ignore", divide="ignore"):  # constant draws: NaN, reported by diagnose
        values = np.asarray(array_stats.rhat(_as_chain_draw_matrix(draws), chain_axis=0, draw_axis=1))
    finite = values[np.isfinite(values)]
    return float(np.max(finite)) if finite.size else float("nan")


def min_ess(draws: np.ndarray, method: str = "bulk") -> float:
    """Smallest effective sample size (``"bulk"`` or ``"tail"``) over the trailing axes.

    The tail ESS is ArviZ's: the smaller of the quantile ESS at the two tails
    of the equal-tailed interval at ``rcParams["stats.ci_prob"]``.
    """
    prob = float(rcParams["stats.ci_prob"]) if method == "tail" else None
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.asarray(array_stats.ess(
            _as_chain_draw_matrix(draws), chain_axis=0, draw_axis=1, method=method, prob=prob
        ))
    finite = values[np.isfinite(values)]
    return float(np.min(finite)) if finite.size else float("nan")


@dataclass
class DiagnosticReport:
    """Outcome of the checks after a fit.

    Attributes
    ----------
    divergences : int
        Divergent transitions after warm-up.
    treedepth_hits : int
        Transitions that reached the maximum tree depth.
    rhat : dict
        Largest R-hat per variable.
    ess_bulk, ess_tail : dict
        Smallest bulk / tail ESS per variable.
    n_chains, n_draws : int
        Shape of the sample.
    problems : list of str
        One sentence per failed check (empty when all pass).
    """

    divergences: int
    treedepth_hits: int
    rhat: dict[str, float]
    ess_bulk: dict[str, float]
    ess_tail: dict[str, float]
    n_chains: int
    n_draws: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.problems

    def table(self) -> pd.DataFrame:
        """Largest R-hat and smallest bulk/tail ESS per variable."""
        names = list(dict.fromkeys([*self.rhat, *self.ess_bulk, *self.ess_tail]))
        return pd.DataFrame({"r_hat": [self.rhat.get(n, np.nan) for n in names],
                             "ess_bulk": [self.ess_bulk.get(n, np.nan) for n in names],
                             "ess_tail": [self.ess_tail.get(n, np.nan) for n in names]},
                            index=pd.Index(names, name="variable"))

    def _lines(self) -> list[str]:
        worst = max(self.rhat.values(), default=float("nan"))
        low = min(self.ess_bulk.values(), default=float("nan"))
        lines = [f"MCMC diagnostics ({self.n_chains} chains x {self.n_draws} draws): "
                 + ("no problems" if self.ok else f"{len(self.problems)} problem(s)"),
                 f"{self.divergences} divergent transition(s), {self.treedepth_hits} at the maximum "
                 f"tree depth; max R-hat {worst:.3f}, min bulk ESS {low:.0f}"]
        return lines + [f"- {problem}" for problem in self.problems]

    def __repr__(self) -> str:
        return "\n".join(self._lines())

    def _repr_html_(self) -> str:
        """The checks and the per-variable table, for notebooks."""
        lines = self._lines()
        return html_report(lines[:2], {"Per variable": self.table()}, notes=lines[2:])


def diagnose(
    draws: Mapping[str, np.ndarray],
    diverging: np.ndarray | None,
    reached_max_treedepth: np.ndarray | None,
    formulation: str,
    target_accept: float,
    other_available: bool = True,
) -> DiagnosticReport:
    """Run every check on a sample.

    Parameters
    ----------
    draws : mapping of str to ndarray
        Posterior draws, each shaped (chain, draw, ...).
    diverging, reached_max_treedepth : ndarray of bool or None
        Sampler statistics, (chain, draw).
    formulation : str
        ``"full"`` or ``"marginal"`` (the hint suggests the other one).
    target_accept : float
        The target acceptance rate used (the hint suggests a higher one).
    other_available : bool
        Whether the other formulation can fit this model; the hints suggest it only then
        (the marginal one needs every random-effect term on one grouping factor).

    Returns
    -------
    DiagnosticReport
        Numbers and problem sentences, each with a concrete remedy.
    """
    first = next(iter(draws.values()))
    n_chains, n_draws = int(first.shape[0]), int(first.shape[1])
    rhat, bulk, tail = {}, {}, {}
    for name, values in draws.items():
        if n_chains > 1 and n_draws >= MIN_DRAWS:
            rhat[name] = max_rhat(values)
        if n_draws >= MIN_DRAWS:
            bulk[name] = min_ess(values, "bulk")
            tail[name] = min_ess(values, "tail")
    report = DiagnosticReport(
        divergences=count_true(diverging),
        treedepth_hits=count_true(reached_max_treedepth),
        rhat=rhat,
        ess_bulk=bulk,
        ess_tail=tail,
        n_chains=n_chains,
        n_draws=n_draws,
    )
    report.problems.extend(_not_checked(n_chains, n_draws, list(draws), rhat, bulk, tail))
    other = "marginal" if formulation == "full" else "full"
    higher = min(0.99, max(0.95, target_accept + 0.1))
    total = n_chains * n_draws
    if report.divergences:
        hint = f"raise target_accept (e.g. {higher:.2f})"
        if formulation == "full" and other_available:
            hint += ", or use formulation='marginal'"
        report.problems.append(
            f"{report.divergences} of {total} transitions diverged: the posterior may be biased; {hint}."
        )
    bad_rhat = {k: v for k, v in rhat.items() if v > RHAT_MAX}
    if bad_rhat:
        listed = ", ".join(f"{k} ({v:.3f})" for k, v in bad_rhat.items())
        report.problems.append(
            f"R-hat above {RHAT_MAX} for {listed}: chains disagree; run more tune and draws "
            f"(e.g. tune={2 * max(n_draws, 1000)})"
            + (f" or try formulation='{other}'." if other_available else ".")
        )
    floor = ESS_PER_CHAIN_MIN * n_chains
    low = {k: min(bulk[k], tail[k]) for k in bulk if min(bulk[k], tail[k]) < floor}
    if low:
        listed = ", ".join(f"{k} ({v:.0f})" for k, v in low.items())
        report.problems.append(
            f"effective sample size below {floor} ({ESS_PER_CHAIN_MIN} per chain) for {listed}: "
            "increase draws" + (f", or try formulation='{other}'." if other_available else ".")
        )
    if report.treedepth_hits:
        report.problems.append(
            f"{report.treedepth_hits} of {total} transitions hit the maximum tree depth: "
            "sampling is inefficient; raise max_treedepth"
            + (f" or try formulation='{other}'." if other_available else ".")
        )
    return report


def _not_checked(n_chains: int, n_draws: int, names: list[str], rhat: Mapping[str, float],
                 bulk: Mapping[str, float], tail: Mapping[str, float]) -> list[str]:
    """Sentences for the checks a sample is too small (or too degenerate) to allow."""
    if n_draws < MIN_DRAWS:
        return [f"only {n_draws} draw(s) per chain: R-hat and the effective sample size need at "
                f"least {MIN_DRAWS}, so convergence was not checked; run more draws (e.g. draws=1000)."]
    out = []
    if n_chains < 2:
        out.append(f"{n_chains} chain only: R-hat compares chains, so convergence was not checked; "
                   "run chains=4.")
    failed = [name for name in names
              if not (np.isfinite(bulk[name]) and np.isfinite(tail[name])
                      and (n_chains < 2 or np.isfinite(rhat[name])))]
    if failed:
        out.append(f"R-hat / effective sample size could not be computed for {', '.join(failed)} "
                   "(draws constant or not finite): those variables were not checked.")
    return out


def warn_if_problems(report: DiagnosticReport, stacklevel: int = 3) -> None:
    """Emit one :class:`~hierlm.errors.SamplingWarning` listing every failed check.

    The warning names the first caller outside hierlm (``stacklevel`` is kept
    for callers that pass it, and no longer used).
    """
    if report.problems:
        message = "MCMC diagnostics: " + " ".join(report.problems)
        warnings.warn(message, SamplingWarning, skip_file_prefixes=(PACKAGE_DIR,))
