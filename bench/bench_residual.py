"""Benchmark hierlm's residual covariance structures against nlme::gls (REML).

Usage (from the repository root)::

    .venv/bin/python bench/bench_residual.py                 # everything, writes bench/results/residual.md
    .venv/bin/python bench/bench_residual.py --data pigs     # one data set
    .venv/bin/python bench/bench_residual.py --structures cs ar1 --cap 120

``weight ~ week`` by REML with seven residual structures, on

* **pigs**: the pig growth data of the lecture notes (48 pigs x 9 weeks, 432 rows), read from
  ``$HIERLM_DATA_PATH/pigs.csv`` or ``../shared/data/pigs.csv`` next to the repository;
* **mmrm5000**: a simulated MMRM, 5,000 subjects x 8 visits with dropout and missed visits
  (``simulate_mmrm``, fixed seed), written to a temporary CSV that both sides read.

hierlm: ``Model("weight ~ week", data, residual=...).fit(method="reml")`` (model building
included) in a fresh Python process, one warm-up fit, then the median of several timed repeats.
R: the ``gls`` call alone (data read first; wall clock by ``Sys.time``, in microseconds, since
``system.time`` counts whole milliseconds) in a fresh R process, median of several repeats;
repeats stop early once a process has used its time budget. Each case runs several such
process pairs, hierlm and R alternating (``--processes``; pigs 5, mmrm5000 1), and reports the
median over the processes of their medians, with the range over the processes: on a shared
machine one process's median can be 40 % off another's (the cost of a millisecond fit depends
on where its process lands), which a single process per case cannot show. Homogeneous Toeplitz
has no nlme class: the R side fits glmmTMB ``toep(0 + fweek | id)`` with ``dispformula = ~0`` and the
nine (eight) log-SDs tied by ``map`` (the within-subject covariance is then the random-effect
covariance plus glmmTMB's fixed 1.5e-8 residual variance). A first R fit that runs longer than
``--cap`` seconds is killed and reported as "> cap". The log-likelihoods of the two fits
are compared (hierlm minus R).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "residual.md"
PYTHON = sys.executable
FORMULA = "weight ~ week"

#: structure -> (hierlm residual=, R call; ``d`` is the data frame, ``fweek`` = factor(week))
STRUCTURES: dict[str, tuple[str, str]] = {
    "cs": ("cs(id)", "gls(weight ~ week, data = d, correlation = corCompSymm(form = ~1 | id))"),
    "csh": ("csh(week | id)",
            "gls(weight ~ week, data = d, correlation = corCompSymm(form = ~1 | id), "
            "weights = varIdent(form = ~1 | fweek))"),
    "un": ("un(week | id)",
           "gls(weight ~ week, data = d, correlation = corSymm(form = ~week | id), "
           "weights = varIdent(form = ~1 | fweek))"),
    "ar1": ("ar1(week | id)",
            "gls(weight ~ week, data = d, correlation = corAR1(form = ~week | id))"),
    "arh1": ("arh1(week | id)",
             "gls(weight ~ week, data = d, correlation = corAR1(form = ~week | id), "
             "weights = varIdent(form = ~1 | fweek))"),
    "toep": ("toep(week | id)",
             "glmmTMB(weight ~ week + toep(0 + fweek | id), data = d, REML = TRUE, "
             "dispformula = ~0, map = toep_map)"),
    "car1": ("car1(week | id)",
             "gls(weight ~ week, data = d, correlation = corCAR1(form = ~week | id))"),
}

DATASETS = {
    # name: (hierlm repeats after the warm-up, R repeats, R time budget per process in seconds,
    #        process pairs per case by default)
    "pigs": (10, 10, 30.0, 5),
    "mmrm5000": (3, 3, 60.0, 1),
}

_HIERLM_CHILD = r"""
import json, statistics, sys, time, warnings
sys.path.insert(0, {root!r})
import hierlm as hl
from hierlm.cards import read_csv_data
data = read_csv_data({path!r}, categorical=["id"])
residual, repeats = {residual!r}, {repeats!r}

