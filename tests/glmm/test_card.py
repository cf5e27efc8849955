"""The CLI model card of a binomial GLMM (models/cbpp_binomial.toml) prints glmer's summary layout."""

from __future__ import annotations

from pathlib import Path

from hierlm.cli import main
from tests.glmm.reference import fixture

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_cbpp_binomial_card(capsys) -> None:
    assert main(["fit", str(MODELS / "cbpp_binomial.toml")]) == 0
    out = capsys.readouterr().out
    ref = fixture("glmm_tmb/cbpp_binomial_laplace")  # the exact Laplace fit
    assert "Laplace Approximation" in out and "Family: binomial  ( logit )" in out
    assert f"{ref['loglik']:.1f}" in out.split("logLik")[1].split("\n")[1]
    assert f"{ref['fixef'][1]['estimate']:.4g}" in out and "z value" in out
