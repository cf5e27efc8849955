"""MAP: with flat priors it is the ML / REML estimate of lme4; boundaries are reported."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from hierlm.bayes import Prior, fit_bayes
from hierlm.bayes.map import fit_map
from hierlm.errors import FitError, SingularFitWarning

from .helpers import fixture_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lme4"
# lme4 refitted with tight optimiser tolerances (written by the ML/REML engine's tests): lme4's
# default stopping rule leaves these two about 1e-3 (relative) away from the optimum.
TIGHT = json.loads((Path(__file__).resolve().parents[1] / "lmm" / "lme4_tight.json").read_text())
MODEL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.json") if "formula" in json.loads(p.read_text()))
SLOW = {"insteval_crossed_reml"}


def reference(fx: dict) -> dict[str, object]:
    """lme4's fixed effects, sigma and SDs (tight refit when there is one)."""
    sd_rows = [k for k, row in enumerate(fx["varcorr"]) if row["grp"] != "Residual" and row["var2"] is None]
    if fx["model_id"] in TIGHT:
        tight = TIGHT[fx["model_id"]]
        return {
            "fixef": np.array(tight["estimate"]),
            "sigma": tight["sigma"],
            "sd": np.array([tight["varcorr_sdcor"][k] for k in sd_rows]),
        }
    return {
        "fixef": np.array([row["estimate"] for row in fx["fixef"]]),
        "sigma": fx["sigma"],
        "sd": np.array([fx["varcorr"][k]["sdcor"] for k in sd_rows]),
    }


def sd_key(group: str, term: str) -> tuple[frozenset[str], str]:
    """Compare interaction groups as sets (lme4 writes cask:batch for batch/cask)."""
    base = group.split(".")[0]
    return frozenset(base.split(":")), "Intercept" if term == "(Intercept)" else term


@pytest.mark.parametrize(
    "model_id", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m for m in MODEL_FIXTURES]
)
def test_flat_map_is_the_lme4_estimate(model_id):
    fx = json.loads((FIXTURES / f"{model_id}.json").read_text())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_bayes(fixture_model(fx), method="map", priors="flat", reml=fx["reml"])
    ref = reference(fx)
    fixef = fit.fixef()["estimate"].to_numpy()
    varcorr = fit.varcorr()
    sigma = varcorr.loc[varcorr.group == "Residual", "estimate"].item()
    sd_rows = varcorr[(varcorr.group != "Residual") & varcorr.term2.isna()]
    keys = [sd_key(g, t) for g, t in zip(sd_rows.group, sd_rows.term1, strict=True)]
    ours = dict(zip(keys, sd_rows.estimate, strict=True))
    lme4_rows = [row for row in fx["varcorr"] if row["grp"] != "Residual" and row["var2"] is None]
    theirs = dict(zip([sd_key(r["grp"], r["var1"]) for r in lme4_rows], ref["sd"], strict=True))
    assert ours.keys() == theirs.keys()
    singular = [w for w in caught if issubclass(w.category, SingularFitWarning)]
    if fx["is_singular"]:
        assert fit.info["singular"] and singular
        assert "sd_Batch[Intercept] = 0" in str(singular[0].message)
        for key, value in theirs.items():
            if value == 0:
                assert ours[key] == 0.0
    else:
        assert not fit.info["singular"] and not singular
        np.testing.assert_allclose(fixef, ref["fixef"], rtol=1e-4)
        np.testing.assert_allclose(sigma, ref["sigma"], rtol=1e-4)
        for key, value in theirs.items():
            np.testing.assert_allclose(ours[key], value, rtol=1e-4, err_msg=str(key))
    assert fit.method == "map" and fit.info["reml"] == fx["reml"]


def test_map_standard_errors_are_lme4s(sleep_model):
    fx = json.loads((FIXTURES / "sleep_slope_reml.json").read_text())
    fit = fit_map(sleep_model, priors="flat", reml=True)
    expected = [row["std_error"] for row in fx["fixef"]]
    np.testing.assert_allclose(fit.fixef()["std_error"], expected, rtol=1e-4)
    ranef = fit.ranef()
    modes = np.array(fx["ranef"][0]["modes"])
    # ranef rows are term-major (lme4's as.data.frame(ranef)): all intercepts, then all slopes
    np.testing.assert_allclose(ranef["estimate"].to_numpy().reshape(2, -1).T, modes, rtol=1e-3, atol=1e-3)


def test_reml_needs_flat_fixed_effect_priors(sleep_model):
    with pytest.raises(FitError, match="flat prior"):
        fit_map(sleep_model, reml=True)


def test_priors_move_the_mode(sleep_model):
    flat = fit_map(sleep_model, priors="flat")
    tight_sigma = fit_map(
        sleep_model,
        priors={"sigma": Prior("half_normal", sigma=5.0), "b": "flat", "Intercept": "flat", "sd": "flat"},
    )
    flat_sigma = flat.varcorr().iloc[-1]["estimate"]
    pulled = tight_sigma.varcorr().iloc[-1]["estimate"]
    assert pulled < flat_sigma - 1.0
    strong_intercept = fit_map(sleep_model, priors={"Intercept": Prior("normal", mu=200.0, sigma=1.0)})
    assert abs(strong_intercept.fixef().loc["Intercept", "estimate"] - 200.0) < 2.0


def test_map_result_tables_and_draws(sleep_model):
    fit = fit_map(sleep_model, priors="flat")
    assert list(fit.varcorr().columns) == ["group", "term1", "term2", "estimate", "std_error", "eti95_lb",
                                           "eti95_ub", "vcov"]
    draws = fit.draws()
    assert draws.point and draws.beta.shape == (1, 2) and draws.covariances[0].shape == (1, 2, 2)
    assert set(fit.idata["map"].data_vars) == {"fixef", "sigma", "sd_Subject", "cor_Subject", "ranef_Subject"}
    assert "Posterior mode (MAP" in repr(fit)
