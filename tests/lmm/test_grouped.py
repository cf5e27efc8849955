"""Residual covariance structures (hierlm.lmm.grouped): the criterion against the dense definition.

At fixed parameters the group-by-group criterion must equal the dense
multivariate-normal (restricted) log-likelihood of ``y ~ N(X beta, sigma^2 W)``
built independently here from the structure's definition; its gradient must
match finite differences; and bad input is refused with the culprit named.
The nlme reference fits are in ``test_grouped_nlme.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import DataError, FormulaError, HierlmWarning

STRUCTURES = ["cs(id)", "csh(week | id)", "un(week | id)", "ar1(week | id)", "arh1(week | id)",
              "toep(week | id)", "toeph(week | id)", "car1(week | id)"]


def _data(seed=0, drop=True):
    rng = np.random.default_rng(seed)
    rows = []
    for pig in range(12):
        level = rng.normal(0, 2)
        for week in range(1, 6):
            rows.append({"id": f"p{pig}", "week": week, "sex": "f" if pig % 2 else "m",
                         "weight": 20 + 5 * week + level + rng.normal(0, 1 + 0.2 * week)})
    frame = pd.DataFrame(rows)
    if drop:  # dropped visits: the structure is indexed by week, not by row position
        frame = frame.drop(index=[3, 17, 18, 40]).reset_index(drop=True)
    return frame


def _dense_correlation(name, times_a, times_b, natural, labels):
    lag = np.abs(np.subtract.outer(times_a, times_b))
    if name == "independent":
        return np.where(lag == 0, 1.0, 0.0)
    if name in ("cs", "csh"):
        return np.where(lag == 0, 1.0, natural["rho"])
    if name in ("ar1", "arh1"):
        return natural["rho"] ** lag
    if name == "car1":
        return natural["phi"] ** lag
    if name in ("toep", "toeph"):
        table = np.concatenate([[1.0], [natural[f"rho{k}"] for k in range(1, int(lag.max()) + 1)]])
        return table[lag.astype(int)]
    raise KeyError(name)


def _dense_loglik(fit, reml):
    """(Restricted) log-likelihood from the structure's definition, one dense matrix per data set."""
    design = fit.design
    residual = design.residual
    structure = residual.structure
    params = fit.theta[len(fit.theta) - residual.n_params:]
    natural = structure.natural(params[: structure.n_params])
    n = design.n
    times = residual.times
    v = np.zeros((n, n))
    same = residual.group_codes[:, None] == residual.group_codes[None, :]
    if structure.base == "un":
        cov_times, _ = structure.over_times(params[: structure.n_params])
        v = cov_times[np.ix_(residual.slots, residual.slots)]
    else:
        v = _dense_correlation(structure.name, times, times, natural, structure.time_labels)
        if structure.heterogeneous:
            ratio = np.concatenate([[1.0], [natural[f"ratio.{lab}"] for lab in structure.time_labels[1:]]])
            sd = ratio[residual.slots]
            v = v * np.outer(sd, sd)
    v = np.where(same, v, 0.0)
    if residual.variance_codes is not None:
        ratios = np.exp(np.concatenate([[0.0], params[structure.n_params:]]))[residual.variance_codes]
        v = v * np.outer(ratios, ratios)
    for block, cov in zip(design.blocks, fit.covariances(), strict=True):
        z = block.z
        same_level = block.codes[:, None] == block.codes[None, :]
        v = v + np.where(same_level, z @ (cov / fit.sigma ** 2) @ z.T, 0.0)
    v = fit.sigma ** 2 * v
    x, y = design.X, design.y
    v_inv = np.linalg.inv(v)
    beta = np.linalg.solve(x.T @ v_inv @ x, x.T @ v_inv @ y)
    resid = y - x @ beta
    p = x.shape[1]
    value = n * np.log(2 * np.pi) + np.linalg.slogdet(v)[1] + resid @ v_inv @ resid
    if reml:
        value += np.linalg.slogdet(x.T @ v_inv @ x)[1] - p * np.log(2 * np.pi)
    return -0.5 * value, beta