def once():
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hl.Model({formula!r}, data, residual=residual)
        built = time.process_time()
        fit = model.fit(method="reml")
    end = time.process_time()
    return time.perf_counter() - start, end - cpu, built - cpu, end - built, fit

once()  # warm-up: imports, first calls
wall, cpu, build, fitting = [], [], [], []
for _ in range(repeats):
    w, c, b, f, fit = once()
    wall.append(w)
    cpu.append(c)
    build.append(b)
    fitting.append(f)
print(json.dumps({{"seconds": statistics.median(wall), "cpu": statistics.median(cpu),
                  "build_cpu": statistics.median(build), "fit_cpu": statistics.median(fitting),
                  "all": wall, "loglik": fit.loglik,
                  "evaluations": fit.fit_record.n_evaluations}}))
"""

_R_CHILD = r"""
suppressPackageStartupMessages({{library(nlme); library(glmmTMB)}})
d <- read.csv("{path}")
d$id <- factor(d$id, levels = sort(unique(d$id)))
d$fweek <- factor(d$week, levels = sort(unique(d$week)))
n_t <- nlevels(d$fweek)
toep_map <- list(theta = factor(c(rep(1, n_t), 1 + seq_len(n_t - 1))))
used <- 0
options(warn = -1)  # (warnings ignored, as suppressWarnings did, without a wrapper in the timing)
for (i in seq_len({repeats})) {{
  # proc.time and system.time count in whole milliseconds, rounded down: a 7 ms fit would be
  # timed 7 or 8 ms and their median biased by up to half a millisecond. The wall clock is
  # read with Sys.time (microseconds); system.time's garbage collection first is kept, untimed.
  invisible(gc(FALSE))
  c0 <- proc.time(); w0 <- Sys.time()
  m <- {call}
  w1 <- Sys.time(); c1 <- proc.time()
  t <- c(elapsed = as.numeric(difftime(w1, w0, units = "secs")),
         user.self = (c1 - c0)[["user.self"]], sys.self = (c1 - c0)[["sys.self"]])
  conv <- if (inherits(m, "glmmTMB")) m$fit$convergence else 0
  lags <- "[]"
  if (inherits(m, "glmmTMB")) {{
    tt <- getME(m, "theta")[n_t + seq_len(n_t - 1)]
    lags <- paste0("[", paste(sprintf("%.12f", tt / sqrt(1 + tt^2)), collapse = ", "), "]")
  }}
  cat(sprintf('{{"seconds": %.6f, "cpu": %.6f, "loglik": %.10f, "convergence": %d, "lags": %s}}\n',
              t[["elapsed"]], t[["user.self"]] + t[["sys.self"]], as.numeric(logLik(m)), conv,
              lags))
  flush(stdout())
  used <- used + t[["elapsed"]]
  if (used > {budget}) break
}}
"""

_AT_GLMMTMB_CHILD = r"""
import json, sys, warnings
import numpy as np
sys.path.insert(0, {root!r})
import hierlm as hl
from hierlm.cards import read_csv_data
from hierlm.lmm.grouped import GroupedObjective
data = read_csv_data({path!r}, categorical=["id"])
model = hl.Model({formula!r}, data, residual="toep(week | id)")
lags = np.asarray({lags!r}, dtype=float)
# lag correlations -> partial autocorrelations (Durbin-Levinson) -> hierlm's atanh scale
r = np.concatenate([[1.0], lags])
kappa, phi, v = [], np.zeros(0), 1.0
for k in range(1, lags.size + 1):
    step = (r[k] - (phi @ r[k - 1:0:-1] if k > 1 else 0.0)) / v
    kappa.append(step)
    phi, v = np.append(phi - step * phi[::-1], step), v * (1.0 - step ** 2)
