"""Run the lecture-notes examples end to end (quick sampling) and check key output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURE_NOTES = ROOT / "examples" / "lecture_notes"

EXPECTED = {
    "random_intercept.py": ["REML ICC = tau2 / (tau2 + sigma2)", "NUTS ICC (posterior mean)",
                            "week 1   19.54   15.14   15.14   15.14"],
    "pooling.py": ["id / Intercept: shrinkage factor", "id / week: shrinkage factor",
                   "NUTS: shrinkage of each pig's line"],
    "nested_crossed.py": ["cask:batch  cask:batch + batch", "sample  sample",
                          "Correlation of two observations sharing a level"],
    "within_between.py": ["REML contextual effect (between - within): 1.880",
                          "NUTS contextual effect"],
    "model_comparison.py": ["Pr(boundary)", "boundary-corrected 3.96e-10", "AIC 1763.94",
                            "LOO ranking (hl.compare)"],
    "bayes_vs_gee.py": ["gee_se_robust", "robust GEE SE / REML SE:    [0.97 0.97]"],
    "covariance_structures.py": ["smallest AIC: UN; smallest BIC: ARH(1)",
                                 "AR(1) ar1(week | id)   logLik   -847.36  npar  4",
                                 "Bayesian AR(1) next to REML", "levels of id"],
    "effect_sizes.py": ["REML Cohen's local f2 of treatment: 0.309", "rel_change[ward]           0.5455",
                        "age|ward", "NUTS Cohen's local f2", "prob_direction"],
}


def test_every_lecture_note_is_tested() -> None:
    assert sorted(p.name for p in LECTURE_NOTES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_lecture_note_runs(script: str) -> None:
    env = {**os.environ, "HIERLM_EXAMPLE_QUICK": "1"}
    result = subprocess.run([sys.executable, str(LECTURE_NOTES / script)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in EXPECTED[script]:
        assert line in result.stdout, f"{line!r} missing from the output of {script}"
