"""The marginal kernel's nutpie callbacks: codes, the stored vector, and sampling through them.

The callbacks are the kernel: ``test_kernel.py`` checks them (through
:func:`hierlm.bayes.kernel_cfunc.kernel_logp`, a ctypes call of the same
callback) against the PyMC model for every block width. Here: the failure
codes, the expand callback (a copy of the vector), the vectorised map of the
draws to the named variables, and nutpie sampling through the callbacks
giving the draws of nutpie's Python route with the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
from hierlm.bayes.build import build_model
from hierlm.bayes.kernel_cfunc import (
    callback_table,
    compile_kernel_for_nutpie,
    expand_callback,
    kernel_logp,
    logp_callback,
)
from hierlm.bayes.kernel_model import (
    _start,
    expand_draws,
    expand_point,
    kernel_layout,
    nutpie_model_of_layout,
)
from hierlm.bayes.sample import stored_variables
from tests.bayes.helpers import EXPAND_CALLBACK, LOGP_CALLBACK

_LOGP, _EXPAND = LOGP_CALLBACK, EXPAND_CALLBACK

FORMULAS = {
    1: "Reaction ~ Days + (1 | Subject)",
    2: "Reaction ~ Days + (Days | Subject)",
    3: "y ~ x + x2 + (x + x2 | a)",
}


def _built(width: int, sleep_df, crossed_df):
    if width == 3:
        data = crossed_df.assign(x2=np.sin(np.arange(len(crossed_df))))
        model = hl.Model(FORMULAS[3], data, priors={"cor": hl.Prior("lkj", eta=1.7)})
    else:
        model = hl.Model(FORMULAS[width], sleep_df)
    return build_model(model, formulation="marginal")


def _call_logp(callback, table, x: np.ndarray, dim: int | None = None) -> tuple[int, float, np.ndarray]:
    grad, value = np.full(x.size, np.nan), np.full(1, np.nan)
    code = _LOGP(callback.address)(x.size if dim is None else dim, x.ctypes.data, grad.ctypes.data,
                                   value.ctypes.data, table.address)
    return int(code), float(value[0]), grad


@pytest.mark.parametrize("width", [1, 2, 3])
def test_each_width_has_its_callback_and_expand_copies_the_vector(width: int, sleep_df, crossed_df) -> None:
    built = _built(width, sleep_df, crossed_df)
    layout = kernel_layout(built)
    assert layout.q_total == width
    table = callback_table(built.stats, layout)
    x = _start(built, layout) + 0.3 * np.random.default_rng(11).standard_normal(layout.size)
    code, value, grad = _call_logp(logp_callback(width), table, x)
    reference, reference_grad = kernel_logp(built.stats, layout)(x)
    assert code == 0 and np.isfinite(value)
    assert value == reference
    np.testing.assert_array_equal(grad, reference_grad)
    assert logp_callback(width) is logp_callback(width)  # compiled (or loaded) once per process
    copy = np.full(layout.size, np.nan)
    assert _EXPAND(expand_callback().address)(layout.size, layout.size, x.ctypes.data,
                                              copy.ctypes.data, table.address) == 0
    np.testing.assert_array_equal(copy, x)


def test_failed_points_are_recoverable_codes_and_a_wrong_size_is_refused(sleep_df, crossed_df) -> None:
    built = _built(2, sleep_df, crossed_df)
    layout = kernel_layout(built)
    table = callback_table(built.stats, layout)
    far = _start(built, layout)
    far[layout.p] = -800.0  # log sigma: sigma underflows to 0, a point of zero density
    code, value, _ = _call_logp(logp_callback(2), table, far)
    assert (code, value) == (4, -np.inf)
    assert _call_logp(logp_callback(2), table, far, dim=layout.size + 1)[0] == -1
    out = np.zeros(layout.size)
    assert _EXPAND(expand_callback().address)(layout.size, layout.size + 1, far.ctypes.data,
                                              out.ctypes.data, table.address) == -1
    value, grad = kernel_logp(built.stats, layout)(far)  # the Python route: a divergence
    assert value == -np.inf and not grad.any()
    with pytest.raises(ValueError, match="entries"):
        kernel_logp(built.stats, layout)(far[:-1])


def test_expand_draws_are_the_pointwise_map_over_leading_axes(sleep_df, crossed_df) -> None:
    built = _built(3, sleep_df, crossed_df)
    layout = kernel_layout(built)
    x = np.random.default_rng(2).normal(0, 0.7, size=(2, 5, layout.size))
    draws = expand_draws(x, layout)
    point = expand_point(x[1, 3], layout)
    assert set(draws) == set(point) == {"fixef", "sigma", "sd_a", "cor_a", "corr_chol_a"}
    for name, value in point.items():
        assert draws[name].shape == (2, 5, *np.shape(value))
        np.testing.assert_allclose(draws[name][1, 3], value, rtol=1e-15)
    chol = point["corr_chol_a"]
    corr = chol @ chol.T
    np.testing.assert_allclose(point["cor_a"], [corr[0, 1], corr[0, 2], corr[1, 2]], rtol=1e-14)
    np.testing.assert_allclose(point["sd_a"], np.exp(x[1, 3, 4:7]))


def test_nutpie_draws_through_the_callbacks_equal_those_through_python(sleep_df, crossed_df) -> None:
    import nutpie

    built = _built(2, sleep_df, crossed_df)
    names = stored_variables(built)
    layout = kernel_layout(built)
    compiled, expand = compile_kernel_for_nutpie(built, names)
    python = nutpie_model_of_layout(built, layout, kernel_logp(built.stats, layout), names)
    settings = {"draws": 60, "tune": 60, "chains": 2, "cores": 1, "seed": 5, "progress_bar": False}
    through_c = nutpie.sample(compiled, **settings)["posterior"]
    through_python = nutpie.sample(python, **settings)["posterior"]
    expanded = expand(through_c.to_dataset())
    assert sorted(expanded) == sorted(names)
    for name in names:
        reference = np.asarray(through_python[name].values)
        assert expanded[name].shape == reference.shape
        np.testing.assert_allclose(expanded[name], reference, rtol=1e-13, atol=1e-15)
        assert reference.shape[:2] == (2, 60)


def test_a_variable_the_kernel_does_not_define_is_refused(sleep_df, crossed_df) -> None:
    built = _built(1, sleep_df, crossed_df)
    with pytest.raises(ValueError, match="does not store"):
        compile_kernel_for_nutpie(built, ["fixef", "ranef_Subject"])
