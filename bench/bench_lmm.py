"""Benchmark hierlm's ML/REML fits against lme4.

Usage (from the repository root)::

    .venv/bin/python bench/bench_lmm.py            # all models, writes bench/results/lmm.md
    .venv/bin/python bench/bench_lmm.py sleepstudy  # a subset

Each hierlm fit runs in a fresh Python process (so its peak resident memory is
measured alone): data are loaded first, then ``Model(formula, data).fit()`` is
timed, best of several runs (model building + cross-products + optimisation; the Satterthwaite
table is computed lazily and not included, as lme4's ``lmer`` does not compute
it either). lme4 runs through ``Rscript -e`` when ``Rscript`` is on PATH; the
data are read first and only the ``lmer`` call is timed. Both use the same
CSV data, with factor levels sorted as in ``tests/fixtures/lme4``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "lmm.md"
PYTHON = sys.executable

MODELS = {
    "sleepstudy": {
        "formula": "Reaction ~ Days + (Days | Subject)",
        "r_formula": "Reaction ~ Days + (Days | Subject)",
        "factors": ["Subject"],
        "repeat": 20,
        "r_repeat": 20,
    },
    "InstEval": {
        "formula": "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
        "r_formula": "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
        "factors": ["s", "d", "studage", "lectage", "service", "dept"],
        "repeat": 3,
        "r_repeat": 1,
    },
    "sim1M": {
        "formula": "y ~ x + (x | g)",
        "r_formula": "y ~ x + (x | g)",
        "factors": ["g"],
        "repeat": 3,
        "r_repeat": 1,
    },
}

_HIERLM_CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np
sys.path.insert(0, {root!r})
import hierlm.datasets as datasets
from hierlm.model import Model
name, formula, repeat = {name!r}, {formula!r}, {repeat!r}
if name == "sim1M":
    import pandas as pd
    data = pd.read_csv({sim_csv!r})
    data["g"] = pd.Categorical(data["g"])
else:
    data = datasets.load(name)
times = []
for _ in range(repeat):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = Model(formula, data).fit(method="reml")
    times.append(time.perf_counter() - start)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": min(times), "peak_mb": peak_mb, "criterion": fit.criterion,
                  "evaluations": fit.fit_record.n_evaluations,
                  "theta": fit.theta.tolist()}}))
"""

_R_CHILD = r"""
suppressPackageStartupMessages(library(lme4))
path <- "{path}"
d <- read.csv(if (grepl("[.]gz$", path)) gzfile(path) else path, stringsAsFactors = FALSE)
for (v in c({factors})) {{
  x <- d[[v]]
  lev <- if (is.numeric(x)) sort(unique(x)) else sort(unique(x), method = "radix")
  d[[v]] <- factor(x, levels = lev)
}}
times <- numeric(0)
for (i in seq_len({repeat})) {{
  t0 <- proc.time()[["elapsed"]]
  m <- lmer({formula}, data = d, REML = TRUE)
  times <- c(times, proc.time()[["elapsed"]] - t0)
}}
cat(sprintf('{{"seconds": %.6f, "criterion": %.10f}}\n', min(times), REMLcrit(m)))
"""


def simulate_1m(path: Path, seed: int = 20240601) -> None:
    """Write 1,000,000 rows, 10,000 groups, a correlated random intercept and slope."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n, groups = 1_000_000, 10_000
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    effects = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.3], [0.3, 0.5]], size=groups)
    y = 2.0 + 0.5 * x + effects[g, 0] + effects[g, 1] * x + rng.normal(scale=1.5, size=n)
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(path, index=False)


def run_hierlm(name: str, spec: dict, sim_csv: Path) -> dict:
    code = _HIERLM_CHILD.format(root=str(ROOT), name=name, formula=spec["formula"],
                                repeat=spec["repeat"], sim_csv=str(sim_csv))
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_lme4(name: str, spec: dict, sim_csv: Path) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    data_dir = ROOT / "hierlm" / "datasets" / "data"
    path = {"sleepstudy": data_dir / "sleepstudy.csv",
            "InstEval": data_dir / "InstEval.csv.gz"}.get(name, sim_csv)
    code = _R_CHILD.format(path=path, factors=", ".join(f'"{f}"' for f in spec["factors"]),
                           repeat=spec["r_repeat"], formula=spec["r_formula"])
    out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(selected: list[str]) -> None:
    names = selected or list(MODELS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sim_csv = Path(tmp) / "sim1M.csv"
        if "sim1M" in names:
            simulate_1m(sim_csv)
        for name in names:
            spec = MODELS[name]
            ours = run_hierlm(name, spec, sim_csv)
            theirs = run_lme4(name, spec, sim_csv)
            ratio = theirs["seconds"] / ours["seconds"] if theirs else float("nan")
            row = {"model": name, "formula": spec["formula"], "hierlm_s": ours["seconds"],
                   "lme4_s": theirs["seconds"] if theirs else None, "ratio": ratio,
                   "peak_mb": ours["peak_mb"], "evaluations": ours["evaluations"],
                   "criterion_diff": (ours["criterion"] - theirs["criterion"]) if theirs else None}
            rows.append(row)
            lme4_text = f"{row['lme4_s']:.3f}" if theirs else "n/a"
            print(f"{name:10s} hierlm {ours['seconds']:8.3f} s   lme4 {lme4_text:>8s} s   "
                  f"lme4/hierlm {ratio:6.1f}   peak {ours['peak_mb']:7.0f} MB   "
                  f"evaluations {ours['evaluations']}", flush=True)
    write_report(rows)


def write_report(rows: list[dict]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [
        "# ML/REML fits: hierlm vs lme4",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} at the end. Produced by `bench/bench_lmm.py`.",
        "",
        "hierlm: `Model(formula, data).fit(method=\"reml\")` (model building, cross-products, "
        "optimisation; one BLAS thread), in a fresh process whose peak resident memory "
        "(data included) is reported. lme4: only the `lmer(..., REML = TRUE)` call, "
        "default control. Best of 20 runs each for sleepstudy; InstEval and sim1M: best "
        "of 3 for hierlm, one run of lme4 (15-45 s each).",
        "",
        "| model | formula | hierlm s | lme4 s | lme4 / hierlm | hierlm peak MB | "
        "hierlm evaluations | REML crit. hierlm - lme4 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lme4 = f"{r['lme4_s']:.3f}" if r["lme4_s"] is not None else "n/a"
        diff = f"{r['criterion_diff']:.2e}" if r["criterion_diff"] is not None else "n/a"
        formula = r["formula"].replace("|", "\\|")
        lines.append(f"| {r['model']} | `{formula}` | {r['hierlm_s']:.3f} | {lme4} | "
                     f"{r['ratio']:.1f} | {r['peak_mb']:.0f} | {r['evaluations']} | {diff} |")
    lines.append("")
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
