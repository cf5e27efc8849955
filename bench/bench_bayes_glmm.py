"""Benchmark of NUTS for non-Gaussian mixed models against bambi, in the same run (issue 14).

Usage (from the repository root)::

    .venv/bin/python bench/bench_bayes_glmm.py             # writes bench/results/bayes_glmm.md
    .venv/bin/python bench/bench_bayes_glmm.py --quick     # cbpp only

Cases (each package with its default priors and sampler settings):

* ``cbpp``: ``cbind(incidence, size - incidence) ~ period + (1 | herd)``
  (bambi: ``p(incidence, size) ~ period + (1 | herd)``), binomial, 56 rows,
  4 chains x 1000 draws after 1000 warm-up draws;
* ``bernoulli``: a simulated Bernoulli model, 100,000 rows, 2,000 groups,
  ``y ~ x + (1 | g)`` (intercept 0.3, slope 0.8, group SD 0.7), 1 chain x
  200 draws after 200 warm-up draws (the same for both packages; one cold
  run each, since sampling dominates and a run takes many minutes on a
  shared 2-core machine).

Score: the smallest bulk ESS over the fixed effects and the group SD, divided
by the wall-clock seconds of a fresh process that imports the package, builds,
compiles and samples (measured from outside). ``cold``: every compile cache
empty (PyTensor's and numba's cache directories pointed at a new temporary
directory); ``warm``: the same caches after one unmeasured run. The goal of
issue 14 is at least 3x bambi's score; the report gives the ratio of the warm
scores and of hierlm's cold score to bambi's warm one.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bayes import PYTHON, ROOT, cache_env, load_average, measure, run_child  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bayes_glmm.md"
CBPP_CSV = ROOT / "hierlm" / "datasets" / "data" / "cbpp.csv"
SIM_CSV = Path("/tmp/hierlm_bench_bernoulli_100k.csv")

CASES = {
    "cbpp": {"chains": 4, "draws": 1000, "tune": 1000},
    "bernoulli": {"chains": 1, "draws": 200, "tune": 200},
}

HIERLM_CHILD = """
import json, warnings
import numpy as np, pandas as pd
import hierlm as hl
from arviz_stats.base.array import array_stats
warnings.simplefilter("ignore")
if "{case}" == "cbpp":
    model = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     hl.datasets.load("cbpp"), family="binomial")
else:
    data = pd.read_csv("{csv}", dtype={{"g": str}})
    model = hl.Model("y ~ x + (1 | g)", data, family="binomial")
fit = model.fit("nuts", chains={chains}, draws={draws}, tune={tune}, random_seed=1, progressbar=False)
post = fit.idata["posterior"]
ess = {{}}
for name in ["fixef"] + [v for v in post.data_vars if v.startswith("sd_")]:
    values = post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
    ess[name] = float(np.min(array_stats.ess(values, chain_axis=0, draw_axis=1, method="bulk")))
print("RESULT" + json.dumps({{"ess": ess, "timing": fit.timing,
                             "fixef": fit.fixef()["estimate"].tolist(),
                             "sd": fit.varcorr()["estimate"].tolist()}}))
"""

BAMBI_CHILD = """
import json, warnings
import numpy as np, pandas as pd
import bambi as bmb
from arviz_stats.base.array import array_stats
warnings.simplefilter("ignore")
if "{case}" == "cbpp":
    data = pd.read_csv("{cbpp}")
    data["herd"] = data["herd"].astype(str)
    data["period"] = data["period"].astype(str)
    model = bmb.Model("p(incidence, size) ~ period + (1 | herd)", data, family="binomial")
else:
    data = pd.read_csv("{csv}", dtype={{"g": str}})
    model = bmb.Model("y ~ x + (1 | g)", data, family="bernoulli")
idata = model.fit(chains={chains}, draws={draws}, tune={tune}, random_seed=1, progressbar=False,
                  inference_method="{method}")
post = idata["posterior"]
ess = {{}}
for name in post.data_vars:
    if "|" in name and not name.endswith("_sigma"):
        continue  # group effects themselves are not in the score (hierlm's is over fixef and SDs)
    values = post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
    ess[name] = float(np.min(array_stats.ess(values, chain_axis=0, draw_axis=1, method="bulk")))