criterion = GroupedObjective(model.design)(np.arctanh(np.array(kappa)), reml=True)
print(json.dumps({{"loglik": -0.5 * criterion}}))
"""

_R_VERSIONS = (
    'cat(sprintf("%s; nlme %s; glmmTMB %s; BLAS %s\\n", R.version.string, packageVersion("nlme"), '
    'packageVersion("glmmTMB"), basename(extSoftVersion()[["BLAS"]])))'
)


def find_pigs() -> Path:
    """The shared pig data: ``$HIERLM_DATA_PATH/pigs.csv`` or ``../shared/data/pigs.csv``."""
    folders = [p for p in os.environ.get("HIERLM_DATA_PATH", "").split(os.pathsep) if p]
    folders.append(str(ROOT.parent / "shared" / "data"))
    for folder in folders:
        path = Path(folder) / "pigs.csv"
        if path.is_file():
            return path
    raise SystemExit(f"pigs.csv not found in {folders}; set HIERLM_DATA_PATH.")


def simulate_mmrm(path: Path, n_subjects: int = 5000, n_visits: int = 8,
                  seed: int = 20241107) -> dict:
    """Write an MMRM-like data set: ``weight = 50 + 2 week + e``, ``e`` with an unstructured covariance.

    SDs grow from 3 to 6 over the visits, correlation ``0.3 + 0.6 * 0.8^|t - s|``. From visit 3 on a
    subject drops out with probability 3% per visit (monotone), and any visit after the first is
    missed with probability 5% (intermittent), so group sizes run from 1 to 8.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = np.arange(1, n_visits + 1)
    sd = np.linspace(3.0, 6.0, n_visits)
    corr = 0.3 + 0.6 * 0.8 ** np.abs(t[:, None] - t[None, :])
    np.fill_diagonal(corr, 1.0)
    errors = rng.multivariate_normal(np.zeros(n_visits), corr * np.outer(sd, sd), size=n_subjects)
    y = 50.0 + 2.0 * t[None, :] + errors
    drop_at = np.where(rng.random((n_subjects, n_visits)) < 0.03, t[None, :], n_visits + 1)
    drop_at[:, :2] = n_visits + 1
    keep = t[None, :] < drop_at.min(axis=1)[:, None]
    keep &= ~((rng.random((n_subjects, n_visits)) < 0.05) & (t[None, :] > 1))
    ids = np.repeat(np.arange(1, n_subjects + 1), n_visits).reshape(n_subjects, n_visits)
    weeks = np.broadcast_to(t, y.shape)
    frame = pd.DataFrame({"id": ids[keep], "week": weeks[keep], "weight": np.round(y[keep], 4)})
    frame.to_csv(path, index=False)
    sizes = frame.groupby("id").size()
    return {"rows": len(frame), "subjects": int(sizes.size), "complete": int((sizes == n_visits).sum()),
            "min_size": int(sizes.min())}


