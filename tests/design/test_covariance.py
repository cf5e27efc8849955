"""Covariance-structure objects (hierlm.design.covariance): one table of structures, one protocol.

Every structure is checked the same way: its factor is lower triangular and
gives the covariance it describes, its Jacobian matches central differences,
its bounds and start are consistent, and its natural parameters are right.
"""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.design.covariance import (
    AR1Correlation,
    CompoundSymmetryCorrelation,
    ToeplitzCorrelation,
    make_structure,
)
from hierlm.errors import FormulaError

# (name, homogeneous, q, expected number of parameters)
TABLE = [
    ("us", True, 1, 1), ("us", True, 3, 6), ("diag", True, 3, 3),
    ("cs", True, 4, 2), ("cs", False, 4, 5), ("ar1", True, 4, 2), ("ar1", False, 4, 5),
    ("toep", True, 4, 4), ("toep", False, 4, 7), ("cs", True, 1, 1), ("toep", True, 2, 2),
]


def _point(structure, seed=0):
    rng = np.random.default_rng(seed)
    phi = structure.start() + rng.normal(scale=0.4, size=structure.n_params)
    bounded = np.isfinite(structure.lower())
    phi[bounded] = np.abs(phi[bounded]) + 0.3
    return phi


@pytest.mark.parametrize(("name", "hom", "q", "n_params"), TABLE)
def test_protocol(name, hom, q, n_params):
    structure = make_structure(name, q, hom)
    assert structure.n_params == n_params
    assert structure.lower().shape == structure.start().shape == (n_params,)
    assert len(structure.param_names("g", tuple(f"c{i}" for i in range(q)))) == n_params
    phi = _point(structure)
    template = structure.template(phi)
    assert np.allclose(np.triu(template, 1), 0.0)
    pattern = set(structure.kernel_pattern())
    outside = [(i, j) for i in range(q) for j in range(q) if (i, j) not in pattern]
    assert all(template[i, j] == 0.0 for i, j in outside)
    jac = structure.template_jacobian(phi)
    numeric = np.empty_like(jac)
    for k in range(n_params):
        up, down = phi.copy(), phi.copy()
        up[k] += 1e-6
        down[k] -= 1e-6
        numeric[k] = (structure.template(up) - structure.template(down)) / 2e-6
    np.testing.assert_allclose(jac, numeric, atol=1e-7)
    # the start is the identity relative covariance for every structure
    np.testing.assert_allclose(structure.relative_covariance(structure.start()), np.eye(q),
                               atol=1e-12)


def _correlation(structure, phi):
    cov = structure.relative_covariance(phi)
    sd = np.sqrt(np.diag(cov))
    return cov / np.outer(sd, sd), sd


def test_compound_symmetry_is_equicorrelated_over_its_whole_range():
    structure = make_structure("cs", 4)
    for r in (-6.0, -0.3, 0.0, 2.0, 6.0):
        corr, sd = _correlation(structure, np.array([2.0, r]))
        rho = structure.natural(np.array([2.0, r]))["rho"]
        off = corr[~np.eye(4, dtype=bool)]
        np.testing.assert_allclose(off, rho)
        np.testing.assert_allclose(sd, 2.0)
        assert -1 / 3 < rho < 1
        assert np.linalg.eigvalsh(corr).min() > 0


def test_ar1_powers_and_heterogeneous_sds():
    structure = make_structure("ar1", 4, homogeneous=False)
    phi = np.array([1.0, 2.0, 3.0, 4.0, np.arctanh(0.6)])
    corr, sd = _correlation(structure, phi)
    lag = np.abs(np.subtract.outer(np.arange(4), np.arange(4)))
    np.testing.assert_allclose(corr, 0.6 ** lag)
    np.testing.assert_allclose(sd, [1, 2, 3, 4])
    assert structure.natural(phi) == pytest.approx({"rho": 0.6})


def test_toeplitz_is_banded_and_always_positive_definite():
    structure = make_structure("toep", 5)
    rng = np.random.default_rng(3)
    for _ in range(50):
        phi = np.concatenate([[1.5], rng.normal(scale=2.0, size=4)])
        corr, _ = _correlation(structure, phi)
        rho = structure.natural(phi)
        for lag in range(1, 5):
            np.testing.assert_allclose(np.diagonal(corr, lag), rho[f"rho{lag}"], atol=1e-12)
        assert np.linalg.eigvalsh(corr).min() > 0


def test_toeplitz_first_lag_equals_first_partial_autocorrelation():
    structure = make_structure("toep", 3)
    rho = structure.natural(np.array([1.0, np.arctanh(0.5), 0.0]))
    # kappa_2 = 0: rho_2 = rho_1^2 (an AR(1) up to lag 2)
    assert rho == pytest.approx({"rho1": 0.5, "rho2": 0.25})


def test_unknown_structure_lists_the_valid_ones():
    with pytest.raises(FormulaError, match="us .*diag .*cs .*ar1 .*toep"):
        make_structure("unstructured", 3)


@pytest.mark.parametrize("model", [CompoundSymmetryCorrelation(5), AR1Correlation(4)])
def test_closed_form_reals_invert_natural(model):
    """The closed-form inverse (used for starts and Kenward-Roger's scale) against the numeric one."""
    from hierlm.design.residual.base import correlation_reals

    for r in (-1.3, 0.0, 0.4, 2.2):
        natural = model.natural(np.array([r]))
        assert model.reals(natural)[0] == pytest.approx(r, abs=1e-12)
        assert correlation_reals(model, natural)[0] == pytest.approx(r, abs=1e-12)
    assert ToeplitzCorrelation(4).reals(np.array([0.2, 0.1, 0.0])) is None  # numeric inverse
