"""The one Gaussian likelihood against the dense multivariate-normal density, and its gradient.

At fixed parameters (away from any optimum) the value must equal
``scipy.stats.multivariate_normal.logpdf(y, X beta, V)`` with ``V`` built
densely from the model's definition (rel 1e-10), and the gradient must equal
fourth-order central differences (rel 1e-6).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierlm as hl
from hierlm.errors import HierlmWarning
from hierlm.lmm.grouped import GroupedObjective
from hierlm.lmm.likelihood import GaussianLikelihood
from hierlm.lmm.objective import LmmObjective
from hierlm.lmm.parameters import StructuredObjective

PIGS = Path(__file__).resolve().parents[3] / "shared" / "data" / "pigs.csv"

CASES = {
    "sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    "penicillin_crossed": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    "pastes_nested": ("Pastes", "strength ~ 1 + (1 | batch / cask)", None),
    "machines_cs": ("Machines", "score ~ Machine + cs(0 + Machine | Worker, hom = FALSE)", None),
    "machines_ar1": ("Machines", "score ~ Machine + ar1(0 + Machine | Worker)", None),
    "pigs_ar1": ("pigs", "weight ~ week", "ar1(week | id)"),
    "pigs_ri_ar1": ("pigs", "weight ~ week + (1 | id)", "ar1(week | id)"),
    "sleep_ill_conditioned": ("sleepstudy", "Reaction ~ Days + I(Days ** 3 * 100) + (1 | Subject)",
                              None),
    "penicillin_weighted": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
}
#: prior weights (Var(y_i) = sigma^2 / w_i) of the weighted cases
WEIGHTS = {"penicillin_weighted": np.linspace(0.5, 2.0, 144)}


def _data(name):
    if name == "pigs":
        return pd.read_csv(PIGS)
    return hl.datasets.load(name)


def _model(case):
    data, formula, residual = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        if case in WEIGHTS:
            return hl.Model(formula, _data(data), weights=WEIGHTS[case])
        return hl.Model(formula, _data(data), residual=residual)


def _point(lik, seed=1):
    """A point away from the optimum: perturbed start values, beta near least squares."""
    rng = np.random.default_rng(seed)
    design = lik.design
    beta, *_ = np.linalg.lstsq(design.X, design.y, rcond=None)
    beta = beta + rng.normal(0, 0.3, beta.size) * np.maximum(np.abs(beta), 1.0)
    phi = lik.criterion.start() + rng.uniform(0.05, 0.3, lik.n_phi)
    sigma = float(np.std(design.y)) * 0.6
    return beta, phi, sigma


def _relative_g(design, templates):
    """Block-diagonal relative covariance of all group effects (level-major in each block)."""
    parts = [np.kron(np.eye(block.n_levels), t @ t.T) for block, t in zip(design.blocks, templates,
                                                                       strict=True)]
    size = sum(part.shape[0] for part in parts)
    out = np.zeros((size, size))
    start = 0
    for part in parts:
        out[start:start + part.shape[0], start:start + part.shape[0]] = part
        start += part.shape[0]
    return out


def _dense_covariance(lik, phi, sigma):
    """``V = sigma^2 (Z G_rel Z' + Omega)`` from the definitions (no kernel code)."""
    design = lik.design
    crit = lik.criterion
    n = design.n
    if isinstance(crit, GroupedObjective):
        residual = design.residual
        n_re = sum(b.structure.n_params for b in design.blocks)
        rho = residual.structure.natural(phi[n_re:n_re + residual.structure.n_params])["rho"]
        lag = np.abs(np.subtract.outer(residual.times, residual.times))
        same = residual.group_codes[:, None] == residual.group_codes[None, :]
        omega = np.where(same, rho ** lag, 0.0)
        templates = [b.structure.template(phi[:n_re]) for b in design.blocks]  # one block at most
    else:
        omega = np.diag(1.0 / design.weights) if design.has_weights else np.eye(n)
        theta = crit.parameters.theta(phi) if isinstance(crit, StructuredObjective) else phi
        templates = crit.cp.layout.templates(theta, [b.q for b in design.blocks])
    v = omega
    if design.blocks:
        z = design.sparse_z().toarray()
        v = v + z @ _relative_g(design, templates) @ z.T
    return sigma ** 2 * v


@pytest.mark.parametrize("case", sorted(CASES))
def test_value_equals_dense_multivariate_normal(case):
    lik = GaussianLikelihood(_model(case).design)
    beta, phi, sigma = _point(lik)
    v = _dense_covariance(lik, phi, sigma)
    design = lik.design
    dense = stats.multivariate_normal.logpdf(design.y, design.X @ beta, v)
    assert lik.evaluate(beta, phi, sigma).value == pytest.approx(dense, rel=1e-10)
    # REML: the restricted likelihood with X'V^-1X
    v_inv_x = np.linalg.solve(v, design.X)
    gls = np.linalg.solve(design.X.T @ v_inv_x, v_inv_x.T @ design.y)
    reml = (stats.multivariate_normal.logpdf(design.y, design.X @ gls, v)
            - 0.5 * np.linalg.slogdet(design.X.T @ v_inv_x)[1]
            + 0.5 * design.p * np.log(2 * np.pi))
    assert lik.evaluate_reml(phi, sigma).value == pytest.approx(reml, rel=1e-10)


def test_every_criterion_kind_is_covered():
    kinds = {type(GaussianLikelihood(_model(case).design).criterion).__name__ for case in CASES}
    assert {"LmmObjective", "ConditionedObjective", "StructuredObjective",
            "GroupedObjective"} <= kinds


def _fourth_order(func, x, h):
    out = np.empty(x.size)
    for k in range(x.size):
        step = np.zeros(x.size)
        step[k] = h * max(1.0, abs(x[k]))
        out[k] = (-func(x + 2 * step) + 8 * func(x + step) - 8 * func(x - step)
                  + func(x - 2 * step)) / (12 * step[k])
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_equals_finite_differences(case):
    lik = GaussianLikelihood(_model(case).design)
    beta, phi, sigma = _point(lik)
    p, k = beta.size, phi.size
    point = np.concatenate([beta, phi, [sigma]])

    def value(x):
        return lik.evaluate(x[:p], x[p:p + k], x[-1], gradient=False).value

    got = lik.evaluate(beta, phi, sigma)
    analytic = np.concatenate([got.d_beta, got.d_phi, [got.d_sigma]])
    numeric = _fourth_order(value, point, 1e-4)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * np.max(np.abs(numeric)))

    def reml_value(x):
        return lik.evaluate_reml(x[:k], x[-1], gradient=False).value

    got_r = lik.evaluate_reml(phi, sigma)
    analytic_r = np.concatenate([got_r.d_phi, [got_r.d_sigma]])
    numeric_r = _fourth_order(reml_value, np.concatenate([phi, [sigma]]), 1e-4)
    np.testing.assert_allclose(analytic_r, numeric_r, rtol=1e-6,
                               atol=1e-6 * np.max(np.abs(numeric_r)))


def test_profiled_criterion_is_the_likelihood_at_beta_hat_and_sigma_hat():
    """lme4's ML deviance is -2 log p at the profiled (beta, sigma): one definition."""
    lik = GaussianLikelihood(_model("penicillin_crossed").design)
    _, phi, _ = _point(lik)
    crit = lik.criterion
    assert isinstance(crit, LmmObjective)
    sol = crit.solution(phi, reml=False, cond_var=False)
    assert -2 * lik.evaluate(sol.beta, phi, sol.sigma).value == pytest.approx(crit(phi, False),
                                                                              rel=1e-12)
    sol_r = crit.solution(phi, reml=True, cond_var=False)
    assert -2 * lik.evaluate_reml(phi, sol_r.sigma).value == pytest.approx(crit(phi, True),
                                                                           rel=1e-12)
