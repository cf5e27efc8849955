"""Profile-likelihood intervals against lme4's ``confint(fit)`` and against brute force.

Fixture: ``tests/fixtures/lme4_profile/profile.json`` (``make_profile.R``, versions inside).

Tolerance against lme4: 2e-4 relative (absolute 2e-4 near 0). lme4 interpolates each
profile with a spline between grid points, which moves its limits by up to about 2e-4
relative; the largest differences measured (1.7e-4 for Dyestuff's SD and Dyestuff2's
intercept) are lme4's: the independent checks below put the exact limits where hierlm
puts them. The Machines model (3 x 3 correlated block) is compared on SDs, sigma and
fixed effects only: lme4 warns while profiling its correlations and its limits there
are off by up to 0.15; ours are checked by a multi-start search instead (slow test).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar
from scipy.stats import chi2

import hierlm as hl
from hierlm.errors import FitError
from hierlm.lmm import profile as profiling

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "lme4_profile" / "profile.json").read_text()
)
MODELS = {m["id"]: m for m in FIXTURE["models"]}
FAST = [name for name in MODELS if name != "machines_three_terms"]


def _name(lme4_name: str) -> str:
    """lme4's parameter name in hierlm's spelling of the intercept."""
    return lme4_name.replace("(Intercept)", "Intercept")


def _fit(model_id: str):
    spec = MODELS[model_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.SingularFitWarning)
        return hl.Model(spec["formula"], hl.datasets.load(spec["data"])).fit(
            "reml" if spec["reml"] else "ml")


def _compare(ours, reference, skip=lambda name: False):
    names = [_name(row["parameter"]) for row in reference]
    assert list(ours.index) == names
    for row, name in zip(reference, names, strict=True):
        if skip(name):
            continue
        for side in ("lower", "upper"):
            expected = row[side]
            assert ours.loc[name, side] == pytest.approx(expected, rel=2e-4, abs=2e-4), (name, side)


@pytest.mark.parametrize("model_id", FAST)
def test_limits_match_lme4(model_id):
    fit = _fit(model_id)
    _compare(fit.confint(method="profile"), MODELS[model_id]["level95"])
    _compare(fit.confint(level=0.8, method="profile"), MODELS[model_id]["level80"])


@pytest.mark.slow
def test_three_by_three_block_matches_lme4_where_lme4_converges():
    fit = _fit("machines_three_terms")
    ours = fit.confint(method="profile")
    _compare(ours, MODELS["machines_three_terms"]["level95"], skip=lambda name: name.startswith("cor_"))
    _check_correlation_limits_by_multistart(fit, ours)


def _check_correlation_limits_by_multistart(fit, ours):
    """Just outside each correlation limit the best deviance (12 starts) exceeds the cutoff,
    just inside it does not: the limits are the exact ones, whatever lme4 reports."""
    ml = fit.refit(reml=False, warn=False)
    kernel, n, reference = ml.kernel, ml.design.n, ml.deviance
    cutoff = chi2.ppf(0.95, 1)
    q = ml.design.blocks[0].q
    rng = np.random.default_rng(3)
    for i in range(q):
        for j in range(i + 1, q):
            order = np.array([i, j] + [k for k in range(q) if k not in (i, j)])
            param = profiling.VarianceParametrisation(kernel.cp.layout, ml.design.blocks, [order])
            best = param.coords(ml.covariances(), ml.sigma)
            bounds = param.bounds(float(best[-1]))
            free = [k for k in range(best.size) if k != q]
            columns = ml.design.blocks[0].columns
            name = f"cor_{columns[j]}.{columns[i]}|Worker"
            for side, sign in (("lower", -1), ("upper", 1)):
                limit = float(ours.loc[name, side])
                for offset, above in ((0.01, True), (-0.01, False)):
                    value = limit + sign * offset
                    if abs(value) >= 1:
                        continue

                    def objective(x, value=value, best=best, free=free, param=param):
                        coords = best.copy()
                        coords[free] = x
                        coords[q] = np.arctanh(value)
                        theta, sigma = param.theta(coords)
                        return profiling._ml_deviance(kernel, n, theta, sigma)

                    results = []
                    for start in range(12):
                        x0 = best[free].copy()
                        if start:
                            x0[:q - 1] *= np.exp(rng.normal(0, 0.3, q - 1))
                            x0[q - 1:-1] = rng.normal(0, 1.0, x0.size - q)
                        res = minimize(objective, x0, method="L-BFGS-B", bounds=[bounds[k] for k in free])
                        results.append(res.fun)
                        if not above and res.fun - reference - cutoff <= 0:
                            break  # inside the limit one start below the cutoff decides it
                    excess = min(results) - reference - cutoff
                    assert (excess > 0) == above, (name, side, value, excess)


def test_one_dimensional_profile_by_brute_force():
    """Dyestuff's SD profile is a 1-D minimisation over sigma: at hierlm's limits the
    deviance rises by exactly the chi-square cutoff (lme4's lower limit is 1.7e-4 off)."""
    fit = _fit("dyestuff")
    ours = fit.confint(method="profile")
    ml = fit.refit(reml=False, warn=False)
    cutoff = chi2.ppf(0.95, 1)
    for side in ("lower", "upper"):
        sd = float(ours.loc["sd_Intercept|Batch", side])
        best = minimize_scalar(
            lambda log_sigma, sd=sd: profiling._ml_deviance(
                ml.kernel, ml.design.n, np.array([sd / np.exp(log_sigma)]), float(np.exp(log_sigma))),
            bounds=(np.log(10.0), np.log(200.0)), method="bounded", options={"xatol": 1e-12})
        assert best.fun - ml.deviance == pytest.approx(cutoff, abs=1e-6), side


def test_singular_fit_sd_starts_at_zero_and_fixed_effect_is_exact():
    """Dyestuff2 is singular (SD 0): its SD interval starts at 0; at the intercept's limits a
    grid search over theta gives the cutoff (theta = 0 is a stationary point to escape)."""
    fit = _fit("dyestuff2_singular")
    ours = fit.confint(method="profile")
    assert ours.loc["sd_Intercept|Batch", "lower"] == 0.0
    ml = fit.refit(reml=False, warn=False)
    n, cutoff = ml.design.n, chi2.ppf(0.95, 1)
    for side in ("lower", "upper"):
        b = float(ours.loc["Intercept", side])

        def deviance(theta, b=b):
            sol = ml.kernel.solution(np.array([theta]), reml=False, cond_var=False)
            rss = sol.r2 + (b - sol.beta[0]) ** 2 / sol.unscaled_vcov[0, 0]
            return sol.ldL2 + n * (1 + np.log(2 * np.pi * rss / n))

        grid = np.linspace(0.0, 3.0, 601)
        k = int(np.argmin([deviance(t) for t in grid]))
        best = minimize_scalar(deviance, bounds=(max(grid[k] - 0.01, 0.0), grid[k] + 0.01),
                               method="bounded", options={"xatol": 1e-12})
        assert best.fun - ml.deviance == pytest.approx(cutoff, abs=1e-5), side


def test_reml_and_ml_fits_profile_the_same_deviance():
    reml = _fit("sleep_slope_reml").confint(method="profile")
    ml = _fit("sleep_slope_ml").confint(method="profile")
    np.testing.assert_allclose(reml.to_numpy(), ml.to_numpy(), rtol=1e-5)


def test_profile_interval_contains_estimate_and_widens_with_level():
    fit = _fit("penicillin_crossed")
    narrow = profiling.profile_confint(fit, level=0.8)
    wide = fit.confint(level=0.99, method="profile")
    assert ((narrow["lower"] <= narrow["estimate"]) & (narrow["estimate"] <= narrow["upper"])).all()
    assert (wide["lower"] < narrow["lower"]).all() and (wide["upper"] > narrow["upper"]).all()


def test_bad_method():
    fit = _fit("dyestuff")
    with pytest.raises(FitError, match="method='bca'"):
        fit.confint(method="bca")
