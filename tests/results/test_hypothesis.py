"""brms-style hypotheses: safe parsing, and the numbers on REML and MAP fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierlm as hl
from hierlm.errors import HypothesisError
from hierlm.results.hypothesis import parse_hypothesis


def orthodont() -> pd.DataFrame:
    data = pd.read_csv(hl.datasets.__path__[0] + "/data/Orthodont.csv")
    data["Subject"] = pd.Categorical(data["Subject"])
    data["Sex"] = pd.Categorical(data["Sex"], categories=["Male", "Female"])
    return data


NAMES = ["Intercept", "age", "SexFemale", "age:SexFemale"]


@pytest.mark.parametrize(("text", "vector", "constant", "op"), [
    ("age > 0.5", [0, 1, 0, 0], 0.5, ">"),
    ("2 * age - SexFemale / 4 = 1", [0, 2, -0.25, 0], 1.0, "="),
    ("age == SexFemale", [0, 1, -1, 0], 0.0, "="),
    ("-(age + 1) <= -3", [0, -1, 0, 0], -2.0, "<="),
    ("age:SexFemale < 0", [0, 0, 0, 1], 0.0, "<"),
    ("`age:SexFemale` + age >= 0.1", [0, 1, 0, 1], 0.1, ">="),
    ("Intercept + 14 * age = 27", [1, 14, 0, 0], 27.0, "="),
])
def test_parse(text, vector, constant, op):
    got_vector, got_constant, got_op = parse_hypothesis(text, NAMES)
    np.testing.assert_allclose(got_vector, vector)
    assert got_constant == pytest.approx(constant)
    assert got_op == op


@pytest.mark.parametrize(("text", "message"), [
    ("Days > 5", "'Days' .* not a coefficient"),
    ("age * SexFemale > 0", "multiplies two coefficients"),
    ("age / SexFemale > 0", "divides"),
    ("age / 0 > 1", "divides"),
    ("age", "exactly one comparison"),
    ("0 < age < 1", "exactly one comparison"),
    ("__import__('os').system('true') > 0", "only coefficient"),
    ("age ** 2 > 0", "only coefficient"),
    ("age >", "Cannot read"),
    ("1 > 0", "no coefficient"),
])
def test_parse_refuses(text, message):
    with pytest.raises(HypothesisError, match=message):
        parse_hypothesis(text, NAMES)


@pytest.fixture(scope="module")
def orthodont_model():
    return hl.Model("distance ~ age * Sex + (1 | Subject)", orthodont())


def test_reml_hypotheses_are_t_tests(orthodont_model):
    fit = orthodont_model.fit()
    table = fit.hypothesis(["age > 0.5", "age:SexFemale = 0", "age:SexFemale < 0"])
    ref = fit.contrast({"age": 1.0}, rhs=0.5)
    row = table.loc["age > 0.5"]
    assert row["estimate"] == pytest.approx(ref["estimate"] - 0.5)
    assert row["std_error"] == pytest.approx(ref["std_error"])
    assert row["df"] == pytest.approx(ref["df"])
    assert row["p_value"] == pytest.approx(stats.t.sf(ref["t_value"], ref["df"]))
    two_sided = fit.contrast({"age:SexFemale": 1.0})
    assert table.loc["age:SexFemale = 0", "p_value"] == pytest.approx(two_sided["p_value"])
    assert table.loc["age:SexFemale < 0", "p_value"] == pytest.approx(two_sided["p_value"] / 2)


def test_map_hypothesis_probability(orthodont_model):
    fit = orthodont_model.fit(method="map")
    table = fit.hypothesis("age:SexFemale < 0")
    row = table.iloc[0]
    assert row["prob"] == pytest.approx(stats.norm.cdf(-row["estimate"] / row["std_error"]))
    assert row["evid_ratio"] == pytest.approx(row["prob"] / (1 - row["prob"]))
    assert np.isnan(fit.hypothesis("age = 0.5")["prob"].iloc[0])
