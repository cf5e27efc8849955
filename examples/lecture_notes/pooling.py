"""Complete, no and partial pooling of the pigs' growth lines.

``weight ~ week + (week | id)`` gives every pig its own intercept and growth
rate. ``fit.shrinkage("id")`` lines up, for every pig and coefficient,

- complete pooling: one line for all pigs (the fixed effects),
- no pooling: a separate least-squares line per pig,
- partial pooling: the mixed model's line for the pig, pulled from its own
  line towards the common one, the more so the noisier its own estimate.

Both the REML fit and the NUTS posterior are shown. With
``HIERLM_EXAMPLE_QUICK=1`` the sampler takes 100 draws per chain only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

import hierlm as hl
from hierlm.cards import read_csv_data
from hierlm.errors import HierlmWarning

QUICK = os.environ.get("HIERLM_EXAMPLE_QUICK") == "1"
SAMPLING = ({"draws": 100, "tune": 100, "chains": 2, "random_seed": 1} if QUICK
            else {"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 1})
COLUMNS = ["level", "coefficient", "no_pooling", "partial_pooling", "complete_pooling",
           "shrinkage_factor", "pull"]

pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)


def load_pigs() -> pd.DataFrame:
    """The shared pig weights, found next to the repository or in HIERLM_DATA_PATH."""
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return read_csv_data("pigs.csv", categorical=["id"], base=shared)


def show(title: str, fit: object) -> None:
    print(f"\n=== {title} ===")
    pooling = fit.shrinkage("id")  # type: ignore[attr-defined]
    print("\n".join(pooling.lines()))
    table = pooling.table
    columns = [c for c in COLUMNS if c in table.columns]
    print(table[columns].head(6).round(3).to_string(index=False))
    spread = table.groupby("coefficient", observed=True)[["no_pooling", "partial_pooling"]].std()
    print("spread of the pigs' coefficients (SD across pigs), no vs partial pooling:")
    print(spread.round(3).to_string())


def main() -> None:
    pigs = load_pigs()
    model = hl.Model("weight ~ week + (week | id)", pigs)

    reml = model.fit(method="reml")
    print(reml.fixef())
    print(reml.varcorr())
    show("REML: shrinkage of each pig's line", reml)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # short chains in quick mode
        bayes = model.fit(method="nuts", progressbar=False, **SAMPLING)
        show("NUTS: shrinkage of each pig's line (posterior)", bayes)


if __name__ == "__main__":
    main()