def run_hierlm(path: Path, structure: str, repeats: int) -> dict:
    code = _HIERLM_CHILD.format(root=str(ROOT), path=str(path), residual=STRUCTURES[structure][0],
                                repeats=repeats, formula=FORMULA)
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_r(path: Path, structure: str, repeats: int, budget: float, cap: float) -> dict:
    """Median of the R fits; ``{"capped": True}`` when the first fit ran past ``cap`` seconds."""
    if shutil.which("Rscript") is None:
        return {"error": "Rscript not on PATH"}
    code = _R_CHILD.format(path=path, repeats=repeats, budget=budget, call=STRUCTURES[structure][1])
    process = subprocess.Popen(["Rscript", "-e", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    capped = False
    try:
        stdout, stderr = process.communicate(timeout=cap + budget + 30.0)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        capped = True
    runs = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if not runs:
        if capped:
            return {"capped": True}
        print(stderr[-3000:], file=sys.stderr)
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
    if runs[0]["seconds"] > cap:
        return {"capped": True}
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "cpu": statistics.median(r["cpu"] for r in runs),
            "all": [r["seconds"] for r in runs], "loglik": runs[-1]["loglik"],
            "convergence": runs[-1]["convergence"], "lags": runs[-1]["lags"]}


def combine(runs: list[dict]) -> dict:
    """One side of a case over its processes: medians of the per-process medians, and their range.

    A process that failed or was capped decides the case (its entry is returned).
    """
    for run in runs:
        if "seconds" not in run:
            return run
    out = dict(runs[-1])
    for key in ("seconds", "cpu", "build_cpu", "fit_cpu"):
        if all(key in run for run in runs):
            out[key] = statistics.median(run[key] for run in runs)
    wall = [run["seconds"] for run in runs]
    out["seconds_range"] = (min(wall), max(wall))
    out["processes"] = len(runs)
    return out


def hierlm_at_glmmtmb(path: Path, lags: list[float]) -> float | None:
    """hierlm's exact REML log-likelihood (sigma profiled) at glmmTMB's Toeplitz correlations."""
    code = _AT_GLMMTMB_CHILD.format(root=str(ROOT), path=str(path), formula=FORMULA, lags=lags)
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return None
    return float(json.loads(out.stdout.strip().splitlines()[-1])["loglik"])


def r_versions() -> str:
    if shutil.which("Rscript") is None:
        return "R not available"
    out = subprocess.run(["Rscript", "-e", _R_VERSIONS], capture_output=True, text=True)
    return out.stdout.strip() or "R versions unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="*", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--structures", nargs="*", choices=list(STRUCTURES),
                        default=list(STRUCTURES))
    parser.add_argument("--cap", type=float, default=300.0,
                        help="seconds after which a first R fit is stopped and reported as > cap")
    parser.add_argument("--processes", type=int, default=None,
                        help="process pairs (hierlm, R) per case; default: pigs 5, mmrm5000 1")
    args = parser.parse_args()
    if args.processes is not None and args.processes < 1:
        parser.error("--processes must be at least 1")

    loads = [os.getloadavg()[0]]
    started = time.strftime("%Y-%m-%d %H:%M")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"pigs": find_pigs()}
        sim_info = None
        if "mmrm5000" in args.data:
            paths["mmrm5000"] = Path(tmp) / "mmrm5000.csv"
            sim_info = simulate_mmrm(paths["mmrm5000"])
        for name in args.data:
            h_repeats, r_repeats, budget, processes = DATASETS[name]
            processes = args.processes or processes
            for structure in args.structures:
                ours_runs, theirs_runs = [], []
                for _ in range(processes):  # alternating, so that a slow spell hits both sides
                    ours_runs.append(run_hierlm(paths[name], structure, h_repeats))
                    loads.append(os.getloadavg()[0])
                    theirs_runs.append(run_r(paths[name], structure, r_repeats, budget, args.cap))
                    loads.append(os.getloadavg()[0])
                    if "seconds" not in ours_runs[-1] or "seconds" not in theirs_runs[-1]:
                        break  # failed or capped: no point in more processes
                ours, theirs = combine(ours_runs), combine(theirs_runs)
                row = {"data": name, "structure": structure, "hierlm": ours, "r": theirs}
                if theirs.get("lags"):
                    theirs["hierlm_at_r"] = hierlm_at_glmmtmb(paths[name], theirs["lags"])
                rows.append(row)
                print(_console(row, args.cap), flush=True)
    write_report(rows, started, loads, args.cap, sim_info, r_versions())


def _seconds(side: dict, cap: float) -> str:
    if side.get("capped"):
        return f"> {cap:.0f}"
    if "seconds" not in side:
        return "failed"
    return f"{side['seconds']:.3f}" if side["seconds"] < 10 else f"{side['seconds']:.1f}"


def _ratio(row: dict, cap: float) -> str:
    ours, theirs = row["hierlm"], row["r"]
    if "seconds" not in ours:
        return "n/a"
    if theirs.get("capped"):
        return f"> {cap / ours['seconds']:.0f}"
    if "seconds" not in theirs:
        return "n/a"
    return f"{theirs['seconds'] / ours['seconds']:.2f}"


def _diff(row: dict) -> str:
    ours, theirs = row["hierlm"], row["r"]
    if "loglik" not in ours or "loglik" not in theirs:
        return "n/a"
    return f"{ours['loglik'] - theirs['loglik']:.1e}"