print("RESULT" + json.dumps({{"ess": ess}}))
"""


def simulate_bernoulli(path: Path, n: int = 100_000, groups: int = 2_000, seed: int = 20261201) -> None:
    """Write the simulated Bernoulli data set (same rows for both packages)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, size=n)
    x = rng.normal(size=n)
    effects = rng.normal(scale=0.7, size=groups)
    eta = 0.3 + 0.8 * x + effects[g]
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    pd.DataFrame({"y": y, "x": x, "g": [f"g{k:04d}" for k in g]}).to_csv(path, index=False)


def command(child: str, case: str, **extra: object) -> list[str]:
    code = child.format(case=case, csv=SIM_CSV, cbpp=CBPP_CSV, **CASES[case], **extra)
    return [PYTHON, "-c", textwrap.dedent(code)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="cbpp only")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--case", choices=sorted(CASES), help="run one case only")
    args = parser.parse_args()
    if not SIM_CSV.exists():
        simulate_bernoulli(SIM_CSV)
    load_before = load_average()
    rows: dict[str, list[dict]] = {}
    cases = [args.case] if args.case else (["cbpp"] if args.quick else ["cbpp", "bernoulli"])
    for case in cases:
        if case == "cbpp":
            rows[case] = [measure(f"hierlm NUTS ({case})", command(HIERLM_CHILD, case), args.repeats)]
            rows[case] += [measure(f"bambi, {m} ({case})", command(BAMBI_CHILD, case, method=m),
                                   args.repeats, cold=False) for m in ("nutpie", "numpyro")]
        else:
            rows[case] = [single_cold(f"hierlm NUTS ({case})", command(HIERLM_CHILD, case)),
                          single_cold(f"bambi, nutpie ({case})",
                                      command(BAMBI_CHILD, case, method="nutpie"))]
    write_report(rows, load_before)


def single_cold(name: str, cmd: list[str]) -> dict:
    """One run on empty compile caches, reported as both cold and warm (sampling dominates)."""
    cache = Path(tempfile.mkdtemp(prefix="hierlm-bench-"))
    try:
        wall, result = run_child(cmd, cache_env(cache), timeout=7200)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    run = {"wall": wall, "ess": min(result["ess"].values()), "result": result}
    run["ess_per_second"] = run["ess"] / wall
    print(f"{name}: cold {wall:.1f} s ESS {run['ess']:.0f}", flush=True)
    return {"name": name, "cold": run, "warm": run}


def write_report(rows: dict[str, list[dict]], load_before: str) -> None:
    lines = ["# NUTS for GLMMs: hierlm against bambi", "",
             f"Machine: {platform.platform()}, {platform.processor() or 'cpu'}; load average "
             f"before {load_before}, after {load_average()}.", "",
             "Score = smallest bulk ESS over the fixed effects and group SDs / wall seconds of a "
             "fresh process (import, build, compile, sample). bambi is measured warm.", ""]
    for case, case_rows in rows.items():
        settings = CASES[case]
        lines += [f"## {case} ({settings['chains']} chains x {settings['draws']} draws, "
                  f"{settings['tune']} warm-up)", "",
                  "| run | cold s | cold ESS/s | warm s | warm ESS | warm ESS/s |",
                  "|---|---|---|---|---|---|"]
        for row in case_rows:
            cold = row.get("cold")
            warm = row["warm"]
            lines.append(
                f"| {row['name']} | {cold['wall']:.1f} | {cold['ess_per_second']:.1f} | "
                if cold else f"| {row['name']} | - | - | ")
            lines[-1] += f"{warm['wall']:.1f} | {warm['ess']:.0f} | {warm['ess_per_second']:.1f} |"
        ours = case_rows[0]
        best = max(case_rows[1:], key=lambda r: r["warm"]["ess_per_second"])
        warm_ratio = ours["warm"]["ess_per_second"] / best["warm"]["ess_per_second"]
        cold_ratio = ours["cold"]["ess_per_second"] / best["warm"]["ess_per_second"]
        timing = ours["warm"]["result"]["timing"]
        lines += ["", f"* hierlm vs fastest bambi ({best['name']}): warm **{warm_ratio:.1f}x**, "
                      f"hierlm cold vs bambi warm {cold_ratio:.1f}x (goal >= 3x)",
                  "* hierlm warm stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()),
                  "* hierlm estimates (fixef, SDs): "
                  f"{np.round(ours['warm']['result']['fixef'], 3).tolist()}, "
                  f"{np.round(ours['warm']['result']['sd'], 3).tolist()}", ""]
    target = RESULTS if len(rows) > 1 else RESULTS.with_name(f"bayes_glmm_{next(iter(rows))}.md")
    target.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
