"""The marginal formulation of nested and crossed designs: the one likelihood as NUTS's density.

* On a one-factor design the compiled kernel (hierlm.bayes.kernel) is a twin of the
  one likelihood: same log-posterior and gradient at random points (rel 1e-10).
* On crossed and nested designs the log-posterior's gradient equals central differences
  (rel 1e-5), and the formulation is built without per-level statistics.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
from hierlm.bayes.build import MARGINAL_DENSE_LIMIT, build_model, dense_width, marginal_is_faster
from hierlm.bayes.kernel_cfunc import kernel_logp
from hierlm.bayes.kernel_model import kernel_layout
from hierlm.bayes.likelihood_model import likelihood_logp
from hierlm.lmm.likelihood import GaussianLikelihood


def _logp(model):
    built = build_model(model, formulation="marginal")
    return built, likelihood_logp(GaussianLikelihood(built.design), kernel_layout(built))


def test_compiled_kernel_is_a_twin_of_the_one_likelihood():
    model = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))
    built, general = _logp(model)
    assert built.stats is not None
    compiled = kernel_logp(built.stats, kernel_layout(built))
    rng = np.random.default_rng(0)
    centre = np.array([250.0, 10.0, np.log(25.0), np.log(20.0), np.log(6.0), 0.3])
    for _ in range(5):
        x = centre + rng.normal(0, 0.3, centre.size)
        v_c, g_c = compiled(x)
        v_g, g_g = general(x)
        assert v_g == pytest.approx(v_c, rel=1e-10)
        np.testing.assert_allclose(g_g, g_c, rtol=1e-9, atol=1e-9 * np.max(np.abs(g_c)))


CASES = {
    "penicillin": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)",
                   [23.0, np.log(0.6), np.log(0.8), np.log(1.9)]),
    "pastes": ("Pastes", "strength ~ 1 + (1 | batch / cask)",
               [60.0, np.log(0.9), np.log(2.9), np.log(1.3)]),
    "sleep_crossed_slope": ("sleepstudy", "Reaction ~ Days + (Days | Subject) + (1 | Days)",
                            [250.0, 10.0, np.log(25.0), np.log(20.0), np.log(6.0), np.log(3.0),
                             0.2]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_of_the_log_posterior(case):
    data, formula, point = CASES[case]
    built, logp = _logp(hl.Model(formula, hl.datasets.load(data)))
    assert built.formulation == "marginal" and built.stats is None
    x = np.asarray(point, dtype=float)
    assert x.size == kernel_layout(built).size
    value, grad = logp(x)
    assert np.isfinite(value)
    numeric = np.empty(x.size)
    for k in range(x.size):
        h = 1e-5 * max(1.0, abs(x[k]))
        step = np.zeros(x.size)
        step[k] = h
        numeric[k] = (logp(x + step)[0] - logp(x - step)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6 * np.max(np.abs(numeric)))


def test_auto_takes_the_marginal_form_where_it_is_compiled():
    """Scalar crossed/nested terms with a narrow dense part: 'auto' is marginal; else full."""
    for case in ("penicillin", "pastes"):
        data, formula, _ = CASES[case]
        assert build_model(hl.Model(formula, hl.datasets.load(data))).formulation == "marginal"
    wide = hl.Model("y ~ service + (1 | s) + (1 | d) + (1 | dept)", hl.datasets.load("InstEval"))
    assert dense_width(wide.design) == 1128 + 14 > MARGINAL_DENSE_LIMIT
    # a 1142-wide dense Schur complement over 73,421 rows: the cost model says marginal
    assert marginal_is_faster(wide.design) and build_model(wide).formulation == "marginal"
    data, formula, _ = CASES["sleep_crossed_slope"]
    model = hl.Model(formula, hl.datasets.load(data))
    assert build_model(model).formulation == "full"
    assert build_model(model, formulation="marginal").formulation == "marginal"
