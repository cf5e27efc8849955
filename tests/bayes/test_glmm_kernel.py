"""The compiled GLMM kernel is the full formulation's PyMC model.

Same log posterior up to the dropped normalising constants, and the same
gradient, for centred and non-centred blocks, binomial (trials) and Poisson
(offset) models.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
import hierlm.bayes.glmm_setup as full
from hierlm.bayes.build import build_model
from hierlm.bayes.glmm_kernel import GlmmKernel, glmm_kernel_applies


def _pymc_point(built, kernel: GlmmKernel, x: np.ndarray) -> dict[str, np.ndarray]:
    """The PyMC model's unconstrained point matching the kernel's ``x``."""
    point = built.pymc_model.initial_point()
    p = kernel.xc.shape[1]
    names = list(built.design.fixed_names)
    if "fixef_centred" in point:
        point["fixef_centred"] = x[:p].copy()
    else:
        for j, name in enumerate(names):
            point[f"fixef_centred__{name}"] = np.array(x[j])
    for k, bn in enumerate(built.names):
        point[f"{bn.sd}_log__"] = np.array([x[p + k]])
        start = p + len(built.names) + int(kernel.level_start[k])
        values = x[start:start + bn.block.n_levels][None, :]
        point[bn.ranef if kernel.centred[k] else bn.z_std] = values
    return point


@pytest.mark.parametrize(("case", "centred"), [("binomial", True), ("poisson", False)])
def test_kernel_matches_the_pymc_model(case: str, centred: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(full, "CENTRED_INFORMATION", 0.0 if centred else np.inf)
    cbpp = hl.datasets.load("cbpp")
    if case == "binomial":
        m = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    else:
        m = hl.Model("incidence ~ period + offset(log(size)) + (1 | herd)", cbpp, family="poisson",
                     priors={"sd": hl.Prior("half_student_t", nu=3, sigma=1)})
    built = build_model(m)
    assert glmm_kernel_applies(built)
    kernel = GlmmKernel.from_built(built)
    assert bool(kernel.centred[0]) is centred
    logp = kernel.logp_function()
    model = built.pymc_model
    pymc_logp = model.compile_logp(jacobian=True, mode="FAST_COMPILE")
    rng = np.random.default_rng(7)
    values, references = [], []
    for _ in range(3):
        x = kernel.start() + 0.3 * rng.standard_normal(kernel.size)
        value, grad = logp(x)
        point = _pymc_point(built, kernel, x)
        values.append(value)
        references.append(float(pymc_logp(point)))
        # the gradient against central differences of PyMC's log posterior
        h = 1e-6
        for j in rng.choice(kernel.size, size=6, replace=False):
            up, down = x.copy(), x.copy()
            up[j] += h
            down[j] -= h
            numeric = (float(pymc_logp(_pymc_point(built, kernel, up)))
                       - float(pymc_logp(_pymc_point(built, kernel, down)))) / (2 * h)
            assert grad[j] == pytest.approx(numeric, rel=1e-5, abs=1e-5)
    offsets = np.array(references) - np.array(values)  # the dropped normalising constants
    np.testing.assert_allclose(offsets, offsets[0], rtol=0, atol=1e-8)
