"""The small-matrix path of the grouped criterion (hierlm.lmm.grouped_shared).

Without random effects and ``variance=`` every batch of groups shares one
``W``, and :class:`SharedCriterion` evaluates the criterion from flattened
cross-products of the OLS residuals with LAPACK calls. Its components must
equal those of the general path of :class:`GroupedObjective` (which the
dense-likelihood tests of ``test_grouped.py`` check) at rel 1e-10, on
balanced data (every group has every time) and on unbalanced data (dropped
visits, several batches), for ML and REML, at parameters away from the start.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import FitError
from hierlm.lmm.grouped import GroupedObjective
from hierlm.lmm.grouped_shared import _inverse, cross_products
from tests.lmm.helpers import repeated_weights

STRUCTURES = ["cs(id)", "csh(week | id)", "un(week | id)", "ar1(week | id)", "arh1(week | id)",
              "toep(week | id)", "toeph(week | id)", "car1(week | id)"]


def _data(drop: bool) -> pd.DataFrame:
    # dropped visits: groups of several sizes and time patterns
    return repeated_weights(3, 15, 6, level_sd=2, slope=5, noise_sd=1, noise_trend=0.2,
                            dropped=[2, 9, 10, 31, 44, 45, 46, 70] if drop else ())


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("residual", STRUCTURES)
def test_shared_path_equals_general_path(residual, drop):
    objective = GroupedObjective(hl.Model("weight ~ week", _data(drop), residual=residual).design)
    assert objective._shared is not None
    if drop:
        assert len(objective._batches) > 1
    rng = np.random.default_rng(11)
    for reml in (True, False):
        for _ in range(2):
            phi = objective.start() + 0.3 * rng.standard_normal(objective.n_theta)
            fast = objective._shared.components(phi, reml, gradient=True)
            general = objective._components(phi, reml, gradient=True)
            for name in ("ldL2", "ldRX2", "r2", "d_logdet", "d_r2"):
                got, want = np.asarray(getattr(fast, name)), np.asarray(getattr(general, name))
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.max(np.abs(want)),
                                           err_msg=f"{residual} {name} reml={reml}")
            value_only = objective._shared.components(phi, reml, gradient=False)
            assert value_only.d_r2 is None
            assert value_only.r2 == pytest.approx(general.r2, rel=1e-10)


def test_random_effects_or_variance_keep_the_general_path():
    data = _data(drop=False)
    data["sex"] = np.where(data["id"].str[-1].astype(int) % 2 == 0, "f", "m")
    with_ri = GroupedObjective(hl.Model("weight ~ week + (1 | id)", data,
                                        residual="ar1(week | id)").design)
    with_variance = GroupedObjective(hl.Model("weight ~ week", data, residual="ar1(week | id)",
                                              variance="sex").design)
    assert with_ri._shared is None and with_variance._shared is None


def test_cross_products_are_the_sums_over_groups():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 4, 3)), rng.standard_normal((7, 4))
    cxx, cxy, cyy = cross_products(x, y)
    np.testing.assert_allclose(cxx, np.einsum("kap,kbq->abpq", x, x), rtol=1e-12)
    np.testing.assert_allclose(cxy, np.einsum("kap,kb->abp", x, y), rtol=1e-12)
    np.testing.assert_allclose(cyy, np.einsum("ka,kb->ab", y, y), rtol=1e-12)


def test_inverse_and_refusal_of_a_matrix_that_is_not_positive_definite():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 5))
    matrix = a @ a.T + 5 * np.eye(5)
    inverse, logdet = _inverse(matrix, "not PD", np.triu_indices(5, 1))
    np.testing.assert_allclose(inverse, np.linalg.inv(matrix), rtol=1e-12)
    assert logdet == pytest.approx(np.linalg.slogdet(matrix)[1], rel=1e-12)
    with pytest.raises(FitError, match="not PD"):
        _inverse(matrix - 20 * np.eye(5), "not PD", np.triu_indices(5, 1))


CLOSED = ["cs(id)", "ar1(week | id)", "car1(week | id)"]


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("residual", STRUCTURES)
def test_closed_form_is_used_where_it_applies(residual, drop):
    objective = GroupedObjective(hl.Model("weight ~ week", _data(drop), residual=residual).design)
    assert objective._shared is not None
    assert (objective._shared.reduced is not None) == (residual in CLOSED)


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("residual", CLOSED)
def test_closed_form_equals_the_factorised_shared_path(residual, drop):
    """The closed-form evaluation against SharedCriterion's own LAPACK path, from rho < 0 to 0.99."""
    objective = GroupedObjective(hl.Model("weight ~ week", _data(drop), residual=residual).design)
    shared = objective._shared
    assert shared is not None and shared.reduced is not None
    for real in (-1.2, -0.15, 0.0, 0.5, 1.2, 2.6):  # cs: rho -0.1 at -1.2; ar1: -0.15 at -0.15
        phi = np.array([real])
        for reml in (True, False):
            fast, u_fast, delta_fast, xtwx_fast = shared._evaluate_reduced(phi, reml, True)
            slow, u_slow, delta_slow, xtwx_slow = shared._evaluate_general(phi, reml, True)
            general = objective._components(phi, reml, gradient=True)
            for name in ("ldL2", "ldRX2", "r2", "d_logdet", "d_r2"):
                got = np.asarray(getattr(fast, name))
                for want in (np.asarray(getattr(slow, name)), np.asarray(getattr(general, name))):
                    np.testing.assert_allclose(got, want, rtol=1e-10,
                                               atol=1e-10 * np.max(np.abs(want)),
                                               err_msg=f"{residual} {name} r={real} reml={reml}")
            np.testing.assert_allclose(u_fast, u_slow, rtol=1e-10)
            # delta = beta - beta0 is a small difference of the two fits' coefficients
            np.testing.assert_allclose(delta_fast, delta_slow, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(xtwx_fast, xtwx_slow, rtol=1e-10)
            value_only = shared._evaluate_reduced(phi, reml, False)[0]
            assert value_only.d_r2 is None and value_only.d_logdet is None
            assert value_only.r2 == pytest.approx(fast.r2, rel=1e-14)


@pytest.mark.parametrize("residual", CLOSED)
def test_closed_form_gradient_matches_central_differences(residual):
    objective = GroupedObjective(hl.Model("weight ~ week", _data(True), residual=residual).design)
    step = 1e-6
    for real in (-0.1, 0.7, 1.9):
        phi = np.array([real])
        _, grad = objective.value_and_gradient(phi, reml=True)
        numeric = (objective(phi + step) - objective(phi - step)) / (2 * step)
        assert grad[0] == pytest.approx(numeric, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("drop", [False, True])
def test_batches_centred_on_least_squares_keep_the_response_products(drop):
    """make_batches' centre= changes what the cross-products are of, not the sums they give."""
    from hierlm.lmm.grouped_batches import make_batches

    design = hl.Model("weight ~ week", _data(drop), residual="ar1(week | id)").design
    assert design.residual is not None
    centre = np.linalg.lstsq(design.X, design.y, rcond=None)[0]
    plain = make_batches(design, design.residual)
    centred = make_batches(design, design.residual, centre)
    beta = centre + np.array([0.7, -0.2])
    for a, b in zip(plain, centred, strict=True):
        assert a.centre is None and b.centre is centre
        np.testing.assert_allclose(b.residual_products(beta), a.residual_products(beta),
                                   rtol=1e-9, atol=1e-9 * np.max(np.abs(a.cyy)))
        np.testing.assert_allclose(b.response_products(), a.cxy, rtol=1e-10,
                                   atol=1e-10 * np.max(np.abs(a.cxy)))
        # the centred products are those of the residuals, a few digits smaller than the response's
        assert np.max(np.abs(b.cyy)) < np.max(np.abs(a.cyy))
