"""Benchmark of the Bayesian engine against bambi and brms, and at scale.

Usage (from the repository root)::

    .venv/bin/python bench/bench_bayes.py              # everything, writes bench/results/bayes.md
    .venv/bin/python bench/bench_bayes.py --quick      # skip the 1M-row run and brms
    .venv/bin/python bench/bench_bayes.py --repeats 3  # warm runs per configuration (median)
    .venv/bin/python bench/bench_bayes.py --crossed    # only the crossed/nested section (updates it)
    .venv/bin/python bench/bench_bayes.py --insteval   # only its InstEval part (updates it)

Sleepstudy, ``Reaction ~ Days + (Days | Subject)``, 4 chains x 1000 draws
(1000 warm-up), each package with its default priors. The score is the
smallest bulk ESS over the fixed effects, the SDs, the correlation and sigma
divided by the wall-clock seconds of a fresh process that imports the package,
builds, compiles and samples (measured from outside the process).

* cold: every compile cache empty (PyTensor's ``base_compiledir``, numba's
  ``NUMBA_CACHE_DIR``, JAX's persistent cache is off by default) - point
  them at a new temporary directory;
* warm: the same directory after one unmeasured run of the configuration.

bambi's ``(Days | Subject)`` has no correlation parameter (bambi models
independent group effects), so its minimum is over the parameters it has.
brms (rstan backend) compiles its Stan program in every new R session, so it
has no warm start; its timing is the whole ``Rscript`` process.

Crossed and nested designs: Penicillin ``diameter ~ 1 + (1 | plate) + (1 | sample)``
(4 x 1000, hierlm's default - the marginal formulation with the compiled crossed
kernel - and its full formulation against bambi with nutpie in the same run;
score = smallest bulk ESS over the intercept, sigma and the two SDs per wall
second of a fresh process), Pastes ``(1 | batch / cask)`` (hierlm default vs
full) and InstEval ``y ~ service + (1 | s) + (1 | d) + (1 | dept)`` (4 chains, hierlm's
default draws and warm-up for that design: 1000 draws, 300 warm-up iterations because its
marginal posterior is sampled standardised at the mode, ``hierlm.bayes.build.default_tune``;
the child also times one gradient of the compiled marginal likelihood).

Scale: 1,000,000 rows, 10,000 groups, correlated random intercept and slope,
4 chains x 1000 draws with the default settings; wall clock and peak resident
memory of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "bayes.md"
PYTHON = sys.executable
SLEEP_CSV = ROOT / "hierlm" / "datasets" / "data" / "sleepstudy.csv"
DRAWS = {"chains": 4, "draws": 1000, "tune": 1000}

HIERLM_CHILD = """
import json, warnings
import numpy as np
import hierlm as hl
from arviz_stats.base.array import array_stats
warnings.simplefilter("ignore")
model = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))
fit = model.fit("nuts", chains={chains}, draws={draws}, tune={tune}, random_seed=1, progressbar=False,
                **{options})
post = fit.idata["posterior"]
names = ["fixef", "sd_Subject", "cor_Subject", "sigma"]
ess = {{}}
for name in names:
    values = post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
    ess[name] = float(np.min(array_stats.ess(values, chain_axis=0, draw_axis=1, method="bulk")))
print("RESULT" + json.dumps({{"ess": ess, "timing": fit.timing, "formulation": fit.formulation,
                             "sampler": fit.sampler, "backend": fit.settings.get("backend")}}))
"""

BAMBI_CHILD = """
import json, warnings
import numpy as np, pandas as pd
import bambi as bmb
from arviz_stats.base.array import array_stats
warnings.simplefilter("ignore")
data = pd.read_csv("{csv}")
data["Subject"] = data["Subject"].astype(str)
model = bmb.Model("Reaction ~ Days + (Days | Subject)", data)
idata = model.fit(chains={chains}, draws={draws}, tune={tune}, random_seed=1, progressbar=False,
                  inference_method="{method}")
post = idata["posterior"]
ess = {{}}
for name in ["Intercept", "Days", "sigma", "1|Subject_sigma", "Days|Subject_sigma"]:
    values = post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
    ess[name] = float(np.min(array_stats.ess(values, chain_axis=0, draw_axis=1, method="bulk")))
