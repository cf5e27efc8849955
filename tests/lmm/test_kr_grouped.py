"""Kenward-Roger from per-group cross-products equals the dense formulas (hierlm.lmm.kr_grouped).

Oracle: the dense n x n computation of :mod:`hierlm.lmm.kenward_roger`
(``_derivative_matrices`` and ``_dense_terms``, pbkrtest's construction), which the
lmerTest/pbkrtest fixtures check in tests/lmm/test_kenward_roger.py. The grouped
form is an exact rewriting (push-through identity), so the tolerance is rel 1e-9
on ``P_r``, ``Q_rs``, the traces, ``W`` and ``Phi_A``: rounding only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.lmm import kenward_roger as kr
from hierlm.lmm.kr_grouped import grouped_eligible, grouped_terms

REL = 1e-9


def _unbalanced(seed: int = 3) -> pd.DataFrame:
    """y ~ x + f + (x | g), 40 groups of 2 to 30 rows, a three-level factor."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 31, 40)
    g = np.repeat(np.arange(40), sizes)
    x = rng.normal(size=g.size)
    f = rng.choice(np.array(["a", "b", "c"]), g.size)
    b0, b1 = rng.normal(size=40), 0.4 * rng.normal(size=40)
    y = 1 + 0.5 * x + 0.3 * (f == "c") + b0[g] + b1[g] * x + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "f": f, "g": g.astype(str)})


def _dense(fit):
    design = fit.design
    X = np.asarray(design.X, dtype=float)
    G = kr._derivative_matrices(design, X.shape[0])
    gamma = []
    for block, cov in zip(design.blocks, fit.covariances(), strict=True):
        gamma += [cov[a, b] for a, b in kr._covariance_entries(block)]
    gamma.append(fit.sigma**2)
    sigma = sum(value * matrix for value, matrix in zip(gamma, G, strict=True))
    return kr._dense_terms(X, sigma, G)


CASES = [
    ("y ~ x + f + (x | g)", "unbalanced"),
    ("y ~ x * f + (x || g)", "unbalanced"),
    ("y ~ x + (1 | g) + (0 + x | g)", "unbalanced"),
    ("score ~ Machine + (Machine | Worker)", "Machines"),
]


@pytest.mark.parametrize(("formula", "data"), CASES)
def test_grouped_terms_equal_the_dense_ones(formula, data):
    frame = _unbalanced() if data == "unbalanced" else hl.datasets.load(data)
    fit = hl.Model(formula, frame).fit("reml")
    assert grouped_eligible(fit.design)
    terms = grouped_terms(fit.design, list(fit.covariances()), float(fit.sigma) ** 2)
    P, Q, traces = _dense(fit)
    scale = max(np.abs(p).max() for p in P)
    for got, want in zip(terms.P, P, strict=True):
        np.testing.assert_allclose(got, want, rtol=REL, atol=REL * scale)
    for key, want in Q.items():
        np.testing.assert_allclose(terms.Q[key], want, rtol=REL, atol=REL * np.abs(want).max())
    np.testing.assert_allclose(terms.traces, traces, rtol=REL)
    phi = np.asarray(fit.vcov().to_numpy(), dtype=float)
    dense = kr._assemble(P, Q, traces, {}, phi)
    ours = kr.kenward_roger(fit)
    np.testing.assert_allclose(ours.W, dense.W, rtol=1e-8, atol=1e-8 * np.abs(dense.W).max())
    np.testing.assert_allclose(ours.vcov_adjusted, dense.vcov_adjusted, rtol=1e-8,
                               atol=1e-8 * np.abs(dense.vcov_adjusted).max())


def test_eligibility():
    """Crossed, nested, patterned and residual-structure models keep the dense route."""
    frame = _unbalanced()
    frame["h"] = (np.arange(len(frame)) % 7).astype(str)
    assert not grouped_eligible(hl.Model("y ~ x + (1 | g) + (1 | h)", frame).design)
    assert not grouped_eligible(hl.Model("y ~ x + cs(0 + f | g)", frame).design)
    assert grouped_eligible(hl.Model("y ~ x + (x | g)", frame).design)


def test_above_the_dense_row_limit():
    """8,000 rows (the dense route stops at 6,000): the grouped route gives df between
    the number of groups minus one and n - p, and Phi_A >= Phi for the slope."""
    rng = np.random.default_rng(5)
    g = rng.integers(0, 60, 8000)
    x = rng.normal(size=g.size)
    y = 1 + x + rng.normal(size=60)[g] + 0.5 * rng.normal(size=60)[g] * x + rng.normal(size=g.size)
    fit = hl.Model("y ~ x + (x | g)", pd.DataFrame({"y": y, "x": x, "g": g})).fit("reml")
    assert fit.nobs > kr.MAX_ROWS
    table = fit.fixef(ddf="kenward-roger")
    assert ((table["df"] > 58) & (table["df"] < 8000 - 2)).all()
    assert (table["std_error"] >= fit.fixef()["std_error"] * (1 - 1e-12)).all()
