"""Effect sizes by model comparison (lecture notes section 8) and variance shares, on REML fits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import IncompatibleFitsError, InputTypeError


def orthodont() -> pd.DataFrame:
    data = pd.read_csv(hl.datasets.__path__[0] + "/data/Orthodont.csv")
    data["Subject"] = pd.Categorical(data["Subject"])
    data["Sex"] = pd.Categorical(data["Sex"], categories=["Male", "Female"])
    return data


@pytest.fixture(scope="module")
def pair():
    data = orthodont()
    reduced = hl.Model("distance ~ age + (1 | Subject)", data).fit()
    full = hl.Model("distance ~ age + Sex + (1 | Subject)", data).fit()
    return full, reduced


def _variances(fit):
    table = fit.varcorr()
    return {("Residual" if row.group == "Residual" else row.group): row.vcov for row in table.itertuples()}


def test_effect_sizes_follow_the_notes(pair):
    full, reduced = pair
    table = hl.effect_sizes(full, reduced)["estimate"]
    r2f = full.r2().loc["marginal", "estimate"]
    r2r = reduced.r2().loc["marginal", "estimate"]
    assert table["r2_full"] == pytest.approx(r2f, rel=1e-12)
    assert table["f2"] == pytest.approx((r2f - r2r) / (1 - r2f), rel=1e-12)
    vf, vr = _variances(full), _variances(reduced)
    for name in ("Subject", "Residual"):
        assert table[f"rel_change[{name}]"] == pytest.approx((vr[name] - vf[name]) / vr[name], abs=1e-9)
    sigma_r = np.sqrt(vr["Residual"])
    d_tau = (np.sqrt(vf["Subject"]) - np.sqrt(vr["Subject"])) / sigma_r
    assert table["d_tau[Subject]"] == pytest.approx(d_tau)
    assert table["share_full[Subject]"] == pytest.approx(vf["Subject"] / (vf["Subject"] + vf["Residual"]))
    share = vr["Residual"] / (vr["Subject"] + vr["Residual"])
    assert table["share_reduced[Residual]"] == pytest.approx(share)
    # Sex is a between-subject predictor: it explains between-subject variance only
    assert table["rel_change[Subject]"] > 0.2
    assert abs(table["rel_change[Residual]"]) < 1e-6
    total = hl.effect_sizes(full, reduced, sigma_ref="total")["estimate"]
    assert total["d_tau[Subject]"] == pytest.approx(
        (np.sqrt(vf["Subject"]) - np.sqrt(vr["Subject"])) / np.sqrt(vr["Subject"] + vr["Residual"]))
    fixed = hl.effect_sizes(full, reduced, sigma_ref=2.0)["estimate"]
    assert fixed["d_tau[Subject]"] == pytest.approx((np.sqrt(vf["Subject"]) - np.sqrt(vr["Subject"])) / 2.0)


def test_variance_shares_of_a_slope_model():
    fit = hl.Model("distance ~ age + (age | Subject)", orthodont()).fit()
    shares = fit.variance_shares()
    assert list(shares.index) == ["Subject", "age|Subject", "Residual"]
    cov = fit.covariances()[0]
    total = cov[0, 0] + cov[1, 1] + fit.sigma ** 2
    np.testing.assert_allclose(shares["estimate"], [cov[0, 0] / total, cov[1, 1] / total,
                                                    fit.sigma ** 2 / total], rtol=1e-12)
    np.testing.assert_allclose(shares["variance"], [cov[0, 0], cov[1, 1], fit.sigma ** 2], rtol=1e-12)


def test_bootstrap_intervals(pair):
    full, reduced = pair
    a = hl.effect_sizes(full, reduced, n_boot=8, random_seed=3)
    b = hl.effect_sizes(full, reduced, n_boot=8, random_seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["estimate", "std_error", "lower", "upper"]
    assert (a["lower"] <= a["upper"]).all()
    assert a.loc["f2", "std_error"] > 0
    pd.testing.assert_series_equal(a["estimate"], hl.effect_sizes(full, reduced)["estimate"])


def test_refuses_fits_that_are_not_a_full_and_reduced_pair(pair):
    full, reduced = pair
    data = orthodont()
    with pytest.raises(IncompatibleFitsError, match="same fixed part"):
        hl.effect_sizes(full, full)
    with pytest.raises(IncompatibleFitsError, match="pass the larger model first"):
        hl.effect_sizes(reduced, full)
    other_rows = hl.Model("distance ~ age + Sex + (1 | Subject)", data.iloc[:100]).fit()
    with pytest.raises(IncompatibleFitsError, match="different data"):
        hl.effect_sizes(other_rows, reduced)
    slopes = hl.Model("distance ~ age + Sex + (age | Subject)", data).fit()
    with pytest.raises(IncompatibleFitsError, match="different random parts"):
        hl.effect_sizes(slopes, reduced)
    ml = hl.Model("distance ~ age + Sex + (1 | Subject)", data).fit(method="ml")
    with pytest.raises(IncompatibleFitsError, match="same method"):
        hl.effect_sizes(ml, reduced)
    with pytest.raises(InputTypeError, match="sigma_ref"):
        hl.effect_sizes(full, reduced, sigma_ref="pooled")


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "emmeans" / "emmeans.json"


@pytest.mark.skipif(not FIXTURE.exists(), reason="emmeans.json not generated")
def test_against_performance_r2_nakagawa():
    """performance::r2_nakagawa's R2, f2 and relative changes of lmerTest fits of Orthodont."""
    ref = json.loads(FIXTURE.read_text())["r2_nakagawa"]
    data = hl.datasets.load("Orthodont")
    full = hl.Model(ref["models"]["with_Sex"]["formula"], data).fit()
    reduced = hl.Model(ref["models"]["without_Sex"]["formula"], data).fit()
    table = hl.effect_sizes(full, reduced)["estimate"]
    assert table["r2_full"] == pytest.approx(ref["models"]["with_Sex"]["R2_marginal"], rel=1e-5)
    assert table["r2_reduced"] == pytest.approx(ref["models"]["without_Sex"]["R2_marginal"], rel=1e-5)
    derived = ref["derived"]
    assert table["f2"] == pytest.approx(derived["cohen_f2_marginal"], rel=1e-5)
    subject, residual = (derived[f"relative_change_{c}_variance"] for c in ("subject", "residual"))
    assert table["rel_change[Subject]"] == pytest.approx(subject, rel=1e-5)
    # both fits have the same residual variance up to the optimisers' tolerance
    assert table["rel_change[Residual]"] == pytest.approx(residual, abs=1e-6)
    assert full.r2().loc["conditional", "estimate"] == pytest.approx(
        ref["models"]["with_Sex"]["R2_conditional"], rel=1e-5)
