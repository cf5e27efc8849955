"""Fit options: refused when the method does not use them, validated before any work, interrupts honest.

* MAP takes ``priors`` and ``reml`` only: ``draws=-5`` or ``sampler='foo'``
  used to be ignored silently.
* Seeds are integers in [0, 2**64); flags are real booleans (``warn='no'``
  is truthy); start values are finite.
* A 1-chain or 3-draw posterior says that R-hat / ESS could not be checked.
* Ctrl-C during sampling: the sampler stops and KeyboardInterrupt is raised
  (documented choice: no fit, rather than a half-empty fit marked partial),
  whether the interrupt escapes the sampler or the sampler swallows it and
  returns what it has (nutpie and PyMC do).
"""

from __future__ import annotations

import os
import signal
import time
import warnings

import numpy as np
import pytest

import hierlm as hl
from hierlm.bayes.diagnostics import diagnose
from hierlm.errors import FitError, SamplingWarning

SLEEP = hl.datasets.load("sleepstudy")
FORMULA = "Reaction ~ Days + (Days | Subject)"
TINY = {"draws": 20, "tune": 20, "chains": 1, "progressbar": False, "random_seed": 1}


@pytest.fixture(scope="module")
def model():
    return hl.Model(FORMULA, SLEEP)


@pytest.mark.parametrize("options, culprit", [
    ({"draws": -5}, "'draws'"), ({"sampler": "foo"}, "'sampler'"), ({"chains": 2}, "'chains'"),
    ({"random_seed": 1}, "'random_seed'"), ({"progressbar": False}, "'progressbar'"),
    ({"draws": 10, "tune": 10}, "'draws', 'tune'"),
])
def test_map_refuses_sampler_options(model, options, culprit):
    expected = rf"Unknown option\(s\) {culprit} for method='map'; it takes priors, reml"
    with pytest.raises(FitError, match=expected):
        model.fit("map", **options)


def test_nuts_refuses_map_and_reml_options(model):
    with pytest.raises(FitError, match=r"'reml' for method='nuts'"):
        model.fit("nuts", reml=True, progressbar=False)
    with pytest.raises(FitError, match=r"'optimizer' for method='nuts'"):
        model.fit("nuts", optimizer="COBYQA", progressbar=False)


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_seeds_outside_the_unsigned_64_bit_range_are_refused(model, seed):
    with pytest.raises(FitError, match=r"random_seed must be an integer in \[0, 2\*\*64\)"):
        model.fit("nuts", random_seed=seed, **{k: v for k, v in TINY.items() if k != "random_seed"})


@pytest.mark.slow
def test_the_largest_seed_is_accepted(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        fit = model.fit("nuts", **{**TINY, "random_seed": 2**64 - 1})
    assert fit.seed == 2**64 - 1


@pytest.mark.parametrize("method, options, culprit", [
    ("reml", {"warn": "no"}, "warn"), ("reml", {"polish": 1}, "polish"),
    ("map", {"reml": "yes"}, "reml"), ("nuts", {"progressbar": "no"}, "progressbar"),
])
def test_flags_must_be_booleans(model, method, options, culprit):
    with pytest.raises(FitError, match=rf"{culprit} must be True"):
        model.fit(method, **options)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_start_values_are_refused(model, bad):
    with pytest.raises(FitError, match="start has non-finite value"):
        model.fit("reml", start=[1.0, bad, 1.0])


# ------------------------------------------------------------- diagnostics


def test_a_3_draw_posterior_says_rhat_and_ess_were_not_computed():
    rng = np.random.default_rng(0)
    report = diagnose({"fixef": rng.normal(size=(1, 3, 2))}, None, None, "marginal", 0.8)
    assert not report.ok
    assert "only 3 draw(s) per chain" in report.problems[0] and "not checked" in report.problems[0]


def test_a_single_chain_says_rhat_was_not_computed():
    rng = np.random.default_rng(0)
    report = diagnose({"fixef": rng.normal(size=(1, 1000, 2))}, None, None, "marginal", 0.8)
    assert report.problems == ["1 chain only: R-hat compares chains, so convergence was not "
                               "checked; run chains=4."]


def test_constant_draws_are_reported_not_passed():
    rng = np.random.default_rng(0)
    report = diagnose({"a": np.ones((4, 300)), "b": rng.normal(size=(4, 300))}, None, None,
                      "marginal", 0.8)
    assert any("could not be computed for a" in p for p in report.problems)


def test_tiny_nuts_run_warns_that_it_could_not_be_checked(model):
    with pytest.warns(SamplingWarning, match=r"only 3 draw\(s\) per chain"):
        model.fit("nuts", **{**TINY, "draws": 3})


# --------------------------------------------------------------- interrupts


def test_interrupt_escaping_the_sampler_stops_cleanly(model, monkeypatch):
    import nutpie

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(nutpie, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt, match="interrupted .*no fit is returned"):
        model.fit("nuts", **TINY)
    assert signal.getsignal(signal.SIGINT) is handler


def test_interrupt_swallowed_by_the_sampler_is_raised_not_returned_as_a_fit(model, monkeypatch):
    """nutpie catches Ctrl-C and returns the draws so far; that must not look like a finished fit."""
    import nutpie

    real = nutpie.sample

    def swallowing(compiled, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while sampling
            time.sleep(5)
        except KeyboardInterrupt:
            pass  # what nutpie does: abort and return the trace so far
        return real(compiled, **{**kwargs, "draws": 3})

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(nutpie, "sample", swallowing)
    with pytest.raises(KeyboardInterrupt, match=r"interrupted \(Ctrl-C\) after 3 of 20 draws"):
        model.fit("nuts", **TINY)
    assert signal.getsignal(signal.SIGINT) is handler


def test_short_sample_without_an_interrupt_is_an_error(model, monkeypatch):
    import nutpie

    real = nutpie.sample
    monkeypatch.setattr(nutpie, "sample", lambda compiled, **kw: real(compiled, **{**kw, "draws": 5}))
    with pytest.raises(FitError, match="incomplete sample: after 5 of 20 draws"):
        model.fit("nuts", **TINY)
