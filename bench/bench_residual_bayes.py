"""Benchmark of NUTS with a residual structure: pigs AR(1), hierlm against brms.

Usage (from the repository root)::

    .venv/bin/python bench/bench_residual_bayes.py               # writes bench/results/residual_bayes.md
    .venv/bin/python bench/bench_residual_bayes.py --repeats 3   # warm runs (median)

The pig growth data (``../shared/data/pigs.csv``, 48 pigs x 9 weeks),
``weight ~ week`` with ``residual="ar1(week | id)"`` (and the same with
``(1 | id)``), 4 chains x 1000 draws after 1000 warm-up, default priors. Each
run is a fresh Python process that imports hierlm, builds, compiles, samples
and post-processes (group effects, replicates, per-pig log-likelihoods):

* cold: every compile cache empty (PyTensor's ``base_compiledir`` and numba's
  ``NUMBA_CACHE_DIR`` in a new temporary directory);
* warm: the same directory after one unmeasured run.

Reported: the fit's own total (``fit.timing["total"]``: build to DataTree),
the whole process's wall clock and CPU seconds, the smallest bulk ESS over
the coefficients, sigma and ``rho_residual`` (and ``sd_id``), and that ESS per
second of the fit's total. brms's numbers are those of the committed fixture
(``tests/fixtures/brms/pigs_residual_brms.json``: ``ar(time = week, gr = id,
cov = TRUE)``, the same 4 x 1000, rstan; compile and sample seconds of that
run, its smallest bulk ESS over the same parameters), not re-run here: an R
run takes 7-15 minutes on the loaded machine. The goal of issue 12 is under
15 s warm for the AR(1) model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "residual_bayes.md"
FIXTURE = ROOT / "tests" / "fixtures" / "brms" / "pigs_residual_brms.json"
PIGS = ROOT.parent / "shared" / "data" / "pigs.csv"
PYTHON = sys.executable

MODELS = {"ar1": "weight ~ week", "ar1_ri": "weight ~ week + (1 | id)"}

CHILD = """
import json, time, warnings
import numpy as np
import pandas as pd
import hierlm as hl
from arviz_stats.base.array import array_stats
warnings.simplefilter("ignore")
data = pd.read_csv({pigs!r})
fit = hl.Model({formula!r}, data, residual="ar1(week | id)").fit(
    "nuts", chains=4, draws=1000, tune=1000, random_seed=1, progressbar=False)
post = fit.idata["posterior"]
ess = {{}}
for name in ["fixef", "sigma", "rho_residual"] + (["sd_id"] if "sd_id" in post else []):
    values = post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
    ess[name] = float(np.min(array_stats.ess(values, chain_axis=0, draw_axis=1, method="bulk")))
print("RESULT" + json.dumps({{"ess": ess, "timing": fit.timing,
                             "rho": float(post["rho_residual"].mean())}}))
"""


def _run(formula: str, cache: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache / "numba"),
               PYTENSOR_FLAGS=f"base_compiledir={cache / 'pytensor'}")
    code = textwrap.dedent(CHILD.format(pigs=str(PIGS), formula=formula))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    out = json.loads(line[len("RESULT"):])
    out["wall"] = wall
    out["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="warm runs per model (median)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    brms = json.loads(FIXTURE.read_text())["models"] if FIXTURE.is_file() else {}
    rows = []
    for name in args.models:
        cache = Path(tempfile.mkdtemp(prefix="hierlm_bench_residual_"))
        try:
            load_before = _load()
            cold = _run(MODELS[name], cache)
            warm_runs = [_run(MODELS[name], cache) for _ in range(args.repeats)]
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        warm = sorted(warm_runs, key=lambda r: r["timing"]["total"])[len(warm_runs) // 2]
        for kind, result in (("cold", cold), ("warm", warm)):
            total = result["timing"]["total"]
            ess = min(result["ess"].values())
            rows.append((name, f"hierlm {kind}", total, result["wall"], result["cpu"], ess,
                         ess / total, result["rho"]))
            print(rows[-1], flush=True)
        if name in brms:
            ref = brms[name]
            keys = [k for k in ("b_Intercept", "b_week", "sigma", "ar[1]", "sd_id__Intercept")
                    if k in ref["ess_bulk"]]
            ess = min(ref["ess_bulk"][k] for k in keys)
            rows.append((name, "brms (fixture)", ref["seconds"], float("nan"), float("nan"), ess,
                         ess / ref["seconds"], ref["summary"]["ar[1]"]["mean"]))
        print(f"load average at the start: {load_before}, at the end: {_load()}", flush=True)
    lines = [
        "# NUTS with a residual structure: pigs AR(1)",
        "",
        f"Made by `bench/bench_residual_bayes.py` on {platform.node()} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average at the end "
        f"{_load()} (the machine is shared: wall seconds are inflated, CPU seconds less so).",
        "",
        "`weight ~ week` (`ar1`) and `weight ~ week + (1 | id)` (`ar1_ri`) with "
        "`residual=\"ar1(week | id)\"`, 4 chains x 1000 draws after 1000 warm-up. "
        "*fit s*: `fit.timing['total']` (build, compile, sample, post-process); *process*: the "
        "whole fresh Python process (imports included), wall and CPU. brms: the fixture's "
        "compile + sample seconds (rstan, same settings), not re-run. Goal: ar1 under 15 s warm.",
        "",
        "| model | run | fit s | process wall s | process CPU s | min bulk ESS | ESS/s | rho |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    def seconds(value: float) -> str:
        return "-" if value != value else f"{value:.1f}"  # NaN: not measured (brms)

    for name, kind, total, wall, cpu, ess, rate, rho in rows:
        lines.append(f"| {name} | {kind} | {total:.1f} | {seconds(wall)} | {seconds(cpu)} | "
                     f"{ess:.0f} | {rate:.1f} | {rho:.4f} |")
    by_model: dict[str, dict[str, float]] = {}
    for name, kind, *_numbers, rate, _rho in rows:
        by_model.setdefault(name, {})[kind] = rate
    lines.append("")
    for name, rates in by_model.items():
        if "brms (fixture)" in rates and "hierlm warm" in rates:
            lines.append(f"* {name}: hierlm warm / brms ESS per second = "
                         f"{rates['hierlm warm'] / rates['brms (fixture)']:.0f}x.")
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
