"""Benchmark fits on data larger than memory: Parquet through DuckDB, against pandas and lme4.

Usage (from the repository root)::

    .venv/bin/python bench/bench_scale.py               # 1M, 10M, 20M (acceptance), 100M rows
    .venv/bin/python bench/bench_scale.py 1M 20M        # a subset

Data: ``y ~ x + (x | g)`` simulated in chunks of 1M rows written to Parquet
under ``/tmp/hierlm_scale/<size>`` (never all rows in memory); 5,000 groups,
50,000 for the 20M acceptance case. Each measurement runs in a fresh Python
process so that its peak resident memory (``ru_maxrss``, DuckDB's memory
included, it runs in-process) is its own: the spec pass, the statistics pass
and the REML fit are timed separately (from hierlm's progress lines), DuckDB
limited to 2 threads. The in-memory pandas fit of the same rows runs where
it fits (1M, 10M), lme4 at 1M (Rscript, ``lmer`` call timed, data read
first). NUTS 4 x 1000 (marginal formulation) runs on the 20M case. The
machine is shared; its load average is recorded with the results.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale.md"
PYTHON = sys.executable
DATA = Path("/tmp/hierlm_scale")
CHUNK = 1_000_000
SIZES = {"1M": (1_000_000, 5_000), "10M": (10_000_000, 5_000), "20M": (20_000_000, 50_000),
         "100M": (100_000_000, 5_000)}
FORMULA = "y ~ x + (x | g)"

_WRITE = r"""
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
n, groups, chunk, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(20240)
b0, b1 = rng.normal(0, 1.0, groups), rng.normal(0, 0.5, groups)
for k, start in enumerate(range(0, n, chunk)):
    m = min(chunk, n - start)
    g = rng.integers(0, groups, m)
    x = rng.normal(size=m)
    y = 1.0 + 2.0 * x + b0[g] + b1[g] * x + rng.normal(size=m)
    pq.write_table(pa.table({"y": y, "x": x, "g": g}), f"{out}/part{k:04d}.parquet")