def _range(side: dict) -> str:
    """The wall-clock range over a case's processes, e.g. ``1.2-1.9 ms`` (empty for one)."""
    if side.get("processes", 1) < 2 or "seconds_range" not in side:
        return ""
    low, high = side["seconds_range"]
    return f"{1e3 * low:.1f}-{1e3 * high:.1f} ms"


def _console(row: dict, cap: float) -> str:
    ours, theirs = row["hierlm"], row["r"]
    spread = (f"  (processes: hierlm {_range(ours)}, R {_range(theirs)})"
              if _range(ours) and _range(theirs) else "")
    return (f"{row['data']:9s} {row['structure']:5s} hierlm {_seconds(ours, cap):>8s} s  "
            f"R {_seconds(theirs, cap):>8s} s  R/hierlm {_ratio(row, cap):>7s}  "
            f"logLik diff {_diff(row)}{spread}")


def goal_sentence(rows: list[dict], cap: float, goal: float = 5.0) -> str:
    """Which cases reach ``goal`` times nlme's speed (wall clock), said plainly."""
    met, missed = [], []
    for row in rows:
        ours, theirs = row["hierlm"], row["r"]
        if "seconds" not in ours or not ("seconds" in theirs or theirs.get("capped")):
            continue
        ratio = cap / ours["seconds"] if theirs.get("capped") else theirs["seconds"] / ours["seconds"]
        label = f"{row['data']} {row['structure']}"
        (met if ratio >= goal else missed).append(f"{label} ({'> ' if theirs.get('capped') else ''}"
                                                  f"{ratio:.1f}x)")
    text = f"Goal of the issue, hierlm at least {goal:g}x faster than nlme: met in {len(met)} of " \
           f"{len(met) + len(missed)} cases"
    if met:
        text += f" ({', '.join(met)})"
    if missed:
        text += f"; not met in {', '.join(missed)}"
    return text + "."


