"""Laplace intervals of MAP structure parameters (hierlm.bayes.map_intervals).

Reference: with flat priors the mode is the ML estimate and the Laplace
covariance is the inverse observed information. It is computed here without
the Bayesian engine: central differences of the exact gradient of the ML
engine's likelihood (:class:`hierlm.lmm.likelihood.GaussianLikelihood`) in its
own coordinates ``(beta, phi, log sigma)`` at the ML optimum, carried to each
natural parameter (the engine's ``natural()``) by the delta method, Gaussian
on the log-odds scale of the correlation's range (``(-1, 1)``; ``cs``/``csh``:
``(-1 / (T - 1), 1)``) or the log scale (SD ratios) and mapped back. The observed
information is invariant under the
change of coordinates at the optimum, so the two agree up to the modes'
difference (measured: rel 1e-7 or less): std_error and bounds within rel 1e-5 (pigs
``ar1(week | id)``, ``toep(week | id)`` over 5 weeks (lag correlations from
several coordinates), ``csh(week | id)`` over 4 weeks (SD ratios), Machines
``ar1(0 + Machine | Worker)`` (a patterned random-effect block)).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierlm as hl
from hierlm.errors import HierlmWarning

from .helpers import ml_observed_information

PIGS = "/work/shared/data/pigs.csv"

pytestmark = pytest.mark.slow

CASES = {
    "pigs_ar1": ("weight ~ week", 9, "ar1(week | id)"),
    "pigs5_toep": ("weight ~ week", 5, "toep(week | id)"),
    "pigs4_csh": ("weight ~ week", 4, "csh(week | id)"),
    "machines_ar1": ("score ~ Machine + ar1(0 + Machine | Worker)", None, None),
}


def _model(case: str) -> hl.Model:
    formula, weeks, residual = CASES[case]
    if weeks is None:
        return hl.Model(formula, hl.datasets.load("Machines"))
    data = pd.read_csv(PIGS)
    data = data[data["week"] <= weeks].reset_index(drop=True)
    return hl.Model(formula, data, residual=residual)


def _quiet(model: hl.Model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return model.fit(*args, **kwargs)


def _natural(ml, phi: np.ndarray) -> dict[str, float]:
    """The natural structure parameters at the engine's ``phi`` (its own ``natural()``)."""
    residual = ml.design.residual
    if residual is None:
        block = ml.design.blocks[0]
        return block.structure.natural(phi[: block.structure.n_params])
    struct = phi[len(phi) - residual.n_params :][: residual.structure.n_params]
    return residual.structure.natural(struct)


def _brute_force(ml, prob: float = 0.95) -> pd.DataFrame:
    p = ml.design.p
    phi = np.asarray(ml.theta, dtype=float)
    _, information = ml_observed_information(ml)
    cov = np.linalg.inv(information)[p:-1, p:-1]  # of phi
    names = list(_natural(ml, phi))
    jac = np.zeros((len(names), phi.size))
    for k in range(phi.size):
        step = 1e-6 * max(1.0, abs(phi[k]))
        up, down = phi.copy(), phi.copy()
        up[k] += step
        down[k] -= step
        hi, lo = _natural(ml, up), _natural(ml, down)
        jac[:, k] = [(hi[n] - lo[n]) / (2 * step) for n in names]
    z = stats.norm.ppf(0.5 + prob / 2)
    residual = ml.design.residual
    base = residual.structure.base if residual is not None else ""
    times = residual.structure.n_times if residual is not None else 0
    rows = []
    for n, j in zip(names, jac, strict=True):
        v = _natural(ml, phi)[n]
        se = float(np.sqrt(j @ cov @ j))
        if n.startswith("ratio"):
            lower, upper = v * np.exp(-z * se / v), v * np.exp(z * se / v)
        else:  # log-odds on (floor, 1): -1, or cs/csh's -1 / (T - 1) over T times
            floor = -1.0 / (times - 1) if base in ("cs", "csh") else -1.0
            u = np.log((v - floor) / (1 - v))
            half = z * se * (1 / (v - floor) + 1 / (1 - v))
            lower, upper = (floor + (1 - floor) / (1 + np.exp(-(u + h))) for h in (-half, half))
        rows.append({"parameter": n, "estimate": v, "std_error": se, "lower": lower, "upper": upper})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("case", list(CASES))
def test_flat_prior_laplace_intervals_are_the_observed_information_ones(case):
    model = _model(case)
    ml = _quiet(model, "ml")
    fit = _quiet(model, "map", priors="flat")
    reference = _brute_force(ml)
    table = fit.structure_parameters()
    merged = reference.merge(table, on="parameter", suffixes=("_ref", ""))
    assert len(merged) == len(reference) > 0
    assert table[["std_error", "eti95_lb", "eti95_ub"]].notna().all().all()
    np.testing.assert_allclose(merged["estimate"], merged["estimate_ref"], rtol=1e-4)
    np.testing.assert_allclose(merged["std_error"], merged["std_error_ref"], rtol=1e-5)
    np.testing.assert_allclose(merged["eti95_lb"], merged["lower"], rtol=1e-5)
    np.testing.assert_allclose(merged["eti95_ub"], merged["upper"], rtol=1e-5)
    assert (merged["eti95_lb"] < merged["estimate"]).all()
    assert (merged["estimate"] < merged["eti95_ub"]).all()
    narrow = fit.structure_parameters(prob=0.5)  # the interval probability is honoured
    assert (narrow["eti50_ub"] - narrow["eti50_lb"] < table["eti95_ub"] - table["eti95_lb"]).all()


def test_intervals_survive_save_and_load(tmp_path):
    fit = _quiet(_model("pigs_ar1"), "map")
    loaded = hl.load_fit(fit.save(tmp_path / "map_ar1"))
    pd.testing.assert_frame_equal(loaded.structure_parameters(), fit.structure_parameters(), rtol=1e-12)
    assert np.isfinite(fit.structure_parameters()["eti95_lb"]).all()