print("RESULT" + json.dumps({{"ess": ess}}))
"""

BRMS_CHILD = r"""
suppressPackageStartupMessages({{library(brms); library(posterior)}})
data <- read.csv("{csv}")
data$Subject <- factor(data$Subject, levels = sort(unique(data$Subject)))
fit <- brm(Reaction ~ Days + (Days | Subject), data = data, chains = {chains}, iter = {iter},
           warmup = {tune}, cores = 2, seed = 1, refresh = 0, silent = 2)
s <- summarise_draws(as_draws_df(fit), "ess_bulk")
keep <- c("b_Intercept", "b_Days", "sd_Subject__Intercept", "sd_Subject__Days",
          "cor_Subject__Intercept__Days", "sigma")
s <- s[s$variable %in% keep, ]
pairs <- paste0('"', s$variable, '": ', as.numeric(s$ess_bulk), collapse = ", ")
cat("RESULT{{\"ess\": {{", pairs, "}}}}\n", sep = "")
"""

SCALE_CHILD = """
import json, resource, time, warnings
import numpy as np
from hierlm.bayes import fit_bayes
from hierlm.design.blocks import Design, RandomBlock
warnings.simplefilter("ignore")
start = time.perf_counter()
rng = np.random.default_rng(1)
n, groups = 1_000_000, 10_000
codes = rng.integers(0, groups, size=n)
x = rng.normal(size=n)
cov = np.array([[1.0, 0.15], [0.15, 0.25]])
effects = rng.multivariate_normal([0.0, 0.0], cov, size=groups)
y = 2.0 + effects[codes, 0] + (-1.0 + effects[codes, 1]) * x + rng.normal(scale=0.7, size=n)
X = np.column_stack([np.ones(n), x])
block = RandomBlock("g", ("Intercept", "x"), True, tuple(f"g{{k}}" for k in range(groups)), codes, X.copy())
design = Design(y, X, ("Intercept", "x"), (block,), "y", np.arange(n))
simulated = time.perf_counter()
fit = fit_bayes(design, chains=4, draws=1000, tune=1000, random_seed=1, progressbar=False, **{options})
done = time.perf_counter()
vc = fit.varcorr()


def label(group, term1, term2):
    if term2 is not None:
        return f"cor({{term1}}, {{term2}})"
    return "sigma" if group == "Residual" else f"sd({{term1}})"


print("RESULT" + json.dumps({{
    "simulate": simulated - start, "fit": done - simulated, "timing": fit.timing,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    "estimates": {{label(g, a, b): m
                  for g, a, b, m in zip(vc["group"], vc["term1"], vc["term2"], vc["estimate"])}},
    "fixef": fit.fixef()["estimate"].tolist(), "min_ess_bulk": float(vc["ess_bulk"].min()),
}}))
"""


CROSSED_CHILD = """
import json, time, warnings
import numpy as np
import hierlm as hl
from arviz_stats.base.array import array_stats
warnings.simplefilter("ignore")
model = hl.Model("{formula}", hl.datasets.load("{data}"))
fit = model.fit("nuts", chains={chains}, draws={draws}, tune={tune}, random_seed=1, progressbar=False,
                **{options})
post = fit.idata["posterior"]
names = ["fixef", "sigma"] + [name for name in post.data_vars if name.startswith("sd_")]
ess = {{}}
for name in names:
    values = post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
    ess[name] = float(np.min(array_stats.ess(values, chain_axis=0, draw_axis=1, method="bulk")))
extra = {{}}
if {time_gradient}:
    from hierlm.bayes.build import build_model
    from hierlm.bayes.crossed_kernel import ScalarFactorLikelihood
    from hierlm.bayes.kernel_model import kernel_layout
    built = build_model(model, formulation="marginal")
    layout = kernel_layout(built)
    start = time.perf_counter()
    logp = ScalarFactorLikelihood(built.design).logp(layout.prior_code, layout.prior_par)
    extra["setup_seconds"] = time.perf_counter() - start
    x = np.concatenate([post["fixef"].values.mean(axis=(0, 1)), [np.log(post["sigma"].values.mean())],
                        [np.log(post[n].values.mean()) for n in names[2:]]])
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        logp(x)
        start = time.perf_counter()
        for _ in range(5):
            logp(x)
        extra["gradient_seconds"] = (time.perf_counter() - start) / 5
    extra["steps_per_draw"] = float(fit.idata["sample_stats"]["n_steps"].mean())
