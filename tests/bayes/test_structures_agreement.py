"""The full formulation with patterned random-effect structures against glmmTMB's REML fits.

Machines, ``score ~ Machine + cs(0 + Machine | Worker)`` and the same with
``ar1``, flat priors (``priors="flat"``: flat on the coefficients, SDs and
sigma, uniform on rho over its range), 4 chains x 1000 draws. The REML
estimates are glmmTMB's (``tests/fixtures/glmmtmb/structures.json``, the
fixtures the ML/REML engine is validated against). With flat priors the
posterior of the coefficients is centred on the GLS estimate at the
covariance parameters, and those of sigma and rho on their REML values.

Tolerances, in posterior SDs of each parameter:

* fixed effects and rho: posterior median within 0.2;
* sigma: within 0.3. Its posterior under a flat prior is right-skewed too
  (median above the REML mode): measured 0.15 to 0.21 SDs over seeds and
  draw counts on the cs model;
* the Worker SD: within 0.5. With 6 workers its posterior is right-skewed:
  the median lies above the mode, and the joint posterior mode of the
  covariance parameters under flat priors is the REML estimate. Measured
  (4 x 1000 draws): cs median 6.67 against REML's 6.06, posterior SD 2.2
  (0.28 SDs); ar1 6.40 against 5.73 (0.40 SDs).

Fast checks of the same models (names, dims, tables) use 2 short chains and
compare nothing numerical but the structure of the output.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import hierlm as hl
from hierlm.errors import FitError, HierlmWarning

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "glmmtmb" / "structures.json")
                     .read_text())
FITS = {fit["id"]: fit for fit in FIXTURE["fits"]}
CASES = {"cs": "machines_cs_hom_reml", "ar1": "machines_ar1_reml"}


def _model(structure: str) -> hl.Model:
    return hl.Model(f"score ~ Machine + {structure}(0 + Machine | Worker)",
                    hl.datasets.load("Machines"))


def _sample(structure: str, draws: int, chains: int, seed: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return _model(structure).fit(method="nuts", priors="flat", chains=chains, draws=draws,
                                     tune=draws, random_seed=seed, progressbar=False)


def _within(draws: np.ndarray, reference: float, tolerance: float, label: str) -> None:
    draws = np.asarray(draws, dtype=float).ravel()
    distance = abs(np.median(draws) - reference) / draws.std()
    assert distance < tolerance, (f"{label}: median {np.median(draws):.4g}, reference "
                                  f"{reference:.4g}, {distance:.2f} posterior SDs")


@pytest.mark.slow
@pytest.mark.parametrize("structure", sorted(CASES))
def test_posterior_medians_match_glmmtmb_reml(structure: str):
    reference = FITS[CASES[structure]]
    fit = _sample(structure, draws=1000, chains=4, seed=20261201)
    post = fit.idata.posterior
    for k, row in enumerate(reference["fixef"]):
        _within(post["fixef"].values[..., k], row["estimate"], 0.2, row["term"])
    _within(post["sigma"].values, reference["sigma"], 0.3, "sigma")
    random = reference["random"][0]
    _within(post["rho_Worker"].values, random["parameters"]["rho"], 0.2, "rho")
    _within(post["sd_common_Worker"].values, random["sd"]["MachineA"], 0.5, "sd")
    # the tables read the same draws: varcorr's correlation rows are rho's (cs) or rho^lag (ar1)
    table = fit.structure_parameters()
    assert table["estimate"].iloc[0] == pytest.approx(float(post["rho_Worker"].mean()), rel=1e-12)


@pytest.fixture(scope="module")
def short_fits():
    return {s: _sample(s, draws=60, chains=2, seed=7) for s in ("ar1", "toep")}


@pytest.mark.slow
def test_structure_variables_names_and_tables(short_fits, tmp_path):
    fit = short_fits["ar1"]
    post = fit.idata.posterior
    rho = post["rho_Worker"].values
    # cor_ rows are rho^|i-j| in lme4's pair order (A,B), (A,C), (B,C)
    np.testing.assert_allclose(post["cor_Worker"].values,
                               np.stack([rho, rho ** 2, rho], axis=-1), rtol=1e-12)
    np.testing.assert_allclose(post["sd_Worker"].values,
                               np.repeat(post["sd_common_Worker"].values[..., None], 3, -1))
    varcorr = fit.varcorr()
    corr = varcorr[varcorr["term2"].notna() & (varcorr["group"] == "Worker")]
    assert corr["estimate"].tolist() == pytest.approx(
        [float(rho.mean()), float((rho ** 2).mean()), float(rho.mean())], rel=1e-12)
    table = fit.structure_parameters()
    assert list(table[["structure", "parameter"]].itertuples(index=False, name=None)) == [
        ("ar1(0 + MachineA + MachineB + MachineC | Worker)", "rho")]
    toep = short_fits["toep"].idata.posterior
    assert list(toep["pacf_Worker"].coords["Worker_lag"].values) == ["1", "2"]
    # lag 1 correlation = first partial autocorrelation; lag 2 from Durbin-Levinson
    kappa = toep["pacf_Worker"].values
    np.testing.assert_allclose(toep["rho_Worker"].values[..., 0], kappa[..., 0], rtol=1e-12)
    expected = kappa[..., 0] ** 2 + kappa[..., 1] * (1 - kappa[..., 0] ** 2)
    np.testing.assert_allclose(toep["rho_Worker"].values[..., 1], expected, rtol=1e-10)
    assert list(short_fits["toep"].structure_parameters()["parameter"]) == ["rho1", "rho2"]
    path = tmp_path / "fit.nc"
    fit.save(path)
    loaded = hl.load_fit(path)
    np.testing.assert_array_equal(loaded.idata.posterior["rho_Worker"].values, rho)
    assert loaded.structure_parameters().equals(table)


def test_map_of_patterned_structures_refuses_reml_only():
    # MAP takes them (tests/bayes/test_map_structured.py); REML would integrate out beta,
    # a variable of the NUTS model whose mode MAP is
    model = _model("cs")
    with pytest.raises(FitError, match=r"reml=True is not available for patterned"):
        model.fit(method="map", reml=True)
