"""The likelihood with a residual structure in the Bayesian engine's terms (hierlm.bayes.residual_likelihood).

References:

* value, ``d/d beta`` and ``d/d sigma`` equal the one Gaussian likelihood
  (:class:`hierlm.lmm.likelihood.GaussianLikelihood`, itself tested against a
  dense multivariate normal) at the same point, rel 1e-10, after mapping the
  ML/REML engine's free parameters to ``(T_b, S, level ratios)`` with the
  design structures' own maps;
* gradients in ``S`` (symmetric steps), the level ratios and ``T_b`` equal
  central differences of the value (step 1e-6, rel 1e-6);
* each group's log density equals ``GroupedObjective.group_logdensity``
  (1e-10) and they sum to the value;
* the conditional draws of the group effects have the conditional mean and
  covariance of ``GroupedObjective.solution`` at the GLS beta (1e-8): the
  perturbations are replaced by 0 (mean) and unit vectors (the root).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.bayes.residual_likelihood import ResidualLikelihood
from hierlm.lmm.likelihood import GaussianLikelihood

PIGS = "/work/shared/data/pigs.csv"

CASES = [  # (formula, residual, variance)
    ("weight ~ week", "ar1(week | id)", None),
    ("weight ~ week + (1 | id)", "ar1(week | id)", None),
    ("weight ~ week + (week | id)", "csh(week | id)", "sex"),
    ("weight ~ week", "un(week | id)", None),
    ("weight ~ week", "car1(week | id)", "sex"),
    ("weight ~ week + (1 | id)", "toeph(week | id)", None),
    ("weight ~ week", "cs(id)", None),
    ("weight ~ week", "arh1(week | id)", None),
]


@pytest.fixture(scope="module")
def pigs() -> pd.DataFrame:
    data = pd.read_csv(PIGS)
    data["sex"] = np.where(data["id"] % 2 == 0, "f", "m")
    # unbalanced and shuffled: groups of different sizes, rows in any order
    return data.sample(frac=1.0, random_state=1).iloc[7:].reset_index(drop=True)


def _point(model: hl.Model, seed: int):
    """A random point in both parameterisations."""
    design = model.design
    likelihood = GaussianLikelihood(design)
    crit = likelihood.criterion
    phi = crit.start() + 0.1 * np.random.default_rng(seed).standard_normal(crit.n_theta)
    blocks, struct, ratios = crit._split(phi)
    s, _ = design.residual.structure.over_times(struct)
    templates = [b.structure.template(part) for b, part in zip(design.blocks, blocks, strict=True)]
    levels = (None if design.residual.variance_function is None
              else np.exp(np.concatenate([[0.0], ratios])))
    return likelihood, phi, templates, s, levels


@pytest.mark.parametrize("formula,residual,variance", CASES)
def test_equals_the_one_likelihood(pigs, formula, residual, variance):
    model = hl.Model(formula, pigs, residual=residual, variance=variance)
    likelihood, phi, templates, s, levels = _point(model, 3)
    beta, sigma = np.array([19.0, 6.1]), 2.7
    ref = likelihood.evaluate(beta, phi, sigma)
    ours = ResidualLikelihood(model.design)
    got = ours.evaluate(beta, sigma, templates, s, levels)
    assert got.value == pytest.approx(ref.value, rel=1e-10)
    np.testing.assert_allclose(got.d_beta, ref.d_beta, rtol=1e-10, atol=1e-9)
    assert got.d_sigma == pytest.approx(ref.d_sigma, rel=1e-10, abs=1e-9)

    def value(s=s, levels=levels, templates=templates):
        return ours.evaluate(beta, sigma, templates, s, levels).value

    h = 1e-6
    for i, j in [(0, 0), (1, 2), (3, 1)]:  # S is symmetric: step both entries
        step = np.zeros_like(s)
        step[i, j] = step[j, i] = h
        numeric = (value(s=s + step) - value(s=s - step)) / (2 * h)
        analytic = got.d_s[i, j] + (got.d_s[j, i] if i != j else 0.0)
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-5)
    if levels is not None:
        step = np.zeros_like(levels)
        step[1] = h
        numeric = (value(levels=levels + step) - value(levels=levels - step)) / (2 * h)
        assert got.d_levels[1] == pytest.approx(numeric, rel=1e-6, abs=1e-5)
    for b, t in enumerate(templates):
        r, c = t.shape[0] - 1, 0
        up = [x.copy() for x in templates]
        down = [x.copy() for x in templates]
        up[b][r, c] += h
        down[b][r, c] -= h
        numeric = (value(templates=up) - value(templates=down)) / (2 * h)
        assert got.d_templates[b][r, c] == pytest.approx(numeric, rel=1e-6, abs=1e-5)
    groups = ours.group_logdensity(beta, sigma, templates, s, levels)
    np.testing.assert_allclose(groups, likelihood.criterion.group_logdensity(phi, beta, sigma),
                               rtol=1e-10, atol=1e-9)
    assert groups.sum() == pytest.approx(got.value, rel=1e-10)


class _FixedNormals:
    """A stand-in generator whose standard normals are a given array."""

    def __init__(self, values_of_shape):
        self.values_of_shape = values_of_shape

    def standard_normal(self, shape):
        return self.values_of_shape(shape)


@pytest.mark.parametrize("formula,residual,variance", [c for c in CASES if "(" in c[0]])
def test_effect_draws_have_the_exact_conditional(pigs, formula, residual, variance):
    model = hl.Model(formula, pigs, residual=residual, variance=variance)
    likelihood, phi, templates, s, levels = _point(model, 5)
    solution = likelihood.criterion.solution(phi, reml=False)
    ours = ResidualLikelihood(model.design)
    beta, sigma = np.asarray(solution.beta), float(solution.sigma)
    mean = ours.draw_effects(beta, sigma, templates, s, levels, _FixedNormals(np.zeros))
    q = model.design.blocks[0].q
    np.testing.assert_allclose(mean[0], solution.b[0], rtol=1e-8, atol=1e-8)
    columns = []
    for k in range(q):  # the root's columns: draw with unit vectors e_k (minus the mean)
        def unit(shape, k=k):
            out = np.zeros(shape)
            out[..., k] = 1.0
            return out
        columns.append(ours.draw_effects(beta, sigma, templates, s, levels,
                                         _FixedNormals(unit))[0] - mean[0])
    root = np.stack(columns, axis=2)  # (levels, q, q)
    np.testing.assert_allclose(root @ np.swapaxes(root, 1, 2), solution.cond_var[0],
                               rtol=1e-8, atol=1e-10)
