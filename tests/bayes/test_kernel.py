"""The compiled marginal log-density equals the PyMC model's, value and gradient."""

from __future__ import annotations

import numpy as np
import pytensor
import pytest

import hierlm as hl
from hierlm.bayes import Prior, build_model
from hierlm.bayes.kernel_cfunc import kernel_logp
from hierlm.bayes.kernel_model import expand_point, kernel_layout

PRIOR_SETS = {
    "defaults": None,
    "flat": "flat",
    "mixed": {
        "Intercept": Prior("student_t", nu=4, mu=250, sigma=50),
        "Days": "flat",
        "sd:Subject:Intercept": Prior("half_cauchy", sigma=20),
        "sd:Subject:Days": Prior("exponential", lam=0.2),
        "sigma": Prior("half_normal", sigma=40),
        "cor": Prior("lkj", eta=2.5),
    },
}


def pymc_pieces(built, layout):
    """PyMC's log-density and gradient as functions of the kernel's unconstrained vector."""
    model = built.pymc_model
    logp = model.compile_logp(mode="FAST_COMPILE")
    dlogp = model.compile_dlogp(mode="FAST_COMPILE")
    names = [v.name for v in model.value_vars]
    p, q_total = layout.p, layout.q_total

    fixed = list(built.design.fixed_names)
    slots: dict[str, object] = {"fixef": list(range(p)), "sigma_log__": p}
    for k, name in enumerate(fixed):
        slots[f"fixef__{name}"] = k
    for k, bn in enumerate(layout.names):
        start, q = int(layout.block_start[k]), int(layout.block_q[k])
        slots[f"{bn.sd}_log__"] = list(range(p + 1 + start, p + 1 + start + q))
        for t, term in enumerate(bn.block.columns):
            slots[f"{bn.sd}__{term}_log__"] = p + 1 + start + t
        if layout.block_corr[k]:
            offset = p + 1 + q_total + int(layout.block_raw[k])
            slots[f"corr_raw_{bn.label}"] = list(range(offset, offset + q * (q - 1) // 2))

    def to_point(x):
        return {name: x[slots[name]] for name in names}

    def from_gradient(point, grad):
        out, start = np.zeros(layout.size), 0
        for name in names:
            size = np.size(point[name])
            piece = grad[start : start + size]
            out[slots[name]] = piece if isinstance(slots[name], list) else piece[0]
            start += size
        return out

    def value_and_grad(x):
        point = to_point(x)
        return logp(point), from_gradient(point, dlogp(point))

    return value_and_grad


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ Days + (Days | Subject)",
        "Reaction ~ Days + (1 | Subject)",
        "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
    ],
)
@pytest.mark.parametrize("priors", list(PRIOR_SETS))
def test_kernel_matches_the_pymc_model(sleep_df, formula, priors):
    if priors == "mixed" and "(Days | Subject)" not in formula:
        pytest.skip("the mixed prior set names a correlation")
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        built = build_model(hl.Model(formula, sleep_df), priors=PRIOR_SETS[priors], formulation="marginal")
        layout = kernel_layout(built)
        ours = kernel_logp(built.stats, layout)
        theirs = pymc_pieces(built, layout)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = np.concatenate([rng.normal([250, 10], [20, 3]), rng.normal(3, 0.5, size=layout.size - 2)])
        x[2 + layout.q_total + 1 :] = rng.normal(0, 0.8, size=layout.size - 3 - layout.q_total)
        value, grad = ours(x)
        expected_value, expected_grad = theirs(x)
        np.testing.assert_allclose(value, expected_value, rtol=1e-9)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-8)


def test_three_by_three_correlation_block(crossed_df):
    data = crossed_df.assign(x2=np.sin(np.arange(len(crossed_df))))
    model = hl.Model("y ~ x + x2 + (x + x2 | a)", data, priors={"cor": Prior("lkj", eta=1.7)})
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        built = build_model(model, formulation="marginal")
        layout = kernel_layout(built)
        ours, theirs = kernel_logp(built.stats, layout), pymc_pieces(built, layout)
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.7, size=layout.size)
    np.testing.assert_allclose(ours(x)[0], theirs(x)[0], rtol=1e-9)
    np.testing.assert_allclose(ours(x)[1], theirs(x)[1], rtol=1e-6, atol=1e-8)
    stored = expand_point(x, layout)
    chol = stored["corr_chol_a"]
    np.testing.assert_allclose(np.sum(chol**2, axis=1), 1.0)
    corr = chol @ chol.T
    np.testing.assert_allclose(stored["cor_a"], [corr[1, 0], corr[2, 0], corr[2, 1]])
