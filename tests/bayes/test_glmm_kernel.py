"""The compiled GLMM kernel is the full formulation's PyMC model.

Same log posterior up to the dropped normalising constants, and the same
gradient (against PyMC's symbolic one, rel 1e-8), for centred and
non-centred blocks, binomial (trials), Poisson (offset) and Gaussian
(crossed with weights; scalar intercept and slope terms with an offset)
models.
"""

from __future__ import annotations

import numpy as np
import pytensor
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
    # the Gaussian PyMC model samples the coefficients as written, the others at centred predictors
    fixef, values = ("fixef", kernel.expand(x)["fixef"]) if kernel.gaussian else ("fixef_centred", x[:p])
    if fixef in point:
        point[fixef] = np.array(values, dtype=float)
    else:
        for j, name in enumerate(names):
            point[f"{fixef}__{name}"] = np.array(values[j])
    if kernel.gaussian:
        point["sigma_log__"] = np.array(x[kernel.levels_at - 1])
    for k, bn in enumerate(built.names):
        point[f"{bn.sd}_log__"] = np.array([x[p + k]])
        start = kernel.levels_at + int(kernel.level_start[k])
        values = x[start:start + bn.block.n_levels][None, :]
        point[bn.ranef if kernel.centred[k] else bn.z_std] = values
    return point


def _pymc_gradient(built, kernel: GlmmKernel, point: dict[str, np.ndarray], pymc_grad) -> np.ndarray:
    """PyMC's gradient at ``point`` in the kernel's coordinates (chain rule of the centring)."""
    model = built.pymc_model
    by_name = dict(zip([v.name for v in model.value_vars],
                       pymc_grad(*[point[v.name] for v in model.value_vars]), strict=True))
    p = kernel.xc.shape[1]
    names = list(built.design.fixed_names)
    fixef = "fixef" if kernel.gaussian else "fixef_centred"
    g_beta = (np.asarray(by_name[fixef], dtype=float) if fixef in by_name
              else np.array([float(by_name[f"{fixef}__{name}"]) for name in names]))
    out = np.empty(kernel.size)
    if kernel.gaussian and kernel.intercept >= 0:  # beta = beta_c - e_0 xbar'beta_c
        g_beta = g_beta - kernel.xbar * g_beta[kernel.intercept]
    out[:p] = g_beta
    if kernel.gaussian:
        out[kernel.levels_at - 1] = float(by_name["sigma_log__"])
    for k, bn in enumerate(built.names):
        out[p + k] = float(np.ravel(by_name[f"{bn.sd}_log__"])[0])
        start = kernel.levels_at + int(kernel.level_start[k])
        levels = by_name[bn.ranef if kernel.centred[k] else bn.z_std]
        out[start:start + bn.block.n_levels] = np.ravel(levels)
    return out


def _model(case: str) -> hl.Model:
    if case == "binomial":
        return hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                        hl.datasets.load("cbpp"), family="binomial")
    if case == "poisson":
        return hl.Model("incidence ~ period + offset(log(size)) + (1 | herd)", hl.datasets.load("cbpp"),
                        family="poisson", priors={"sd": hl.Prior("half_student_t", nu=3, sigma=1)})
    if case == "gaussian_crossed":  # weights scale the residual variance, sigma's prior a half-t
        return hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", hl.datasets.load("Penicillin"),
                        weights=np.linspace(0.5, 2.0, 144),
                        priors={"sigma": hl.Prior("half_student_t", nu=3, sigma=2)})
    # scalar intercept and slope terms of one factor, a slope's prior, an offset
    sleep = hl.datasets.load("sleepstudy").assign(shift=lambda d: np.cos(d["Days"]))
    return hl.Model("Reaction ~ Days + offset(shift) + (1 | Subject) + (0 + Days | Subject)", sleep,
                    priors={"Days": hl.Prior("normal", mu=5, sigma=20)})


@pytest.mark.parametrize(("case", "centred"), [("binomial", True), ("poisson", False),
                                               ("gaussian_crossed", True), ("gaussian_crossed", False),
                                               ("gaussian_slopes", True), ("gaussian_slopes", False)])
def test_kernel_matches_the_pymc_model(case: str, centred: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(full, "CENTRED_INFORMATION", 0.0 if centred else np.inf)
    built = build_model(_model(case), None, "full")
    assert glmm_kernel_applies(built)
    kernel = GlmmKernel.from_built(built)
    assert kernel.gaussian is case.startswith("gaussian")
    assert all(bool(c) is centred for c in kernel.centred)
    logp = kernel.logp_function()
    model = built.pymc_model
    pymc_logp = model.compile_logp(jacobian=True, mode="FAST_COMPILE")
    pymc_grad = pytensor.function(model.value_vars,
                                  pytensor.grad(model.logp(jacobian=True), model.value_vars),
                                  mode="FAST_COMPILE")
    rng = np.random.default_rng(7)
    values, references = [], []
    for _ in range(3):
        x = kernel.start() + 0.3 * rng.standard_normal(kernel.size)
        value, grad = logp(x)
        point = _pymc_point(built, kernel, x)
        values.append(value)
        references.append(float(pymc_logp(point)))
        # the gradient against PyMC's symbolic gradient, carried to the kernel's coordinates
        np.testing.assert_allclose(grad, _pymc_gradient(built, kernel, point, pymc_grad),
                                   rtol=1e-8, atol=1e-8 * np.max(np.abs(grad)))
    offsets = np.array(references) - np.array(values)  # the dropped normalising constants
    np.testing.assert_allclose(offsets, offsets[0], rtol=0, atol=1e-8)