"""

_CHILD = r"""
import json, os, re, resource, sys, time, io, contextlib, warnings
sys.path.insert(0, {root!r})
import duckdb
duckdb.execute("SET threads TO 2")
import hierlm as hl
mode, path = {mode!r}, {path!r}
out = {{}}
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
cpu0 = cpu()
if mode == "duckdb":
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err):
        model = hl.Model({formula!r}, path, progress=True)
    out["model"] = time.perf_counter() - start
    for line in err.getvalue().splitlines():
        m = re.match(r"\[hierlm duckdb\] (.+): ([0-9.]+) s$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
elif mode == "pandas":
    import pandas as pd
    start = time.perf_counter()
    data = duckdb.read_parquet(path).df()
    out["read"] = time.perf_counter() - start
    start = time.perf_counter()
    model = hl.Model({formula!r}, data)
    out["model"] = time.perf_counter() - start
out["model_cpu"] = cpu() - cpu0
if "nuts" in {fit_args!r}:  # one gradient of the compiled kernel: wall vs CPU, 1 and 2 threads
    import threading
    from hierlm.bayes.build import build_model
    from hierlm.bayes.kernel_cfunc import kernel_logp
    from hierlm.bayes.kernel_model import _start, kernel_layout
    built = build_model(model.design, None, "auto")
    layout = kernel_layout(built)
    logp = kernel_logp(built.stats, layout)
    point = _start(built, layout)
    logp(point)
    def calls(k):
        for _ in range(k):
            logp(point)
    start, cpu1 = time.perf_counter(), cpu()
    calls(40)
    out["grad_wall_ms"] = (time.perf_counter() - start) / 40 * 1e3
    out["grad_cpu_ms"] = (cpu() - cpu1) / 40 * 1e3
    start = time.perf_counter()
    threads = [threading.Thread(target=calls, args=(20,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out["grad_wall_ms_2threads"] = (time.perf_counter() - start) / 40 * 1e3
    out["grad_load"] = os.getloadavg()[0]
start, cpu1 = time.perf_counter(), cpu()
fit = model.fit({fit_args})
out["fit"] = time.perf_counter() - start
out["fit_cpu"] = cpu() - cpu1
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if hasattr(fit, "criterion"):
    out["criterion"] = float(fit.criterion)
    out["theta"] = [float(t) for t in fit.theta]
    out["beta"] = [float(b) for b in fit.beta]
else:
    post = fit.fixef()
    out["beta"] = [float(b) for b in post["estimate"]]
    out["timing"] = {{k: float(v) for k, v in fit.timing.items()}}
    out["group_effects"] = fit.settings.get("group_effects")
    out["cores"] = fit.settings.get("cores")
    start, cpu2 = time.perf_counter(), cpu()
    table = fit.ranef()
    out["ranef"] = time.perf_counter() - start
    out["ranef_cpu"] = cpu() - cpu2
    out["ranef_rows"] = int(table.shape[0])
    out["peak_rss_after_ranef_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT" + json.dumps(out))
"""

_R = r"""
suppressMessages(library(lme4))
d <- read.csv("{csv}")
d$g <- factor(d$g)
t <- system.time(m <- lmer(y ~ x + (x | g), d, REML = TRUE))[["elapsed"]]
cat(sprintf("RESULT%.17g %.17g\n", t, -2 * as.numeric(logLik(m))))
"""


def generate(size: str) -> Path:
    """Write the Parquet files of one size (kept between runs)."""
    n, groups = SIZES[size]
    out = DATA / size
    done = out / "DONE"
    if done.exists():
        return out
    free = shutil.disk_usage("/tmp").free
    if free < n * 30 * 2:
        raise OSError(f"/tmp has {free / 1e9:.1f} GB free; {size} rows need ~{n * 30 / 1e9:.1f} GB")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    subprocess.run([PYTHON, "-c", _WRITE, str(n), str(groups), str(CHUNK), str(out)], check=True)
    done.write_text("ok")
    return out


def child(mode: str, path: str, fit_args: str = "") -> dict:
    code = _CHILD.format(root=str(ROOT), mode=mode, path=path, formula=FORMULA, fit_args=fit_args)
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    raise RuntimeError(proc.stderr[-3000:])


def lme4(path: Path) -> tuple[float, float] | None:
    if shutil.which("Rscript") is None:
        return None
    import duckdb

    csv = path / "all.csv"
    if not csv.exists():
        duckdb.read_parquet(f"{path}/*.parquet").df().to_csv(csv, index=False)
    proc = subprocess.run(["Rscript", "-e", _R.format(csv=csv)], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            t, dev = line[6:].split()
            return float(t), float(dev)
    raise RuntimeError(proc.stderr[-2000:])


def main(sizes: list[str]) -> None:
    rows = []
    notes = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"load average at start {os.getloadavg()[0]:.2f} (shared with other agents)."]
    for size in sizes:
        try:
            path = generate(size)
        except OSError as error:
            notes.append(f"{size}: skipped ({error}).")
            continue
        glob = f"{path}/*.parquet"
        result = child("duckdb", glob)
        line = {"size": size, "groups": SIZES[size][1], "duckdb": result,
                "load": os.getloadavg()[0]}
        if size in ("1M", "10M"):
            line["pandas"] = child("pandas", glob)
        if size == "1M":
            line["lme4"] = lme4(path)
        if size == "20M" and os.environ.get("HIERLM_BENCH_NUTS", "1") == "1":
            try:
                line["nuts"] = child("duckdb", glob,
                                     "method='nuts', chains=4, draws=1000, random_seed=1")
                line["nuts"]["load"] = os.getloadavg()[0]
            except RuntimeError as error:
                notes.append(f"{size}: NUTS failed: {str(error).strip().splitlines()[-1]}")
        rows.append(line)
        print(json.dumps(line), flush=True)
    # merge with earlier runs of other sizes (raw results kept beside the data)
    store = DATA / "results.json"
    earlier = json.loads(store.read_text()) if store.exists() else {}
    for line in rows:
        old = earlier.get(line["size"], {})
        earlier[line["size"]] = {**old, **line}
    store.write_text(json.dumps(earlier))
    merged = [earlier[s] for s in SIZES if s in earlier]
    write(merged, notes + [n for s in SIZES for n in earlier.get(s, {}).get("notes", [])])


def write(rows: list[dict], notes: list[str]) -> None:
    out = ["# Data larger than memory: Parquet through DuckDB", "",
           f"`{FORMULA}`, REML. Generated by `bench/bench_scale.py` on "
           f"{time.strftime('%Y-%m-%d')}. Times in seconds (wall), peak RSS in MB of the "
           "whole process (DuckDB included). Stages: spec = schema, missing values, levels; "
           "statistics = the GROUP BY pass; fit = the REML optimisation on the summary; CPU s = user + "
           "system CPU seconds of the whole process (a load-independent measure on a shared "
           "machine); load = the 1-minute load average when the row finished.", ""]
    out += ["| rows | groups | spec | statistics | fit | total | peak RSS | CPU s | pandas total "
            "| pandas RSS | lme4 lmer | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["duckdb"]
        total = d["model"] + d["fit"]
        cells = [r["size"], f"{r['groups']:,}",
                 f"{d.get('schema, missing values and levels', 0):.1f}",
                 f"{d.get('sufficient statistics', 0):.1f}", f"{d['fit']:.1f}", f"{total:.1f}",
                 f"{d['peak_rss_mb']:.0f}",
                 f"{d['model_cpu'] + d['fit_cpu']:.1f}" if "fit_cpu" in d else "-"]
        p = r.get("pandas")
        if p:
            p_total = p["read"] + p["model"] + p["fit"]
            cells += [f"{p_total:.1f} (DuckDB/pandas {total / p_total:.2f})",
                      f"{p['peak_rss_mb']:.0f}"]
        else:
            cells += ["not run (memory)", "-"]
        lm = r.get("lme4")
        cells += [f"{lm[0]:.1f}" if lm else "-", f"{r['load']:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    out += [""]
    for r in rows:
        d = r["duckdb"]
        if "pandas" in r:
            p = r["pandas"]
            out.append(f"- {r['size']}: REML criterion DuckDB {d['criterion']:.10f}, pandas "
                       f"{p['criterion']:.10f} (rel diff {abs(d['criterion'] / p['criterion'] - 1):.1e}).")
        if r.get("lme4"):
            out.append(f"- {r['size']}: lme4 REML criterion {r['lme4'][1]:.10f}, hierlm "
                       f"{d['criterion']:.10f}; lmer {r['lme4'][0]:.1f} s vs hierlm total "
                       f"{d['model'] + d['fit']:.1f} s (ratio {r['lme4'][0] / (d['model'] + d['fit']):.2f}).")
        if "nuts" in r:
            n = r["nuts"]
            out.append(f"- {r['size']}: NUTS 4 x 1000 (marginal): spec + statistics "
                       f"{n['model']:.1f} s, sampling {n['fit']:.1f} s, total "
                       f"{n['model'] + n['fit']:.1f} s"
                       + (f" (CPU {n['model_cpu'] + n['fit_cpu']:.0f} s)" if "fit_cpu" in n else "")
                       + (f" at load {n['load']:.1f}" if "load" in n else "")
                       + f", peak RSS {n['peak_rss_mb']:.0f} MB; "
                       f"posterior means of beta {[round(b, 4) for b in n['beta']]}.")
            if "grad_cpu_ms" in n:
                out.append(
                    f"  - one gradient of the compiled marginal kernel (50,000 groups): "
                    f"{n['grad_cpu_ms']:.1f} ms CPU, {n['grad_wall_ms']:.1f} ms wall in one thread, "
                    f"{n['grad_wall_ms_2threads']:.1f} ms wall per gradient with two threads "
                    f"(the kernel releases the GIL), at load {n['grad_load']:.1f}.")
            if "timing" in n:
                t = n["timing"]
                out.append(
                    f"  - group effects kept as {n.get('group_effects')}, {n.get('cores')} chains "
                    f"at once; sampler compile {t.get('compile', 0):.1f} s, sampling "
                    f"{t.get('sample', 0):.1f} s, post-processing (draws or summaries of the "
                    f"group effects, DataTree) {t.get('postprocess', 0):.1f} s; then ranef() of "
                    f"{n['ranef_rows']:,} rows {n['ranef']:.1f} s (CPU {n['ranef_cpu']:.0f} s), "
                    f"peak RSS after it {n['peak_rss_after_ranef_mb']:.0f} MB.")
    out += [""] + [f"- {n}" for n in notes]
    out += ["", "Acceptance (issue 15): 20M rows, 50,000 groups: REML under 180 s and 1 GB peak "
            "RSS on 2 cores; NUTS 4 x 1000 under 5 minutes."]
    RESULTS.write_text("\n".join(out) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main(sys.argv[1:] or list(SIZES))
