"""Gaussian ML/REML fits with prior weights against lme4's weighted lmer (rel 1e-6).

lmer's ``weights=`` are precision weights, ``Var(y_i) = sigma^2 / w_i``: the
cross-products are of the rows scaled by ``sqrt(w)`` and the log-likelihood
gains ``sum(log w) / 2``. Fixture: ``tests/fixtures/glmer/sleep_weighted_{ml,reml}.json``
(``w = 1 + (as.integer(Subject) %% 3)``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hierlm as hl

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "glmer"
REL = 1e-6
# standard errors and theta move with the optimiser's stopping point on the flat likelihood
# (lme4's nloptwrap tolerance): rel 1e-4 / 1e-5 (abs 1e-5 for the small covariance entry)
SE_REL, THETA_REL = 1e-4, 1e-5


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_weighted_sleepstudy(method: str) -> None:
    ref = json.loads((FIXTURES / f"sleep_weighted_{method}.json").read_text(encoding="utf-8"))
    data = hl.datasets.load("sleepstudy")
    by_subject = {str(k): float(v) for k, v in ref["weights_by_subject"].items()}
    data["w"] = data["Subject"].astype(str).map(by_subject)
    fit = hl.Model(ref["formula"], data, weights="w").fit(method)
    np.testing.assert_allclose(fit.beta, [r["estimate"] for r in ref["fixef"]], rtol=REL)
    np.testing.assert_allclose(fit.fixef()["std_error"], [r["std_error"] for r in ref["fixef"]],
                               rtol=SE_REL)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=THETA_REL, atol=1e-5)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=REL)
    assert fit.loglik == pytest.approx(ref["loglik"], rel=REL)
    np.testing.assert_allclose(fit.fitted()[:10], ref["fitted_head"], rtol=THETA_REL)  # modes move with theta
