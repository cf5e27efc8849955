"""Save and load fits (hierlm.io): the loaded fit gives the same answers, without pickle.

ML/REML fits are restored at the saved theta through the kernel's solution,
not re-optimised, and the data round-trip exactly (netCDF keeps float64 bits,
levels and dtypes come from the JSON schema), so summaries and predictions
are compared for exact equality, not within a tolerance.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierlm as hl
from hierlm.errors import FitError, IncompatibleFileError, InputTypeError
from hierlm.io import FORMAT_VERSION, load_fit, save_fit


def _fit(formula, data, method="reml", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return hl.Model(formula, data, **kw).fit(method=method)


def _odd_frame() -> pd.DataFrame:
    """Every kind of column the saver handles, a string index and missing rows."""
    rng = np.random.default_rng(7)
    n = 90
    g = rng.integers(0, 9, n)
    frame = pd.DataFrame({
        "y": rng.normal(size=n) + g * 0.3,
        "x": rng.normal(size=n),
        "count": pd.array(rng.integers(0, 5, n), dtype="Int64"),
        "flag": rng.random(n) < 0.5,
        "g": pd.Categorical([f"lvl {i}" for i in g],
                            categories=[f"lvl {i}" for i in range(9)] + ["unused"]),
        "dose": pd.Categorical(rng.choice(["low", "mid", "high"], n),
                               categories=["low", "mid", "high"], ordered=True),
        "site": np.array(["Zürich", "b,c", "d\"e"], dtype=object)[rng.integers(0, 3, n)],
        "extra": np.arange(n),  # not used by the model: not saved
    }, index=pd.Index([f"r{i}" for i in range(n)], name="rowid"))
    frame.loc[frame.index[[3, 17]], "y"] = np.nan  # dropped by na_action="omit"
    return frame


MODELS = {
    "sleep_slope_reml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "reml", {}),
    "sleep_uncorr_ml": ("Reaction ~ Days + (Days || Subject)", "sleepstudy", "ml", {}),
    "machines_reference": ("score ~ Machine + (1 | Worker) + (1 | Worker:Machine)", "Machines",
                           "reml", {"reference": {"Machine": "B"}}),
    "pastes_nested": ("strength ~ 1 + (1 | batch/cask)", "Pastes", "reml", {}),
    "penicillin_crossed": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", "ml", {}),
    "log_response": ("log(Reaction) ~ Days + (1 | Subject)", "sleepstudy", "reml", {}),
    "dyestuff2_singular": ("Yield ~ 1 + (1 | Batch)", "Dyestuff2", "reml", {}),
    "odd_columns": ("y ~ x + count + flag + dose + site + (1 | g)", None, "reml", {}),
}


def _data(name):
    return _odd_frame() if name is None else hl.datasets.load(name)


@pytest.fixture(scope="module", params=sorted(MODELS))
def saved(request, tmp_path_factory):
    formula, dataset, method, kw = MODELS[request.param]
    data = _data(dataset)
    fit = _fit(formula, data, method, **kw)
    path = save_fit(fit, tmp_path_factory.mktemp("fits") / request.param)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading must not warn (no refit, no dropped rows)
        loaded = load_fit(path)
    return fit, loaded, data, path


def test_loaded_fit_has_identical_summaries(saved):
    fit, loaded, _, _ = saved
    assert type(loaded) is type(fit)
    assert loaded.method == fit.method
    pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.varcorr(), fit.varcorr(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.ranef(), fit.ranef(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.coef(), fit.coef(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.confint(), fit.confint(), check_exact=True)
    np.testing.assert_array_equal(loaded.theta, fit.theta)
    assert loaded.loglik == fit.loglik and loaded.sigma == fit.sigma
    assert loaded.is_singular == fit.is_singular
    assert str(loaded.summary()) == str(fit.summary())


def test_loaded_fit_predicts_identically(saved):
    fit, loaded, data, _ = saved
    np.testing.assert_array_equal(loaded.fitted(), fit.fitted())
    np.testing.assert_array_equal(loaded.residuals(), fit.residuals())
    new = fit.model.data.iloc[::3]
    for include_random in (True, False):
        np.testing.assert_array_equal(loaded.predict(new, include_random=include_random),
                                      fit.predict(new, include_random=include_random))


def test_model_and_record_are_restored(saved):
    fit, loaded, _, _ = saved
    old, new = fit.model, loaded.model
    assert (new.formula, new.family, new.na_action) == (old.formula, old.family, old.na_action)
    assert dict(new.spec.reference) == dict(old.spec.reference)
    variables = old.spec.variables()
    pd.testing.assert_frame_equal(new.data, old.data[variables], check_exact=True)
    np.testing.assert_array_equal(new.design.row_index, old.design.row_index)
    for name in ("optimizer", "criterion", "value", "n_evaluations", "converged", "message",
                 "boundary", "seconds"):
        assert getattr(loaded.fit_record, name) == getattr(fit.fit_record, name)
    for name in ("start", "end", "gradient"):
        np.testing.assert_array_equal(getattr(loaded.fit_record, name),
                                      getattr(fit.fit_record, name))


def test_folder_holds_json_and_netcdf_only(saved):
    _, _, _, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["data.nc", "hierlm.json"]
    manifest = json.loads((path / "hierlm.json").read_text())
    assert manifest["format"] == "hierlm-fit"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["hierlm_version"] == hl.__version__
    with xr.open_dataset(path / "data.nc", engine="h5netcdf") as stored:
        assert all(np.issubdtype(v.dtype, np.number) for v in stored.data_vars.values())


def test_load_does_not_reoptimise(tmp_path, monkeypatch):
    fit = _fit("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))
    save_fit(fit, tmp_path / "f")

    def forbidden(*args, **kwargs):
        raise AssertionError("load_fit ran the optimiser")

    monkeypatch.setattr("hierlm.lmm.fit.minimize_theta", forbidden)
    monkeypatch.setattr("hierlm.lmm.fit.fit_lmm", forbidden)
    loaded = load_fit(tmp_path / "f")
    np.testing.assert_array_equal(loaded.theta, fit.theta)


def test_refuses_incompatible_format_version(tmp_path):
    fit = _fit("Yield ~ 1 + (1 | Batch)", hl.datasets.load("Dyestuff"))
    path = save_fit(fit, tmp_path / "f")
    manifest = json.loads((path / "hierlm.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest["hierlm_version"] = "9.9.9"
    (path / "hierlm.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleFileError) as info:
        load_fit(path)
    message = str(info.value)
    assert f"format version {FORMAT_VERSION + 1}" in message and "9.9.9" in message
    assert f"reads format versions {', '.join(map(str, range(1, FORMAT_VERSION + 1)))}" in message


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "something-else"}),
                                     json.dumps([1, 2])])
def test_refuses_files_that_are_not_saved_fits(tmp_path, content):
    (tmp_path / "hierlm.json").write_text(content)
    with pytest.raises(IncompatibleFileError, match="hierlm"):
        load_fit(tmp_path)
    with pytest.raises(IncompatibleFileError, match="no hierlm.json"):
        load_fit(tmp_path / "missing")


def test_overwrite_rules(tmp_path):
    fit = _fit("Yield ~ 1 + (1 | Batch)", hl.datasets.load("Dyestuff"))
    path = save_fit(fit, tmp_path / "f")
    with pytest.raises(FitError, match="overwrite=True"):
        save_fit(fit, path)
    other = _fit("Yield ~ 1 + (1 | Batch)", hl.datasets.load("Dyestuff"), method="ml")
    save_fit(other, path, overwrite=True)
    assert load_fit(path).method == "ml"
    (tmp_path / "mine").mkdir()
    with pytest.raises(FitError, match="not a saved hierlm fit"):
        save_fit(fit, tmp_path / "mine", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "mine"]  # no staging left


def test_refuses_fits_without_a_model_and_non_fits(tmp_path):
    from hierlm.lmm import fit_lmm

    model = hl.Model("Yield ~ 1 + (1 | Batch)", hl.datasets.load("Dyestuff"))
    with pytest.raises(InputTypeError, match="hierlm.Model"):
        save_fit(fit_lmm(model.design), tmp_path / "a")
    with pytest.raises(InputTypeError, match="DataFrame"):
        save_fit(pd.DataFrame(), tmp_path / "b")


@pytest.mark.parametrize("column", ["naive", "zoned", "span"])
def test_time_columns_round_trip(tmp_path, column):
    data = hl.datasets.load("Dyestuff")
    day = pd.to_timedelta(data["Batch"].cat.codes.to_numpy(), unit="D")
    data["naive"] = pd.Timestamp("2024-01-01") + day
    data["zoned"] = pd.Timestamp("2024-03-30 12:00", tz="Europe/Zurich") + day
    data["span"] = day
    fit = _fit(f"Yield ~ 1 + (1 | {column})", data)
    loaded = load_fit(save_fit(fit, tmp_path / "f"))
    pd.testing.assert_frame_equal(loaded.model.data, fit.model.data[["Yield", column]])
    pd.testing.assert_frame_equal(loaded.ranef(), fit.ranef(), check_exact=True)


def test_unusable_column_is_refused_before_fitting():
    data = hl.datasets.load("Dyestuff")
    data["tuples"] = [(int(c), "a") for c in data["Batch"].cat.codes.to_numpy()]
    with pytest.raises(hl.errors.DataError, match="'tuples'"):
        _fit("Yield ~ 1 + (1 | tuples)", data)


@pytest.mark.parametrize("column", ["months"])
def test_unsupported_column_type_is_named(tmp_path, column):
    data = hl.datasets.load("Dyestuff")
    codes = data["Batch"].cat.codes.to_numpy()
    data["months"] = pd.period_range("2020-01", periods=6, freq="M")[codes]
    fit = _fit(f"Yield ~ 1 + (1 | {column})", data)
    with pytest.raises(InputTypeError, match=repr(column)):
        save_fit(fit, tmp_path / "f")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# --------------------------------------------------------------------- Bayesian
def _bayes_fits():
    data = hl.datasets.load("sleepstudy")
    model = hl.Model("Reaction ~ Days + (Days | Subject)", data,
                     priors={"sigma": hl.Prior("half_normal", sigma=50.0), "cor": hl.Prior("lkj", eta=2.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return {"map": model.fit("map"),
                "nuts": model.fit("nuts", draws=100, tune=100, chains=2, random_seed=3,
                                  progressbar=False)}


@pytest.fixture(scope="module")
def bayes_fits():
    return _bayes_fits()


@pytest.mark.parametrize("method", ["map", pytest.param("nuts", marks=pytest.mark.slow)])
def test_bayesian_fit_round_trip(bayes_fits, method, tmp_path):
    from hierlm.results import predict

    fit = bayes_fits[method]
    path = save_fit(fit, tmp_path / method)
    assert sorted(p.name for p in path.iterdir()) == ["data.nc", "hierlm.json", "idata.nc"]
    loaded = load_fit(path)
    assert (loaded.method, loaded.formulation, loaded.sampler, loaded.seed) == (
        fit.method, fit.formulation, fit.sampler, fit.seed)
    assert loaded.settings == fit.settings and loaded.timing == fit.timing
    assert loaded.priors.rows == fit.priors.rows  # the fit's priors, not re-derived defaults
    assert loaded.diagnostics == fit.diagnostics
    assert set(loaded.info) == set(fit.info)
    for key, value in fit.info.items():
        np.testing.assert_equal(loaded.info[key], value)  # NaN == NaN here
    assert set(loaded.idata.groups) == set(fit.idata.groups)
    for group in fit.idata.groups:
        xr.testing.assert_identical(loaded.idata[group].to_dataset(), fit.idata[group].to_dataset())
    pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.varcorr(), fit.varcorr(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.ranef(), fit.ranef(), check_exact=True)
    new = fit.model.data.iloc[::7].assign(Subject=lambda d: d["Subject"].astype(str))
    for include_random in (True, False):
        expected = predict(fit, fit.model.new_design(new), include_random=include_random, seed=5)
        got = predict(loaded, loaded.model.new_design(new), include_random=include_random, seed=5)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    if method == "nuts":  # the PyMC model is rebuilt with the same variables
        assert sorted(v.name for v in loaded.pymc_model.free_RVs) == sorted(
            v.name for v in fit.pymc_model.free_RVs)
    else:
        assert loaded.pymc_model is None
    # saving the loaded fit again gives the same file contents
    again = save_fit(loaded, tmp_path / "again")
    first = json.loads((path / "hierlm.json").read_text())
    second = json.loads((again / "hierlm.json").read_text())
    assert first == second


def test_fit_save_method_and_top_level_load_fit_round_trip(tmp_path):
    import hierlm as hl

    fit = hl.Model("Reaction ~ Days + (1 | Subject)", hl.datasets.load("sleepstudy")).fit(method="ml")
    path = fit.save(tmp_path / "saved")
    loaded = hl.load_fit(path)
    assert loaded.loglik == fit.loglik
    pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef())


def test_saved_folder_has_an_ordinary_mode(tmp_path):
    import os

    fit = _fit("Yield ~ 1 + (1 | Batch)", hl.datasets.load("Dyestuff"))
    mask = os.umask(0o022)
    try:
        path = save_fit(fit, tmp_path / "f")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o755


# ------------------------------------------------------- Bayesian GLMMs (issue 14)
@pytest.fixture(scope="module")
def binomial_bayes_fits():
    data = hl.datasets.cbpp()
    model = hl.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data,
                     family="binomial", link="probit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return {"map": model.fit("map"),
                "nuts": model.fit("nuts", draws=60, tune=60, chains=1, random_seed=4,
                                  progressbar=False)}


@pytest.mark.parametrize("method", ["map", pytest.param("nuts", marks=pytest.mark.slow)])
def test_bayesian_glmm_round_trip_keeps_the_family(binomial_bayes_fits, method, tmp_path):
    fit = binomial_bayes_fits[method]
    path = fit.save(tmp_path / method)
    manifest = json.loads((path / "hierlm.json").read_text())
    assert (manifest["fit"]["family"], manifest["fit"]["link"]) == ("binomial", "probit")
    loaded = load_fit(path)
    assert loaded.family == fit.family and loaded.family.link.name == "probit"
    assert loaded.model.family == fit.model.family
    pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef(), check_exact=True)
    for kind in ("response", "link"):  # the inverse link is the saved one (probit, not logit)
        pd.testing.assert_frame_equal(loaded.predict(type=kind), fit.predict(type=kind),
                                      check_exact=True)
    assert loaded.draws().family == fit.draws().family


def test_bayesian_glmm_with_a_changed_family_is_refused(binomial_bayes_fits, tmp_path):
    path = binomial_bayes_fits["map"].save(tmp_path / "map")
    manifest = json.loads((path / "hierlm.json").read_text())
    manifest["fit"]["family"] = "poisson"  # no checksum covers the manifest's fit record
    (path / "hierlm.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleFileError, match="family 'poisson' differs from the model's 'binomial'"):
        load_fit(path)


def _cbpp_with_gaps() -> pd.DataFrame:
    """cbpp with a proportion response, a log-exposure column and two rows dropped by na_action."""
    data = hl.datasets.cbpp().assign(rate=lambda d: d["incidence"] / d["size"],
                                     logsize=lambda d: np.log(d["size"]))
    data.loc[data.index[[5, 30]], "rate"] = np.nan
    data.loc[data.index[[5, 30]], "incidence"] = np.nan
    return data


def _row_argument_fits() -> dict[str, tuple[str, dict, str]]:
    data = _cbpp_with_gaps()
    size, logsize = data["size"].to_numpy(float), data["logsize"].to_numpy(float)
    sleep = hl.datasets.load("sleepstudy").assign(w=lambda d: 1.0 + (d["Days"] % 3) / 2)
    return {
        "glmm_weights_array": ("rate ~ period + (1 | herd)", {"data": data, "family": "binomial",
                                                               "weights": size}, "ml"),
        "glmm_offset_array": ("incidence ~ period + (1 | herd)", {"data": data, "family": "poisson",
                                                                   "offset": logsize}, "ml"),
        "glmm_offset_column": ("incidence ~ period + (1 | herd)", {"data": data, "family": "poisson",
                                                                    "offset": "logsize"}, "ml"),
        "map_weights_array": ("rate ~ period + (1 | herd)", {"data": data, "family": "binomial",
                                                              "weights": size}, "map"),
        "reml_weights_column": ("Reaction ~ Days + (1 | Subject)", {"data": sleep, "weights": "w"},
                                "reml"),
        "reml_weights_array": ("Reaction ~ Days + (1 | Subject)",
                               {"data": sleep, "weights": sleep["w"].to_numpy()}, "reml"),
    }


@pytest.mark.parametrize("case", list(_row_argument_fits()))
def test_fits_with_weights_and_offset_arguments_round_trip(case, tmp_path):
    """weights=/offset= columns and arrays (the rows dropped by na_action left out) are saved with
    the model: the loaded model has the same prior weights and offsets, the fit the same numbers."""
    formula, kwargs, method = _row_argument_fits()[case]
    data = kwargs.pop("data")
    fit = _fit(formula, data, method=method, **kwargs)
    path = fit.save(tmp_path / case)
    manifest = json.loads((path / "hierlm.json").read_text())
    name = "weights" if "weights" in kwargs else "offset"
    value = kwargs[name]
    assert manifest["model"][name] == ({"column": value} if isinstance(value, str)
                                       else {"array": f"__{name}_array__"})
    loaded = load_fit(path)
    assert loaded.model.design.n == fit.model.design.n == len(data) - (2 if "rate" in data else 0)
    np.testing.assert_array_equal(loaded.model.design.weights, fit.model.design.weights)
    np.testing.assert_array_equal(loaded.model.design.offset, fit.model.design.offset)
    assert loaded.model.design.has_offset is (name == "offset")
    assert loaded.model.design.has_weights is (name == "weights" or kwargs.get("family") == "binomial")
    pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.varcorr(), fit.varcorr(), check_exact=True)
    if method != "map":
        assert loaded.loglik == fit.loglik
    # the saved arrays are no column of the rebuilt model's data
    assert not any(str(c).endswith("_array__") for c in loaded.model.data.columns)


def test_a_changed_weights_array_is_caught_and_a_clashing_column_refused(tmp_path):
    data = _cbpp_with_gaps()
    fit = _fit("rate ~ period + (1 | herd)", data, method="ml", family="binomial",
               weights=data["size"].to_numpy(float))
    path = fit.save(tmp_path / "w")
    manifest = json.loads((path / "hierlm.json").read_text())
    manifest["model"]["weights"] = {"array": "rate"}  # the manifest is not under a checksum
    (path / "hierlm.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleFileError, match="weights= array"):
        load_fit(path)
    manifest["model"]["weights"] = {"array": "__weights_array__", "column": "size"}
    (path / "hierlm.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleFileError, match="model.weights"):
        load_fit(path)
    clash = data.assign(__offset_array__=1.0)
    fit = _fit("incidence ~ period + (1 | herd)", clash, method="ml", family="poisson",
               offset=data["logsize"].to_numpy(float))
    with pytest.raises(InputTypeError, match="__offset_array__"):
        fit.save(tmp_path / "clash")
