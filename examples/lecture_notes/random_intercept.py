"""Random intercept for the pig growth data: REML next to NUTS.

48 pigs weighed once a week for 9 weeks. ``weight ~ week + (1 | id)`` gives
every pig its own level around a common growth line. The ICC
``tau^2 / (tau^2 + sigma^2)`` is the correlation of two weighings of one pig,
and the model implies a compound-symmetry covariance for a pig's weighings:
``tau^2 + sigma^2`` on the diagonal and ``tau^2`` everywhere off it.

The pigs data are read from ``$HIERLM_DATA_PATH/pigs.csv`` or from
``shared/data/pigs.csv`` next to the repository. With
``HIERLM_EXAMPLE_QUICK=1`` the sampler takes 100 draws per chain only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import hierlm as hl
from hierlm.cards import read_csv_data
from hierlm.errors import HierlmWarning

QUICK = os.environ.get("HIERLM_EXAMPLE_QUICK") == "1"
SAMPLING = ({"draws": 100, "tune": 100, "chains": 2, "random_seed": 1} if QUICK
            else {"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 1})

pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)


def load_pigs() -> pd.DataFrame:
    """The shared pig weights, found next to the repository or in HIERLM_DATA_PATH."""
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return read_csv_data("pigs.csv", categorical=["id"], base=shared)


def compound_symmetry(tau2: float, sigma2: float, weeks: int = 4) -> pd.DataFrame:
    cov = np.full((weeks, weeks), tau2) + np.eye(weeks) * sigma2
    labels = [f"week {w}" for w in range(1, weeks + 1)]
    return pd.DataFrame(cov, index=labels, columns=labels)


def variances(fit: object) -> tuple[float, float]:
    vc = fit.varcorr()  # type: ignore[attr-defined]
    tau2 = float(vc.loc[vc["group"] == "id", "vcov"].iloc[0])
    sigma2 = float(vc.loc[vc["group"] == "Residual", "vcov"].iloc[0])
    return tau2, sigma2


def main() -> None:
    pigs = load_pigs()
    model = hl.Model("weight ~ week + (1 | id)", pigs)

    print("=== REML ===")
    reml = model.fit(method="reml")
    print(reml.summary())
    tau2, sigma2 = variances(reml)
    print(f"REML ICC = tau2 / (tau2 + sigma2) = {tau2:.3f} / ({tau2:.3f} + {sigma2:.3f}) "
          f"= {reml.icc().value:.3f}")
    print("Implied covariance of one pig's first 4 weighings (REML):")
    print(compound_symmetry(tau2, sigma2).round(2).to_string())
    cs = compound_symmetry(tau2, sigma2).to_numpy()
    print(f"implied correlation off the diagonal: {cs[0, 1] / cs[0, 0]:.3f} (= the ICC)")

    print("\n=== NUTS ===")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # short chains in quick mode
        bayes = model.fit(method="nuts", progressbar=False, **SAMPLING)
        print(bayes.fixef())
        icc_post = bayes.icc()
    print(icc_post)
    table = hl.compare_estimates(bayes, reml)
    print(table.to_string(index=False))
    sd_id = float(table.loc[(table["kind"] == "sd") & (table["group"] == "id"), "post_mean"].iloc[0])
    sigma = float(table.loc[table["kind"] == "sigma", "post_mean"].iloc[0])
    print(f"NUTS ICC (posterior mean) = {icc_post.value:.3f}")
    print("Implied covariance of one pig's first 4 weighings (plug-in of posterior mean SDs):")
    print(compound_symmetry(sd_id**2, sigma**2).round(2).to_string())


if __name__ == "__main__":
    main()
