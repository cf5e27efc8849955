"""Nested and crossed random effects: variance shares by REML and NUTS.

- Pastes: 10 batches of paste, 3 casks per batch, 2 assays per cask. Casks
  are nested in batches: ``strength ~ 1 + (1 | batch/cask)`` expands to
  ``(1 | cask:batch) + (1 | batch)`` (lme4's names).
- Penicillin: 6 samples assayed on each of 24 plates. Plates and samples are
  crossed: ``diameter ~ 1 + (1 | plate) + (1 | sample)``.

``icc()`` reports, per grouping factor, the correlation of two observations
sharing that level, and each component's share of the total variance. With
``HIERLM_EXAMPLE_QUICK=1`` the sampler takes 100 draws per chain only.
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


def side_by_side(title: str, formula: str, data: pd.DataFrame) -> None:
    print(f"\n{'=' * 78}\n{title}: {formula}\n{'=' * 78}")
    model = hl.Model(formula, data)
    reml = model.fit(method="reml")
    print(reml.varcorr())
    print("REML:")
    print(reml.icc())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)  # short chains, boundary SDs
        bayes = model.fit(method="nuts", progressbar=False, **SAMPLING)
        print("NUTS:")
        posterior = bayes.icc()
    print(posterior)
    shares = pd.DataFrame({"reml": reml.icc().correlations["estimate"],
                           "nuts_mean": posterior.correlations["mean"]})
    print("Correlation of two observations sharing a level (REML vs posterior mean):")
    print(shares.round(3).to_string())


def main() -> None:
    side_by_side("Nested (Pastes)", "strength ~ 1 + (1 | batch/cask)",
                 hl.datasets.load("Pastes"))
    side_by_side("Crossed (Penicillin)", "diameter ~ 1 + (1 | plate) + (1 | sample)",
                 hl.datasets.load("Penicillin"))


if __name__ == "__main__":
    main()