means = {{name: float(np.mean(post[name].values)) for name in names if name != "fixef"}}
print("RESULT" + json.dumps({{"ess": ess, "timing": fit.timing, "formulation": fit.formulation,
                             "extra": extra, "means": means, "settings": fit.settings}}))
"""

BAMBI_CROSSED_CHILD = """
import json, warnings
import numpy as np, pandas as pd
import bambi as bmb
from arviz_stats.base.array import array_stats
warnings.simplefilter("ignore")
data = pd.read_csv("{csv}")
for column in ("plate", "sample"):
    data[column] = data[column].astype(str)
model = bmb.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
idata = model.fit(chains={chains}, draws={draws}, tune={tune}, random_seed=1, progressbar=False,
                  inference_method="nutpie")
post = idata["posterior"]
ess = {{}}
for name in ["Intercept", "sigma", "1|plate_sigma", "1|sample_sigma"]:
    values = post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
    ess[name] = float(np.min(array_stats.ess(values, chain_axis=0, draw_axis=1, method="bulk")))
print("RESULT" + json.dumps({{"ess": ess}}))
"""

CROSSED_START, CROSSED_END = "<!-- crossed section: start -->", "<!-- crossed section: end -->"


def run_child(command: list[str], env: dict[str, str], timeout: int = 1800) -> tuple[float, dict]:
    """Run one fresh process; return its wall-clock seconds and the JSON it printed (plus CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{command[:2]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    result = json.loads(lines[-1][len("RESULT") :])
    result["cpu_seconds"] = cpu
    return wall, result


def cache_env(cache: Path) -> dict[str, str]:
    """Environment pointing every compile cache at ``cache``."""
    env = dict(os.environ)
    env["PYTENSOR_FLAGS"] = f"base_compiledir={cache / 'pytensor'}"
    env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def measure(name: str, command: list[str], repeats: int, cold: bool = True,
            warmup: list[str] | None = None) -> dict:
    """Cold run on empty caches, one unmeasured warm-up (``warmup`` if given), then ``repeats`` warm runs."""
    cache = Path(tempfile.mkdtemp(prefix="hierlm-bench-"))
    env = cache_env(cache)
    out: dict = {"name": name}
    try:
        if cold:
            wall, result = run_child(command, env)
            out["cold"] = {"wall": wall, "ess": min(result["ess"].values()), "result": result}
        else:
            run_child(warmup or command, env)
        warm = [run_child(command, env) for _ in range(repeats)]
        walls = [w for w, _ in warm]
        k = walls.index(statistics.median_low(walls))
        out["warm"] = {
            "wall": walls[k],
            "walls": walls,
            "ess": min(warm[k][1]["ess"].values()),
            "result": warm[k][1],
        }
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    for kind in ("cold", "warm"):
        if kind in out:
            out[kind]["ess_per_second"] = out[kind]["ess"] / out[kind]["wall"]
    print(
        f"{name}: "
        + ", ".join(
            f"{k} {out[k]['wall']:.1f} s ESS {out[k]['ess']:.0f}" for k in ("cold", "warm") if k in out
        ),
        flush=True,
    )
    return out


def hierlm_command(**options: object) -> list[str]:
    code = HIERLM_CHILD.format(options=repr(options), **DRAWS)
    return [PYTHON, "-c", textwrap.dedent(code)]


def bambi_command(method: str) -> list[str]:
    return [PYTHON, "-c", textwrap.dedent(BAMBI_CHILD.format(csv=SLEEP_CSV, method=method, **DRAWS))]


def crossed_command(data: str, formula: str, draws: dict | None = None, time_gradient: bool = False,
                    **options: object) -> list[str]:
    code = CROSSED_CHILD.format(data=data, formula=formula, options=repr(options),
                                time_gradient=time_gradient, **(draws or DRAWS))
    return [PYTHON, "-c", textwrap.dedent(code)]


def crossed_section(repeats: int) -> str:
    """Penicillin (hierlm default, full, bambi), Pastes, InstEval; the section's markdown."""
    load_before = load_average()
    penicillin = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    rows = [
        measure("hierlm default (marginal, compiled crossed kernel)",
                crossed_command("Penicillin", penicillin), repeats),
        measure("hierlm full, nutpie + compiled full kernel",
                crossed_command("Penicillin", penicillin, formulation="full"), repeats),
    ]
    try:
        import bambi  # noqa: F401

        csv = ROOT / "hierlm" / "datasets" / "data" / "Penicillin.csv"
        code = BAMBI_CROSSED_CHILD.format(csv=csv, **DRAWS)
        rows.append(measure("bambi 0.21, nutpie", [PYTHON, "-c", textwrap.dedent(code)], repeats))
    except ImportError:
        pass
    pastes = "strength ~ 1 + (1 | batch / cask)"
    nested = [
        measure("hierlm default (marginal, compiled crossed kernel)",
                crossed_command("Pastes", pastes), repeats),
        measure("hierlm full, nutpie + compiled full kernel",
                crossed_command("Pastes", pastes, formulation="full"), repeats),
    ]
    sleep = [
        measure("hierlm default (marginal, nutpie, compiled kernel)", hierlm_command(), repeats),
        measure("bambi 0.21, nutpie", bambi_command("nutpie"), repeats),
    ]
    inst = measure_insteval()
    lines = [
        CROSSED_START,
        "## Crossed and nested designs",
        "",
        f"Generated by `bench/bench_bayes.py --crossed` on {time.strftime('%Y-%m-%d %H:%M')}; load "
        f"average before {load_before}, after {load_average()} (2 cores shared with other jobs).",
        "",
        "### Penicillin, `diameter ~ 1 + (1 | plate) + (1 | sample)`, 4 chains x 1000 draws",
        "",
        "ESS = smallest bulk ESS over the intercept, sigma and the two SDs (the same parameters "
        "for every package); wall clock of a fresh process.",
        "",
        table(rows),
        "",
    ]
    bambi_rows = [r for r in rows if r["name"].startswith("bambi")]
    if bambi_rows:
        ratio = rows[0]["warm"]["ess_per_second"] / bambi_rows[0]["warm"]["ess_per_second"]
        cold = rows[0]["cold"]["ess_per_second"] / bambi_rows[0]["cold"]["ess_per_second"]
        lines += [f"* default vs bambi (nutpie), warm: **{ratio:.1f}x**, cold: {cold:.1f}x "
                  "(goal >= 5x)", ""]
    sleep_ratio = sleep[0]["warm"]["ess_per_second"] / sleep[1]["warm"]["ess_per_second"]
    lines += [
        "### Sleepstudy check in the same run (one-factor kernel, unchanged)",
        "",
        table(sleep),
        "",
        f"* default vs bambi (nutpie), warm: **{sleep_ratio:.1f}x**; default cold start "
        f"{sleep[0]['cold']['wall']:.1f} s (earlier full runs: 5.2-6.3x warm, 6.8 s cold)",
        "",
        "### Pastes, `strength ~ 1 + (1 | batch / cask)`, 4 chains x 1000 draws",
        "",
        table(nested),
        "",
    ]
    lines += insteval_lines(inst)
    lines.append(CROSSED_END)
    text = "\n".join(lines)
    print(text)
    return text


INSTEVAL_FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
#: hierlm's defaults for this design: 1000 draws; ``tune=None`` resolves to
#: ``hierlm.bayes.build.default_tune`` (300 here: sampled standardised at the mode)
INSTEVAL_DRAWS = {"chains": 4, "draws": 1000, "tune": None}
INSTEVAL_HEADING = "### InstEval"


def measure_insteval() -> dict:
    """InstEval, 4 chains with hierlm's default draws and warm-up, warm caches.

    The warm-up is a 4 x 10 run that compiles (and caches) the kernels.
    """
    warmup = crossed_command("InstEval", INSTEVAL_FORMULA, {"chains": 4, "draws": 10, "tune": 10},
                             time_gradient=True)
    out = measure("hierlm default (marginal, compiled crossed kernel, probed gradient)",
                  crossed_command("InstEval", INSTEVAL_FORMULA, INSTEVAL_DRAWS, time_gradient=True),
                  1, cold=False, warmup=warmup)
    out["reml"] = insteval_reml()
    return out


def insteval_reml() -> dict[str, float]:
    """REML estimates of the SDs and sigma (hierlm's REML, tested against lme4), for the agreement row."""
    import hierlm as hl

    fit = hl.Model(INSTEVAL_FORMULA, hl.datasets.load("InstEval")).fit("reml")
    table = fit.varcorr()
    return {("sigma" if group == "Residual" else f"sd_{group}"): float(value)
            for group, value in zip(table["group"], table["estimate"], strict=True)}


#: Context for the subsection, measured separately (not by this run; loads as noted).
INSTEVAL_NOTES = [
    "* REML row: hierlm's REML of the same model (equal to lme4's).",
    "* Standardising at the mode (session 7, same seed, 4 x 300 draws after 200 warm-up, load 3): "
    "4.47 leapfrog steps per draw against 4.79 in the original coordinates (the lead's quiet "
    "baseline), min bulk ESS 1182 against 1165, no divergences; the mode search costs 2.8 s "
    "(39 gradients, load 2). Its main use is the short default warm-up: the chains start in the "
    "bulk with unit scales.",
    "* Where one gradient goes (one BLAS thread, shares at load 4.7): `dpotrf` of S about 55%, "
    "forming S 10%, the probed traces (`dpotrs` with 16 probes + 14 unit vectors) 20%, the "
    "rest (block solves, envelope-theorem gradient, per-call overhead) 15%.",
    "* Post-processing: each of the 4000 conditional draws of the group effects factors S once "
    "more (about one gradient's `dpotrf`, two threads), roughly a seventh of the run. Next step: "
    "draw the effects where the sampler already holds the factor of the draw's point.",
    "* Penicillin and Pastes (dense parts of 6 and 10 columns) are untouched by the "
    "standardisation (from 400 columns) and keep the warm-up of 1000; the kernel's split into "
    "`crossed_kernel` and `crossed_schur` moved code without changing it.",
]


def insteval_lines(inst: dict) -> list[str]:
    """The InstEval subsection's markdown lines."""
    result = inst["warm"]["result"]
    tune = result.get("settings", {}).get("tune", INSTEVAL_DRAWS["tune"])
    lines = [
        f"{INSTEVAL_HEADING}, `{INSTEVAL_FORMULA}`, {INSTEVAL_DRAWS['chains']} chains x "
        f"{INSTEVAL_DRAWS['draws']} draws ({tune} tune), hierlm's defaults",
        "",
        "73,421 ratings; after eliminating the 2,972 students the lecturers and departments leave "
        "a dense 1142-column Schur complement; `formulation='auto'` takes the marginal form "
        "(`hierlm.bayes.build.marginal_is_faster`), sampled over 6 parameters with the compiled crossed "
        "kernel (`hierlm.bayes.crossed_kernel`: exact log posterior, log-determinant gradient by "
        "16 fixed probes, chains in parallel threads with one BLAS thread each), in coordinates "
        "standardised at the posterior mode (`hierlm.bayes.crossed_precondition`: x = m + L z, "
        "L L' the inverse curvature there, an exact change of variables; chains start within "
        "about one posterior SD of the mode), every group effect drawn from its exact conditional. "
        "Configuration: hierlm's defaults, 1000 draws per chain, and the warm-up hierlm uses by "
        "default for this design (`hierlm.bayes.build.default_tune`: 300, nutpie's own default, "
        "where the chains start standardised at the mode; 1000 otherwise); 4000 draws x 73,421 "
        "rows exceed the 1 GB limit, so the pointwise log-likelihood and the replicated responses "
        "are skipped by default (as for users). ESS = smallest bulk "
        "ESS over the fixed effects, sigma and the three SDs; warm caches, wall clock of a fresh "
        f"process (load average at the start {inst.get('load_before', '-')}).",
        "",
        table([inst]),
        "",
    ]
    timing = result.get("timing", {})
    if timing:
        lines += ["* inside the process: " + ", ".join(
            f"{key} {timing[key]:.1f} s" for key in ("build", "compile", "sample", "postprocess", "total")
            if key in timing), ""]
    means, reml = result.get("means", {}), inst.get("reml", {})
    if means and reml:
        names = [name for name in means if name in reml]
        lines += ["Posterior means against the REML estimates (hierlm REML, equal to lme4's):", "",
                  "| | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names),
                  "| posterior mean | " + " | ".join(f"{means[n]:.4f}" for n in names) + " |",
                  "| REML | " + " | ".join(f"{reml[n]:.4f}" for n in names) + " |", ""]
    extra = result.get("extra", {})
    if extra:
        lines += [f"* one value and gradient of the sampler's log posterior (one BLAS thread): "
                  f"{extra['gradient_seconds'] * 1e3:.0f} ms (setup {extra['setup_seconds']:.1f} s); "
                  f"leapfrog steps per draw {extra.get('steps_per_draw', float('nan')):.2f}; "
                  f"**{inst['warm']['ess_per_second']:.2f}** min-bulk-ESS/s (goal >= 5)", ""]
    warm = inst["warm"]
    cpu = warm["result"].get("cpu_seconds")
    if cpu:
        lines += [f"* per CPU second: {warm['ess'] / cpu:.2f} min-bulk-ESS "
                  f"({cpu:.0f} CPU s on two cores; load average after the run "
                  f"{inst.get('load_after', '-')})", ""]
    lines += INSTEVAL_NOTES
    return lines


def write_insteval_subsection(inst: dict) -> None:
    """Replace the InstEval subsection of the crossed section of ``bayes.md``."""
    old = RESULTS.read_text()
    head, rest = old.split(INSTEVAL_HEADING, 1)
    tail = rest.split(CROSSED_END, 1)[1]
    RESULTS.write_text(head + "\n".join(insteval_lines(inst)) + "\n" + CROSSED_END + tail)


def write_crossed_section(text: str) -> None:
    """Replace the crossed section of ``bayes.md`` (or append it)."""
    old = RESULTS.read_text() if RESULTS.exists() else ""
    if CROSSED_START in old and CROSSED_END in old:
        head, rest = old.split(CROSSED_START, 1)
        tail = rest.split(CROSSED_END, 1)[1]
        RESULTS.write_text(head + text + tail)
    else:
        RESULTS.write_text(old.rstrip("\n") + "\n\n" + text + "\n")


def brms_once(repeats: int) -> dict | None:
    """Time ``repeats`` fresh Rscript processes fitting the model with brms."""
    if shutil.which("Rscript") is None:
        return None
    script = Path(tempfile.mkdtemp(prefix="hierlm-brms-")) / "fit.R"
    iterations = DRAWS["draws"] + DRAWS["tune"]
    script.write_text(
        BRMS_CHILD.format(csv=SLEEP_CSV, chains=DRAWS["chains"], iter=iterations, tune=DRAWS["tune"])
    )
    runs = [run_child(["Rscript", str(script)], dict(os.environ), timeout=3600) for _ in range(repeats)]
    walls = [w for w, _ in runs]
    k = walls.index(statistics.median_low(walls))
    ess = min(runs[k][1]["ess"].values())
    out = {
        "name": "brms 2.18 (rstan)",
        "cold": {"wall": walls[k], "walls": walls, "ess": ess, "result": runs[k][1]},
    }
    out["cold"]["ess_per_second"] = ess / walls[k]
    out["warm"] = out["cold"]
    print(f"brms: {walls} s ESS {ess:.0f}", flush=True)
    return out


def scale_run(options: dict) -> dict:
    command = [PYTHON, "-c", textwrap.dedent(SCALE_CHILD.format(options=repr(options)))]
    cache = Path(tempfile.mkdtemp(prefix="hierlm-bench-"))
    try:
        run_child(command, cache_env(cache), timeout=3600)  # warm the caches (not measured)
        wall, result = run_child(command, cache_env(cache), timeout=3600)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    result["wall"] = wall
    print(f"scale: {wall:.1f} s, peak {result['peak_rss_gb']:.2f} GB", flush=True)
    return result


NOTES = """## Notes

* **Cold** = PyTensor's `base_compiledir` and numba's `NUMBA_CACHE_DIR` pointed at a new empty
  directory (JAX keeps no persistent cache unless asked). For the default configuration the cold
  run includes numba compiling the hand-written marginal kernel and the conditional-draw loop (a
  few seconds, once per machine: they are cached for every later data set and prior); the
  PyTensor routes compile one numba function per fused graph kernel (20-40 s) and rewrite the
  graph in every fit (about 2 s).
* The default route (marginal formulation, compiled kernel) does not import PyMC; its PyMC model
  is built only if `fit.pymc_model` is used. nutpie runs the 4 chains one after the other in one
  thread (`cores=1`): with a Python-level log-density, two threads mostly wait for each other's
  GIL (measured slower).
* **bambi**'s `(Days | Subject)` has no correlation between intercept and slope (independent
  group effects), so its model is simpler than the others and its minimum ESS is over the
  parameters it has. Each package uses its own default priors.
* **brms** uses the rstan backend, which generates and compiles the Stan program in every R
  session (about 45 s of the total), so there is no warm start; chains run 2 at a time.
* The machine had 2 cores shared with other jobs during the run (see the load averages above);
  times are wall clock, the CPU column is user + system time of the process, which is less
  sensitive to the load.
"""


def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def table(rows: list[dict]) -> str:
    reference = rows[0]
    lines = [
        "| configuration | cold s | cold ESS | cold ESS/s | warm s | warm CPU s | warm ESS | warm ESS/s "
        "| first row's speed-up, warm |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        cold, warm = row.get("cold"), row["warm"]
        ratio = reference["warm"]["ess_per_second"] / warm["ess_per_second"]
        cells = [row["name"]]
        cells += (
            [f"{cold['wall']:.1f}", f"{cold['ess']:.0f}", f"{cold['ess_per_second']:.0f}"]
            if cold
            else ["-"] * 3
        )
        cpu = warm.get("result", {}).get("cpu_seconds", float("nan"))
        cells += [f"{warm['wall']:.1f}", f"{cpu:.1f}", f"{warm['ess']:.0f}", f"{warm['ess_per_second']:.0f}"]
        cells.append(f"{ratio:.1f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sleepstudy_check(repeats: int) -> None:
    """Sleepstudy: hierlm's default against bambi with nutpie, cold and warm, in one run."""
    load_before = load_average()
    rows = [measure("hierlm default (marginal, nutpie, compiled kernel)", hierlm_command(), repeats),
            measure("bambi 0.21, nutpie", bambi_command("nutpie"), repeats)]
    print(f"load average before {load_before}, after {load_average()}")
    print(table(rows))
    ratio = rows[0]["warm"]["ess_per_second"] / rows[1]["warm"]["ess_per_second"]
    print(f"hierlm / bambi warm ESS per second: {ratio:.2f}x; hierlm cold {rows[0]['cold']['wall']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip brms and the 1M-row run")
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per configuration (median)")
    parser.add_argument("--crossed", action="store_true", help="only the crossed/nested section")
    parser.add_argument("--insteval", action="store_true", help="only the InstEval part of it")
    parser.add_argument("--sleepstudy", action="store_true",
                        help="hierlm's default against bambi (nutpie) on sleepstudy only; prints")
    args = parser.parse_args()
    if args.sleepstudy:
        sleepstudy_check(max(args.repeats, 3))
        return
    if args.insteval:
        load_before = load_average()
        inst = measure_insteval()
        inst["load_before"] = load_before
        inst["load_after"] = load_average()
        write_insteval_subsection(inst)
        print("\n".join(insteval_lines(inst)))
        return
    if args.crossed:
        write_crossed_section(crossed_section(max(1, args.repeats - 1)))
        return
    load_before = load_average()
    rows = [
        measure("hierlm default (marginal, nutpie, compiled kernel)", hierlm_command(), args.repeats),
        measure("hierlm marginal, nutpie + PyTensor-numba", hierlm_command(backend="numba"), args.repeats),
        measure("hierlm marginal, nutpie + PyTensor-JAX", hierlm_command(backend="jax"), args.repeats),
        measure("hierlm marginal, numpyro", hierlm_command(sampler="numpyro"), args.repeats),
        measure(
            "hierlm full, nutpie + PyTensor-numba (auto)", hierlm_command(formulation="full"), args.repeats
        ),
        measure(
            "hierlm full, nutpie + PyTensor-JAX",
            hierlm_command(formulation="full", backend="jax"),
            args.repeats,
        ),
    ]
    try:
        import bambi  # noqa: F401

        bambi_rows = [
            measure(f"bambi 0.21, {m}", bambi_command(m), args.repeats) for m in ("nutpie", "numpyro")
        ]
        rows += bambi_rows
    except ImportError:
        bambi_rows = []
    brms = None if args.quick else brms_once(args.repeats)
    if brms:
        rows.append(brms)
    scale = None if args.quick else scale_run({})
    write_report(rows, bambi_rows, brms, scale, load_before)
    if not args.quick:
        write_crossed_section(crossed_section(max(1, args.repeats - 1)))


def write_report(
    rows: list[dict], bambi_rows: list[dict], brms: dict | None, scale: dict | None, load_before: str
) -> None:
    best = max(rows[:6], key=lambda r: r["warm"]["ess_per_second"])
    default = rows[0]
    lines = [
        "# Bayesian engine benchmark",
        "",
        f"Generated by `bench/bench_bayes.py` on {time.strftime('%Y-%m-%d %H:%M')}; "
        f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores; "
        f"load average before the run {load_before}, after {load_average()} (other jobs were sharing "
        "the machine, so absolute times are noisy; warm figures are the median of the repeats).",
        "",
        "## Sleepstudy, `Reaction ~ Days + (Days | Subject)`, 4 chains x 1000 draws",
        "",
        "Wall clock of a fresh process (import + build + compile + sample + post-processing); ESS = "
        "smallest bulk ESS over fixed effects, SDs, correlation and sigma (bambi: no correlation).",
        "",
        table(rows),
        "",
    ]
    goals = []
    if bambi_rows:
        fastest_bambi = max(bambi_rows, key=lambda r: r["warm"]["ess_per_second"])
        ratio = default["warm"]["ess_per_second"] / fastest_bambi["warm"]["ess_per_second"]
        goals.append(
            f"* default vs fastest bambi ({fastest_bambi['name']}), warm: **{ratio:.1f}x** (goal >= 5x)"
        )
    if brms:
        ratio = default["warm"]["ess_per_second"] / brms["warm"]["ess_per_second"]
        goals.append(f"* default vs brms, warm: **{ratio:.1f}x** (goal >= 10x)")
    goals.append(f"* default cold start: **{default['cold']['wall']:.1f} s** (goal < 15 s)")
    goals.append(
        f"* fastest hierlm configuration warm: {best['name']}, {best['warm']['ess_per_second']:.0f} ESS/s"
    )
    lines += ["### Against the goals", "", *goals, ""]
    if scale:
        lines += [
            "## Scale: 1,000,000 rows, 10,000 groups, correlated intercept and slope",
            "",
            "4 chains x 1000 draws, default settings (marginal formulation), warm caches.",
            "",
            "| quantity | value |",
            "| --- | ---: |",
            f"| process wall clock (incl. simulating the data) | {scale['wall']:.1f} s |",
            f"| simulate data | {scale['simulate']:.1f} s |",
            f"| fit_bayes | {scale['fit']:.1f} s |",
            *[f"| - {k} | {v:.1f} s |" for k, v in scale["timing"].items()],
            f"| peak resident memory | {scale['peak_rss_gb']:.2f} GB |",
            f"| smallest bulk ESS (SDs, correlation, sigma) | {scale['min_ess_bulk']:.0f} |",
            "",
            "Truth: fixed effects (2, -1), SDs (1, 0.5), correlation 0.3, sigma 0.7; posterior means: "
            + ", ".join(f"{v:.3f}" for v in scale["fixef"])
            + "; "
            + ", ".join(f"{k} {v:.3f}" for k, v in scale["estimates"].items()),
            "",
            "Goal: < 3 min and < 4 GB.",
            "",
        ]
    lines.append(NOTES)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
