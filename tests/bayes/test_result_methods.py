import numpy as np
import pandas as pd
import pytest

import hierlm as hl


@pytest.fixture(scope="module")
def model():
    return hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def fit(model):
    return model.fit(method="nuts", draws=150, tune=150, chains=2, random_seed=7, progressbar=False)


@pytest.fixture(scope="module")
def map_fit(model):
    return model.fit(method="map")


def test_draws_know_their_chains(fit):
    draws = fit.draws()
    assert draws.n_chains == 2 and draws.n_draws == 300


def test_coef_adds_fixed_to_group_effects_per_draw(fit):
    posterior = fit.idata.posterior
    beta = posterior["fixef"].values  # (chain, draw, term)
    effects = posterior["ranef_Subject"].values  # (chain, draw, term, level)
    expected = (effects[:, :, 0, :] + beta[..., None, 0]).mean(axis=(0, 1))
    coef = fit.coef()
    intercepts = coef[coef.term == "Intercept"]["estimate"].to_numpy()
    np.testing.assert_allclose(intercepts, expected, rtol=1e-12)
    wide = fit.coef(wide=True)["Subject"]
    np.testing.assert_allclose(wide["Intercept"].to_numpy(), expected, rtol=1e-12)


def test_predict_known_level_is_posterior_mean_of_its_line(fit):
    draws = fit.draws()
    level = list(fit.design.blocks[0].levels).index("308")
    intercept = draws.beta[:, 0] + draws.effects[0][:, level, 0]
    slope = draws.beta[:, 1] + draws.effects[0][:, level, 1]
    line = intercept + 5 * slope
    table = fit.predict(pd.DataFrame({"Days": [5], "Subject": ["308"]}))
    assert table["estimate"].iloc[0] == pytest.approx(line.mean(), rel=1e-12)
    assert table["std_error"].iloc[0] == pytest.approx(line.std(ddof=1), rel=1e-12)
    assert table["eti95_lb"].iloc[0] == pytest.approx(np.quantile(line, 0.025), rel=1e-12)


def test_predict_new_level_is_wider_than_known(fit):
    new = pd.DataFrame({"Days": [5, 5], "Subject": ["308", "new"]})
    with pytest.warns(hl.errors.HierlmWarning, match="never saw"):
        table = fit.predict(new, seed=3)
    assert table["std_error"].iloc[1] > 2 * table["std_error"].iloc[0]


def test_fitted_and_residuals_are_posterior_means(fit):
    mu = fit.draws().linear_predictor()
    np.testing.assert_allclose(fit.fitted(), mu.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(fit.residuals(), fit.design.y - mu.mean(axis=0), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(fit.residuals(scaled=True) * fit.draws().sigma.mean(), fit.residuals())


def test_contrast_summarises_the_draws_of_the_combination(fit):
    beta = fit.draws().beta
    values = beta[:, 0] + 10 * beta[:, 1]
    result = fit.contrast({"Intercept": 1, "Days": 10}, rhs=360.0, prob=0.9)
    assert result["estimate"] == pytest.approx(values.mean(), rel=1e-12)
    assert result["std_error"] == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert result["eti90_ub"] == pytest.approx(np.quantile(values, 0.95), rel=1e-12)
    assert result["prob_greater"] == pytest.approx(np.mean(values > 360.0))
    with pytest.raises(hl.errors.InputTypeError, match="Unknown fixed effects"):
        fit.contrast({"Weeks": 1})


def test_map_with_default_priors_has_laplace_standard_errors(map_fit, model):
    reml = model.fit()
    fixef = map_fit.fixef()
    assert np.isfinite(fixef["std_error"]).all()
    # the priors are weak: the Laplace standard errors are near the ML ones (lme4's vcov)
    ml = model.fit(method="ml")
    np.testing.assert_allclose(fixef["std_error"], ml.fixef()["std_error"], rtol=0.05)
    varcorr = map_fit.varcorr()
    assert np.isfinite(varcorr["std_error"]).all()
    np.testing.assert_allclose(varcorr["std_error"], ml.varcorr()["std_error"], rtol=0.1)
    assert (varcorr["eti95_lb"] < varcorr["estimate"]).all()
    assert (varcorr["estimate"] < varcorr["eti95_ub"]).all()
    ranef = map_fit.ranef()
    np.testing.assert_allclose(ranef["std_error"], reml.ranef()["std_error"], rtol=0.1)


def test_map_laplace_covariance_is_the_inverse_hessian(map_fit):
    """Rebuild the negative log posterior over (theta, log sigma, beta) and check its curvature."""
    from hierlm.bayes.map import MarginalDensity, log_prior_density

    design, info = map_fit.design, map_fit.info
    density = MarginalDensity(design)
    theta = np.asarray(info["theta"], dtype=float)
    sigma = float(map_fit.draws().sigma[0])
    beta = map_fit.draws().beta[0]
    x0 = np.concatenate([theta, [np.log(sigma)], beta])

    def nlp(x):
        th, s, b = x[: theta.size], float(np.exp(x[theta.size])), x[theta.size + 1:]
        value = 0.5 * density.minus_two_loglik(density.pieces(th), s, b, False)
        return value - log_prior_density(map_fit.priors, map_fit.names, density.templates(th), s, b,
                                         design.fixed_names)

    # the curvature along a random direction equals v' H v = v' cov^-1 v
    rng = np.random.default_rng(1)
    cov = np.asarray(info["laplace_cov"])
    for _ in range(3):
        v = rng.normal(size=x0.size) * np.sqrt(np.diag(cov))
        h = 1e-3
        curvature = (nlp(x0 + h * v) - 2 * nlp(x0) + nlp(x0 - h * v)) / h ** 2
        assert curvature == pytest.approx(v @ np.linalg.solve(cov, v), rel=2e-2)
