"""The marginal formulation of patterned random-effect structures (cs, ar1, toep).

* The model's likelihood potential equals the dense multivariate normal with
  ``V = sigma^2 I + Z (I x G) Z'`` built from the model's own ``sd_<b>`` and
  ``corr_chol_<b>`` (rel 1e-10): the kernel entries ``T = L_G / sigma`` are placed right.
* The log posterior's gradient (PyTensor's chain rule through the structures'
  transforms times the likelihood's exact gradient) equals central differences
  (rel 1e-5).
* ``formulation="auto"`` keeps the full formulation for them; ``"marginal"`` is accepted.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytest
from scipy import stats

import hierlm as hl
from hierlm.bayes.build import build_model
from hierlm.bayes.structured_marginal import LIKELIHOOD_POTENTIAL

CASES = {
    "cs_het": "score ~ Machine + cs(0 + Machine | Worker, hom = FALSE)",
    "ar1": "score ~ Machine + ar1(0 + Machine | Worker)",
    "toep_plus_intercept": "score ~ Machine + toep(0 + Machine | Worker) + (1 | Worker:Machine)",
}


def _built(case):
    return build_model(hl.Model(CASES[case], hl.datasets.load("Machines")), formulation="marginal")


def _point(model, seed=0):
    rng = np.random.default_rng(seed)
    point = model.initial_point()
    return {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in point.items()}


@pytest.mark.parametrize("case", [
    "ar1",
    pytest.param("cs_het", marks=pytest.mark.slow),
    pytest.param("toep_plus_intercept", marks=pytest.mark.slow),
])
def test_potential_is_the_dense_marginal_likelihood(case):
    built = _built(case)
    model = built.pymc_model
    point = _point(model)
    names = [LIKELIHOOD_POTENTIAL, "fixef", "sigma"]
    for bn in built.names:
        names += [bn.sd] + ([bn.corr_chol] if bn.block.q > 1 else [])
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    function = pytensor.function(model.value_vars, outputs, on_unused_input="ignore")
    got = function(*[point[v.name] for v in model.value_vars])
    values = dict(zip(names, got, strict=True))
    design = built.design
    z = design.sparse_z().toarray()
    parts = []
    for bn in built.names:
        chol = values[bn.sd][:, None] * (values[bn.corr_chol] if bn.block.q > 1 else np.eye(1))
        parts.append(np.kron(np.eye(bn.block.n_levels), chol @ chol.T))
    g = np.zeros((z.shape[1], z.shape[1]))
    start = 0
    for part in parts:
        g[start:start + part.shape[0], start:start + part.shape[0]] = part
        start += part.shape[0]
    v = float(values["sigma"]) ** 2 * np.eye(design.n) + z @ g @ z.T
    dense = stats.multivariate_normal.logpdf(design.y, design.X @ values["fixef"], v)
    assert float(values[LIKELIHOOD_POTENTIAL]) == pytest.approx(dense, rel=1e-10)


@pytest.mark.parametrize("case", ["cs_het", pytest.param("ar1", marks=pytest.mark.slow)])
def test_gradient_equals_central_differences(case):
    model = _built(case).pymc_model
    point = _point(model, seed=1)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    keys = list(point)
    flat = np.concatenate([np.ravel(point[k]) for k in keys])

    def unpack(vector):
        out, at = {}, 0
        for k in keys:
            size = np.size(point[k])
            out[k] = vector[at:at + size].reshape(np.shape(point[k]))
            at += size
        return out

    numeric = np.empty(flat.size)
    for k in range(flat.size):
        step = np.zeros(flat.size)
        step[k] = 1e-6
        numeric[k] = (logp(unpack(flat + step)) - logp(unpack(flat - step))) / 2e-6
    np.testing.assert_allclose(dlogp(unpack(flat)), numeric, rtol=1e-5,
                               atol=1e-6 * np.max(np.abs(numeric)))


def test_auto_keeps_the_full_formulation():
    model = hl.Model(CASES["ar1"], hl.datasets.load("Machines"))
    assert build_model(model).formulation == "full"
    built = build_model(model, formulation="marginal")
    assert built.formulation == "marginal" and built.stats is None
