"""Sampler warnings give advice that can be followed (hierlm.bayes.diagnostics)."""

from __future__ import annotations

import numpy as np

import hierlm as hl
from hierlm.bayes.diagnostics import diagnose
from hierlm.bayes.fit import _other_formulation_available


def _report(other_available):
    rng = np.random.default_rng(0)
    draws = {"sigma": np.stack([rng.normal(0, 1, 200), rng.normal(5, 1, 200)])}  # chains disagree
    diverging = np.zeros((2, 200), dtype=bool)
    diverging[0, :3] = True
    return diagnose(draws, diverging, None, "full", 0.8, other_available=other_available)


def test_hints_suggest_the_other_formulation_only_where_it_exists():
    with_marginal = " ".join(_report(True).problems)
    without = " ".join(_report(False).problems)
    assert "formulation='marginal'" in with_marginal
    assert "formulation=" not in without and "target_accept" in without and "tune=" in without


def test_marginal_is_available_for_every_gaussian_design():
    sleep = hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy")).design
    pastes = hl.Model("strength ~ 1 + (1 | batch) + (1 | sample)", hl.datasets.load("Pastes")).design
    assert _other_formulation_available(sleep, "full")
    assert _other_formulation_available(pastes, "full")  # crossed/nested: the one likelihood
