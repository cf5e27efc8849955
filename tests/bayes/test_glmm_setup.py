"""Which blocks the full formulation samples centred, and which route ``"auto"`` takes.

The rule (:func:`hierlm.bayes.glmm_setup.centred_blocks`): a scalar block is
centred when the median Fisher information of its levels' effects is at least
4 (Gaussian: in units of the residual variance, so rows for ``(1 | g)``; other
families: scaled by ``(sd / 0.5)^2`` when a moment estimate of the SD is below 0.5),
unless another factor is nested in it.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

import hierlm as hl
from hierlm.bayes.build import MARGINAL_DENSE_LIMIT, build_model, dense_width, marginal_is_faster
from hierlm.bayes.fit import _default_cores
from hierlm.bayes.glmm_kernel import glmm_kernel_applies
from hierlm.bayes.glmm_setup import centred_blocks
from hierlm.families import get_family

GAUSSIAN = get_family("gaussian")


def _nested(rows_per_inner: int, inner_levels: int = 300, outer_levels: int = 5,
            crossed_levels: int = 250) -> pd.DataFrame:
    """``inner`` nested in ``outer`` (every inner level in one outer level), ``crossed`` across both."""
    rng = np.random.default_rng(3)
    inner = np.repeat(np.arange(inner_levels), rows_per_inner)
    return pd.DataFrame({
        "y": rng.standard_normal(inner.size),
        "inner": [f"i{k}" for k in inner],
        "outer": [f"o{k % outer_levels}" for k in inner],
        "crossed": [f"c{k}" for k in rng.integers(0, crossed_levels, inner.size)],
    })


def _by_group(formula: str, data: pd.DataFrame) -> dict[str, bool]:
    design = hl.Model(formula, data).design
    return {b.group: c for b, c in zip(design.blocks, centred_blocks(design, GAUSSIAN), strict=True)}


def test_gaussian_intercepts_are_centred_from_four_rows_per_level() -> None:
    # Penicillin: plate 6 rows per level, sample 24; crossed, nothing nested
    design = hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", hl.datasets.load("Penicillin")).design
    assert centred_blocks(design, GAUSSIAN) == [True, True]
    three = _nested(3)  # 3 rows per inner level: below the threshold
    design = hl.Model("y ~ 1 + (1 | inner)", three).design
    assert centred_blocks(design, GAUSSIAN) == [False]


def test_a_factor_with_another_nested_in_it_stays_non_centred() -> None:
    data = _nested(8)
    # outer has 480 rows per level but inner is nested in it; crossed (~10 rows) is not nested
    assert _by_group("y ~ 1 + (1 | crossed) + (1 | inner) + (1 | outer)", data) == {
        "crossed": True, "inner": True, "outer": False}
    # the same factors without the nested one: outer is centred
    assert _by_group("y ~ 1 + (1 | crossed) + (1 | outer)", data) == {"crossed": True, "outer": True}
    # Pastes (1 | batch / cask): casks (2 rows) too few, batch has the casks nested in it
    design = hl.Model("strength ~ 1 + (1 | batch / cask)", hl.datasets.load("Pastes")).design
    assert centred_blocks(design, GAUSSIAN) == [False, False]


def test_a_scalar_slope_counts_its_squared_values() -> None:
    data = _nested(8).assign(x=0.2)  # sum of x^2 per level: 8 * 0.04 = 0.32 < 4
    design = hl.Model("y ~ 1 + (0 + x | inner)", data).design
    assert centred_blocks(design, GAUSSIAN) == [False]
    design = hl.Model("y ~ 1 + (0 + x | inner)", data.assign(x=2.0)).design  # 32 >= 4
    assert centred_blocks(design, GAUSSIAN) == [True]


def test_auto_samples_wide_gaussian_crossed_designs_with_the_compiled_full_kernel() -> None:
    data = _nested(8)
    # 700 inner levels eliminated, about 600 crossed ones left dense over 2800 rows: the dense
    # part costs more per effective draw than the full formulation's pass over the rows
    # (build.marginal_is_faster)
    wide = hl.Model("y ~ 1 + (1 | crossed) + (1 | inner) + (1 | outer)",
                    _nested(4, inner_levels=700, crossed_levels=600))
    assert dense_width(wide.design) > MARGINAL_DENSE_LIMIT and not marginal_is_faster(wide.design)
    built = build_model(wide)
    assert built.formulation == "full" and glmm_kernel_applies(built)
    narrow = build_model(hl.Model("y ~ 1 + (1 | inner) + (1 | outer)", data))
    assert narrow.formulation == "marginal" and not glmm_kernel_applies(narrow)
    # chains run in parallel threads at any size (nutpie calls the compiled kernel without Python)
    assert _default_cores(built, "kernel", 4) == min(4, os.cpu_count() or 1)
    assert _default_cores(built, "kernel", 1) == 1
    assert _default_cores(narrow, "kernel", 4) == 1  # the one-factor kernel: from 2,000 levels
    # a vector-valued term: the full formulation through PyTensor
    vector = build_model(hl.Model("y ~ 1 + (1 | crossed) + (1 + z | inner) + (1 | outer)",
                                  data.assign(z=np.linspace(0, 1, len(data)))))
    assert vector.formulation == "full" and not glmm_kernel_applies(vector)


def _binomial_levels(sd: float, levels: int = 200, trials: int = 400, seed: int = 5) -> pd.DataFrame:
    """One row of ``trials`` per level, level effects N(0, sd^2) on the logit scale around -0.5."""
    rng = np.random.default_rng(seed)
    eta = -0.5 + sd * rng.standard_normal(levels)
    s = rng.binomial(trials, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"s": s, "f": trials - s, "g": [f"g{k}" for k in range(levels)]})


def test_moment_sd_recovers_the_spread_of_level_effects() -> None:
    """``var_j(U_j / I_j) - mean_j(1 / I_j)``: 200 levels of 400 trials, true SD 0.8 and 0
    (the estimate's sampling SD is about 0.8 / sqrt(2 * 200) = 0.04 at 0.8)."""
    from hierlm.bayes.glmm_setup import glmm_start, moment_sd
    from hierlm.bayes.likelihoods import observed_data

    binomial = get_family("binomial")
    estimates = []
    for sd in (0.8, 0.0):
        design = hl.Model("cbind(s, f) ~ 1 + (1 | g)", _binomial_levels(sd), family="binomial").design
        eta = np.full(design.n, glmm_start(design, binomial).beta[0])
        estimates.append(moment_sd(design.blocks[0], observed_data(design), binomial, eta))
    assert abs(estimates[0] - 0.8) < 0.12, estimates
    assert estimates[1] < 0.05, estimates


def test_informative_binomial_levels_with_little_spread_stay_non_centred() -> None:
    """Centred needs information x SD^2 >= 1: 400 trials per level (information about 90) are
    centred at SD 0.8 but not at SD 0.02, where the centred block funnels (the binomial SBC study:
    13 of 48 fits with divergences when centred by information alone, 4 with this rule)."""
    binomial = get_family("binomial")
    for sd, centred in ((0.8, True), (0.02, False)):
        design = hl.Model("cbind(s, f) ~ 1 + (1 | g)", _binomial_levels(sd), family="binomial").design
        assert centred_blocks(design, binomial) == [centred], sd
    cbpp = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", hl.datasets.load("cbpp"),
                    family="binomial").design
    assert centred_blocks(cbpp, binomial) == [True]
