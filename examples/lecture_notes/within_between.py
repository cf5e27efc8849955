"""Within- and between-group slopes, and the contextual effect.

Simulated panel (seeded): 30 groups of 8 rows, a within-group slope of 1 and
a between-group slope of 3. ``y ~ x + (1 | g)`` estimates one slope that
mixes the two; ``y ~ within(x, g) + between(x, g) + (1 | g)`` separates them,
and the contextual effect is ``between - within`` (the effect of the group
mean of x over and above the individual's own x). Fitted by REML and NUTS.
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
WITHIN, BETWEEN = "within(x, g)", "between(x, g)"

pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)


def simulate(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(30), 8)
    level = rng.normal(0.0, 2.0, 30)  # group means of x
    x = level[groups] + rng.normal(0.0, 1.0, groups.size)
    y = (1.0 * (x - level[groups]) + 3.0 * level[groups]
         + rng.normal(0.0, 1.0, 30)[groups] + rng.normal(0.0, 0.5, groups.size))
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(groups)})


def main() -> None:
    panel = simulate()
    split = hl.Model("y ~ within(x, g) + between(x, g) + (1 | g)", panel)
    single = hl.Model("y ~ x + (1 | g)", panel)
    print("true slopes: within 1, between 3, contextual effect 2")

    print("\n=== REML ===")
    reml = split.fit(method="reml")
    reml_single = single.fit(method="reml")
    fixed = reml.fixef()
    print(fixed[["estimate", "std_error"]].round(3))
    print(f"single slope of y ~ x + (1 | g): {reml_single.fixef().loc['x', 'estimate']:.3f}")
    contextual = fixed.loc[BETWEEN, "estimate"] - fixed.loc[WITHIN, "estimate"]
    # within(x, g) and between(x, g) are orthogonal columns, so the two slope
    # estimates are nearly uncorrelated; their SEs combine as for independent ones.
    se = float(np.hypot(fixed.loc[BETWEEN, "std_error"], fixed.loc[WITHIN, "std_error"]))
    print(f"REML contextual effect (between - within): {contextual:.3f} (SE about {se:.3f})")

    print("\n=== NUTS ===")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # short chains in quick mode
        bayes = split.fit(method="nuts", progressbar=False, **SAMPLING)
        bayes_single = single.fit(method="nuts", progressbar=False, **SAMPLING)
    post = bayes.fixef()
    print(post[["estimate", "std_error"]].round(3))  # posterior mean and SD
    print(f"single slope of y ~ x + (1 | g): {bayes_single.fixef().loc['x', 'estimate']:.3f}")
    contextual_post = post.loc[BETWEEN, "estimate"] - post.loc[WITHIN, "estimate"]
    print(f"NUTS contextual effect (posterior mean of between - within): {contextual_post:.3f}")


if __name__ == "__main__":
    main()
