"""Residual covariance structures against nlme 3.1-162 (fixtures/nlme/residual.json).

``make_residual.R`` fits ``gls``/``lme`` with ``corCompSymm``, ``corAR1``,
``corCAR1``, ``corSymm`` and ``varIdent`` on the pig growth data, Orthodont
and BodyWeight (irregular times); heterogeneous Toeplitz comes from glmmTMB
(``toep`` with the residual switched off). Tolerances (the issue's):
log-likelihood 1e-3 absolute, fixed effects 1e-4 relative, SEs 2e-3,
structure parameters and implied covariances 1e-3; the AIC ranking of the six
structures on pigs equals nlme's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import HierlmWarning

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "nlme" / "residual.json").read_text())
SHARED = Path(__file__).parents[3] / "shared" / "data"

# nlme structure -> hierlm residual= (time | group) per data set
RESIDUAL = {"IND": "independent({g})", "CS": "cs({g})", "CSH": "csh({t} | {g})",
            "UN": "un({t} | {g})", "AR1": "ar1({t} | {g})", "ARH1": "arh1({t} | {g})",
            "CAR1": "car1({t} | {g})", "RI_AR1": "ar1({t} | {g})", "TOEPH": "toeph({t} | {g})",
            "TOEP": "toep({t} | {g})"}
DATA = {"pigs": ("weight ~ week", "week", "id"),
        "Orthodont": ("distance ~ age * Sex", "age", "Subject"),
        "BodyWeight": ("weight ~ Time * Diet", "Time", "Rat")}


def _frame(name: str) -> pd.DataFrame:
    if name == "pigs":
        path = SHARED / "pigs.csv"
        if not path.is_file():
            pytest.skip(f"the shared pig data is not at {path}")
        return pd.read_csv(path).assign(id=lambda d: d["id"].astype(str))
    return hl.datasets.load(name)


def _structure_of(fit: dict) -> str:
    return fit["id"].split("_", 1)[1].rsplit("_", 1)[0]


def _fit(fit: dict):
    structure = _structure_of(fit)
    formula, time, group = DATA[fit["data"]]
    if structure == "RI_AR1":
        formula += f" + (1 | {group})"
    residual = RESIDUAL[structure].format(t=time, g=group)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        model = hl.Model(formula, _frame(fit["data"]), residual=residual)
        return model.fit(method="reml" if fit["method"] == "REML" else "ml")


FITS = [f for f in FIXTURE["fits"] if f.get("converged", True)]


@pytest.fixture(scope="module")
def fitted():
    cache: dict[str, object] = {}

    def get(fit):
        if fit["id"] not in cache:
            cache[fit["id"]] = _fit(fit)
        return cache[fit["id"]]

    return get


@pytest.mark.parametrize("fit", FITS, ids=[f["id"] for f in FITS])
def test_loglik_fixed_effects_and_ses(fitted, fit):
    result = fitted(fit)
    assert result.loglik == pytest.approx(fit["logLik"], abs=1e-3)
    reference = pd.DataFrame(fit["fixef"])
    np.testing.assert_allclose(result.beta, reference["estimate"], rtol=1e-4)
    se = np.sqrt(np.diag(result.vcov().to_numpy()))
    expected = reference["std_error"].to_numpy()
    if fit["method"] == "ML":
        # nlme's gls/lme scale Var(beta) of ML fits by N / (N - p) (sigma^2 with N - p
        # denominators); lme4 and hierlm use the ML sigma^2 itself
        n, p = result.nobs, result.design.p
        expected = expected * np.sqrt((n - p) / n)
    np.testing.assert_allclose(se, expected, rtol=2e-3)
    assert result.n_params == fit["df"]
    assert result.aic == pytest.approx(fit["AIC"], abs=2e-3)
    if fit["method"] == "ML":
        assert result.bic == pytest.approx(fit["BIC"], abs=2e-3)


@pytest.mark.parametrize("fit", FITS, ids=[f["id"] for f in FITS])
def test_structure_parameters_and_covariance(fitted, fit):
    result = fitted(fit)
    structure = _structure_of(fit)
    table = result.structure_parameters().set_index("parameter")["estimate"]
    params = fit.get("correlation_parameters")
    if isinstance(params, dict) and structure != "RI_AR1":
        key = "phi" if structure == "CAR1" else "rho"  # nlme's Rho (CS) and Phi (AR1, CAR1)
        assert table[key] == pytest.approx(next(iter(params.values())), rel=1e-3)
    if fit.get("variance_ratios") and structure != "UN":
        for level, ratio in fit["variance_ratios"].items():
            if ratio != 1 or f"ratio.{level}" in table:
                assert table[f"ratio.{level}"] == pytest.approx(ratio, rel=1e-3)
    if fit.get("sigma") and structure != "RI_AR1":
        assert result.sigma == pytest.approx(fit["sigma"], rel=1e-3)
    if fit.get("marginal_cov") is not None and structure not in ("IND", "RI_AR1"):
        reference = np.asarray(fit["marginal_cov"], dtype=float)
        got = result.residual_covariance().to_numpy()
        if got.shape == reference.shape:
            np.testing.assert_allclose(got, reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max())


def test_heterogeneous_toeplitz_against_glmmtmb():
    reference = next(t for t in FIXTURE["toeplitz"] if t["structure"] == "TOEPH"
                     and t["method"] == "ML")
    data = _frame("pigs")
    fit = hl.Model("weight ~ week", data, residual="toeph(week | id)").fit("ml")
    assert fit.loglik >= reference["logLik"] - 1e-3
    assert fit.loglik == pytest.approx(reference["logLik"], abs=1e-3)
    corr = fit.residual_covariance(correlation=True).to_numpy()
    np.testing.assert_allclose(np.diagonal(corr, 1).mean(), reference["corr_by_lag"][0], rtol=1e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.residual_covariance().to_numpy())),
                               reference["sd_by_week"], rtol=1e-3)


def test_aic_ranking_of_the_six_structures_equals_nlme():
    ranking = FIXTURE["pigs_ml_ranking"]
    names = {"CS": "cs(id)", "CSH": "csh(week | id)", "UN": "un(week | id)",
             "AR1": "ar1(week | id)", "ARH1": "arh1(week | id)", "TOEPH": "toeph(week | id)"}
    table = hl.compare_structures("weight ~ week", _frame("pigs"), list(names.values()))
    back = {v: k for k, v in names.items()}
    assert [back[s] for s in table.index] == ranking["six_structures"]["AIC_order"]
    assert [back[s] for s in table.sort_values("BIC").index] == ranking["six_structures"]["BIC_order"]
    for row in ranking["table"]:
        if row["structure"] in names:
            assert table.loc[names[row["structure"]], "AIC"] == pytest.approx(row["AIC"], abs=2e-3)
            assert table.loc[names[row["structure"]], "npar"] == row["n_parameters"]
