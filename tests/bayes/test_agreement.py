"""Different routes to one posterior agree: marginal vs full, hierlm vs brms and bambi, truth recovery."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from arviz_stats.base.array import array_stats

import hierlm as hl
from hierlm.bayes import Prior, fit_bayes
from hierlm.errors import SamplingWarning

BRMS = Path(__file__).resolve().parents[1] / "fixtures" / "brms" / "sleep_slope_brms.json"
PARAMETERS = ("fixef", "sigma", "sd_Subject", "cor_Subject")


def nuts(model, **options):
    settings = {"progressbar": False, "chains": 4, **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return fit_bayes(model, **settings)


def columns(fit, names=PARAMETERS, ranef=False):
    """Posterior draws (chain, draw, k) of the named variables, flattened side by side."""
    post = fit.idata["posterior"]
    names = (*names, "ranef_Subject") if ranef else names
    parts = [post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1) for name in names]
    return np.concatenate(parts, axis=2)


def mean_z_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|mean difference| over its Monte Carlo standard error, per column."""
    mcse_a = array_stats.mcse(a, chain_axis=0, draw_axis=1, method="mean")
    mcse_b = array_stats.mcse(b, chain_axis=0, draw_axis=1, method="mean")
    diff = a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))
    return np.abs(diff) / np.sqrt(mcse_a**2 + mcse_b**2)


