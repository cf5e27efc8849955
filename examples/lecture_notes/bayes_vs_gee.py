"""Posterior, REML and GEE estimates side by side on sleepstudy.

``hl.compare_estimates(nuts_fit, reml_fit, gee=True)`` lines up, for
``Reaction ~ Days + (Days | Subject)``, the posterior mean/SD/interval, the
REML estimate with its standard error and Wald interval, and a marginal GEE
fit (exchangeable working correlation) with naive and robust (sandwich) SEs.
The fixed effects are population-average and subject-specific at once in a
linear model, so all three estimate the same thing; they differ in how they
account for uncertainty. With ``HIERLM_EXAMPLE_QUICK=1`` the sampler takes
100 draws per chain only.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

import hierlm as hl
from hierlm.errors import HierlmWarning

QUICK = os.environ.get("HIERLM_EXAMPLE_QUICK") == "1"
SAMPLING = ({"draws": 100, "tune": 100, "chains": 2, "random_seed": 1} if QUICK
            else {"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 1})

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)


def main() -> None:
    sleep = hl.datasets.load("sleepstudy")
    model = hl.Model("Reaction ~ Days + (Days | Subject)", sleep)
    reml = model.fit(method="reml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # short chains in quick mode
        bayes = model.fit(method="nuts", progressbar=False, **SAMPLING)
        table = hl.compare_estimates(bayes, reml, gee=True)
    columns = ["kind", "group", "term1", "term2", "post_mean", "post_sd", "estimate", "std_error",
               "gee_estimate", "gee_se_naive", "gee_se_robust"]
    print(table[[c for c in columns if c in table.columns]].round(3).to_string(index=False))
    fixed = table[table["kind"] == "fixed"]
    print("SE ratios for (Intercept, Days):")
    print(f"  posterior SD / REML SE:     {np.round((fixed['post_sd'] / fixed['std_error']).to_numpy(), 2)}")
    print(f"  robust GEE SE / REML SE:    "
          f"{np.round((fixed['gee_se_robust'] / fixed['std_error']).to_numpy(), 2)}")


if __name__ == "__main__":
    main()