def _fit(residual, formula="weight ~ week", method="reml", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        return hl.Model(formula, _data(), residual=residual, **kw).fit(method=method)


@pytest.mark.parametrize("residual", STRUCTURES)
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_loglik_equals_the_dense_definition(residual, method):
    fit = _fit(residual, method=method)
    dense, beta = _dense_loglik(fit, method == "reml")
    assert fit.loglik == pytest.approx(dense, rel=1e-10)
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-9)


@pytest.mark.parametrize(("residual", "formula", "variance"), [
    ("ar1(week | id)", "weight ~ week + (1 | id)", None),
    ("cs(id)", "weight ~ week", "sex"),
    ("arh1(week | id)", "weight ~ week + sex + (week | id)", None),
    (None, "weight ~ week + (1 | id)", "sex"),
])
def test_random_effects_and_variance_factor(residual, formula, variance):
    fit = _fit(residual, formula=formula, variance=variance)
    dense, _ = _dense_loglik(fit, True)
    assert fit.loglik == pytest.approx(dense, rel=1e-10)


@pytest.mark.parametrize("residual", STRUCTURES)
def test_gradient_is_exact(residual):
    fit = _fit(residual)
    kernel = fit.kernel
    point = fit.theta + 0.03
    _, grad = kernel.value_and_gradient(point, True)
    h = 1e-3
    for k in range(point.size):
        step = np.zeros(point.size)
        step[k] = h
        numeric = (-kernel(point + 2 * step) + 8 * kernel(point + step)
                   - 8 * kernel(point - step) + kernel(point - 2 * step)) / (12 * h)
        assert grad[k] == pytest.approx(numeric, rel=1e-5, abs=1e-6)


def test_parameter_counts():
    counts = {name: _fit(name, method="ml").n_params for name in STRUCTURES}
    # 2 fixed effects + sigma + the structure's own parameters (5 weeks)
    assert counts == {"cs(id)": 4, "csh(week | id)": 8, "un(week | id)": 17, "ar1(week | id)": 4,
                      "arh1(week | id)": 8, "toep(week | id)": 7, "toeph(week | id)": 11,
                      "car1(week | id)": 4}


def test_car1_equals_ar1_on_unit_spaced_times():
    ar1, car1 = _fit("ar1(week | id)", method="ml"), _fit("car1(week | id)", method="ml")
    assert car1.loglik == pytest.approx(ar1.loglik, abs=1e-7)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"residual": "ar2(week | id)"}, FormulaError, "Unknown residual structure 'ar2'.*cs.*car1"),
    ({"residual": "ar1(week | pen)"}, Exception, "pen"),
    ({"residual": "ar1(week)"}, FormulaError, "needs a time variable"),
    ({"residual": "ar1 week id"}, FormulaError, "Cannot read residual"),
])
def test_bad_structures_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        hl.Model("weight ~ week", _data(), **kwargs)


def test_repeated_time_is_refused():
    data = _data(drop=False)
    data.loc[1, "week"] = 1
    with pytest.raises(DataError, match="week=1 repeats within id='p0'"):
        hl.Model("weight ~ week", data, residual="ar1(week | id)")


def test_non_numeric_time_for_car1_is_refused():
    data = _data().assign(visit=lambda d: "v" + d["week"].astype(str))
    with pytest.raises(DataError, match="'visit' must be numeric for car1"):
        hl.Model("weight ~ week", data, residual="car1(visit | id)")


def test_fractional_time_for_ar1_is_refused():
    data = _data().assign(t=lambda d: d["week"] * 0.5)
    with pytest.raises(DataError, match="ar1 needs integer times.*car1"):
        hl.Model("weight ~ week", data, residual="ar1(t | id)")


def test_un_with_too_few_groups_is_refused():
    data = _data(drop=False)
    data = data[data["id"].isin(["p0", "p1", "p2"])]
    with pytest.raises(DataError, match="un over 5 times needs more groups than times"):
        hl.Model("weight ~ week", data, residual="un(week | id)")


def test_random_effects_on_another_group_are_refused():
    data = _data().assign(pen=lambda d: d["id"].str[-1].isin(list("02468")).map({True: "a", False: "b"}))
    with pytest.raises(DataError, match=r"\(1 \| pen\) is not grouped by the residual group 'id'"):
        hl.Model("weight ~ week + (1 | pen)", data, residual="ar1(week | id)").fit("reml")


