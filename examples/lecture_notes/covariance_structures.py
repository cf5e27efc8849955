"""Covariance structures for the pig growth data (lecture notes, section 7).

48 pigs weighed once a week for 9 weeks. Instead of a random intercept, the
within-pig covariance of the 9 weighings is modelled directly, as a residual
structure (nlme's ``gls(correlation=, weights=)``, SAS's ``REPEATED``):

- CS: one variance, one correlation for every pair (what a random intercept implies);
- UN: every variance and covariance free, ``T (T + 1) / 2 = 45`` parameters;
- CSH: CS with one variance per week;
- AR(1): correlation ``rho^|t - s|``, decaying with the lag;
- ARH(1): AR(1) with one variance per week;
- Toeplitz: one correlation per lag, one variance.

The six are fitted by ML (their fixed effects are the same, but ML is the safe
basis for comparing covariance models by AIC/BIC), ranked with
``hl.compare_structures``, their implied correlation matrices are put side by
side, and the chosen structure is refitted by REML for inference. Last, the
AR(1) model by NUTS next to its REML fit, with PSIS-LOO per pig (a pig's
weighings are correlated, so the unit is the pig).

The pigs data are read from ``$HIERLM_DATA_PATH/pigs.csv`` or from
``shared/data/pigs.csv`` next to the repository. With
``HIERLM_EXAMPLE_QUICK=1`` the sampler takes 2 chains x 200 draws.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import hierlm as hl
from hierlm.cards import read_csv_data

QUICK = os.environ.get("HIERLM_EXAMPLE_QUICK") == "1"
pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 40)

#: The lecture notes' six structures, as hierlm's ``residual=``.
STRUCTURES = {
    "CS": "cs(week | id)",
    "UN": "un(week | id)",
    "CSH": "csh(week | id)",
    "AR(1)": "ar1(week | id)",
    "ARH(1)": "arh1(week | id)",
    "Toeplitz": "toep(week | id)",
}


def load_pigs() -> pd.DataFrame:
    """The shared pig weights, found next to the repository or in HIERLM_DATA_PATH."""
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return read_csv_data("pigs.csv", categorical=["id"], base=shared)


def side_by_side(matrices: dict[str, pd.DataFrame], weeks: int) -> pd.DataFrame:
    """The first ``weeks`` rows and columns of each matrix, next to each other."""
    return pd.concat({name: m.iloc[:weeks, :weeks] for name, m in matrices.items()}, axis=1)


def main() -> None:
    pigs = load_pigs()
    formula = "weight ~ week"

    print("=== The six structures, fitted by ML ===")
    fits = {}
    for name, residual in STRUCTURES.items():
        fits[name] = hl.Model(formula, pigs, residual=residual).fit(method="ml")
        fit = fits[name]
        params = fit.structure_parameters()
        ratio = params["parameter"].str.startswith("ratio.")
        pairs = list(zip(params.loc[~ratio, "parameter"], params.loc[~ratio, "estimate"],
                         strict=True))
        shown = ", ".join(f"{p} = {v:.3f}" for p, v in pairs[:3]) + (", ..." if len(pairs) > 3 else "")
        if ratio.any():
            shown += f", {int(ratio.sum())} SD ratios to week 1"
        if params.empty:  # UN: its parameters are the matrix itself
            shown = "every variance and covariance free"
        print(f"{name:>9} {residual:<16} logLik {fit.loglik:9.2f}  npar {fit.n_params:2d}  "
              f"sigma {fit.sigma:.3f}  {shown}")

    print("\n=== AIC / BIC of the ML fits (hl.compare_structures) ===")
    table = hl.compare_structures(formula, pigs, list(STRUCTURES.values()), method="ml")
    names = {residual: name for name, residual in STRUCTURES.items()}
    table.insert(0, "name", [names[s] for s in table.index])
    print(table.round(2).to_string())
    best_aic = names[str(table.index[0])]
    best_bic = names[str(table["BIC"].idxmin())]
    print(f"smallest AIC: {best_aic}; smallest BIC: {best_bic}")

    print("\n=== Implied correlations of one pig's weighings (ML fits, weeks 1-4 of 9) ===")
    correlations = {name: fit.residual_covariance(correlation=True) for name, fit in fits.items()}
    print(side_by_side(correlations, 4).round(2).to_string())
    print("\nCorrelation of week 1 with each week (first row of each 9 x 9 matrix):")
    first_row = pd.DataFrame({name: m.iloc[0] for name, m in correlations.items()}).T
    print(first_row.round(2).to_string())
    print("\nSD of the weighings by week (square roots of the diagonal):")
    sds = pd.DataFrame({name: np.sqrt(np.diag(fit.residual_covariance().to_numpy()))
                        for name, fit in fits.items()}, index=correlations["UN"].index).T
    print(sds.round(2).to_string())

    print(f"\n=== The chosen structure ({best_aic}, smallest AIC) refitted by REML ===")
    chosen = hl.Model(formula, pigs, residual=STRUCTURES[best_aic])
    reml = chosen.fit(method="reml")
    print(reml.summary())
    params = reml.structure_parameters()
    if not params.empty:
        print("Structure parameters (REML):")
        print(params.round(4).to_string(index=False))
    print("Implied covariance of one pig's weighings (REML, weeks 1-4 of 9):")
    print(reml.residual_covariance().iloc[:4, :4].round(2).to_string())
    print("Implied correlation (REML, all 9 weeks):")
    print(reml.residual_covariance(correlation=True).round(2).to_string())
    print("\n=== Bayesian AR(1) next to REML ===")
    ar1 = hl.Model(formula, pigs, residual=STRUCTURES["AR(1)"])
    draws = {"chains": 2, "draws": 200, "tune": 300} if QUICK else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (quick runs: too few draws for the diagnostics)
        nuts = ar1.fit(method="nuts", random_seed=1, progressbar=False, **draws)
    reml_ar1 = ar1.fit(method="reml")
    side = pd.DataFrame({
        "REML": [*reml_ar1.fixef()["estimate"], reml_ar1.sigma,
                 reml_ar1.structure_parameters()["estimate"].iloc[0]],
        "NUTS mean": [*nuts.fixef()["estimate"], float(nuts.idata.posterior["sigma"].mean()),
                      nuts.structure_parameters()["estimate"].iloc[0]],
        "NUTS sd": [*nuts.fixef()["std_error"], float(nuts.idata.posterior["sigma"].std()),
                    nuts.structure_parameters()["std_error"].iloc[0]],
    }, index=[*nuts.design.fixed_names, "sigma", "rho"])
    print(side.round(4).to_string())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(nuts.loo(level="group"))

if __name__ == "__main__":
    main()
