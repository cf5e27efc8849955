"""Prior value type, data-scaled defaults, overrides and their errors."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm as hl
from hierlm.bayes.priors import Prior, PriorTable, resolve_priors
from hierlm.errors import PriorError


def test_prior_value_type_orders_parameters_and_fills_mu():
    prior = Prior("student_t", sigma=2, nu=3)
    assert prior.params == (("nu", 3.0), ("mu", 0.0), ("sigma", 2.0))
    assert str(prior) == "student_t(nu=3, mu=0, sigma=2)"
    assert prior == Prior("student_t", nu=3.0, mu=0.0, sigma=2.0)
    assert repr(Prior("lkj", eta=2)) == "Prior('lkj', eta=2.0)"


@pytest.mark.parametrize(
    ("family", "params", "fragment"),
    [
        ("gamma", {"alpha": 1}, "unknown prior family 'gamma'"),
        ("normal", {"scale": 1}, "has no parameter scale"),
        ("half_normal", {}, "needs parameter(s) sigma"),
        ("normal", {"sigma": "wide"}, "must be numbers"),
    ],
)
def test_prior_construction_errors(family, params, fragment):
    with pytest.raises(PriorError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Prior(family, **params)


def test_defaults_follow_the_documented_rule(sleep_model):
    design = sleep_model.design
    table = resolve_priors(design)
    y = design.y
    s_y = np.std(y, ddof=1)
    s_days = np.std(design.X[:, 1], ddof=1)
    assert table.fixef("Intercept") == Prior("normal", mu=np.mean(y), sigma=2.5 * s_y)
    assert table.fixef("Days") == Prior("normal", mu=0, sigma=2.5 * s_y / s_days)
    assert table.sd("Subject", "Intercept") == Prior("half_student_t", nu=3, sigma=2.5 * s_y)
    assert table.sd("Subject", "Days") == Prior("half_student_t", nu=3, sigma=2.5 * s_y / s_days)
    assert table.cor("Subject") == Prior("lkj", eta=1)
    assert table.sigma == Prior("half_student_t", nu=3, sigma=2.5 * s_y)
    assert all(row.source == "default" for row in table.rows)


def test_table_has_one_row_per_parameter_and_prints(sleep_model):
    table = resolve_priors(sleep_model.design)
    frame = table.to_frame()
    assert list(frame["parameter"]) == [
        "fixef[Intercept]",
        "fixef[Days]",
        "sd_Subject[Intercept]",
        "sd_Subject[Days]",
        "cor_Subject",
        "sigma",
    ]
    text = str(table)
    assert "half_student_t(nu=3" in text and "lkj(eta=1)" in text


def test_most_specific_key_wins(sleep_model):
    wide, narrow, days = Prior("normal", sigma=100), Prior("normal", sigma=1), Prior("normal", sigma=5)
    table = resolve_priors(
        sleep_model.design,
        {
            "b": wide,
            "Days": days,
            "sd": Prior("half_normal", sigma=50),
            "sd:Subject:Days": Prior("half_cauchy", sigma=2),
            "cor:Subject": Prior("lkj", eta=2),
            "sigma": Prior("exponential", lam=0.1),
            "Intercept": narrow,
        },
    )
    assert table.fixef("Intercept") == narrow
    assert table.fixef("Days") == days
    assert table.sd("Subject", "Intercept") == Prior("half_normal", sigma=50)
    assert table.sd("Subject", "Days") == Prior("half_cauchy", sigma=2)
    assert table.cor("Subject") == Prior("lkj", eta=2)
    assert table.sigma == Prior("exponential", lam=0.1)
    sources = {row.parameter: row.source for row in table.rows}
    assert sources["fixef[Days]"] == "Days" and sources["sd_Subject[Days]"] == "sd:Subject:Days"


def test_class_b_does_not_cover_the_intercept(sleep_model):
    table = resolve_priors(sleep_model.design, {"b": Prior("normal", sigma=3)})
    assert table.fixef("Days") == Prior("normal", sigma=3)
    assert table.fixef("Intercept").family == "normal" and table.fixef("Intercept").param("mu") > 200


def test_flat_everywhere(sleep_model):
    table = resolve_priors(sleep_model.design, "flat")
    assert table.is_flat and table.fixef_flat
    assert table.cor("Subject") == Prior("lkj", eta=1)
    assert {row.prior.family for row in table.rows} == {"flat", "lkj"}


def test_unknown_key_lists_the_valid_keys(sleep_model):
    with pytest.raises(PriorError) as info:
        resolve_priors(sleep_model.design, {"sd:Subjct": Prior("half_normal", sigma=1)})
    message = str(info.value)
    assert "'sd:Subjct'" in message
    for key in (
        "'Intercept'",
        "'Days'",
        "'b'",
        "'sd'",
        "'sd:Subject'",
        "'sd:Subject:Days'",
        "'cor'",
        "'cor:Subject'",
        "'sigma'",
    ):
        assert key in message


@pytest.mark.parametrize(
    ("key", "prior", "fragment"),
    [
        ("sd:Subject", Prior("half_normal", sigma=-2), "sigma=-2 must be > 0"),
        ("cor", Prior("lkj", eta=0), "eta=0 must be > 0"),
        ("sigma", Prior("exponential", lam=float("inf")), "not finite"),
        ("Days", Prior("student_t", nu=-1, sigma=1), "nu=-1 must be > 0"),
    ],
)
def test_impossible_parameters_name_the_key(sleep_model, key, prior, fragment):
    with pytest.raises(PriorError, match=fragment) as info:
        resolve_priors(sleep_model.design, {key: prior})
    assert repr(key) in str(info.value)


@pytest.mark.parametrize(
    ("key", "prior"),
    [
        ("sd", Prior("normal", sigma=1)),
        ("b", Prior("half_normal", sigma=1)),
        ("cor", Prior("normal", sigma=1)),
        ("sigma", Prior("lkj", eta=2)),
    ],
)
def test_family_must_fit_the_parameter(sleep_model, key, prior):
    with pytest.raises(PriorError, match="cannot describe"):
        resolve_priors(sleep_model.design, {key: prior})


def test_bad_container_and_value_types(sleep_model):
    with pytest.raises(PriorError, match="only named prior set is 'flat'"):
        resolve_priors(sleep_model.design, "weak")
    with pytest.raises(PriorError, match="must be a hierlm.Prior"):
        resolve_priors(sleep_model.design, {"sigma": 3.0})


def test_repeated_group_blocks_are_addressed_by_label(sleep_df):
    model = hl.Model("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep_df)
    table = resolve_priors(
        model.design,
        {"sd:Subject": Prior("half_normal", sigma=9), "sd:Subject.1": Prior("half_normal", sigma=1)},
    )
    assert table.sd("Subject", "Intercept") == Prior("half_normal", sigma=9)
    assert table.sd("Subject.1", "Days") == Prior("half_normal", sigma=1)
    assert "cor" not in {row.kind for row in table.rows}
    with pytest.raises(PriorError, match="unknown key 'cor'"):
        resolve_priors(model.design, {"cor": Prior("lkj", eta=2)})


def test_a_table_passes_through_and_model_priors_use_it(sleep_df):
    model = hl.Model(
        "Reaction ~ Days + (Days | Subject)", sleep_df, priors={"sigma": Prior("half_normal", sigma=7)}
    )
    table = model.priors
    assert isinstance(table, PriorTable)
    assert resolve_priors(model.design, table) is table
    assert table.sigma == Prior("half_normal", sigma=7)