def test_residual_structure_fit_round_trips(tmp_path):
    from hierlm.io import load_fit, save_fit

    fit = _fit("arh1(week | id)", formula="weight ~ week + (1 | id)", variance=None)
    loaded = load_fit(save_fit(fit, tmp_path / "f"))
    np.testing.assert_array_equal(loaded.theta, fit.theta)
    assert loaded.loglik == fit.loglik
    pd.testing.assert_frame_equal(loaded.structure_parameters(), fit.structure_parameters())
    other = _fit("cs(id)", variance="sex")
    again = load_fit(save_fit(other, tmp_path / "g"))
    assert again.model.variance == "sex" and again.loglik == other.loglik


def test_variance_shares_need_one_residual_variance():
    with pytest.raises(hl.errors.FitError, match=r"R² \(Nakagawa\) needs one residual variance.*arh1"):
        _fit("arh1(week | id)", formula="weight ~ week + (1 | id)").r2()
    with pytest.raises(hl.errors.FitError, match="The ICC needs one residual variance"):
        _fit("cs(id)", formula="weight ~ week + (week | id)", variance="sex").icc()
    homogeneous = _fit("ar1(week | id)", formula="weight ~ week + (1 | id)")
    r2 = homogeneous.r2()
    assert 0 < r2.loc["marginal", "estimate"] <= r2.loc["conditional", "estimate"] < 1


def test_gls_model_has_no_group_effect_tables():
    fit = _fit("ar1(week | id)")
    for method in ("ranef", "coef"):
        with pytest.raises(DataError, match=f"{method}\\(\\): the model has no random-effect terms"):
            getattr(fit, method)()
    assert fit.fixef().shape[0] == 2 and np.isfinite(fit.fixef()["df"]).all()


def test_prediction_standard_errors_use_the_residual_structure():
    """predict's SEs with group effects equal Henderson's PEV with R = sigma^2 Omega, densely."""
    fit = _fit("arh1(week | id)", formula="weight ~ week + (1 | id)")
    design = fit.design
    x, z = design.X, design.sparse_z().toarray()
    omega = np.linalg.inv(fit.kernel.residual_precision(fit.theta).toarray())
    r_inv = np.linalg.inv(fit.sigma ** 2 * omega)
    g = np.kron(np.eye(design.blocks[0].n_levels), fit.covariances()[0])
    mme = np.block([[x.T @ r_inv @ x, x.T @ r_inv @ z],
                    [z.T @ r_inv @ x, z.T @ r_inv @ z + np.linalg.inv(g)]])
    c = np.linalg.inv(mme)
    rows = np.hstack([x, z])
    pev = np.einsum("ri,ij,rj->r", rows, c, rows)
    table = fit.predict(fit.model.data.iloc[: len(pev)])
    np.testing.assert_allclose(table["std_error"].to_numpy() ** 2, pev, rtol=1e-6)
    # the modes are the dense BLUPs G Z' V^-1 (y - X beta)
    v = z @ g @ z.T + fit.sigma ** 2 * omega
    blup = g @ z.T @ np.linalg.solve(v, design.y - x @ fit.beta)
    np.testing.assert_allclose(fit.solution.b[0].ravel(), blup, rtol=1e-8, atol=1e-10)


def test_ar1_on_times_two_units_apart_is_not_stuck_at_zero():
    """Orthodont ages 8, 10, 12, 14: rho^2 per visit, the same fit as AR(1) over visit numbers."""
    ortho = hl.datasets.load("Orthodont").assign(visit=lambda d: (d["age"] - 8) // 2)
    by_age = hl.Model("distance ~ age * Sex", ortho, residual="ar1(age | Subject)").fit("ml")
    by_visit = hl.Model("distance ~ age * Sex", ortho, residual="ar1(visit | Subject)").fit("ml")
    assert by_age.loglik == pytest.approx(by_visit.loglik, abs=1e-6)
    rho_age = by_age.structure_parameters().set_index("parameter").loc["rho", "estimate"]
    rho_visit = by_visit.structure_parameters().set_index("parameter").loc["rho", "estimate"]
    assert rho_age ** 2 == pytest.approx(rho_visit, rel=1e-4)
