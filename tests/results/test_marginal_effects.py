"""predictions / comparisons / slopes on REML fits, checked against dense textbook formulas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import ColumnNotFoundError, FitError, GridError, InputTypeError
from hierlm.results.marginal_effects import datagrid


def orthodont() -> pd.DataFrame:
    data = pd.read_csv(hl.datasets.__path__[0] + "/data/Orthodont.csv")
    data["Subject"] = pd.Categorical(data["Subject"])
    data["Sex"] = pd.Categorical(data["Sex"], categories=["Male", "Female"])
    return data


@pytest.fixture(scope="module")
def slope_fit():
    return hl.Model("distance ~ age * Sex + (age | Subject)", orthodont()).fit()


def dense_pev(fit, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Henderson's C matrix: Var(x'b_hat + z'u_hat - x'b - z'u) from the dense mixed-model equations."""
    design = fit.design
    X = np.asarray(design.X)
    blocks = design.blocks
    Z = np.hstack([np.vstack([np.kron(np.eye(b.n_levels)[c], zi) for c, zi in zip(b.codes, b.z, strict=True)])
                   for b in blocks])
    G = np.zeros((Z.shape[1], Z.shape[1]))
    offset = 0
    for b, cov in zip(blocks, fit.covariances(), strict=True):
        size = b.n_levels * b.q
        G[offset:offset + size, offset:offset + size] = np.kron(np.eye(b.n_levels), cov)
        offset += size
    s2 = fit.sigma ** 2
    C = np.block([[X.T @ X / s2, X.T @ Z / s2], [Z.T @ X / s2, Z.T @ Z / s2 + np.linalg.inv(G)]])
    C_inv = np.linalg.inv(C)
    w = np.hstack([x, z])
    return np.einsum("ri,ij,rj->r", w, C_inv, w)


def test_prediction_se_is_the_prediction_error_variance(slope_fit):
    table = slope_fit.predictions()
    design = slope_fit.design
    b = design.blocks[0]
    z = np.vstack([np.kron(np.eye(b.n_levels)[c], zi) for c, zi in zip(b.codes, b.z, strict=True)])
    expected = np.sqrt(dense_pev(slope_fit, np.asarray(design.X), z))
    np.testing.assert_allclose(table["std_error"], expected, rtol=1e-6)
    np.testing.assert_allclose(table["estimate"], slope_fit.fitted(), rtol=1e-10)
    assert (table["df"] > 3).all() and (table["df"] < design.n).all()
    half = table["upper"] - table["estimate"]
    from scipy import stats

    np.testing.assert_allclose(half, stats.t.ppf(0.975, table["df"]) * table["std_error"], rtol=1e-10)


def test_prediction_interval_of_a_new_observation(slope_fit):
    grid = {"age": [8.0, 14.0], "Sex": "Female", "Subject": "F03"}
    mean = slope_fit.predictions(grid)
    new = slope_fit.predictions(grid, interval="prediction")
    np.testing.assert_allclose(new["estimate"], mean["estimate"])
    np.testing.assert_allclose(new["std_error"] ** 2, mean["std_error"] ** 2 + slope_fit.sigma ** 2)
    assert (new["df"] > mean["df"]).all()  # sigma is well determined: more df
    with pytest.raises(InputTypeError, match="interval"):
        slope_fit.predictions(grid, interval="credible")
    with pytest.raises(InputTypeError, match="drop by"):
        slope_fit.predictions(interval="prediction", by="Sex")


def test_population_predictions_are_contrasts_with_satterthwaite_df(slope_fit):
    grid = {"age": [8.0, 14.0], "Sex": ["Male", "Female"]}
    table = slope_fit.predictions(grid, include_random=False)
    names = list(slope_fit.design.fixed_names)
    for _, row in table.iterrows():
        female = row["Sex"] == "Female"
        L = dict(zip(names, [1.0, row["age"], float(female), row["age"] * female], strict=True))
        ref = slope_fit.contrast(L)
        assert row["estimate"] == pytest.approx(ref["estimate"], rel=1e-10)
        assert row["std_error"] == pytest.approx(ref["std_error"], rel=1e-8)
        assert row["df"] == pytest.approx(ref["df"], rel=1e-8)


def test_slopes_by_sex_are_the_age_coefficients(slope_fit):
    table = slope_fit.slopes("age", by="Sex", include_random=False).set_index("Sex")
    male = slope_fit.contrast({"age": 1.0})
    female = slope_fit.contrast({"age": 1.0, "age:SexFemale": 1.0})
    for level, ref in (("Male", male), ("Female", female)):
        assert table.loc[level, "estimate"] == pytest.approx(ref["estimate"], rel=1e-6)
        assert table.loc[level, "std_error"] == pytest.approx(ref["std_error"], rel=1e-5)
        assert table.loc[level, "df"] == pytest.approx(ref["df"], rel=1e-4)
        assert table.loc[level, "p_value"] == pytest.approx(ref["p_value"], rel=1e-3)


