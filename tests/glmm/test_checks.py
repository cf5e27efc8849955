"""What GLMM ML fits refuse and warn about: quadrature limits, separation, overdispersion, few rows."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import FitError, HierlmWarning
from tests.glmm.reference import data_of, fixture


def _counts(n_groups: int = 12, per: int = 8, seed: int = 1, overdispersed: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    eta = 1.0 + 0.3 * x + rng.normal(0, 0.5, n_groups)[g]
    mu = np.exp(eta)
    y = rng.negative_binomial(0.8, 0.8 / (0.8 + mu)) if overdispersed else rng.poisson(mu)
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": [f"g{i}" for i in g],
                         "h": [f"h{i % 5}" for i in range(g.size)],
                         "x2": rng.normal(size=g.size), "x3": rng.normal(size=g.size)})


def test_quadrature_is_refused_for_crossed_factors() -> None:
    model = hl.Model("y ~ x + (1 | g) + (1 | h)", _counts(), family="poisson")
    with pytest.raises(FitError, match="one grouping factor.*do(es)? not factor"):
        model.fit("ml", nagq=5)


def test_quadrature_is_refused_beyond_three_terms() -> None:
    model = hl.Model("y ~ x + (1 + x + x2 + x3 | g)", _counts(), family="poisson")
    with pytest.raises(FitError, match="5\\^4 nodes.*up to 3 terms"):
        model.fit("ml", nagq=5)
    with pytest.raises(FitError, match="whole number >= 1"):
        model.fit("ml", nagq=0)


@pytest.mark.slow
def test_two_term_quadrature_improves_on_laplace() -> None:
    """AGQ with 2 terms per level: more nodes move the log-likelihood less and less."""
    model = hl.Model("y ~ x + (1 + x | g)", _counts(seed=4), family="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        values = [model.fit("ml", nagq=k, hessian=False).loglik for k in (1, 3, 7, 11)]
    assert abs(values[3] - values[2]) < abs(values[1] - values[0])
    assert abs(values[3] - values[2]) < 1e-3


def test_overdispersion_warning() -> None:
    model = hl.Model("y ~ x + (1 | g)", _counts(overdispersed=True, seed=2), family="poisson")
    with pytest.warns(HierlmWarning, match="Overdispersion.*negative_binomial.*\\(1 \\| obs\\)"):
        model.fit("ml", hessian=False)


@pytest.mark.slow
def test_separation_warning() -> None:
    ref = fixture("glmer/sim_separation")
    model = hl.Model(ref["formula"], data_of(ref), family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.ConvergenceWarning)  # the Hessian diverges too
        with pytest.warns(HierlmWarning, match="separation.*trt"):
            model.fit("ml")


def test_few_observations_per_level_suggest_nagq() -> None:
    ref = fixture("glmer/sim_bernoulli_few_laplace")
    model = hl.Model(ref["formula"], data_of(ref), family="binomial")
    with pytest.warns(HierlmWarning, match="median of .* per level of 'g'.*nagq="):
        model.fit("ml", hessian=False)

