"""Residual structures as objects: the protocol each answers, the registry, objects as residual=."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.design.residual import RESIDUAL_STRUCTURES, ResidualStructure, parse_residual
from hierlm.errors import DataError, FormulaError

TIMES = np.array([1.0, 2.0, 4.0, 5.0])
LABELS = ("1", "2", "4", "5")


def _bound(name: str) -> ResidualStructure:
    return RESIDUAL_STRUCTURES[name]("t", "g").bind(TIMES, LABELS)


def _params(structure: ResidualStructure) -> np.ndarray:
    rng = np.random.default_rng(3)
    return structure.start() + 0.3 * rng.standard_normal(structure.n_params)


@pytest.mark.parametrize("name", sorted(RESIDUAL_STRUCTURES))
def test_protocol_shapes_and_names(name):
    structure = _bound(name)
    params = _params(structure)
    cov, grad = structure.over_times(params)
    assert cov.shape == (4, 4) and grad.shape == (structure.n_params, 4, 4)
    assert len(structure.names()) == structure.n_params == structure.start().size
    lower, upper = structure.box()
    assert lower.shape == upper.shape == (structure.n_params,)
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)


@pytest.mark.parametrize("name", sorted(set(RESIDUAL_STRUCTURES) - {"independent"}))
def test_derivative_matches_central_differences(name):
    structure = _bound(name)
    params = _params(structure)
    _, grad = structure.over_times(params)
    step = 1e-6
    for k in range(structure.n_params):
        up, down = params.copy(), params.copy()
        up[k] += step
        down[k] -= step
        numeric = (structure.over_times(up)[0] - structure.over_times(down)[0]) / (2 * step)
        np.testing.assert_allclose(grad[k], numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(RESIDUAL_STRUCTURES))
def test_for_groups_and_covariance_at_are_the_submatrix(name):
    structure = _bound(name)
    params = _params(structure)
    full, d_full = structure.over_times(params)
    slots = np.array([[0, 2, 3], [1, 2, 3]])
    s, d_s = structure.for_groups(params, slots, TIMES[slots])
    for row in range(2):
        index = slots[row]
        np.testing.assert_allclose(s[row], full[np.ix_(index, index)], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(structure.covariance_at(params, TIMES[index]),
                                   full[np.ix_(index, index)], rtol=1e-12, atol=1e-15)
        assert d_s is not None
        np.testing.assert_allclose(d_s[:, row], d_full[:, index][:, :, index], atol=1e-15)


def test_new_times_where_the_structure_can_place_them():
    ar1 = _bound("ar1")
    rho = np.tanh(_params(ar1)[0])
    new = ar1.covariance_at(_params(ar1), np.array([1.0, 3.0, 9.0]))  # 3 and 9 were never seen
    np.testing.assert_allclose(new, rho ** np.abs(np.subtract.outer([1, 3, 9], [1, 3, 9])))
    car1 = _bound("car1")
    phi = car1.natural(_params(car1))["phi"]
    times = np.array([1.0, 2.5, 7.25])
    np.testing.assert_allclose(car1.covariance_at(_params(car1), times),
                               phi ** np.abs(np.subtract.outer(times, times)))
    cs = _bound("cs")
    rho = cs.natural(_params(cs))["rho"]
    np.testing.assert_allclose(cs.covariance_at(_params(cs), np.array([0.0, 99.0])),
                               [[1.0, rho], [rho, 1.0]])
    with pytest.raises(DataError, match=r"t=3 is not among the fitted times \(1, 2, 4, 5\)"):
        _bound("arh1").covariance_at(_params(_bound("arh1")), np.array([1.0, 3.0]))
    with pytest.raises(DataError, match="a lag of 6 t units is beyond the largest the fit"):
        _bound("toep").covariance_at(_params(_bound("toep")), np.array([1.0, 7.0]))
    with pytest.raises(DataError, match="t=1.5 is not an integer"):
        ar1.covariance_at(_params(ar1), np.array([1.0, 1.5]))


def test_registry_is_what_the_parser_lists():
    with pytest.raises(FormulaError) as info:
        parse_residual("banded(week | id)")
    for name, cls in RESIDUAL_STRUCTURES.items():
        assert f"{name}: {cls.description}" in str(info.value)
        assert cls.name == name


def _pigs() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ids = np.repeat(np.arange(12), 5)
    week = np.tile(np.arange(1, 6), 12)
    noise = rng.standard_normal((12, 5)).cumsum(axis=1).ravel()
    return pd.DataFrame({"id": ids, "week": week, "weight": 20 + 6 * week + noise,
                         "sex": np.where(ids % 2, "f", "m")})


@pytest.mark.parametrize("obj, text", [
    (hl.residual.AR1("week", "id"), "ar1(week | id)"),
    (hl.residual.CS(group="id"), "cs(id)"),
    (hl.residual.CAR1("week", "id"), "car1(week | id)"),
    (hl.residual.ToepH("week", "id"), "toeph(week | id)"),
])
def test_structure_objects_fit_as_their_text(obj, text):
    data = _pigs()
    by_object = hl.Model("weight ~ week", data, residual=obj,
                         variance=hl.residual.VarIdent("sex")).fit()
    by_text = hl.Model("weight ~ week", data, residual=text, variance="sex").fit()
    assert by_object.model.residual == text and by_object.model.variance == "sex"
    assert by_object.loglik == by_text.loglik
    np.testing.assert_array_equal(by_object.theta, by_text.theta)


def test_structure_objects_without_columns_are_refused():
    with pytest.raises(FormulaError, match=r"ar1 needs a time column, e.g. AR1\('week', 'id'\)"):
        hl.Model("weight ~ week", _pigs(), residual=hl.residual.AR1(group="id"))
    with pytest.raises(FormulaError, match="has no group column"):
        hl.Model("weight ~ week", _pigs(), residual=hl.residual.CS())
    with pytest.raises(FormulaError, match="must be a string such as 'ar1"):
        hl.Model("weight ~ week", _pigs(), residual=3)


@pytest.mark.parametrize("name", sorted(RESIDUAL_STRUCTURES))
def test_covariance_parameters_round_trip(name):
    structure = _bound(name)
    params = _params(structure)
    gamma = structure.covariance_parameters(params, 2.5)
    assert len(structure.covariance_parameter_names()) == gamma.size
    back, sigma2 = structure.from_covariance_parameters(gamma)
    np.testing.assert_allclose(sigma2 * structure.over_times(back)[0],
                               2.5 * structure.over_times(params)[0], rtol=1e-10, atol=1e-12)


def test_covariance_parameters_are_sas_scale():
    cs = _bound("cs")
    params = _params(cs)
    rho = cs.natural(params)["rho"]
    np.testing.assert_allclose(cs.covariance_parameters(params, 2.0), [2.0 * rho, 2.0 * (1 - rho)])
    ar1 = _bound("ar1")
    np.testing.assert_allclose(ar1.covariance_parameters(_params(ar1), 3.0),
                               [3.0, ar1.natural(_params(ar1))["rho"]])
    un = _bound("un")
    cov = 1.5 * un.over_times(_params(un))[0]
    np.testing.assert_allclose(un.covariance_parameters(_params(un), 1.5)[:4], cov[:, 0])


def test_moment_starts_read_the_empirical_correlation():
    cs = _bound("cs")
    corr = np.full((4, 4), 0.6)
    np.fill_diagonal(corr, 1.0)
    assert cs.natural(cs.moment_start(corr))["rho"] == pytest.approx(0.6, rel=1e-10)
    lags = np.abs(np.subtract.outer(TIMES, TIMES))
    ar1 = _bound("ar1")
    assert np.tanh(ar1.moment_start(0.7 ** lags)[0]) == pytest.approx(0.7, rel=1e-10)
    car1 = _bound("car1")
    assert car1.natural(car1.moment_start(0.5 ** lags))["phi"] == pytest.approx(0.5, rel=1e-10)
    np.testing.assert_array_equal(ar1.moment_start(np.eye(4)), ar1.start())  # nothing to read


def test_structure_objects_survive_save_and_load(tmp_path):
    from hierlm.core.store import save_fit

    fit = hl.Model("weight ~ week", _pigs(), residual=hl.residual.CAR1("week", "id"),
                   variance=hl.residual.VarIdent("sex")).fit()
    save_fit(fit, tmp_path / "fit")
    back = hl.load_fit(tmp_path / "fit")
    assert (back.model.residual, back.model.variance) == ("car1(week | id)", "sex")
    assert back.loglik == pytest.approx(fit.loglik, rel=1e-12)
    np.testing.assert_allclose(back.theta, fit.theta, rtol=1e-12)


def test_positions_within_groups_are_pandas_cumcount():
    """cs without a time: each row's position in its group, in row order (unsorted groups)."""
    from hierlm.design.residual import _positions

    rng = np.random.default_rng(5)
    for n in (1, 7, 300):
        codes = rng.integers(0, 9, n)
        expected = pd.Series(codes).groupby(codes).cumcount().to_numpy()
        np.testing.assert_array_equal(_positions(codes), expected)
