"""The sampler's intercept-centred vector: the kernel's posterior under a unit-Jacobian linear map."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
import hierlm.bayes.glmm_setup as setup
from hierlm.bayes.build import build_model
from hierlm.bayes.glmm_centring import intercept_block, intercept_centred, level_columns
from hierlm.bayes.glmm_kernel import GlmmKernel


def _kernel(case: str) -> GlmmKernel:
    if case == "binomial":
        model = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                         hl.datasets.load("cbpp"), family="binomial")
    else:  # crossed intercepts (LOCATION has fewer levels than BROOD), a slope term, YEAR by brood
        model = hl.Model("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION) + (1 | BROOD) + (0 + cHEIGHT | LOCATION)",
                         hl.datasets.load("grouseticks"), family="poisson")
    return GlmmKernel.from_built(build_model(model, None, "full"))


def inner_eta(kernel: GlmmKernel, x: np.ndarray, level: int, block: int) -> float:
    """``xc_i' beta_G`` at a row of ``level`` (the same at every row of it), from the data."""
    row = int(np.flatnonzero(kernel.codes[:, block] == level)[0])
    columns = level_columns(kernel, block)[0]
    return float(kernel.xc[row, columns] @ x[columns])


@pytest.mark.parametrize("case", ["binomial", "poisson_crossed"])
def test_sampler_carries_the_intercept_in_the_largest_centred_block(
        case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``gamma_j = beta_0 + b_j``: the kernel's log posterior at the mapped point, its gradient by
    the chain rule (against central differences, rel 1e-6) and the stored effects ``gamma_j - beta_0``."""
    monkeypatch.setattr(setup, "CENTRED_INFORMATION", 0.0)  # every block centred
    kernel = _kernel(case)
    block = intercept_block(kernel)
    sizes = np.diff(kernel.level_start)
    intercepts = [k for k in range(sizes.size) if np.all(kernel.zcol[:, k] == 1.0)]
    assert block in intercepts and sizes[block] == max(sizes[k] for k in intercepts)
    assert len(intercepts) == (1 if case == "binomial" else 2)  # the slope block never carries it
    logp, to_kernel, start = intercept_centred(kernel)
    levels_at = kernel.size - int(kernel.level_start[-1])
    first, last = levels_at + int(kernel.level_start[block]), levels_at + int(kernel.level_start[block + 1])
    x = start + 0.2 * np.random.default_rng(3).standard_normal(kernel.size)
    inner = to_kernel(x)
    columns, values = level_columns(kernel, block)
    # cbpp: period varies within herds, only the intercept; grouseticks: YEAR and cHEIGHT (of the
    # brood's location) are constant within broods
    assert columns.tolist() == ([kernel.intercept] if case == "binomial" else [0, 1, 2, 3])
    np.testing.assert_allclose(values @ x[columns], [inner_eta(kernel, x, j, block) for j in
                                                     range(values.shape[0])], rtol=1e-12)
    np.testing.assert_allclose(inner[first:last], x[first:last] - values @ x[columns], rtol=1e-12)
    np.testing.assert_array_equal(np.delete(inner, np.arange(first, last)),
                                  np.delete(x, np.arange(first, last)))
    value, grad = logp(x)
    assert value == kernel.logp_function()(inner)[0]
    steps = 1e-6 * np.maximum(1.0, np.abs(x))
    numeric = np.array([(logp(x + e)[0] - logp(x - e)[0]) / (2 * h)
                        for h, e in zip(steps, np.diag(steps), strict=True)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.max(np.abs(grad)))
    name = kernel.built.names[block].ranef
    np.testing.assert_allclose(kernel.expand(inner)[name][0], x[first:last] - values @ x[columns],
                               rtol=1e-12)


def test_no_intercept_block_when_no_block_is_centred(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup, "CENTRED_INFORMATION", np.inf)  # every block non-centred
    kernel = _kernel("binomial")
    assert intercept_block(kernel) == -1
    logp, to_kernel, start = intercept_centred(kernel)
    x = start + 0.1
    np.testing.assert_array_equal(to_kernel(x), x)
    np.testing.assert_array_equal(start, kernel.start())
    assert logp(x)[0] == kernel.logp_function()(x)[0]
