"""Comparing random-effects structures on sleepstudy: LRT, AIC/BIC, LOO/WAIC.

``Reaction ~ Days + (1 | Subject)`` against ``Reaction ~ Days + (Days | Subject)``:

- likelihood-ratio test with ``hl.anova``: the null puts the slope variance on
  the boundary (0), so next to lme4's chi-square(2) p-value it reports the
  50:50 chi-square(1)/chi-square(2) mixture p-value;
- AIC and BIC of the ML fits (the fixed effects are the same here, so REML
  criteria would also be comparable; ML fits are the safe default);
- PSIS-LOO and WAIC of the NUTS fits, ranked with ``hl.compare``.

With ``HIERLM_EXAMPLE_QUICK=1`` the sampler takes 100 draws per chain only.
"""

from __future__ import annotations

import os
import warnings

import pandas as pd

import hierlm as hl
from hierlm.errors import HierlmWarning

QUICK = os.environ.get("HIERLM_EXAMPLE_QUICK") == "1"
SAMPLING = ({"draws": 100, "tune": 100, "chains": 2, "random_seed": 1} if QUICK
            else {"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 1})

pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)


def main() -> None:
    sleep = hl.datasets.load("sleepstudy")
    small = hl.Model("Reaction ~ Days + (1 | Subject)", sleep)
    big = hl.Model("Reaction ~ Days + (Days | Subject)", sleep)

    print("=== Likelihood-ratio test ===")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "refitting model(s) with ML (instead of REML)"
        test = hl.anova(small.fit(method="reml"), big.fit(method="reml"))
    print(test)
    print(f"LRT p-value: chi2(2) {test.p_value:.3g}, boundary-corrected {test.p_boundary:.3g}")

    print("\n=== AIC / BIC of the ML fits ===")
    ml = {"intercept": small.fit(method="ml"), "slope": big.fit(method="ml")}
    for name, fit in ml.items():
        print(f"{name:>9}: logLik {fit.loglik:.2f}  AIC {fit.aic:.2f}  BIC {fit.bic:.2f}")

    print("\n=== LOO / WAIC of the NUTS fits ===")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # short chains, Pareto k warnings
        bayes = {"intercept": small.fit(method="nuts", progressbar=False, **SAMPLING),
                 "slope": big.fit(method="nuts", progressbar=False, **SAMPLING)}
        for name, fit in bayes.items():
            print(f"--- {name} ---")
            print(fit.loo())
            print(fit.waic())
        columns = ["rank", "elpd", "p", "elpd_diff", "dse", "weight"]
        ranking = hl.compare(bayes)
    print("LOO ranking (hl.compare):")
    print(ranking[columns].round(2))


if __name__ == "__main__":
    main()
