"""Sleepstudy walkthrough: ICC, R², shrinkage, prediction, LOO and the GEE comparison.

Reaction times of 18 subjects over 10 days of sleep deprivation (Belenky et
al. 2003, bundled from lme4). We fit ``Reaction ~ Days + (Days | Subject)``
twice, by REML and by NUTS, and read the quantities a mixed-model course asks
for off both fits with the same functions of ``hierlm.results``.

Run it with ``python examples/sleepstudy_walkthrough.py``. With the
environment variable ``HIERLM_EXAMPLE_QUICK=1`` (as the test suite sets) the
sampler takes a few hundred draws only: the numbers are then rough, the code
path is the same.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

import hierlm as hl
from hierlm.errors import HierlmWarning
from hierlm.results import compare, compare_estimates, icc, loo, predict, r2, shrinkage, waic

QUICK = os.environ.get("HIERLM_EXAMPLE_QUICK") == "1"
SAMPLING = ({"draws": 150, "tune": 150, "chains": 2, "random_seed": 1} if QUICK
            else {"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 1})

pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)
pd.set_option("display.precision", 3)


def section(title: str) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}")


def main() -> dict[str, object]:
    sleep = hl.datasets.load("sleepstudy")
    slope_model = hl.Model("Reaction ~ Days + (Days | Subject)", sleep)
    intercept_model = hl.Model("Reaction ~ Days + (1 | Subject)", sleep)

    section("1. REML fits (lme4's estimates)")
    reml = slope_model.fit(method="reml")
    reml_intercept = intercept_model.fit(method="reml")
    print(reml.fixef())
    print(reml.varcorr())
    print(reml.anova())                      # lmerTest's F-table (type III, Satterthwaite)
    print(reml.confint(method="profile"))    # lme4's default confint: every parameter

    section("2. Intraclass correlation")
    # Random intercept only: ICC = tau^2 / (tau^2 + sigma^2), the correlation of two
    # reaction times of one subject once Days is accounted for.
    print(icc(reml_intercept))
    # With a random slope the between-subject variance depends on Days: the adjusted
    # ICC averages z' G z over the observed rows; at= evaluates it at chosen days.
    print(icc(reml))
    for day in (0, 9):
        print(f"ICC at Days = {day}: {icc(reml, at={'Days': day}).value:.3f}")

    section("3. Variance explained (Nakagawa & Schielzeth R²)")
    print(r2(reml))

    section("4. Shrinkage: no pooling, partial pooling, complete pooling")
    pooling = shrinkage(reml, "Subject")
    print("\n".join(pooling.lines()))
    print(pooling.table.head(6).to_string(index=False))

    section("5. Bayesian fit (NUTS)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # short chains in quick mode
        bayes = slope_model.fit(method="nuts", **SAMPLING)
        bayes_intercept = intercept_model.fit(method="nuts", **SAMPLING)
    print(icc(bayes))
    print(r2(bayes))
    posterior_pooling = shrinkage(bayes, "Subject")
    print("\n".join(posterior_pooling.lines()))

    section("6. Predictions: a known subject and a new one")
    new_days = pd.DataFrame({"Days": [0, 9, 0, 9], "Subject": ["308", "308", "new", "new"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # "new" is a new subject, on purpose
        design = slope_model.new_design(new_days)
    print("REML (a new subject gets the population line):")
    print(predict(reml, design, kind="response"))
    print("NUTS (a new subject's line is drawn from N(0, G)):")
    print(predict(bayes, design, kind="response", seed=2,
                  new_level_labels={"Subject": new_days["Subject"]}))

    section("7. Predictive accuracy: LOO and WAIC")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        by_observation = loo(bayes)
        by_subject = loo(bayes, level="group")
        print(by_observation)
        print(waic(bayes))
        print(by_subject)
        print("Leave one observation out:")
        print(compare({"slope": bayes, "intercept": bayes_intercept}))
        print("Leave one subject out (how well each model predicts a new subject):")
        print(compare({"slope": bayes, "intercept": bayes_intercept}, level="group"))

    section("8. Posterior vs REML vs GEE")
    table = compare_estimates(bayes, reml, gee=True)
    print(table.to_string(index=False))
    fixed = table[table["kind"] == "fixed"]
    ratio = (fixed["gee_se_robust"] / fixed["std_error"]).to_numpy()
    print(f"robust GEE SE / REML SE for (Intercept, Days): {np.round(ratio, 2)}")
    return {"reml": reml, "bayes": bayes, "table": table, "loo": by_observation, "loo_group": by_subject}


if __name__ == "__main__":
    main()