def _process_counts(rows: list[dict]) -> str:
    """The process pairs per case, by data set (e.g. ``pigs 5, mmrm5000 1``)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["data"]] = max(counts.get(row["data"], 0), row["hierlm"].get("processes", 1))
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def write_report(rows: list[dict], started: str, loads: list[float], cap: float,
                 sim_info: dict | None, versions: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    sim = (f"{sim_info['subjects']:,} subjects, {sim_info['rows']:,} rows, "
           f"{sim_info['complete']:,} with all 8 visits, the smallest with {sim_info['min_size']}"
           if sim_info else "not run")
    lines = [
        "# Residual covariance structures: hierlm vs nlme::gls (REML)",
        "",
        f"Run {started} on {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {versions}. Produced by `bench/bench_residual.py`. "
        f"Machine load (1-minute load average) between {min(loads):.1f} and {max(loads):.1f} "
        f"during the run, so other processes shared the {os.cpu_count()} cores: read the ratios "
        "more than the seconds, and the CPU seconds as well as the wall-clock ones.",
        "",
        "Model `weight ~ week`, REML. Data: *pigs*, the lecture notes' pig weights (48 pigs x 9 "
        f"weeks, 432 rows); *mmrm5000*, simulated ({sim}; unstructured truth, dropout and "
        "missed visits, fixed seed). hierlm: `Model(formula, data, residual=...).fit(method="
        "\"reml\")`, model building included, fresh process, one warm-up then the median of 10 "
        "(pigs) or 3 (mmrm5000) fits. R: the `gls` call alone (wall clock by `Sys.time`, CPU by "
        "`proc.time`, after an untimed `gc()` as `system.time` does), fresh process, "
        "median of up to 10 (pigs) or 3 (mmrm5000) fits, fewer once a process used 30 s (60 s). "
        f"Each case: {_process_counts(rows)} such process pairs, hierlm and R alternating; the "
        "table gives the median over the processes of their medians, and the range over the "
        "processes (wall clock, ms) in the last two columns. "
        f"A first R fit longer than {cap:.0f} s is stopped and shown as \"> {cap:.0f}\".",
        "",
        "| data | structure | hierlm `residual=` | hierlm s | nlme s | nlme / hierlm | hierlm CPU s | "
        "nlme CPU s | nlme / hierlm CPU | hierlm CPU ms: model, fit | hierlm evaluations | "
        "logLik hierlm | logLik hierlm - nlme | hierlm range over processes | nlme range |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for row in rows:
        ours, theirs = row["hierlm"], row["r"]
        ours_cpu = f"{ours['cpu']:.4f}" if "cpu" in ours else "n/a"
        theirs_cpu = f"{theirs['cpu']:.3f}" if "cpu" in theirs else "n/a"
        cpu_ratio = (f"{theirs['cpu'] / ours['cpu']:.1f}"
                     if "cpu" in ours and "cpu" in theirs and ours["cpu"] > 0 else "n/a")
        split = (f"{1e3 * ours['build_cpu']:.1f}, {1e3 * ours['fit_cpu']:.1f}"
                 if "build_cpu" in ours else "n/a")
        ll = f"{ours['loglik']:.4f}" if "loglik" in ours else "n/a"
        evals = str(ours.get("evaluations", "n/a"))
        struct = row["structure"] + (" (glmmTMB)" if row["structure"] == "toep" else "")
        residual = STRUCTURES[row["structure"]][0].replace("|", "\\|")
        lines.append(f"| {row['data']} | {struct} | `{residual}` | {_seconds(ours, cap)} | "
                     f"{_seconds(theirs, cap)} | {_ratio(row, cap)} | {ours_cpu} | {theirs_cpu} | "
                     f"{cpu_ratio} | {split} | {evals} | {ll} | {_diff(row)} | "
                     f"{_range(ours) or 'n/a'} | {_range(theirs) or 'n/a'} |")
    lines += [
        "",
        goal_sentence(rows, cap),
        "",
        "R calls (`fweek = factor(week)`): cs `corCompSymm(form = ~1 | id)`; csh the same with "
        "`weights = varIdent(form = ~1 | fweek)`; un `corSymm(form = ~week | id)` + varIdent; "
        "ar1 `corAR1(form = ~week | id)`; arh1 the same + varIdent; car1 "
        "`corCAR1(form = ~week | id)`; toep (nlme has no Toeplitz class) glmmTMB "
        "`weight ~ week + toep(0 + fweek | id)`, `dispformula = ~0`, the log-SDs tied by `map` "
        "(one common SD); its columns labelled nlme are glmmTMB's. On integer weeks car1 and ar1 are "
        "the same model.",
        "",
        "CPU columns: `time.process_time` of the hierlm process (model building and fit, split "
        "in the next column) and R's `proc.time` user + system of the `gls` call; R's CPU timer "
        "counts in steps of 1 ms (its wall clock, `Sys.time`, in microseconds). The Bayesian "
        "(NUTS) timings of these models are in "
        "`bench/results/residual_bayes.md` (`bench/bench_residual_bayes.py`).",
        "",
    ]
    notes = []
    for r in rows:
        theirs = r["r"]
        if not theirs.get("lags") or "loglik" not in r["hierlm"]:
            continue
        note = f"{r['data']} toep: glmmTMB's optimiser reported convergence code {theirs['convergence']}"
        at = theirs.get("hierlm_at_r")
        if at is not None:
            note += (f"; the exact REML log-likelihood (sigma profiled, hierlm's criterion) at "
                     f"glmmTMB's lag correlations is {at:.5f}, so hierlm's optimum is "
                     f"{r['hierlm']['loglik'] - at:+.1e} from it and glmmTMB's reported "
                     f"{theirs['loglik']:.5f} by {theirs['loglik'] - at:+.1e}")
            if r["hierlm"]["loglik"] >= at - 1e-6:
                note += (" (glmmTMB's objective, with its fixed 1.5e-8 residual variance, not a "
                         "better optimum)")
        notes.append(note + ".")
    if notes:
        lines += [" ".join(notes), ""]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
