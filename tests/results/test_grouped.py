"""Per-level marginal log-likelihoods against dense multivariate normals and lme4."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from hierlm.errors import ColumnNotFoundError
from hierlm.results.grouped import group_loglik, split_factor


def dense_reference(draws, group):
    """log N(y_j | ., .) per level from the full dense Z, G and V (draw 0)."""
    design = draws.design
    split = split_factor(design, group)
    z = design.sparse_z().toarray()
    offsets = np.cumsum([0] + [b.n_levels * b.q for b in design.blocks])
    g_full = np.zeros((z.shape[1], z.shape[1]))
    for k, block in enumerate(design.blocks):
        for level in range(block.n_levels):
            start = offsets[k] + level * block.q
            g_full[start:start + block.q, start:start + block.q] = draws.covariances[k][0]
    b_full = np.concatenate([draws.effects[k][0].ravel() for k in range(len(design.blocks))])
    integrated = np.zeros(z.shape[1], dtype=bool)
    for k in split.integrated:
        integrated[offsets[k]:offsets[k + 1]] = True
    mean = design.X @ draws.beta[0] + z[:, ~integrated] @ b_full[~integrated]
    cov = (draws.sigma[0] ** 2 * np.eye(design.n)
           + z[:, integrated] @ g_full[np.ix_(integrated, integrated)] @ z[:, integrated].T)
    return np.array([multivariate_normal(mean[r], cov[np.ix_(r, r)]).logpdf(design.y[r])
                     for r in split.rows])


@pytest.mark.parametrize("model_id, group, nested", [
    ("sleep_slope_reml", "Subject", ()),
    ("sleep_uncorr_reml", "Subject", ()),
    ("pastes_nested_reml", "batch", (0,)),
    ("pastes_nested_reml", "cask:batch", ()),
    ("penicillin_crossed_reml", "plate", ()),
    ("machines_corr_reml", "Worker", ()),
])
def test_group_loglik_matches_dense_normal(lme4_draws, model_id, group, nested):
    draws, _, _ = lme4_draws(model_id)
    assert split_factor(draws.design, group).nested == nested
    np.testing.assert_allclose(group_loglik(draws, group)[0], dense_reference(draws, group), rtol=1e-10)


def test_group_logliks_sum_to_lme4_ml_loglik(lme4_draws):
    draws, fix, _ = lme4_draws("sleep_slope_ml")
    assert fix["reml"] is False
    assert group_loglik(draws, "Subject").sum() == pytest.approx(fix["loglik"], rel=1e-9)


def test_nested_group_logliks_sum_to_total(lme4_draws):
    draws, _, _ = lme4_draws("pastes_nested_reml")
    design = draws.design
    z = design.sparse_z().toarray()
    g = np.diag(np.concatenate([np.full(b.n_levels, draws.covariances[k][0, 0, 0])
                                for k, b in enumerate(design.blocks)]))
    total = multivariate_normal(design.X @ draws.beta[0],
                                draws.sigma[0] ** 2 * np.eye(design.n) + z @ g @ z.T).logpdf(design.y)
    assert group_loglik(draws, "batch").sum() == pytest.approx(total, rel=1e-10)


def test_unknown_group(lme4_draws):
    draws, _, _ = lme4_draws("sleep_int_reml")
    with pytest.raises(ColumnNotFoundError, match="'Days'"):
        group_loglik(draws, "Days")
