"""Group effects kept as Rao-Blackwellised summaries (``fit(group_effects="summary")``).

References: the conditional moments of each level given each posterior draw,
computed here independently with dense linear algebra
(``b_j | beta, sigma, G ~ N(P^-1 Z_j'(y_j - X_j beta) / sigma^2, P^-1)``,
``P = Z_j'Z_j / sigma^2 + G^-1``), then averaged; the tables' interval bounds
against the posterior table of the on-demand draws themselves.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm as hl
import hierlm.bayes.effect_summary as es
from hierlm.errors import FitError, HierlmWarning
from hierlm.results.tables import posterior_table

pytestmark = pytest.mark.filterwarnings("ignore:MCMC diagnostics")


@pytest.fixture(scope="module")
def fits(sleep_model):
    common = dict(method="nuts", chains=2, draws=150, tune=150, random_seed=7, progressbar=False)
    summary = sleep_model.fit(group_effects="summary", **common)
    draws = sleep_model.fit(group_effects="draws", **common)
    return summary, draws


def _dense_moments(fit, df):
    """Per draw and level: exact conditional mean (S, J, 2) and covariance (S, J, 2, 2)."""
    post = fit.idata["posterior"]
    beta = post["fixef"].values.reshape(-1, 2)
    sigma = post["sigma"].values.ravel()
    cov = fit.covariances()[0]
    X = np.column_stack([np.ones(len(df)), df["Days"].to_numpy(float)])
    y = df["Reaction"].to_numpy(float)
    levels = [str(v) for v in fit.design.blocks[0].levels]
    subject = df["Subject"].astype(str).to_numpy()
    means = np.empty((beta.shape[0], len(levels), 2))
    covs = np.empty((beta.shape[0], len(levels), 2, 2))
    for j, level in enumerate(levels):
        rows = subject == level
        Z, Xj, yj = X[rows], X[rows], y[rows]
        for s in range(beta.shape[0]):
            precision = Z.T @ Z / sigma[s] ** 2 + np.linalg.inv(cov[s])
            covs[s, j] = np.linalg.inv(precision)
            means[s, j] = covs[s, j] @ Z.T @ (yj - Xj @ beta[s]) / sigma[s] ** 2
    return beta, means, covs


def test_summaries_are_the_averaged_exact_conditional_moments(fits, sleep_df):
    summary_fit, _ = fits
    beta, means, covs = _dense_moments(summary_fit, sleep_df)
    summary = summary_fit.effect_summary()
    n = beta.shape[0]
    np.testing.assert_allclose(summary.mean, means.mean(axis=0), rtol=1e-9, atol=1e-9)
    centred = means - means.mean(axis=0)
    total = covs.mean(axis=0) + np.einsum("sja,sjb->jab", centred, centred) / (n - 1)
    np.testing.assert_allclose(summary.cov, total, rtol=1e-9, atol=1e-9)
    cross = np.einsum("sp,sja->jpa", beta - beta.mean(axis=0), centred) / (n - 1)
    np.testing.assert_allclose(summary.cov_fixef, cross, rtol=1e-9, atol=1e-9)


def test_ranef_and_coef_use_the_summaries_and_the_on_demand_draws(fits, monkeypatch):
    summary_fit, _ = fits
    monkeypatch.setattr(es, "LEVEL_CHUNK", 5)  # 18 levels: four chunks, one of 3 levels
    summary_fit.__dict__.pop("_effect_summary", None)
    summary_fit.__dict__.pop("_draws", None)
    summary = summary_fit.effect_summary()
    draws = summary.draws()  # (S, J, Q)
    table = summary_fit.ranef()
    by_term = np.swapaxes(draws, 1, 2).reshape(draws.shape[0], -1)
    reference = posterior_table(by_term, 2, None, False)
    np.testing.assert_allclose(table["estimate"], summary.mean.T.ravel(), rtol=1e-12)
    np.testing.assert_allclose(table["std_error"],
                               np.sqrt(np.diagonal(summary.cov, axis1=1, axis2=2)).T.ravel(),
                               rtol=1e-12)
    for column in ("eti95_lb", "eti95_ub"):
        np.testing.assert_allclose(table[column], reference[column], rtol=1e-12)
    assert list(table["level"][:3]) == ["308", "309", "310"]
    assert list(table["term"].unique()) == ["Intercept", "Days"]

    coef = summary_fit.coef()
    beta = summary_fit.draws().beta
    values = beta[:, None, :] + draws
    by_term = np.swapaxes(values, 1, 2).reshape(values.shape[0], -1)
    reference = posterior_table(by_term, 2, None, False)
    np.testing.assert_allclose(coef["eti95_lb"], reference["eti95_lb"], rtol=1e-12)
    np.testing.assert_allclose(coef["estimate"],
                               (beta.mean(axis=0)[None, :] + summary.mean).T.ravel(), rtol=1e-12)
    wide = summary_fit.coef(wide=True)["Subject"]
    np.testing.assert_allclose(wide.to_numpy(), beta.mean(axis=0)[None, :] + summary.mean,
                               rtol=1e-12)


def test_coef_sd_is_exact(fits, sleep_df):
    summary_fit, _ = fits
    beta, means, covs = _dense_moments(summary_fit, sleep_df)
    coef = summary_fit.coef()
    values = beta[:, None, :] + means
    variance = values.var(axis=0, ddof=1) + np.diagonal(covs, axis1=2, axis2=3).mean(axis=0)
    np.testing.assert_allclose(coef["std_error"], np.sqrt(variance).T.ravel(), rtol=1e-9)


def test_group_draws_are_deterministic_and_match_the_stored_draws(fits, monkeypatch):
    summary_fit, draws_fit = fits
    monkeypatch.setattr(es, "LEVEL_CHUNK", 4)
    some = summary_fit.group_draws(levels=["309", "372"])["ranef_Subject"]
    one = summary_fit.group_draws(levels=["372"])["ranef_Subject"]
    np.testing.assert_array_equal(some.sel(Subject_level="372").values,
                                  one.sel(Subject_level="372").values)
    assert some.dims == ("chain", "draw", "Subject_term", "Subject_level")
    stored = draws_fit.group_draws(levels=["309"])["ranef_Subject"]
    np.testing.assert_array_equal(
        stored.values, draws_fit.idata["posterior"]["ranef_Subject"].sel(Subject_level=["309"]).values)
    with pytest.raises(FitError, match="'999' is not a level of 'Subject'"):
        summary_fit.group_draws(levels=["999"])
    # the summarised fit has no ranef draws in its posterior; the per-observation groups are made
    assert "ranef_Subject" not in summary_fit.idata["posterior"]
    assert "log_likelihood" in summary_fit.idata.children


def test_lazy_effects_give_the_on_demand_draws(fits):
    summary_fit, _ = fits
    drawn = summary_fit.draws()
    np.testing.assert_array_equal(drawn.effects[0], summary_fit.effect_summary().draws())
    np.testing.assert_allclose(drawn.effect_means()[0], summary_fit.effect_summary().mean)


def test_auto_summarises_many_effects_with_a_note(sleep_model, monkeypatch):
    monkeypatch.setattr(es, "GROUP_DRAWS_MAX_ELEMENTS", 100)
    with pytest.warns(HierlmWarning, match="group_effects='draws'"):
        fit = sleep_model.fit(method="nuts", chains=1, draws=60, tune=60, random_seed=1,
                              progressbar=False)
    assert fit.settings["group_effects"] == "summary"
    assert es.SUMMARY_GROUP in fit.idata.children


def test_summary_is_refused_where_the_conditionals_are_not_separate(crossed_df):
    model = hl.Model("y ~ x + (1 | a) + (1 | b)", crossed_df)
    with pytest.raises(FitError, match="one grouping factor"):
        model.fit(method="nuts", chains=1, draws=20, tune=20, group_effects="summary",
                  progressbar=False)
    with pytest.raises(FitError, match="group_effects='often'"):
        es.resolve_group_effects("often", "marginal", None, 10)


def test_save_and_load_keep_the_summaries(fits, tmp_path):
    summary_fit, _ = fits
    path = summary_fit.save(tmp_path / "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = hl.load_fit(path)
    np.testing.assert_allclose(loaded.ranef()["estimate"], summary_fit.ranef()["estimate"],
                               rtol=1e-12)
    np.testing.assert_array_equal(loaded.group_draws(levels=["310"])["ranef_Subject"].values,
                                  summary_fit.group_draws(levels=["310"])["ranef_Subject"].values)


@pytest.mark.parametrize("widths", [(2,), (1, 1), (3,)])
def test_moment_loop_sums_match_dense_conditionals(widths):
    """The compiled sums (closed form for q = 2, general loop otherwise) against dense
    conditional moments ``m = L M^-1 L' r / sigma^2``, ``V = L M^-1 L'`` per draw and level."""
    from hierlm.bayes.groupstats import group_stats

    from .test_likelihood import block_diagonal_chol, one_factor_design

    stats = group_stats(one_factor_design(widths, seed=4))
    rng = np.random.default_rng(6)
    n_draws, q = 5, sum(widths)
    fixef = rng.normal(size=(n_draws, 3))
    sigma = rng.uniform(0.5, 1.5, size=n_draws)
    chol = np.stack([block_diagonal_chol(widths, seed=k) for k in range(n_draws)])
    shifted, second = np.zeros((stats.n_groups, 2 * q)), np.zeros((stats.n_groups, q, q))
    within, cross = np.zeros((stats.n_groups, q, q)), np.zeros((stats.n_groups, 3, q))
    es._moment_loop(np.ascontiguousarray(stats.ztz), np.ascontiguousarray(stats.ztx),
                    np.ascontiguousarray(stats.zty), fixef, sigma, chol, shifted, second, within, cross)
    means = np.empty((n_draws, stats.n_groups, q))
    covs = np.empty((n_draws, stats.n_groups, q, q))
    for s in range(n_draws):
        L, var = chol[s], sigma[s] ** 2
        for j in range(stats.n_groups):
            inverse = np.linalg.inv(np.eye(q) + L.T @ stats.ztz[j] @ L / var)
            means[s, j] = L @ inverse @ L.T @ (stats.zty[j] - stats.ztx[j] @ fixef[s]) / var
            covs[s, j] = L @ inverse @ L.T
    shift = means - means[0]
    np.testing.assert_allclose(shifted[:, q:], means[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(shifted[:, :q], shift.sum(axis=0), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(second, np.einsum("sja,sjb->jab", shift, shift), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(within, covs.sum(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cross, np.einsum("sp,sja->jpa", fixef, shift), rtol=1e-9, atol=1e-10)