def test_subject_slopes_are_lme4_coefficients(slope_fit):
    table = slope_fit.slopes("age", newdata=datagrid(slope_fit, Subject=["M01", "F05"]))
    coef = slope_fit.coef(wide=True)["Subject"]
    by_subject = table.set_index("Subject")["estimate"]
    assert by_subject["M01"] == pytest.approx(coef.loc["M01", "age"], rel=1e-6)
    # F05 is a girl, but the grid holds Sex at its mode (Male): coefficient of age only
    assert by_subject["F05"] == pytest.approx(coef.loc["F05", "age"], rel=1e-6)


def test_average_comparison_of_sex_is_the_emmeans_difference(slope_fit):
    comp = slope_fit.comparisons("Sex", by=True, include_random=False)
    assert list(comp["contrast"]) == ["Female - Male"]
    # averaged over the fitted rows (mean age 11): the Sex effect at age 11
    ref = slope_fit.contrast({"SexFemale": 1.0, "age:SexFemale": 11.0})
    assert comp["estimate"].iloc[0] == pytest.approx(ref["estimate"], rel=1e-8)
    assert comp["std_error"].iloc[0] == pytest.approx(ref["std_error"], rel=1e-8)
    assert comp["df"].iloc[0] == pytest.approx(ref["df"], rel=1e-8)
    step = slope_fit.comparisons("age", by="Sex", include_random=False, step=2.0).set_index("Sex")
    assert step.loc["Male", "estimate"] == pytest.approx(2.0 * slope_fit.fixef().loc["age", "estimate"])


def test_by_averages_rows(slope_fit):
    rows = slope_fit.predictions(include_random=False)
    by = slope_fit.predictions(by="Sex", include_random=False).set_index("Sex")
    for level in ("Male", "Female"):
        assert by.loc[level, "estimate"] == pytest.approx(rows.loc[rows["Sex"] == level, "estimate"].mean())
    overall = slope_fit.predictions(by=True)
    assert overall["estimate"].iloc[0] == pytest.approx(slope_fit.fitted().mean())


def test_datagrid_holds_other_columns_at_mean_and_mode(slope_fit):
    grid = datagrid(slope_fit, age=[8, 9])
    assert list(grid["age"]) == [8, 9]
    assert set(grid.columns) == {"age", "Sex", "Subject"}
    assert (grid["Sex"] == "Male").all()  # 64 of the 108 rows
    with pytest.raises(ColumnNotFoundError, match="weight"):
        datagrid(slope_fit, weight=1)


def test_bad_input(slope_fit):
    with pytest.raises(GridError, match="'Sex' is a factor"):
        slope_fit.slopes("Sex")
    with pytest.raises(GridError, match="'height' is not a variable"):
        slope_fit.comparisons("height")
    with pytest.raises(FitError, match="kenward-roger"):
        slope_fit.predictions(ddf="kenward-roger")
    with pytest.raises(InputTypeError, match="include_random"):
        slope_fit.predictions(include_random="yes")
    with pytest.raises(ColumnNotFoundError, match="by="):
        slope_fit.predictions(by="Group")
    kr = slope_fit.predictions({"age": 14.0, "Sex": "Female"}, include_random=False, ddf="kenward-roger")
    ref = slope_fit.contrast({"Intercept": 1, "age": 14, "SexFemale": 1, "age:SexFemale": 14},
                             ddf="kenward-roger")
    assert kr["std_error"].iloc[0] == pytest.approx(ref["std_error"], rel=1e-10)


def test_residual_structures_need_the_population_prediction():
    fit = hl.Model("distance ~ age * Sex + (1 | Subject)", orthodont(), residual="cs(age | Subject)").fit()
    with pytest.raises(FitError, match="include_random=False"):
        fit.predictions()
    table = fit.predictions({"age": 14.0, "Sex": "Female"}, include_random=False)
    ref = fit.contrast({"Intercept": 1, "age": 14, "SexFemale": 1, "age:SexFemale": 14})
    assert table["std_error"].iloc[0] == pytest.approx(ref["std_error"], rel=1e-10)
    varident = hl.Model("distance ~ age + (1 | Subject)", orthodont(), variance="Sex").fit()
    with pytest.raises(FitError, match="one residual variance"):
        varident.predictions(include_random=False, interval="prediction")
    with pytest.raises(FitError, match="one residual variance"):
        varident.variance_shares()
