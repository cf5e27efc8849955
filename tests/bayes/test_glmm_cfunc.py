"""nutpie's C callbacks of the GLMM kernel compute what the Python route computes, to the last bit.

The Python route (:func:`hierlm.bayes.glmm_centring.intercept_centred` over
:meth:`GlmmKernel.logp_function`) is checked against the PyMC model in
``test_glmm_kernel.py`` and ``test_glmm_centring.py``; here the callbacks
are called through ctypes at random points and compared with it exactly,
the failure codes are checked, and nutpie sampling through the callbacks
gives the same draws as through the Python callback with the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
import hierlm.bayes.glmm_setup as setup
from hierlm.bayes.build import build_model
from hierlm.bayes.glmm_centring import intercept_centred
from hierlm.bayes.glmm_cfunc import (
    callback_table,
    compile_glmm_kernel_for_nutpie,
    expand_callback,
    logp_callback,
)
from hierlm.bayes.glmm_kernel import GlmmKernel
from hierlm.bayes.kernel_model import nutpie_model
from hierlm.bayes.sample import stored_variables
from tests.bayes.helpers import EXPAND_CALLBACK, LOGP_CALLBACK

_LOGP, _EXPAND = LOGP_CALLBACK, EXPAND_CALLBACK


def _model(case: str) -> hl.Model:
    if case == "binomial":
        return hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                        hl.datasets.load("cbpp"), family="binomial")
    if case == "poisson_crossed":  # crossed intercepts, a slope term, YEAR constant within broods
        return hl.Model("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION) + (1 | BROOD) + (0 + cHEIGHT | LOCATION)",
                        hl.datasets.load("grouseticks"), family="poisson")
    return hl.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", hl.datasets.load("Penicillin"),
                    weights=np.linspace(0.5, 2.0, 144))


def _call_logp(table, x: np.ndarray, dim: int | None = None) -> tuple[int, float, np.ndarray]:
    grad, value = np.full(x.size, np.nan), np.full(1, np.nan)
    code = _LOGP(logp_callback.address)(x.size if dim is None else dim, x.ctypes.data, grad.ctypes.data,
                                        value.ctypes.data, table.address)
    return int(code), float(value[0]), grad


@pytest.mark.parametrize(("case", "centred"), [("binomial", True), ("binomial", False),
                                               ("poisson_crossed", True), ("poisson_crossed", False),
                                               ("gaussian", True)])
def test_callbacks_equal_the_python_route(case: str, centred: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup, "CENTRED_INFORMATION", 0.0 if centred else np.inf)
    built = build_model(_model(case), None, "full")
    kernel = GlmmKernel.from_built(built)
    names = stored_variables(built)
    table = callback_table(kernel, names)
    logp, to_kernel, start = intercept_centred(kernel)
    rng = np.random.default_rng(11)
    for _ in range(3):
        x = start + 0.3 * rng.standard_normal(kernel.size)
        code, value, grad = _call_logp(table, x)
        reference, reference_grad = logp(x)
        assert code == 0
        assert value == reference
        np.testing.assert_array_equal(grad, reference_grad)
        flat = np.full(table.n_expanded, np.nan)
        assert _EXPAND(expand_callback.address)(kernel.size, table.n_expanded, x.ctypes.data,
                                                flat.ctypes.data, table.address) == 0
        expanded = kernel.expand(to_kernel(x))
        np.testing.assert_array_equal(flat, np.concatenate([np.ravel(expanded[n]) for n in names]))


def test_failed_points_are_recoverable_codes_and_a_wrong_size_is_refused() -> None:
    built = build_model(_model("binomial"), None, "full")
    kernel = GlmmKernel.from_built(built)
    table = callback_table(kernel, stored_variables(built))
    start = intercept_centred(kernel)[2]
    p = kernel.xc.shape[1]
    far = start.copy()
    far[p] = 800.0  # log sd_herd: sd = inf, a non-finite log posterior (a divergence for nutpie)
    assert _call_logp(table, far)[0] == 4
    assert _call_logp(table, start, dim=kernel.size + 1)[0] == -1
    flat = np.zeros(table.n_expanded)
    assert _EXPAND(expand_callback.address)(kernel.size, table.n_expanded + 1, start.ctypes.data,
                                            flat.ctypes.data, table.address) == -1


def test_nutpie_draws_through_the_callbacks_equal_those_through_python() -> None:
    import nutpie

    built = build_model(_model("binomial"), None, "full")
    names = stored_variables(built)
    kernel = GlmmKernel.from_built(built)
    logp, to_kernel, start = intercept_centred(kernel)
    compiled = compile_glmm_kernel_for_nutpie(built, names)
    python = nutpie_model(kernel.size, logp, lambda x: kernel.expand(to_kernel(x)), start, kernel.jitter(),
                          names, (compiled.coords, compiled.dims))
    draws = [nutpie.sample(model, draws=60, tune=60, chains=2, cores=1, seed=5, progress_bar=False)
             for model in (compiled, python)]
    for name in names:
        values = [np.asarray(d["posterior"][name].values) for d in draws]
        assert values[0].shape == (2, 60, *np.shape(kernel.expand(start)[name]))
        np.testing.assert_array_equal(values[0], values[1])
