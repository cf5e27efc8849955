"""NUTS with a residual structure: the sampled density, the refusals, and a fit's outputs.

References:

* the density nutpie samples (:func:`hierlm.bayes.residual_nutpie.residual_density`:
  compiled prior model + the likelihood + the vector-Jacobian product) equals
  the log density of the PyMC model with the likelihood as an Op
  (:func:`hierlm.bayes.residual_marginal.build_residual_marginal_model`, PyMC's own
  ``compile_logp``/``compile_dlogp``) at random points, rel 1e-9, for every
  kind of residual parameter (interval, LKJ, log ratios by time and level)
  and with random effects; its gradient equals central differences of its value
  (step 1e-6, rel 1e-5);
* the ``S`` matrix per draw rebuilt from the stored variables is the
  structure's matrix of those stored values (``phi^|t-s|``, csh's
  ``(1 - rho) I + rho J`` scaled by the ratios, the Toeplitz lag correlations,
  UN's correlations by pair; 1e-12);
* the compiled route for ar1/cs/car1 without random effects
  (:mod:`hierlm.bayes.residual_fast`) equals that density at random points
  (value rel 1e-9, gradient 1e-8, stored variables 1e-12), on balanced data
  (one shared ``W``) and unbalanced data;
* refusals name the structure (full formulation, MAP, non-Gaussian family,
  per-observation LOO/WAIC, ``predict(new_data)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.bayes.build import build_model
from hierlm.bayes.residual_fast import FastResidualDensity, fast_route_applies
from hierlm.bayes.residual_marginal import (
    build_residual_marginal_model,
    residual_values_of_draws,
    residual_variables,
)
from hierlm.bayes.residual_nutpie import residual_density
from hierlm.bayes.sample import stored_variables
from hierlm.errors import FitError

PIGS = "/work/shared/data/pigs.csv"

CASES = [  # every kind of residual parameter: interval, LKJ, log ratios by time and level
    ("weight ~ week", "car1(week | id)", "sex"),
    # building a density costs seconds (PyMC model, graph rewrites): the other kinds are slow
    pytest.param("weight ~ week + (week | id)", "csh(week | id)", None, marks=pytest.mark.slow),
    pytest.param("weight ~ week", "un(week | id)", None, marks=pytest.mark.slow),
    pytest.param("weight ~ week + (1 | id)", "toep(week | id)", None, marks=pytest.mark.slow),
]
_DENSITIES: dict = {}


@pytest.fixture(scope="module")
def pigs() -> pd.DataFrame:
    data = pd.read_csv(PIGS)
    data["sex"] = np.where(data["id"] % 2 == 0, "f", "m")
    return data[data["week"] <= 5].reset_index(drop=True)  # 5 times: small UN/Toeplitz


def _density(pigs, formula, residual, variance):
    """The model, built model and sampled density of a case (built once per module)."""
    key = (formula, residual, variance)
    if key not in _DENSITIES:
        model = hl.Model(formula, pigs, residual=residual, variance=variance)
        built = build_model(model)
        _DENSITIES[key] = (model, built, residual_density(built, stored_variables(built),
                                                           mode="FAST_COMPILE"))
    return _DENSITIES[key]


@pytest.mark.parametrize("formula,residual,variance", CASES)
def test_sampled_density_equals_the_pymc_model(pigs, formula, residual, variance):
    _, built, density = _density(pigs, formula, residual, variance)
    model = build_residual_marginal_model(built.design, built.priors)
    logp = model.compile_logp(mode="FAST_COMPILE")
    dlogp = model.compile_dlogp(mode="FAST_COMPILE")
    point = model.initial_point()
    assert sorted(point) == sorted(density.free_names)
    order = [model.rvs_to_values[rv].name for rv in model.free_RVs]
    for seed in (1, 2):
        x = density.initial_point(seed)
        start, slots = 0, {}
        for name in density.free_names:
            size = int(np.prod(point[name].shape))
            point[name] = x[start:start + size].reshape(point[name].shape)
            slots[name] = np.arange(start, start + size)
            start += size
        value, grad = density.logp(x)
        assert value == pytest.approx(float(logp(point)), rel=1e-9)
        reordered = np.concatenate([slots[name] for name in order])
        np.testing.assert_allclose(grad[reordered], dlogp(point), rtol=1e-8, atol=1e-8)
        h = 1e-6
        for k in range(0, x.size, max(1, x.size // 4)):
            step = np.zeros_like(x)
            step[k] = h
            numeric = (density.logp(x + step)[0] - density.logp(x - step)[0]) / (2 * h)
            assert grad[k] == pytest.approx(numeric, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("formula,residual,variance", CASES)
def test_covariance_of_stored_draws_is_the_structures(pigs, formula, residual, variance):
    model, _, density = _density(pigs, formula, residual, variance)
    draws = {name: value[None, None] for name, value in density.expand(density.initial_point(3)).items()}
    s, levels = residual_values_of_draws(model.design.residual, draws)
    structure = model.design.residual.structure
    natural = {name: np.atleast_1d(draws[name][0, 0]) for name, _ in
               residual_variables(model.design.residual)}
    times = structure.times
    if structure.base == "car1":  # phi^|t - s| over the distinct times
        expected = natural["phi_residual"][0] ** np.abs(times[:, None] - times[None, :])
        np.testing.assert_allclose(s[0], expected, rtol=1e-12)
    if structure.base == "cs":  # csh: rho off the diagonal, ratios on the scale
        ratios = np.concatenate([[1.0], natural["ratio_residual"]])
        rho = natural["rho_residual"][0]
        expected = np.outer(ratios, ratios) * ((1 - rho) * np.eye(times.size) + rho)
        np.testing.assert_allclose(s[0], expected, rtol=1e-12)
    if structure.base == "toep":  # the stored lag correlations on the diagonals
        lags = np.abs(np.arange(times.size)[:, None] - np.arange(times.size)[None, :])
        acf = np.concatenate([[1.0], natural["rho_residual"]])
        np.testing.assert_allclose(s[0], acf[lags], rtol=1e-12)
    if structure.base == "un":  # the stored correlations and ratios
        ratios = np.concatenate([[1.0], natural["ratio_residual"]])
        corr = s[0] / np.outer(ratios, ratios)
        np.testing.assert_allclose(corr[np.triu_indices(times.size, 1)],
                                   natural["cor_residual"], rtol=1e-12)
        np.testing.assert_allclose(np.diag(corr), 1.0, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(s[0]) > 0)
    if variance is not None:
        np.testing.assert_allclose(levels[0][1:], natural["ratio_residual_variance"], rtol=1e-12)


def test_refusals_name_the_structure(pigs):
    model = hl.Model("weight ~ week", pigs, residual="ar1(week | id)")
    with pytest.raises(FitError, match=r"full formulation does not take residual.*ar1\(week \| id\)"):
        model.fit("nuts", formulation="full")
    # MAP with residual= is built (tests/bayes/test_map_structured.py)
    counts = pigs.assign(weight=np.round(pigs["weight"]).astype(int))
    poisson = hl.Model("weight ~ week + (1 | id)", counts, residual="ar1(week | id)",
                       family="poisson")
    with pytest.raises(FitError, match=r"residual='ar1\(week \| id\)' needs a Gaussian"):
        poisson.fit("nuts")


@pytest.mark.parametrize("residual,balanced", [
    ("ar1(week | id)", True), ("car1(week | id)", False),
    pytest.param("cs(id)", True, marks=pytest.mark.slow)])
def test_compiled_route_equals_the_general_one(pigs, residual, balanced):
    """ar1/cs/car1 without random effects: one compiled log posterior, the same density (rel 1e-9)."""
    data = pigs if balanced else pigs.iloc[3:]
    built = build_model(hl.Model("weight ~ week", data, residual=residual))
    assert fast_route_applies(built)
    fast = FastResidualDensity(built)
    assert (fast.shared is not None) == balanced
    general = residual_density(built, stored_variables(built), mode="FAST_COMPILE")
    positions = {"fixef": slice(0, 2), "sigma_log__": slice(2, 3)}
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = fast.start() + rng.uniform(-1.0, 1.0, size=fast.size)
        mapped = np.concatenate([x[positions.get(name, slice(3, 4))] for name in general.free_names])
        value, grad = fast.logp(x)
        other, other_grad = general.logp(mapped)
        assert value == pytest.approx(other, rel=1e-9)
        back = np.concatenate([other_grad[_offsets(general.free_names)[name]]
                               for name in ("fixef", "sigma_log__", general.free_names[0])])
        np.testing.assert_allclose(grad, back, rtol=1e-8, atol=1e-8)
        stored = fast.expand(x)
        expanded = general.expand(mapped)
        for name, values in stored.items():
            np.testing.assert_allclose(values, expanded[name], rtol=1e-12)


def _offsets(names):
    sizes = {"fixef": 2}
    out, start = {}, 0
    for name in names:
        out[name] = slice(start, start + sizes.get(name, 1))
        start += sizes.get(name, 1)
    return out


def test_routes():
    """The compiled route takes only what it computes."""
    data = pd.read_csv(PIGS).assign(sex=lambda d: np.where(d["id"] % 2 == 0, "f", "m"))
    takes = {("weight ~ week", "ar1(week | id)", None): True,
             ("weight ~ week + (1 | id)", "ar1(week | id)", None): False,
             ("weight ~ week", "ar1(week | id)", "sex"): False,
             ("weight ~ week", "arh1(week | id)", None): False,
             ("weight ~ week", "toep(week | id)", None): False}
    for (formula, residual, variance), expected in takes.items():
        built = build_model(hl.Model(formula, data, residual=residual, variance=variance))
        assert fast_route_applies(built) is expected, (formula, residual, variance)
