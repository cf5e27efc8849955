"""Effect sizes in mixed models (the lecture notes' section 8), REML and NUTS.

Simulated SQUARE test scores (seeded): 40 wards of 12 patients; half of the
wards are treated (a between-ward predictor), age varies within wards. The
treatment raises the score by 1.5 points, so it explains part of the
between-ward variance and none of the within-ward variance.

* 8.1: Cohen's local f^2 of the treatment from the marginal R^2 of the full
  model (age + treatment) and the reduced model (age), same random part;
* 8.2: variance proportions of each model (intercept, slope and residual
  shares), the relative change of every variance component and the
  standardised change of the ward SD;
* estimated marginal means of the two arms and their difference, and the
  posterior probability that the treatment effect exceeds 1 point.

With ``HIERLM_EXAMPLE_QUICK=1`` the sampler takes 100 draws per chain only.
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

pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)


def simulate(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ward = np.repeat(np.arange(40), 12)
    treated = (np.arange(40) % 2 == 1)[ward]
    age = rng.normal(0.0, 1.0, ward.size)  # centred and scaled age
    slope = rng.normal(0.0, 0.3, 40)[ward]  # wards differ in the age effect too
    score = (10.0 + 1.5 * treated + (0.8 + slope) * age
             + rng.normal(0.0, 1.2, 40)[ward] + rng.normal(0.0, 1.5, ward.size))
    return pd.DataFrame({"score": score, "age": age, "ward": pd.Categorical(ward),
                         "treatment": pd.Categorical(np.where(treated, "treated", "control"),
                                                     categories=["control", "treated"])})


def main() -> None:
    data = simulate()
    reduced = hl.Model("score ~ age + (1 | ward)", data)
    full = hl.Model("score ~ age + treatment + (1 | ward)", data)
    print("true values: treatment +1.5, ward SD 1.2, residual SD 1.5")

    print("\n=== REML ===")
    reml_full, reml_reduced = full.fit(), reduced.fit()
    effects = hl.effect_sizes(reml_full, reml_reduced)
    print(effects.round(4))
    f2 = effects.loc["f2", "estimate"]
    print(f"REML Cohen's local f2 of treatment: {f2:.3f}")
    print("\nVariance shares of the full model:")
    print(reml_full.variance_shares().round(4))
    emm = reml_full.emmeans("treatment")
    print("\nEstimated marginal means (Satterthwaite df):")
    print(emm.table.round(3).to_string(index=False))
    print(emm.pairs().round(4).to_string(index=False))

    print("\nRandom intercept and slope (the notes' Prop_intercept, Prop_slope, Prop_residual):")
    slopes = hl.Model("score ~ age + treatment + (age | ward)", data).fit()
    print(slopes.variance_shares().round(4))

    print("\n=== NUTS ===")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # short chains in quick mode
        bayes_full = full.fit(method="nuts", progressbar=False, **SAMPLING)
        bayes_reduced = reduced.fit(method="nuts", progressbar=False,
                                    **{**SAMPLING, "random_seed": 2})
    posterior = hl.effect_sizes(bayes_full, bayes_reduced)
    print(posterior.round(4))
    print(f"NUTS Cohen's local f2 (posterior mean): {posterior.loc['f2', 'estimate']:.3f}")
    print(bayes_full.emmeans("treatment").pairs().round(4).to_string(index=False))
    print(bayes_full.hypothesis("treatmenttreated > 1").round(4))


if __name__ == "__main__":
    main()
