"""One result protocol: REML, ML, MAP and NUTS fits answer the same methods with the same layout.

Table-driven: every protocol method (``PROTOCOL``) is called on the four fits of
sleepstudy ``Reaction ~ Days + (Days | Subject)`` and compared with the REML
fit: the same return type and, for tables, the same index and key columns
and the same protocol columns (``estimate``, ``std_error``, the interval at
``prob``) in front; engine-specific columns may only follow.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.results.display import FitSummary

NEW = pd.DataFrame({"Days": [0.0, 5.0, 5.0], "Subject": ["308", "308", "new"]})
INTERVAL = ["estimate", "std_error", "eti95_lb", "eti95_ub"]


def _fit(method: str) -> Any:
    model = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))
    nuts = {"draws": 100, "tune": 100, "chains": 2, "random_seed": 3, "progressbar": False}
    options = nuts if method == "nuts" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)  # tiny NUTS runs fail ESS checks
        start = time.perf_counter()
        fit = model.fit(method=method, **options)
    fit.seconds_to_fit = time.perf_counter() - start
    return fit


@pytest.fixture(scope="module")
def fits() -> dict[str, Any]:
    return {}


def fitted(fits: dict[str, Any], method: str) -> Any:
    if method not in fits:
        fits[method] = _fit(method)
    return fits[method]


def _quiet(call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run(fit: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hl.errors.HierlmWarning)  # new levels in NEW
            return call(fit)
    return run


# name -> (call, key columns of the table (None: compare the index), protocol columns in front)
PROTOCOL: dict[str, tuple[Callable[[Any], Any], list[str] | None, list[str]]] = {
    "fixef": (lambda f: f.fixef(), None, INTERVAL),
    "fixef(prob=0.8)": (lambda f: f.fixef(prob=0.8), None,
                        ["estimate", "std_error", "eti80_lb", "eti80_ub"]),
    "varcorr": (lambda f: f.varcorr(), ["group", "term1", "term2"], INTERVAL + ["vcov"]),
    "ranef": (lambda f: f.ranef(), ["group", "level", "term"], INTERVAL),
    "ranef(prob=0.5)": (lambda f: f.ranef(prob=0.5), ["group", "level", "term"],
                        ["estimate", "std_error", "eti50_lb", "eti50_ub"]),
    "coef": (lambda f: f.coef(), ["group", "level", "term"], INTERVAL),
    "predict": (lambda f: f.predict(), None, INTERVAL),
    "predict(new_data)": (_quiet(lambda f: f.predict(NEW)), None, INTERVAL),
    "predict(kind=response)": (_quiet(lambda f: f.predict(NEW, kind="response", seed=1)), None, INTERVAL),
    "predict(include_random=False)": (_quiet(lambda f: f.predict(NEW, include_random=False)), None,
                                      INTERVAL),
    "vcov": (lambda f: f.vcov(), None, ["Intercept", "Days"]),
    "summary.fixed": (lambda f: f.summary().to_frames()["fixed"], None, INTERVAL),
    "summary.random": (lambda f: f.summary(prob=0.9).to_frames()["random"], ["group", "term1", "term2"],
                       ["estimate", "std_error", "eti90_lb", "eti90_ub", "vcov"]),
    "icc.correlations": (lambda f: f.icc().correlations, None, []),
}

# the protocol methods whose tables are the same on every fit, all columns included
EXACT = {"ranef", "ranef(prob=0.5)", "coef", "predict", "predict(new_data)", "predict(kind=response)",
         "predict(include_random=False)", "vcov"}

# MAP with default priors optimises for 7-15 s on a shared machine and NUTS compiles and samples:
# both are slow tests; ML is compared with REML in every run.
METHODS = ["ml", pytest.param("map", marks=pytest.mark.slow), pytest.param("nuts", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", list(PROTOCOL))
@pytest.mark.parametrize("method", METHODS)
def test_tables_have_the_layout_of_the_reml_table(fits, method, name):
    call, keys, front = PROTOCOL[name]
    reference, table = call(fitted(fits, "reml")), call(fitted(fits, method))
    assert isinstance(table, pd.DataFrame) and isinstance(reference, pd.DataFrame)
    pd.testing.assert_index_equal(table.index, reference.index)
    if keys is not None:
        pd.testing.assert_frame_equal(table[keys], reference[keys])
        assert list(table.columns[: len(keys)]) == keys
    start = len(keys or [])
    assert list(table.columns[start:start + len(front)]) == front
    assert list(reference.columns[start:start + len(front)]) == front
    if name in EXACT:
        assert list(table.columns) == list(reference.columns)
    values = table[front].to_numpy(dtype=float) if front else table.select_dtypes("number").to_numpy()
    assert np.isfinite(values).all(), f"{name} of {method} has missing values"
    if front[:2] == ["estimate", "std_error"]:
        lower, estimate, upper = (table[c].to_numpy() for c in (front[2], "estimate", front[3]))
        assert (lower <= estimate).all() and (estimate <= upper).all()
        assert (table["std_error"] >= 0).all()


@pytest.mark.parametrize("method", ["reml", *METHODS])
def test_vectors_dicts_and_objects_have_one_type_on_every_fit(fits, method):
    fit, reference = fitted(fits, method), fitted(fits, "reml")
    for name in ("fitted", "residuals"):
        values = getattr(fit, name)()
        assert isinstance(values, np.ndarray) and values.shape == (fit.design.n,)
    np.testing.assert_allclose(fit.fitted() + fit.residuals(), fit.design.y, rtol=1e-10)
    # point estimates of REML, ML and MAP (and NUTS' posterior mean) agree on these data
    np.testing.assert_allclose(fit.fitted(), reference.fitted(), rtol=0.02)
    for wide in (fit.ranef(wide=True), fit.coef(wide=True)):
        assert isinstance(wide, dict) and list(wide) == ["Subject"]
    for got, expected in ((fit.ranef(wide=True), reference.ranef(wide=True)),
                          (fit.coef(wide=True), reference.coef(wide=True))):
        pd.testing.assert_index_equal(got["Subject"].index, expected["Subject"].index)
        assert list(got["Subject"].columns) == list(expected["Subject"].columns)
    contrast = fit.contrast({"Days": 1.0})
    assert isinstance(contrast, dict) and list(contrast)[:4] == INTERVAL
    assert contrast["estimate"] == pytest.approx(fit.fixef().loc["Days", "estimate"])
    summary = fit.summary()
    assert isinstance(summary, FitSummary) and list(summary.to_frames()) == ["fixed", "random"]
    assert str(summary) and "<table" in summary._repr_html_()
    assert type(fit.icc()) is type(reference.icc())


@pytest.mark.parametrize("method", ["reml", *METHODS])
def test_every_fit_has_a_short_repr_and_a_readable_html_view(fits, method):
    fit = fitted(fits, method)
    text = repr(fit)
    lines = text.split("\n")
    assert 1 <= len(lines) <= 3 and all(len(line) <= 160 for line in lines), text
    assert "Reaction ~ Days + (Days | Subject)" in lines[0] and "180 observations" in text
    page = fit._repr_html_()
    assert page.count("<table") == 2 and "Fixed effects" in page and "Variance components" in page


@pytest.mark.slow
def test_point_fits_share_the_conditional_variances(fits):
    reml, ml, map_fit = (fitted(fits, m) for m in ("reml", "ml", "map"))
    for fit in (reml, ml, map_fit):
        cond_var = fit.cond_var()
        assert list(cond_var) == ["Subject"] and cond_var["Subject"].shape == (18, 2, 2)
    # MAP's default priors are weak: its conditional SDs are the ML ones within a few percent
    np.testing.assert_allclose(map_fit.ranef()["std_error"], ml.ranef()["std_error"], rtol=0.05)


def test_the_default_probability_is_the_package_default(fits):
    assert hl.DEFAULT_PROB == 0.95
    table = fitted(fits, "reml").fixef()
    assert list(table.columns[2:4]) == ["eti95_lb", "eti95_ub"]
    wider = fitted(fits, "reml").fixef(prob=0.99)
    assert (wider["eti99_lb"] < table["eti95_lb"]).all() and (wider["eti99_ub"] > table["eti95_ub"]).all()


def test_ml_and_reml_fits_are_quick(fits):
    """The tests without a slow mark only need the quick fits."""
    assert fitted(fits, "reml").seconds_to_fit < 10 and fitted(fits, "ml").seconds_to_fit < 10
