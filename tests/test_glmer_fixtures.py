"""The GLMM reference fixtures in tests/fixtures/glmer are complete and internally consistent.

These checks do not fit anything: they guard the R output that the engine tests compare
against (a file the README promises is missing, a truncated or hand-edited number, a
prediction on the wrong scale). Relations that R computes in floating point are checked
to 1e-9 relative; the AGQ-versus-Laplace comparison uses the looser bound stated there.
"""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierlm as hl

FOLDER = Path(__file__).parent / "fixtures" / "glmer"
README = (FOLDER / "README.md").read_text()
FIT_FILES = sorted(path for path in FOLDER.glob("*.json") if not path.name.endswith("_brms.json"))
BRMS_FILES = sorted(FOLDER.glob("*_brms.json"))
TIGHT = 1e-9

INVERSE_LINKS = {
    "logit": lambda eta: 1.0 / (1.0 + np.exp(-eta)),
    "probit": stats.norm.cdf,
    "cloglog": lambda eta: -np.expm1(-np.exp(eta)),
    "log": np.exp,
    "identity": lambda eta: eta,
}


def load(path):
    return json.loads(path.read_text())


def test_readme_and_folder_list_the_same_files():
    listed = set(re.findall(r"`([A-Za-z0-9_.]+\.(?:json|csv|R))`", README))
    present = {p.name for p in FOLDER.iterdir() if p.suffix in {".json", ".csv", ".R"}}
    assert present <= listed, f"not described in README.md: {sorted(present - listed)}"
    assert {name for name in listed if name.endswith(".json")} <= present


@pytest.mark.parametrize("path", FIT_FILES, ids=lambda p: p.stem)
def test_information_criteria_follow_from_loglik(path):
    fit = load(path)
    minus2ll = -2.0 * fit["loglik"]
    assert fit["aic"] == pytest.approx(minus2ll + 2 * fit["df"], rel=TIGHT)
    assert fit["bic"] == pytest.approx(minus2ll + math.log(fit["nobs"]) * fit["df"], rel=TIGHT)
    if fit["engine"] != "lme4::lmer":  # GLMMs: summary()'s deviance is -2 logLik
        assert fit["deviance"] == pytest.approx(minus2ll, rel=TIGHT)


@pytest.mark.parametrize("path", FIT_FILES, ids=lambda p: p.stem)
def test_wald_table_matches_vcov(path):
    fit = load(path)
    names = fit["vcov"]["names"]
    variances = np.diag(np.array(fit["vcov"]["matrix"]))
    assert names == [row["term"] for row in fit["fixef"]] == fit["X_colnames"]
    for row, variance in zip(fit["fixef"], variances, strict=True):
        assert row["std_error"] == pytest.approx(math.sqrt(variance), rel=TIGHT)
        statistic = row.get("z_value", row.get("t_value"))
        assert statistic == pytest.approx(row["estimate"] / row["std_error"], rel=TIGHT)
        if "p_value" in row:
            assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(statistic)), rel=1e-6)


@pytest.mark.parametrize("path", FIT_FILES, ids=lambda p: p.stem)
def test_predictions_are_the_inverse_link_of_the_linear_predictor(path):
    fit = load(path)
    inverse = INVERSE_LINKS[fit["link"]]
    for suffix in ("", "_fixed"):
        link = np.array(fit[f"predict_link{suffix}_head"])
        response = np.array(fit[f"predict_response{suffix}_head"])
        np.testing.assert_allclose(inverse(link), response, rtol=1e-12)
    np.testing.assert_allclose(fit["fitted_head"], fit["predict_response_head"], rtol=1e-12)


@pytest.mark.parametrize("path", FIT_FILES, ids=lambda p: p.stem)
def test_varcorr_and_ranef_are_complete(path):
    fit = load(path)
    for row in fit["varcorr"]:
        if row["var2"] is None and row["var1"] is not None:
            assert row["sdcor"] == pytest.approx(math.sqrt(row["vcov"]), rel=TIGHT)
    for block in fit["ranef"]:
        n_levels = fit["ngrps"][block["group"]]
        assert len(block["levels"]) == len(block["modes"]) == n_levels
        for condvar in block["condvar_blocks"]:
            assert len(condvar["matrices"]) == n_levels
            assert all(np.all(np.diag(np.array(m)) > 0) for m in condvar["matrices"])


def test_agq_loglik_on_the_laplace_scale_after_adding_the_saturated_term():
    # lme4 leaves the family's normalising constants out of its nAGQ > 1 logLik;
    # loglik_normalised adds them back, after which AGQ and Laplace differ only by
    # the quadrature error (small for cbpp's 3-4 observations of 5-30 trials per herd).
    for laplace, agq in [
        ("cbpp_binomial_laplace", "cbpp_binomial_agq25"),
        ("cbpp_poisson_offset_laplace", "cbpp_poisson_offset_agq10"),
    ]:
        first, second = load(FOLDER / f"{laplace}.json"), load(FOLDER / f"{agq}.json")
        assert first["loglik_normalised"] == first["loglik"]
        assert second["loglik_normalised"] == pytest.approx(
            second["loglik"] + second["loglik_saturated"], rel=TIGHT
        )
        assert abs(second["loglik_normalised"] - first["loglik"]) < 0.1


def test_proportion_with_weights_is_the_cbind_fit():
    counts = load(FOLDER / "cbpp_binomial_laplace.json")
    proportion = load(FOLDER / "cbpp_binomial_proportion.json")
    for a, b in zip(counts["fixef"], proportion["fixef"], strict=True):
        assert a["estimate"] == pytest.approx(b["estimate"], rel=1e-5)
    assert counts["loglik"] == pytest.approx(proportion["loglik"], rel=1e-8)


def test_simulated_csvs_match_the_fits():
    for name in ("sim_poisson_slope", "sim_bernoulli_few", "sim_separation"):
        data = pd.read_csv(FOLDER / f"{name}.csv")
        fits = [load(p) for p in FIT_FILES if load(p)["dataset"] == name]
        assert fits, name
        for fit in fits:
            assert fit["nobs"] == len(data)
            (block,) = fit["ranef"]
            assert block["group"] == "g" and block["levels"] == sorted(data["g"].unique())


def test_weights_column_rule_reproduces_from_sorted_subjects():
    fit = load(FOLDER / "sleep_weighted_reml.json")
    sleep = hl.datasets.load("sleepstudy")
    weights = 1 + (sleep.Subject.cat.codes.to_numpy() + 1) % 3
    table = {int(k): v for k, v in fit["weights_by_subject"].items()}
    assert table == {int(s): int(w) for s, w in zip(sleep.Subject, weights, strict=True)}


@pytest.mark.parametrize("path", BRMS_FILES, ids=lambda p: p.stem)
def test_brms_summaries_are_ordered_and_converged(path):
    posterior = load(path)
    assert posterior["settings"]["chains"] == 4 and posterior["settings"]["iter"] == 2000
    assert posterior["post_warmup_draws"] == 4000
    for name, row in posterior["parameters"].items():
        assert row["q2.5"] < row["mean"] < row["q97.5"], name
        assert row["sd"] > 0 and row["rhat"] < 1.01, name
