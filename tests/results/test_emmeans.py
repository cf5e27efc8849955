"""Estimated marginal means: reference numbers of R's emmeans on lmerTest fits, and consistency checks.

The reference file ``tests/fixtures/emmeans/emmeans.json`` is written by
``tests/fixtures/emmeans/make_emmeans.R``. Tolerances: means rel 1e-5,
standard errors and df rel 1e-3, Tukey p-values rel 1e-2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierlm as hl
from hierlm.errors import AdjustmentError, GridError
from hierlm.results.linear import adjust_p_values

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "emmeans" / "emmeans.json"


def orthodont() -> pd.DataFrame:
    data = pd.read_csv(hl.datasets.__path__[0] + "/data/Orthodont.csv")
    data["Subject"] = pd.Categorical(data["Subject"])
    data["Sex"] = pd.Categorical(data["Sex"], categories=["Male", "Female"])
    return data


@pytest.fixture(scope="module")
def machines():
    return hl.Model("score ~ Machine + (1 | Worker) + (1 | Worker:Machine)",
                    hl.datasets.load("Machines")).fit()


def test_machine_means_are_the_fixed_effects(machines):
    table = machines.emmeans("Machine").table
    assert list(table.columns) == ["Machine", "estimate", "std_error", "df", "lower", "upper"]
    assert list(table["Machine"]) == ["A", "B", "C"]
    for level, L in zip("ABC", ({}, {"MachineB": 1}, {"MachineC": 1}), strict=True):
        ref = machines.contrast({"Intercept": 1, **L})
        row = table.set_index("Machine").loc[level]
        assert row["estimate"] == pytest.approx(ref["estimate"], rel=1e-12)
        assert row["std_error"] == pytest.approx(ref["std_error"], rel=1e-10)
        assert row["df"] == pytest.approx(ref["df"], rel=1e-10)
        half = stats.t.ppf(0.975, ref["df"]) * ref["std_error"]
        assert row["lower"] == pytest.approx(ref["estimate"] - half, rel=1e-10)


def test_pairs_are_contrasts(machines):
    pairs = machines.emmeans("Machine").pairs(adjust="none")
    assert list(pairs["contrast"]) == ["A - B", "A - C", "B - C"]
    ref = machines.contrast({"MachineB": -1, "MachineC": 1})  # B - C = -(C - B)
    row = pairs.set_index("contrast").loc["B - C"]
    assert row["estimate"] == pytest.approx(-ref["estimate"])
    assert row["p_value"] == pytest.approx(ref["p_value"], rel=1e-10)
    reverse = machines.emmeans("Machine").pairs(reverse=True, adjust="none")
    assert list(reverse["contrast"]) == ["B - A", "C - A", "C - B"]


def test_adjustments_against_their_definitions():
    t = np.array([3.66, 6.39, 2.73, 0.5])
    df = np.full(4, 10.0)
    raw = 2 * stats.t.sf(t, df)
    np.testing.assert_allclose(adjust_p_values(t, df, "none", 4), raw)
    np.testing.assert_allclose(adjust_p_values(t, df, "bonferroni", 4), np.minimum(1, 4 * raw))
    order = np.argsort(raw)
    holm = np.empty(4)
    holm[order] = np.minimum(1, np.maximum.accumulate(raw[order] * (4 - np.arange(4))))
    np.testing.assert_allclose(adjust_p_values(t, df, "holm", 4), holm)
    # Tukey with two means is the unadjusted t-test (studentized range of 2 = sqrt(2) |t|)
    np.testing.assert_allclose(adjust_p_values(t, df, "tukey", 2), raw, rtol=1e-6)
    with pytest.raises(AdjustmentError, match="'sidak'"):
        adjust_p_values(t, df, "sidak", 4)


def test_by_families_and_custom_contrasts():
    fit = hl.Model("distance ~ age * Sex + (age | Subject)", orthodont()).fit()
    emm = fit.emmeans("Sex", by="age", at={"age": [8, 14]})
    assert list(emm.table["age"]) == [8.0, 8.0, 14.0, 14.0]
    pairs = emm.pairs()
    assert list(pairs["age"]) == [8.0, 14.0]
    at14 = fit.emmeans("Sex", at={"age": 14}).pairs()
    assert pairs["p_value"].iloc[1] == pytest.approx(at14["p_value"].iloc[0])
    custom = fit.emmeans("Sex", at={"age": 14}).contrast({"boys minus girls": [1, -1]})
    assert custom["estimate"].iloc[0] == pytest.approx(at14["estimate"].iloc[0])
    kr = fit.emmeans("Sex", at={"age": 14}, ddf="kenward-roger").table
    ref = fit.contrast({"Intercept": 1, "age": 14}, ddf="kenward-roger")
    assert kr["std_error"].iloc[0] == pytest.approx(ref["std_error"], rel=1e-10)
    assert kr["df"].iloc[0] == pytest.approx(ref["df"], rel=1e-10)


def test_averaging_over_a_factor_uses_equal_weights():
    cake = hl.datasets.load("cake")
    fit = hl.Model("angle ~ recipe * temperature + (1 | recipe:replicate)", cake).fit()
    recipe = fit.emmeans("recipe").table.set_index("recipe")
    cells = fit.emmeans(["recipe", "temperature"]).table
    assert len(cells) == 18
    assert list(cells["recipe"][:3]) == ["A", "B", "C"]  # the first factor varies fastest
    means = cells.groupby("recipe", observed=True)["estimate"].mean()
    np.testing.assert_allclose(recipe["estimate"], means.loc[recipe.index], rtol=1e-12)


def test_bad_input(machines):
    with pytest.raises(GridError, match="'Worker' is not a factor of the model"):
        machines.emmeans("Worker")
    with pytest.raises(GridError, match="'Machines' is not a factor"):
        machines.emmeans("Machines")
    with pytest.raises(GridError, match="at= names 'Worker'"):
        machines.emmeans("Machine", at={"Worker": 1})
    with pytest.raises(AdjustmentError, match="adjust='scheffe'"):
        machines.emmeans("Machine").pairs(adjust="scheffe")
    fit = hl.Model("distance ~ age * Sex + (1 | Subject)", orthodont()).fit()
    with pytest.raises(GridError, match="'age' is a covariate"):
        fit.emmeans("age")
    with pytest.raises(GridError, match="at= names 'distance'"):
        fit.emmeans("Sex", at={"distance": 20})


def test_map_fits_read_as_a_normal_posterior():
    fit = hl.Model("score ~ Machine + (1 | Worker) + (1 | Worker:Machine)",
                   hl.datasets.load("Machines")).fit(method="map")
    emm = fit.emmeans("Machine")
    assert list(emm.table.columns) == ["Machine", "estimate", "std_error", "lower", "upper"]
    pairs = emm.pairs()
    assert list(pairs.columns) == ["contrast", "estimate", "std_error", "lower", "upper", "prob_direction"]
    ref = fit.contrast({"MachineB": 1.0})  # B - A
    row = pairs.set_index("contrast").loc["A - B"]
    assert row["estimate"] == pytest.approx(-ref["estimate"])
    assert row["std_error"] == pytest.approx(ref["std_error"])
    assert row["prob_direction"] == pytest.approx(ref["prob_greater"])


# ---------------------------------------------------------------- R references
_DATA = {"Machines": "Machines", "Orthodont": "Orthodont", "cake": "cake"}
_TOL = {"estimate": 1e-5, "std_error": 1e-3, "df": 1e-3, "t_value": 1e-3}


def _reference_cases() -> list[tuple[str, dict, dict, str]]:
    if not FIXTURE.exists():
        return []
    cases = []
    for case in json.loads(FIXTURE.read_text())["emmeans_cases"]:
        for spec in case["emmeans"]:
            for ddf in spec["results"]:
                cases.append((f"{case['id']}-{spec['id']}-{ddf}", case, spec, ddf.replace("_", "-")))
    return cases


_FITS: dict[str, object] = {}


def _fit(case: dict) -> object:
    if case["id"] not in _FITS:
        data = hl.datasets.load(_DATA[case["data"]])  # levels sorted, as the R script reads them
        _FITS[case["id"]] = hl.Model(case["formula"], data).fit()
    return _FITS[case["id"]]


def _rel(ours: object, ref: object) -> float:
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    return float(np.max(np.abs(ours - ref) / np.abs(ref)))


@pytest.mark.parametrize(("label", "case", "spec", "ddf"), _reference_cases(),
                         ids=[c[0] for c in _reference_cases()])
def test_against_emmeans(label, case, spec, ddf):
    """Means, SEs, df, limits, the grid's L matrix and every adjusted pairs table of R's emmeans."""
    result = spec["results"][ddf.replace("-", "_")]
    fit = _fit(case)
    assert [row["estimate"] for row in case["fixef"]] == pytest.approx(
        list(fit.fixef()["estimate"]), rel=1e-5)
    factor = spec["specs"].replace("~", "").strip()
    emm = fit.emmeans(factor, at=spec["at"], ddf=ddf)
    # the reference grid: the same L (fixed-effect names as lme4 writes them)
    names = ["Intercept" if n == "(Intercept)" else n for n in result["linfct_columns"]]
    assert names == list(fit.design.fixed_names)
    np.testing.assert_allclose(emm.function.fixed, np.asarray(result["linfct"]), atol=1e-12)
    table = emm.table
    ref = pd.DataFrame(result["table"])
    assert [str(v) for v in table[factor]] == list(ref[factor])
    assert _rel(table["estimate"], ref["emmean"]) < 1e-5
    assert _rel(table["std_error"], ref["SE"]) < 1e-3
    assert _rel(table["df"], ref["df"]) < 1e-3
    assert _rel(table["lower"], ref["lower.CL"]) < 1e-5
    assert _rel(table["upper"], ref["upper.CL"]) < 1e-5
    for block in result["pairs"]:
        pairs = emm.pairs(adjust=block["adjust"])
        ref_pairs = pd.DataFrame(block["table"])
        assert [c.replace(factor, "") for c in ref_pairs["contrast"]] == list(pairs["contrast"])
        for column, ref_column in (("estimate", "estimate"), ("std_error", "SE"), ("df", "df"),
                                   ("t_value", "t.ratio")):
            assert _rel(pairs[column], ref_pairs[ref_column]) < _TOL[column], column
        # Tukey: rel 1e-2, other adjustments 1e-3; R's ptukey works with 1 - P, so p-values
        # below 1e-10 are compared absolutely (R's 2.9e-13 is 2.4e-13 by direct integration)
        rtol = 1e-2 if block["adjust"] == "tukey" else 1e-3
        np.testing.assert_allclose(pairs["p_value"], ref_pairs["p.value"], rtol=rtol, atol=1e-10)
