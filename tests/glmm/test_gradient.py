"""The analytic Laplace gradient against central differences of the deviance (PIRLS rerun per point)."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
from hierlm.glmm.deviance import Deviance, _central_gradient
from hierlm.glmm.gradient import laplace_gradient
from hierlm.glmm.pirls import GlmmProblem
from hierlm.lmm.optimum import blas_threads
from tests.glmm.reference import _FAMILY, data_of, fixture

# (fixture, relative tolerance): canonical links and NB2's observed weights at 1e-6; probit and
# cloglog (observed information != Fisher weights: a second factor) at 1e-5, as their PIRLS
# (Fisher scoring) converges linearly and the reference differences carry ~1e-6 of that
CASES = [("cbpp_binomial_laplace", 1e-6), ("cbpp_binomial_probit", 1e-5),
         ("cbpp_binomial_cloglog", 1e-5), ("cbpp_poisson_offset_laplace", 1e-6),
         ("grouseticks_poisson_3re", 1e-6), ("sim_poisson_slope", 1e-6),
         ("salamanders_nb2_mined", 1e-5), ("verbagg_bernoulli_crossed", 1e-6)]


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """As in the fit: spinning BLAS threads make the small Cholesky factors slow on a busy machine."""
    with blas_threads(1):
        yield


def _problem(name: str) -> GlmmProblem:
    ref = fixture(f"glmer/{name}")
    model = hl.Model(ref["formula"], data_of(ref), family=_FAMILY.get(ref["family"], ref["family"]),
                     link=ref.get("link"), weights=ref.get("weights"))
    return GlmmProblem(model.design, model.family)


def _point(problem: GlmmProblem) -> tuple[np.ndarray, np.ndarray, float | None]:
    """A point away from the optimum (non-zero gradient in every coordinate)."""
    theta = 0.7 * problem.structure.layout.start() + 0.1
    mu0 = problem.family.initial_mu(problem.y, problem.prior_weights)
    eta0 = problem.family.link.link(mu0) - problem.offset
    beta = np.linalg.lstsq(problem.X, eta0, rcond=None)[0] + 0.05
    return theta, beta, (2.0 if problem.family.has_dispersion else None)


@pytest.mark.parametrize(("name", "rel"), CASES)
def test_stage_two_gradient_matches_differences(name: str, rel: float) -> None:
    problem = _problem(name)
    theta, beta, dispersion = _point(problem)
    lower_theta = problem.structure.layout.lower
    deviance = Deviance(problem, 1)
    x = np.concatenate([theta, beta] + ([np.log([dispersion])] if dispersion else []))
    lower = np.concatenate([lower_theta, np.full(x.size - theta.size, -np.inf)])
    mode = deviance.mode(x)
    value, analytic = deviance.value_and_gradient(x, mode)
    assert value == mode.laplace
    reference = _central_gradient(lambda z: deviance(z, mode), x, lower, step=1e-4)
    scale = np.maximum(1.0, np.abs(reference))
    np.testing.assert_array_less(np.abs(analytic - reference) / scale, rel)


@pytest.mark.parametrize(("name", "rel"), CASES[:6])
def test_stage_one_gradient_matches_differences(name: str, rel: float) -> None:
    """With the fixed effects inside PIRLS (lme4's first stage): theta only."""
    problem = _problem(name)
    theta, _, dispersion = _point(problem)
    lower = problem.structure.layout.lower
    mode = problem.mode(theta, None, dispersion)
    analytic, beta_part, _ = laplace_gradient(problem, mode, theta, None, dispersion)
    assert beta_part is None
    reference = _central_gradient(
        lambda z: problem.mode(z, None, dispersion, start=mode).laplace, theta, lower, step=1e-4)
    np.testing.assert_array_less(np.abs(analytic - reference) / np.maximum(1.0, np.abs(reference)),
                                 rel)


def test_gradient_at_the_bound() -> None:
    """A theta at 0 (the closed form holds there; PIRLS differences step inward only)."""
    problem = _problem("cbpp_binomial_laplace")
    theta = np.array([0.0])
    lower = problem.structure.layout.lower
    mode = problem.mode(theta, None)
    analytic = laplace_gradient(problem, mode, theta, None, None)[0]
    reference = _central_gradient(lambda z: problem.mode(z, None, start=mode).laplace, theta,
                                  lower, step=1e-4)
    assert abs(analytic[0] - reference[0]) < 1e-4 * max(1.0, abs(reference[0]))


def test_fit_falls_back_to_differences_where_the_gradient_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the analytic gradient refused everywhere (as for an indefinite observed information), the
    fit runs on differences of the deviance and lme4's deriv12 Hessian, and lands on the same optimum:
    estimates rel 1e-5, SEs rel 1e-4 (two difference schemes for the Hessian)."""
    import hierlm.glmm.deviance as deviance_module
    import hierlm.glmm.fit as fit_module

    ref = fixture("glmer/cbpp_binomial_laplace")
    model = hl.Model(ref["formula"], data_of(ref), family="binomial")
    analytic = model.fit("ml")

    def refuse(*args, **kwargs):
        raise np.linalg.LinAlgError("refused for the test")

    monkeypatch.setattr(deviance_module, "laplace_gradient", refuse)
    monkeypatch.setattr(fit_module, "laplace_gradient", refuse)
    differences = model.fit("ml")
    assert differences.optimum.evaluations > 2 * analytic.optimum.evaluations
    np.testing.assert_allclose(differences.beta, analytic.beta, rtol=1e-5)
    np.testing.assert_allclose(differences.theta, analytic.theta, rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.diag(differences.optimum.vcov_beta)),
                               np.sqrt(np.diag(analytic.optimum.vcov_beta)), rtol=1e-4)
    assert abs(differences.loglik - analytic.loglik) < 1e-8
