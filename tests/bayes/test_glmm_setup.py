"""Which blocks the full formulation samples centred, and which route ``"auto"`` takes.

The rule (:func:`hierlm.bayes.glmm_setup.centred_blocks`): a scalar block is
centred when the median Fisher information of its levels' effects is at least
4 (Gaussian: in units of the residual variance, so rows for ``(1 | g)``), unless
another factor is nested in it.
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