def sd_z_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|difference of posterior SDs| over its Monte Carlo standard error, per column."""
    mcse_a = array_stats.mcse(a, chain_axis=0, draw_axis=1, method="sd")
    mcse_b = array_stats.mcse(b, chain_axis=0, draw_axis=1, method="sd")
    diff = a.std(axis=(0, 1)) - b.std(axis=(0, 1))
    return np.abs(diff) / np.sqrt(mcse_a**2 + mcse_b**2)


def test_marginal_and_full_agree_on_a_short_run(sleep_model):
    marginal = nuts(sleep_model, formulation="marginal", draws=300, tune=300, chains=2, random_seed=5)
    full = nuts(sleep_model, formulation="full", draws=300, tune=300, chains=2, random_seed=6)
    z = mean_z_scores(columns(marginal), columns(full))
    assert np.all(z < 4.5), z


@pytest.mark.slow
def test_marginal_and_full_sample_the_same_posterior(sleep_model):
    marginal = nuts(sleep_model, formulation="marginal", draws=2000, tune=1000, random_seed=21)
    full = nuts(sleep_model, formulation="full", draws=2000, tune=1000, random_seed=22)
    a, b = columns(marginal, ranef=True), columns(full, ranef=True)
    z_mean, z_sd = mean_z_scores(a, b), sd_z_scores(a, b)
    # 6 parameters and 36 group effects, each compared twice: a 4.5 sigma bound rarely trips by chance
    assert np.all(z_mean < 4.5), z_mean
    assert np.all(z_sd < 4.5), z_sd
    scale = a.std(axis=(0, 1))
    assert np.all(np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))) < 0.1 * scale)


BRMS_NAMES = {
    ("fixef", 0): "b_Intercept",
    ("fixef", 1): "b_Days",
    ("sd_Subject", 0): "sd_Subject__Intercept",
    ("sd_Subject", 1): "sd_Subject__Days",
    ("cor_Subject", 0): "cor_Subject__Intercept__Days",
    ("sigma", None): "sigma",
}
BRMS_PRIORS = {
    "Intercept": Prior("normal", mu=0, sigma=500),
    "b": Prior("normal", mu=0, sigma=500),
    "sd": Prior("half_normal", sigma=100),
    "sigma": Prior("half_normal", sigma=100),
    "cor": Prior("lkj", eta=2),
}


@pytest.mark.slow
@pytest.mark.parametrize("formulation", ["marginal", "full"])
def test_posterior_means_agree_with_brms(sleep_df, formulation):
    reference = json.loads(BRMS.read_text())["parameters"]
    model = hl.Model("Reaction ~ Days + (Days | Subject)", sleep_df, priors=BRMS_PRIORS)
    fit = nuts(model, formulation=formulation, draws=2500, tune=1000, random_seed=31)
    post = fit.idata["posterior"]
    for (name, index), brms_name in BRMS_NAMES.items():
        values = post[name].values if index is None else post[name].values[..., index]
        ours_mean = values.mean()
        ours_mcse = array_stats.mcse(values, chain_axis=0, draw_axis=1, method="mean")
        ref = reference[brms_name]
        tolerance = 0.1 * ref["sd"] + 3 * np.hypot(ours_mcse, ref["mcse_mean"])
        assert abs(ours_mean - ref["mean"]) < tolerance, (brms_name, ours_mean, ref["mean"], tolerance)
        assert abs(values.std() - ref["sd"]) < 0.1 * ref["sd"], (brms_name, values.std(), ref["sd"])


def simulate_slopes(seed: int, groups: int = 40, per_group: int = 15) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    truth = {"beta": np.array([2.0, -1.0]), "sd": np.array([1.0, 0.5]), "cor": 0.4, "sigma": 0.7}
    cov = np.outer(truth["sd"], truth["sd"]) * np.array([[1, truth["cor"]], [truth["cor"], 1]])
    effects = rng.multivariate_normal(np.zeros(2), cov, size=groups)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.uniform(-1, 1, size=g.size)
    y = truth["beta"][0] + effects[g, 0] + (truth["beta"][1] + effects[g, 1]) * x
    y = y + rng.normal(scale=truth["sigma"], size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k:02d}" for k in g]}), truth


@pytest.mark.slow
@pytest.mark.parametrize("formulation", ["marginal", "full"])
def test_recovers_known_parameters(formulation):
    data, truth = simulate_slopes(2024)
    model = hl.Model("y ~ x + (x | g)", data)
    fit = nuts(model, formulation=formulation, draws=1000, tune=1000, random_seed=3)
    post = fit.idata["posterior"]
    checks = [
        (post["fixef"].values[..., 0], truth["beta"][0]),
        (post["fixef"].values[..., 1], truth["beta"][1]),
        (post["sd_g"].values[..., 0], truth["sd"][0]),
        (post["sd_g"].values[..., 1], truth["sd"][1]),
        (post["cor_g"].values[..., 0], truth["cor"]),
        (post["sigma"].values, truth["sigma"]),
    ]
    for values, true in checks:
        assert abs(values.mean() - true) < 3 * values.std(), (values.mean(), values.std(), true)
    assert fit.diagnostics is not None and fit.diagnostics.divergences == 0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bambi") is None, reason="bambi is not installed")
def test_agrees_with_bambi_on_independent_intercepts_and_slopes():
    import bambi as bmb

    data, _ = simulate_slopes(7, groups=25, per_group=10)
    priors = {
        "Intercept": Prior("normal", mu=0, sigma=10),
        "x": Prior("normal", mu=0, sigma=10),
        "sd": Prior("half_normal", sigma=2),
        "sigma": Prior("half_normal", sigma=2),
    }
    model = hl.Model("y ~ x + (1 | g) + (0 + x | g)", data, priors=priors)
    ours = nuts(model, draws=2000, tune=1000, random_seed=8)
    bambi_priors = {
        "Intercept": bmb.Prior("Normal", mu=0, sigma=10),
        "x": bmb.Prior("Normal", mu=0, sigma=10),
        "1|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=2)),
        "0 + x|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=2)),
        "sigma": bmb.Prior("HalfNormal", sigma=2),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bambi_model = bmb.Model("y ~ x + (1 | g) + (0 + x | g)", data, priors=bambi_priors)
        theirs = bambi_model.fit(draws=2000, tune=1000, chains=4, random_seed=9, progressbar=False)
    post, ref = ours.idata["posterior"], theirs["posterior"]
    slope_sd = next(name for name in ref.data_vars if name.endswith("|g_sigma") and "x" in name)
    pairs = {
        "Intercept": (post["fixef"].values[..., 0], ref["Intercept"].values),
        "x": (post["fixef"].values[..., 1], ref["x"].values),
        "sd intercept": (post["sd_g"].values[..., 0], ref["1|g_sigma"].values),
        "sd slope": (post["sd_g.1"].values[..., 0], ref[slope_sd].values),
        "sigma": (post["sigma"].values, ref["sigma"].values),
    }
    for label, (a, b) in pairs.items():
        mcse = np.hypot(*(array_stats.mcse(v, chain_axis=0, draw_axis=1, method="mean") for v in (a, b)))
        tolerance = 0.1 * b.std() + 3 * mcse
        assert abs(a.mean() - b.mean()) < tolerance, (label, a.mean(), b.mean(), tolerance)
