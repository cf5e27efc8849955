"""A catalogue of malformed input: every case raises hierlm's own exception naming the culprit.

Each case is ``(id, call, exception class, culprit)``: ``call`` must raise the
given class from :mod:`hierlm.errors` (never a raw numpy / pandas / scipy /
pytensor exception, and never succeed silently), and the message must contain
``culprit`` (the column, option, value or object at fault), so the user knows
what to change. The ids are distinct; the count is asserted below.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import (
    ColumnNotFoundError,
    DataError,
    FamilyError,
    FitError,
    FormulaError,
    HierlmError,
    InputTypeError,
    NewLevelError,
    PriorError,
    RankDeficientError,
)

SLEEP = hl.datasets.load("sleepstudy")
MACHINES = hl.datasets.load("Machines")
FORMULA = "Reaction ~ Days + (Days | Subject)"


def _quiet(call: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return call()


FITS: dict[str, Any] = {}


def fit(name: str = "sleep") -> Any:
    """Fits shared by the cases, made once on first use."""
    if name not in FITS:
        FITS.update({
            "sleep": _quiet(lambda: hl.Model(FORMULA, SLEEP).fit(method="reml")),
            "sleep_int": _quiet(lambda: hl.Model("Reaction ~ 1 + (1 | Subject)", SLEEP).fit()),
            "sleep_half": _quiet(lambda: hl.Model(FORMULA, SLEEP.iloc[:150]).fit()),
            "sleep_shifted": _quiet(lambda: hl.Model(
                FORMULA, SLEEP.assign(Reaction=SLEEP["Reaction"] + 1.0)).fit()),
            "machines": _quiet(lambda: hl.Model("score ~ Machine + (1 | Worker)", MACHINES).fit()),
            "ck": _quiet(lambda: hl.Model("Reaction ~ C(k) + (1 | Subject)",
                                          SLEEP.assign(k=SLEEP["Days"] % 3)).fit()),
        })
    return FITS[name]


def with_column(frame: pd.DataFrame, **columns: Any) -> pd.DataFrame:
    out = frame.copy()
    for name, value in columns.items():
        out[name] = value(out) if callable(value) else value
    return out


def with_value(frame: pd.DataFrame, column: str, row: int, value: Any) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].astype(float)
    out.loc[out.index[row], column] = value
    return out


def model(formula: str = FORMULA, data: Any = SLEEP, **kw: Any) -> Callable[[], Any]:
    return lambda: hl.Model(formula, data, **kw)


def sleep_fit(**options: Any) -> Callable[[], Any]:
    return lambda: hl.Model(FORMULA, SLEEP).fit(**options)


def nuts(**options: Any) -> Callable[[], Any]:
    """A NUTS fit that must be refused before sampling (tiny settings otherwise)."""
    settings = {"draws": 20, "tune": 20, "chains": 1, "progressbar": False, **options}
    return lambda: hl.Model(FORMULA, SLEEP).fit("nuts", **settings)


Case = tuple[str, Callable[[], Any], type[HierlmError], str]

CASES: list[Case] = [
    # ------------------------------------------------------------- formulas
    ("formula not a string", model(123), FormulaError, "int"),
    ("formula without tilde", model("Reaction Days"), FormulaError, "~"),
    ("formula with two tildes", model("Reaction ~ Days ~ x + (1 | Subject)"), FormulaError, "~"),
    ("formula without response", model("~ Days + (1 | Subject)"), FormulaError, "response"),
    ("unclosed parenthesis", model("Reaction ~ Days + (Days | Subject"), FormulaError, "("),
    ("bar without grouping factor", model("Reaction ~ Days + (Days | )"), FormulaError,
     "grouping factor"),
    ("bar without left side", model("Reaction ~ Days + ( | Subject)"), FormulaError, "left of '|'"),
    ("bar outside parentheses", model("Reaction ~ Days + (1 | Subject) %% 3"), FormulaError, "|"),
    ("grouping factor an expression", model("Reaction ~ Days + (1 | Subject + Days)"),
     FormulaError, "Subject + Days"),
    ("unknown predictor column", model("Reaction ~ Dayz + (Days | Subject)"),
     ColumnNotFoundError, "Dayz"),
    ("unknown grouping column", model("Reaction ~ Days + (Days | Subjekt)"),
     ColumnNotFoundError, "Subjekt"),
    ("unknown response column", model("Reactn ~ Days + (1 | Subject)"), ColumnNotFoundError,
     "Reactn"),
    ("log of a non-positive response", model("log(Days) ~ 1 + (1 | Subject)"), DataError,
     "log(Days)"),
    ("'.' shorthand", model("Reaction ~ . + (1 | Subject)"), FormulaError, "'.' shorthand"),
    ("offset() that is not finite", model("Reaction ~ Days + offset(log(Days)) + (1 | Subject)"),
     DataError, "offset 'log(Days)' is not finite"),
    ("cbind() of non-count columns", model("cbind(Reaction, Days) ~ 1 + (1 | Subject)"), DataError,
     "must be whole numbers"),
    ("log of zero in a fixed-effect term", model("Reaction ~ log(Days) + (1 | Subject)"), DataError,
     "'log(Days)' (18 row(s))"),
    ("NaN from a transform in a bar", model("Reaction ~ Days + (sqrt(Days - 5) | Subject)"),
     DataError, "'sqrt(Days - 5)' (90 row(s)) of the bar"),
    # ------------------------------------------------------------------ data
    ("data is a list", model(data=[1.0, 2.0]), InputTypeError, "list"),
    ("data is a dict", model(data={"Reaction": [1.0]}), InputTypeError, "dict"),
    ("data is an array", model(data=np.zeros((3, 3))), InputTypeError, "ndarray"),
    ("data has no rows", model(data=SLEEP.iloc[:0]), DataError, "no rows"),
    ("duplicate column names", model("Reaction ~ 1 + (1 | Subject)",
                                     SLEEP.set_axis(["Reaction", "Reaction", "Subject"], axis=1)),
     DataError, "Reaction"),
    ("infinite response", model(data=with_value(SLEEP, "Reaction", 3, np.inf)), DataError,
     "Reaction"),
    ("infinite predictor", model(data=with_value(SLEEP, "Days", 5, -np.inf)), DataError, "Days"),
    ("NaN with na_action='raise'", model(data=with_value(SLEEP, "Reaction", 3, np.nan),
                                         na_action="raise"), DataError, "Reaction"),
    ("all rows missing", model(data=with_column(SLEEP, Reaction=np.nan)), DataError, "Reaction"),
    ("grouping factor empty (all NaN)", model(data=with_column(SLEEP, Subject=np.nan)),
     DataError, "Subject"),
    ("non-numeric response", model(data=with_column(SLEEP, Reaction=lambda d: d["Reaction"]
                                                    .astype(str))), DataError, "Reaction"),
    ("object column mixing 5 and '5'", model("Reaction ~ g + (1 | Subject)", with_column(
        SLEEP, g=lambda d: np.array([5 if i % 2 else "5" for i in range(len(d))], dtype=object))),
     DataError, "Column 'g' mixes values"),
    ("object grouping column mixing 5 and '5'", model("Reaction ~ 1 + (1 | g)", with_column(
        SLEEP, g=lambda d: np.array([5 if i % 2 else "5" for i in range(len(d))], dtype=object))),
     DataError, "Column 'g' mixes values"),
    ("datetime predictor", model("Reaction ~ t + (1 | Subject)", with_column(
        SLEEP, t=lambda d: pd.Timestamp("2020-01-01") + pd.to_timedelta(d["Days"], unit="D"))),
     DataError, "Column 't'"),
    ("timedelta predictor", model("Reaction ~ t + (1 | Subject)", with_column(
        SLEEP, t=lambda d: pd.to_timedelta(d["Days"], unit="D"))), DataError, "Column 't'"),
    ("response at 1e200", model(data=with_column(SLEEP, Reaction=lambda d: d["Reaction"] * 1e200)),
     DataError, "'Reaction' reaches"),
    ("response at 1e-200", model(data=with_column(SLEEP, Reaction=lambda d: d["Reaction"] * 1e-200)),
     DataError, "'Reaction' varies by only"),
    ("grouping factor with one level", model(data=with_column(SLEEP, Subject="s1")), DataError,
     "Subject"),
    ("one level per observation", model("Reaction ~ Days + (1 | row)",
                                        with_column(SLEEP, row=lambda d: np.arange(len(d)))),
     DataError, "row"),
    ("more random effects than rows", model(
        "Reaction ~ Days + (Days | pair)",
        with_column(SLEEP, pair=lambda d: np.arange(len(d)) // 2)), DataError, "Days | pair"),
    ("aliased fixed-effect column with drop_aliased=False", model(
        "Reaction ~ Days + Days2 + (1 | Subject)", with_column(SLEEP, Days2=lambda d: 2 * d["Days"]),
        drop_aliased=False), RankDeficientError, "Days2"),
    ("constant response", lambda: hl.Model(FORMULA, with_column(SLEEP, Reaction=250.0)).fit(),
     FitError, "response"),
    ("constant response under MAP", lambda: hl.Model(FORMULA, with_column(SLEEP, Reaction=250.0)).fit(
        "map"), FitError, "response 'Reaction' is constant"),
    ("constant response under NUTS", lambda: hl.Model(FORMULA, with_column(SLEEP, Reaction=250.0)).fit(
        "nuts", progressbar=False), FitError, "response 'Reaction' is constant"),
    # ------------------------------------------------------- Model arguments
    ("unknown family", model(family="gamma"), FamilyError, "gamma"),
    ("poisson family for a continuous response", model(family="poisson"), DataError, "whole counts"),
    ("unknown na_action", model(na_action="drop"), InputTypeError, "drop"),
    ("reference not a dict", model(reference="Subject"), InputTypeError, "reference"),
    ("reference to unknown column", model(reference={"Subjx": "308"}), ColumnNotFoundError,
     "Subjx"),
    ("reference to unknown level", model(reference={"Subject": "999x"}), DataError, "999x"),
    ("priors of the wrong type", model(priors=3), InputTypeError, "priors"),
    ("drop_aliased not a bool", model(drop_aliased="yes"), InputTypeError, "drop_aliased"),
    ("unknown prior key", model(priors={"Dayz": "flat"}), PriorError, "Dayz"),
    ("unknown named prior set", model(priors="weak"), PriorError, "weak"),
    # --------------------------------------------------------- fit arguments
    ("unknown fit method", sleep_fit(method="bayes"), FitError, "bayes"),
    ("fit method not a string", sleep_fit(method=3), FitError, "3"),
    ("sampler option for REML", sleep_fit(method="reml", draws=100), FitError, "draws"),
    ("unknown optimizer", sleep_fit(method="ml", optimizer="foo"), FitError, "foo"),
    ("start of the wrong length", sleep_fit(start=[1.0, 2.0]), FitError, "start"),
    ("start not numeric", sleep_fit(start="abc"), FitError, "abc"),
    ("negative variance in start", sleep_fit(start=[-1.0, 0.0, 1.0]), FitError, "negative"),
    ("max_evaluations = 0", sleep_fit(max_evaluations=0), FitError, "max_evaluations"),
    ("threads not an integer", sleep_fit(threads="x"), FitError, "threads"),
    ("warn not a bool", sleep_fit(warn="no"), FitError, "warn must be True or False"),
    ("NaN in start", sleep_fit(start=[np.nan, 0.0, 1.0]), FitError, "non-finite"),
    ("infinity in start", sleep_fit(start=[1.0, np.inf, 1.0]), FitError, "non-finite"),
    ("MAP given a NUTS option", sleep_fit(method="map", draws=-5), FitError, "'draws'"),
    ("MAP given a sampler", sleep_fit(method="map", sampler="foo"), FitError, "'sampler'"),
    ("MAP reml not a bool", sleep_fit(method="map", reml="yes"), FitError, "reml"),
    ("no random-effect term", lambda: hl.Model("Reaction ~ Days", SLEEP).fit(), FitError,
     "random-effect term"),
    # -------------------------------------------------------- predict / new data
    ("predict: missing column", lambda: fit().predict(SLEEP.drop(columns="Days")),
     ColumnNotFoundError, "Days"),
    ("predict: not a data frame", lambda: fit().predict(SLEEP.to_numpy()), InputTypeError,
     "ndarray"),
    ("predict: numeric column given as text",
     lambda: fit().predict(with_column(SLEEP, Days=lambda d: d["Days"].astype(str))), DataError,
     "Days"),
    ("predict: missing value", lambda: fit().predict(with_value(SLEEP, "Days", 2, np.nan)),
     DataError, "Days"),
    ("predict: no rows", lambda: fit().predict(SLEEP.iloc[:0]), DataError, "no rows"),
    ("predict: unseen level of a fixed factor",
     lambda: fit("machines").predict(with_column(MACHINES, Machine="Z")), DataError, "'Z'"),
    ("predict: fixed factor given as numbers",
     lambda: fit("machines").predict(with_column(MACHINES, Machine=1.5)), DataError, "Machine"),
    ("predict: include_random not a bool", lambda: fit().predict(SLEEP, include_random="no"),
     InputTypeError, "include_random"),
    ("predict: factor given as integers",
     lambda: fit("machines").predict(with_column(MACHINES, Machine=lambda d: d["Machine"].cat.codes
                                                 .astype(int))), DataError, "Column 'Machine' was a factor"),
    ("predict: C(k) given as text", lambda: fit("ck").predict(with_column(
        SLEEP, k=lambda d: (d["Days"] % 3).astype(str))), DataError, "Column 'k' was numeric"),
    ("predict: unseen level of C(k)", lambda: fit("ck").predict(with_column(SLEEP, k=7)), DataError,
     "never saw"),
    ("predict: bool where a number was fitted", lambda: fit().predict(with_column(
        SLEEP, Days=lambda d: d["Days"] > 4)), DataError, "Column 'Days' was numeric"),
    ("new levels not allowed", lambda: hl.Model(FORMULA, SLEEP).new_design(
        with_column(SLEEP, Subject="new"), allow_new_levels=False), NewLevelError, "new"),
    # ------------------------------------------------------ result accessors
    ("confint level above 1", lambda: fit().confint(level=2), FitError, "level"),
    ("confint level not a number", lambda: fit().confint(level="a"), FitError, "level"),
    ("contrast of the wrong length", lambda: fit().contrast([1.0, 2.0, 3.0]), InputTypeError,
     "3 entries"),
    ("contrast naming an unknown effect", lambda: fit().contrast({"foo": 1.0}), InputTypeError,
     "foo"),
    ("shrinkage of an unknown factor", lambda: fit().shrinkage("Subj"), ColumnNotFoundError,
     "Subj"),
    ("unknown data set", lambda: hl.datasets.load("nope"), DataError, "nope"),
    # ------------------------------------------------- comparisons of fits
    ("anova of fits on different rows", lambda: hl.anova(fit("sleep_int"), fit("sleep_half")),
     DataError, "different numbers of observations"),
    ("anova of fits on different responses",
     lambda: hl.anova(fit("sleep_int"), fit("sleep_shifted")), DataError, "different responses"),
    ("anova of a non-fit", lambda: hl.anova(fit("sleep_int"), 3), InputTypeError, "int"),
    ("anova of non-nested equal-size models", lambda: hl.anova(fit("sleep"), fit("sleep")),
     FitError, "not nested"),
    ("unknown ddf method", lambda: fit().fixef(ddf="containment"), FitError, "containment"),
    ("Kenward-Roger on an ML fit", lambda: _quiet(lambda: hl.Model(FORMULA, SLEEP).fit("ml")).fixef(
        ddf="kenward-roger"), FitError, "REML"),
    ("unknown confint method", lambda: fit().confint(method="bca"), FitError, "bca"),
    ("bootstrap with one replicate", lambda: fit().confint(method="boot", n_boot=1), FitError,
     "n_boot=1"),
    ("F-table of an unknown type", lambda: fit().anova(type=4), InputTypeError, "type=4"),
    ("F-table of a fit from a bare Design", lambda: hl.lmm.fit_lmm(fit().design).anova(),
     FitError, "bare Design"),
    ("type III F-table of a sum-coded factor", lambda: _quiet(lambda: hl.Model(
        "angle ~ C(recipe, contr.sum) + temp + (1 | replicate)", hl.datasets.load("cake")).fit()
    ).anova(), FitError, "C(recipe, contr.sum)"),
    # ------------------------------------------------------------- Bayesian
    ("prior predictive with flat priors", lambda: hl.Model(FORMULA, SLEEP, priors={
        "sigma": "flat"}).prior_predictive(), PriorError, "sigma"),
    ("prior predictive draws = 0", lambda: hl.Model(FORMULA, SLEEP).prior_predictive(draws=0),
     FitError, "draws=0"),
    ("prior predictive draws not an integer", lambda: hl.Model(FORMULA, SLEEP).prior_predictive(
        draws="many"), InputTypeError, "many"),  # type: ignore[arg-type]
    ("draws = 0", nuts(draws=0), FitError, "draws"),
    ("draws not an integer", nuts(draws=2.5), FitError, "draws"),
    ("negative chains", nuts(chains=-1), FitError, "chains"),
    ("negative tune", nuts(tune=-1), FitError, "tune"),
    ("target_accept above 1", nuts(target_accept=1.5), FitError, "target_accept"),
    ("max_treedepth = 0", nuts(max_treedepth=0), FitError, "max_treedepth"),
    ("random_seed not an integer", nuts(random_seed="abc"), FitError, "random_seed"),
    ("random_seed of 2**64", nuts(random_seed=2**64), FitError, "random_seed"),
    ("negative random_seed", nuts(random_seed=-1), FitError, "random_seed"),
    ("progressbar not a bool", nuts(progressbar="no"), FitError, "progressbar"),
    ("unknown formulation", nuts(formulation="foo"), FitError, "foo"),
    ("unknown sampler", nuts(sampler="foo"), FitError, "foo"),
    ("unknown backend", nuts(backend="foo"), FitError, "foo"),
    ("unknown log_likelihood mode", nuts(log_likelihood="some"), FitError, "log_likelihood"),
    ("optimizer option for NUTS", nuts(optimizer="COBYQA"), FitError, "optimizer"),
    ("reml=True for NUTS", nuts(reml=True), FitError, "reml"),
    ("REML for a binomial model", lambda: hl.Model(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", hl.datasets.load("cbpp"),
        family="binomial").fit("reml"), FitError, "REML is defined for Gaussian models only"),
    ("unknown prior family", lambda: hl.Prior("gaussian", sigma=1.0), PriorError, "gaussian"),
    ("unknown prior parameter", lambda: hl.Prior("normal", mu=0.0, sd=1.0), PriorError, "sd"),
    ("missing prior parameter", lambda: hl.Prior("normal", mu=0.0), PriorError, "sigma"),
    ("non-numeric prior parameter", lambda: hl.Prior("normal", mu=0.0, sigma="wide"), PriorError,
     "wide"),
    ("negative prior sd", model(priors={"Days": hl.Prior("normal", mu=0.0, sigma=-1.0)}),
     PriorError, "sigma=-1"),
    ("infinite prior scale", model(priors={"sigma": hl.Prior("half_normal", sigma=np.inf)}),
     PriorError, "sigma=inf"),
    ("lkj eta = 0", model(priors={"cor": hl.Prior("lkj", eta=0.0)}), PriorError, "eta=0"),
    ("lkj eta negative", model(priors={"cor": hl.Prior("lkj", eta=-2.0)}), PriorError, "eta=-2"),
    ("normal prior on an SD", model(priors={"sd": hl.Prior("normal", mu=0.0, sigma=1.0)}),
     PriorError, "sd_Subject"),
    ("prior value not a Prior", model(priors={"sigma": 3.0}), PriorError, "3.0"),
    # ------------------------------------------------------------ comparisons
    ("compare with one fit", lambda: hl.compare({"a": fit()}), InputTypeError, "at least two"),
    ("compare of point estimates", lambda: hl.compare({"a": fit("sleep_int"), "b": fit()}),
     FitError, "posterior draws"),
]


def test_catalogue_is_large_and_distinct():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 125


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_our_exception_naming_the_culprit(case):
    _, call, error, culprit = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        with pytest.raises(error) as info:
            call()
    assert culprit in str(info.value), str(info.value)
    # every class is a hierlm error (catchable as one) and is raised as such,
    # not re-raised from inside a numerical library without a message of ours
    assert isinstance(info.value, HierlmError)
    assert str(info.value).strip()


def test_predict_with_wrongly_typed_column_leaves_the_model_usable():
    """formulaic used to rewrite the frozen spec in place on such data (now rejected first)."""
    result = hl.Model(FORMULA, SLEEP).fit()
    before = result.predict(SLEEP)
    with pytest.raises(DataError):
        result.predict(with_column(SLEEP, Days=lambda d: d["Days"].astype(str)))
    np.testing.assert_array_equal(result.predict(SLEEP), before)


def test_unused_category_of_a_grouping_factor_is_dropped_not_an_error():
    """An empty level (declared category without rows) is dropped, as lme4's model frame does."""
    data = with_column(SLEEP, Subject=lambda d: pd.Categorical(
        d["Subject"], categories=[*d["Subject"].cat.categories, "ghost"]))
    model_ = hl.Model(FORMULA, data)
    assert "ghost" not in model_.design.blocks[0].levels
    assert model_.random_terms[0].n_levels == 18


@pytest.mark.slow
def test_compare_of_bayesian_fits_on_different_data_is_refused():
    settings = {"draws": 100, "tune": 100, "chains": 1, "progressbar": False, "random_seed": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        full = hl.Model(FORMULA, SLEEP).fit("nuts", **settings)
        half = hl.Model(FORMULA, SLEEP.iloc[:150]).fit("nuts", **settings)
        shifted = hl.Model(FORMULA, SLEEP.assign(Reaction=SLEEP["Reaction"] + 1.0)).fit(
            "nuts", **settings)
        with pytest.raises(DataError, match="'b' has 150"):
            hl.compare({"a": full, "b": half})
        with pytest.raises(DataError, match="different responses"):
            hl.compare({"a": full, "b": shifted})
