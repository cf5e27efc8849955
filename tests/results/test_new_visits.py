"""Prediction of new visits under residual structures (the kriging of the residual).

Reference: ``tests/fixtures/nlme/new_visits.json`` from ``make_new_visits.R`` (R 4.2.2,
nlme 3.1-162): the conditional mean and the plug-in prediction variances of a pig's
held-out visits given its observed ones, from nlme's fitted covariance at its optimum
(``predict.gls`` ignores the correlation). Tolerances: mean and standard errors rel 1e-5
(the two optima agree to ~1e-7 in the parameters), standard errors below 1e-2 abs 1e-6.
The unstructured case is the exception (:data:`SE_REL`): its 45 covariance parameters lie
on a ridge where the REML criterion is flat to 1e-8, so two optimisers stop at points
whose prediction SEs differ by a few 1e-5 (with scipy 1.18's L-BFGS-B hierlm's
log-likelihood is 1.3e-8 above nlme's, and a restart from its end point changes nothing,
while the SEs differ by up to 3.5e-5 relative).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import DataError

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "nlme"
                      / "new_visits.json").read_text())
CASES = {case["structure"]: case for case in FIXTURE["cases"]}
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
#: relative tolerance of the standard errors per structure (the docstring says why un differs)
SE_REL = {"un": 5e-5}


def _train() -> pd.DataFrame:
    pigs = pd.read_csv(DATA / "pigs.csv")
    drop = (((pigs.id == 1) & pigs.week.isin([5, 9])) | ((pigs.id == 2) & pigs.week.isin([2, 3]))
            | ((pigs.id == 3) & (pigs.week == 9)))
    return pigs[~drop]


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return _train()


@pytest.mark.parametrize("name", sorted(CASES))
def test_new_visits_match_the_nlme_conditional_distribution(name, train):
    case = CASES[name]
    variance = "week" if name in ("arh1", "un") else None
    residual = case["residual"].replace("arh1", "ar1") if name == "arh1" else case["residual"]
    fit = hl.Model("weight ~ week", train, residual=residual, variance=variance).fit("reml")
    assert fit.loglik == pytest.approx(case["loglik"], abs=1e-4)
    new = pd.DataFrame([{"id": r["id"], "week": r["week"]} for r in case["rows"]])
    mean = fit.predict(new)
    response = fit.predict(new, kind="response")
    se_rel = SE_REL.get(name, 1e-5)
    for k, row in enumerate(case["rows"]):
        assert mean["estimate"].iloc[k] == pytest.approx(row["mean"], rel=1e-5), row
        assert mean["std_error"].iloc[k] == pytest.approx(row["se_mean"], rel=se_rel, abs=1e-6), row
        assert response["std_error"].iloc[k] == pytest.approx(row["se_response"], rel=se_rel), row


def test_kriging_is_blup_plus_residual_kriging():
    """With a random intercept: x beta + V_nO V_OO^-1 r_O = x beta + z b + Omega_nO Omega_OO^-1 e_O."""
    data = hl.datasets.load("Orthodont")
    subject = str(data["Subject"].iloc[0])
    data = data[~((data["Subject"].astype(str) == subject) & (data["age"] == 14))]
    fit = hl.Model("distance ~ age + (1 | Subject)", data,
                   residual="car1(age | Subject)").fit("reml")
    new = pd.DataFrame({"Subject": [subject, subject], "age": [14.0, 9.5]})
    got = fit.predict(new)["estimate"].to_numpy()
    residual = fit.design.residual
    rows = np.flatnonzero(residual.group_codes == residual.group_labels.index(subject))
    phi = fit.structure_parameters()["estimate"].iloc[0]
    t_o, t_n = residual.times[rows], new["age"].to_numpy()
    omega_oo = phi ** np.abs(np.subtract.outer(t_o, t_o))
    omega_no = phi ** np.abs(np.subtract.outer(t_n, t_o))
    e_o = fit.residuals()[rows]
    effects = fit.ranef()
    b = float(effects.loc[effects["level"].astype(str) == subject, "estimate"].iloc[0])
    assert abs(b) > 0.1  # an interior fit: the random-effect part matters
    beta = np.asarray(fit.solution.beta)
    want = beta[0] + beta[1] * t_n + b + omega_no @ np.linalg.solve(omega_oo, e_o)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_times_the_structure_cannot_place_are_named(train):
    fit = hl.Model("weight ~ week", train, residual="ar1(week | id)", variance="week").fit("reml")
    with pytest.raises(DataError, match="variance='week' the fit never saw"):
        fit.predict(pd.DataFrame({"id": [1], "week": [12]}))
    fit = hl.Model("weight ~ week", train, residual="arh1(week | id)").fit("reml")
    with pytest.raises(DataError, match=r"week=12 is not among the fitted times \(1, 2, 3"):
        fit.predict(pd.DataFrame({"id": [1], "week": [12]}))
    fit = hl.Model("weight ~ 1", train, residual="car1(week | id)").fit("reml")
    with pytest.raises(hl.errors.ColumnNotFoundError, match="Column 'week'"):
        fit.predict(pd.DataFrame({"id": [1]}))


@pytest.mark.parametrize(("residual", "variance"), [("csh(week | id)", None),
                                                     ("ar1(week | id)", "sex")])
def test_a_new_response_at_a_fitted_visit_has_that_visit_s_residual_variance(residual, variance):
    # sigma^2 (ratio_week * ratio_sex)^2 from the natural parameters, written out; the
    # heterogeneous rows differ from sigma^2 (2.53^2 vs 3.73^2 at week 4), so this can fail
    pigs = pd.read_csv(DATA / "pigs.csv")
    pigs = pigs[pigs.week <= 4].reset_index(drop=True)
    pigs["sex"] = np.where(pigs["id"] % 2 == 0, "f", "m")
    fit = hl.Model("weight ~ week", pigs, residual=residual, variance=variance).fit("reml")
    table = fit.structure_parameters().set_index("parameter")["estimate"]
    week_ratio = np.array([1.0 if w == 1 else table.get(f"ratio.{w}", 1.0) for w in pigs.week])
    sex_ratio = (np.where(pigs.sex == "m", table["ratio.sex.m"], 1.0) if variance
                 else np.ones(len(pigs)))
    expected = float(fit.sigma) ** 2 * (week_ratio * sex_ratio) ** 2
    mean = fit.predict(kind="mean")
    response = fit.predict(kind="response")
    np.testing.assert_allclose(response["std_error"] ** 2 - mean["std_error"] ** 2, expected,
                               rtol=1e-10)
    np.testing.assert_allclose(response["estimate"], mean["estimate"], rtol=1e-14)
    # the same rows given as new_data at visits the subjects were observed at: the same table
    again = fit.predict(pigs.iloc[:8], kind="response")
    np.testing.assert_allclose(again.to_numpy(), response.iloc[:8].to_numpy(), rtol=1e-12)
