"""save/load of GLMM ML fits: the round trip restores the same fit; changed files are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hierlm as hl
from hierlm.errors import IncompatibleFileError

FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def probit_fit():
    return hl.Model(FORMULA, hl.datasets.load("cbpp"), family="binomial", link="probit").fit("ml")


def test_round_trip_is_the_same_fit(probit_fit, tmp_path):
    folder = probit_fit.save(tmp_path / "fit")
    manifest = json.loads((folder / "hierlm.json").read_text())
    assert manifest["kind"] == "glmm"
    assert (manifest["model"]["family"], manifest["fit"]["link"]) == ("binomial", "probit")
    back = hl.load_fit(folder)
    assert back.family.describe() == probit_fit.family.describe()
    np.testing.assert_array_equal(back.fixef().to_numpy(), probit_fit.fixef().to_numpy())
    np.testing.assert_array_equal(back.varcorr().to_numpy(dtype=object),
                                  probit_fit.varcorr().to_numpy(dtype=object))
    # the conditional modes are recomputed by PIRLS at the saved estimates
    np.testing.assert_allclose(back.predict()["estimate"], probit_fit.predict()["estimate"],
                               rtol=1e-9)
    assert back.loglik == pytest.approx(probit_fit.loglik, rel=1e-10)


def test_changed_estimates_are_refused(probit_fit, tmp_path):
    folder = probit_fit.save(tmp_path / "fit")
    path = folder / "hierlm.json"
    manifest = json.loads(path.read_text())
    manifest["fit"]["beta"]["__ndarray__"][0] += 0.1
    path.write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleFileError, match="deviance"):
        hl.load_fit(folder)


def test_changed_link_is_refused(probit_fit, tmp_path):
    folder = probit_fit.save(tmp_path / "fit")
    path = folder / "hierlm.json"
    manifest = json.loads(path.read_text())
    manifest["fit"]["link"] = "logit"
    path.write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleFileError, match="deviance"):
        hl.load_fit(folder)


def test_array_weights_round_trip(tmp_path):
    """A proportion with its trials as a weights= array is saved with the fit (tests/test_io.py
    covers the other weights=/offset= cases)."""
    cbpp = hl.datasets.load("cbpp")
    cbpp = cbpp.assign(p=cbpp["incidence"] / cbpp["size"])
    fit = hl.Model("p ~ period + (1 | herd)", cbpp, family="binomial",
                   weights=cbpp["size"].to_numpy(dtype=float)).fit("ml")
    fit.save(tmp_path / "fit")
    loaded = hl.load_fit(tmp_path / "fit")
    assert loaded.loglik == fit.loglik
    np.testing.assert_array_equal(loaded.fixef()["estimate"], fit.fixef()["estimate"])
