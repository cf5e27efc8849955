"""The compiled per-level step (hierlm.bayes.conditional_kernel) equals NumPy's vectorised one.

Reference: :func:`hierlm.bayes.conditional.conditional_quantities` on its NumPy
route, checked against the dense conditional in tests/bayes/test_likelihood.py.
Covers the closed-form ``q = 2`` branch (one correlated 2-column block, and two
1-column blocks on one factor) and the general loop (q = 3). Tolerance rel 1e-10:
the same arithmetic up to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.bayes.groupstats import group_stats

from .test_likelihood import block_diagonal_chol, one_factor_design


@pytest.mark.parametrize("widths", [(2,), (1, 1), (3,), (1,)])
def test_compiled_loop_matches_numpy(monkeypatch, widths):
    import hierlm.bayes.conditional as conditional

    design = one_factor_design(widths, seed=3)
    stats = group_stats(design)
    rng = np.random.default_rng(2)
    n_draws = 9
    fixef = rng.normal(size=(n_draws, 3))
    sigma = rng.uniform(0.5, 1.5, size=n_draws)
    chol = np.stack([block_diagonal_chol(widths, seed=k) for k in range(n_draws)])
    assert stats.q_total == sum(widths)
    expected = conditional.conditional_quantities(stats, fixef, sigma, chol, np.random.default_rng(5),
                                                  want_loglik=True)
    monkeypatch.setattr(conditional, "_COMPILED_THRESHOLD", 0)
    got = conditional.conditional_quantities(stats, fixef, sigma, chol, np.random.default_rng(5),
                                             want_loglik=True)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-10)
