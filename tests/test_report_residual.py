"""The report of a GLS / MMRM fit (a residual structure, no random effects) against nlme.

``models/pigs_ar1.toml`` (``weight ~ week``, ``ar1(week | id)``, REML): the folder holds the
residual covariance over the weeks (nlme's ``getVarCov`` of the same ``gls`` fit, rel 1e-4),
no group-effect table (the model has none), and the page shows nlme's rho (4 digits).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.cards import load_card
from hierlm.report import write_report

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "nlme" / "residual.json").read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    card = load_card(ROOT / "models" / "pigs_ar1.toml")
    fit = hl.Model(card.formula, card.data, **card.model_options).fit(method="reml")
    return fit, write_report(fit, card, tmp_path_factory.mktemp("pigs_ar1"))


@pytest.mark.slow  # the report draws its figures: about 15 s quiet, 50 s loaded
def test_gls_report_has_the_residual_covariance_and_no_group_effects(report):
    fit, files = report
    reference = next(f for f in FIXTURE["fits"] if f["id"] == "pigs_AR1_reml")
    names = {path.name for path in files.fit}
    assert "residual_covariance.csv" in names and "ranef.csv" not in names
    table = pd.read_csv(files.html.parent / "residual_covariance.csv", index_col=0)
    np.testing.assert_allclose(table.to_numpy(), np.array(reference["marginal_cov"]), rtol=1e-4)
    page = files.html.read_text()
    assert f"rho = {reference['correlation_parameters']['Phi']:.4g}" in page
