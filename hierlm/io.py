"""Save a fit to a folder and load it back, without pickle.

A saved fit is a folder::

    fit/
      hierlm.json   format name and version, hierlm version, the Model's
                    formula and options (priors, na_action, reference), the
                    fit's options and its estimates (ML/REML: theta and the
                    optimiser's record), the data's column schema
      data.nc       the model's data (netCDF via h5netcdf), one numeric
                    variable per column: numbers as they are, text and
                    categorical columns as integer codes whose levels, order
                    and dtypes are recorded in hierlm.json
      idata.nc      Bayesian fits only: the ArviZ DataTree (netCDF groups)

Writing is :func:`hierlm.core.store.save_fit` (re-exported here): each result
class says what is stored through its ``_state()``. Loading rebuilds the
:class:`~hierlm.Model` from formula, options and data, then restores the result:

* ML/REML: the :class:`~hierlm.lmm.LmmResult` at the saved theta, evaluated by
  the kernel's penalised least-squares solution at that theta; the optimiser
  is not run again, so every summary (fixed effects, variance components,
  conditional modes, Satterthwaite's df) and every prediction is the same.
* Bayesian: the DataTree as saved; the PyMC model is rebuilt from the Model
  (it is code, not data) and the diagnostics are recomputed from the draws.

Only the columns the model reads (and the row index) are saved. Every file
names its format version; :func:`load_fit` refuses versions it cannot read
with :class:`~hierlm.errors.IncompatibleFileError`.

A saved fit is untrusted input. Nothing read from it is evaluated as code: the
formula passes the formula parser's allow-list of transforms
(:mod:`hierlm.formula.safety`) before anything is evaluated, the manifest's
shape, kinds and dtypes are checked (:mod:`hierlm.io_validation`), the data
files must match the SHA-256 checksums the manifest records, theta must lie
within its bounds, and the saved criterion must equal the one recomputed at
the saved theta. A changed, truncated or corrupted file gives an
``IncompatibleFileError`` that names the file and the problem.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierlm.core.store import (
    DATA,
    FORMAT_NAME,
    FORMAT_VERSION,
    IDATA,
    INDEX,
    MANIFEST,
    ROW_ARRAY_COLUMNS,
    engine_file,
    save_fit,
)
from hierlm.core.version import __version__
from hierlm.errors import HierlmError, HierlmWarning, IncompatibleFileError
from hierlm.io_validation import check_checksums, check_dtype_name, check_manifest
from hierlm.model import Model

__all__ = ["save_fit", "load_fit", "FORMAT_NAME", "FORMAT_VERSION"]

# Version 1 files (no checksums) are still read, with a warning that their integrity is unchecked;
# version 2 files have no weights=/offset= arguments (fits with them were not saved).
_READABLE_VERSIONS = (1, 2, 3)
_MANIFEST, _DATA, _IDATA, _INDEX = MANIFEST, DATA, IDATA, INDEX


# ------------------------------------------------------------------ JSON values
_ARRAY_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                           "uint64", "float16", "float32", "float64"})


def _from_json(value: Any) -> Any:
    """Inverse of :func:`_to_json`."""
    if isinstance(value, dict):
        if "__prior__" in value:
            from hierlm.bayes.priors import Prior

            params = value.get("params")
            if not isinstance(value["__prior__"], str) or not isinstance(params, dict):
                raise IncompatibleFileError(f"A saved prior is malformed: {value!r}.")
            try:
                return Prior(value["__prior__"], **params)
            except (HierlmError, TypeError) as error:
                raise IncompatibleFileError(f"A saved prior is invalid: {error}") from None
        if "__ndarray__" in value:
            dtype = check_dtype_name(value.get("dtype"), "a saved array")
            if dtype not in _ARRAY_DTYPES:
                raise IncompatibleFileError(f"A saved array has dtype {dtype!r}; arrays are numeric.")
            try:
                array = np.array(_from_json(value["__ndarray__"]), dtype=dtype)
                return array.reshape(value["shape"])
            except (TypeError, ValueError) as error:
                raise IncompatibleFileError(f"A saved array is malformed: {error}") from None
        if "__float__" in value:
            if value["__float__"] not in ("nan", "inf", "-inf"):
                raise IncompatibleFileError(f"A saved number is malformed: {value!r}.")
            return float(value["__float__"])
        if "__tuple__" in value:
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


# ------------------------------------------------------------------- the data
def _decode_column(values: np.ndarray, schema: dict[str, Any]) -> Any:
    kind = schema["kind"]
    if kind in ("numeric", "bool"):
        dtype = pd.api.types.pandas_dtype(schema["dtype"])
        values = values.astype(bool) if kind == "bool" else values
        if isinstance(dtype, np.dtype):
            return values.astype(dtype)
        return pd.array(values).astype(dtype)  # nullable extension dtype (Int64, Float64...)
    if kind == "time":
        dtype = pd.api.types.pandas_dtype(schema["dtype"])
        if dtype.kind == "m":
            return pd.array(values.view(f"timedelta64[{schema['unit']}]"))
        naive = pd.array(values.view(f"datetime64[{schema['unit']}]"))
        tz = getattr(dtype, "tz", None)
        return naive if tz is None else pd.Series(naive).dt.tz_localize("UTC").dt.tz_convert(tz).array
    if kind == "categorical":
        categories = pd.Index(schema["levels"])
        if len(categories):
            categories = categories.astype(schema["levels_dtype"])
        dtype = pd.CategoricalDtype(categories, ordered=schema["ordered"])
        return pd.Categorical.from_codes(values.astype(np.int64), dtype=dtype)
    if kind == "text":
        levels = np.empty(len(schema["levels"]) + 1, dtype=object)
        levels[:-1] = schema["levels"]
        levels[-1] = None  # code -1: missing
        return pd.array(levels[values.astype(np.int64)], dtype=schema["dtype"])
    raise IncompatibleFileError(f"Unknown column kind {kind!r} in the saved data.")


def _read_data(path: Path, schema: list[dict[str, Any]]) -> pd.DataFrame:
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="h5netcdf") as stored:
            arrays = {entry["variable"]: np.asarray(stored[entry["variable"]].values)
                      for entry in schema}
        index_entry, columns = schema[0], schema[1:]
        index = pd.Index(_decode_column(arrays[index_entry["variable"]], index_entry),
                         name=index_entry.get("index_name"))
        return pd.DataFrame({entry["name"]: _decode_column(arrays[entry["variable"]], entry)
                             for entry in columns}, index=index)
    except IncompatibleFileError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to read untrusted bytes is the file's
        raise IncompatibleFileError(
            f"{str(path)!r} cannot be read as the fit's data ({type(error).__name__}: {error}); "
            "it is damaged or does not belong to this manifest."
        ) from None


# ---------------------------------------------------------------- save / load
def load_fit(path: str | Path) -> Any:
    """Load a fit saved by :func:`save_fit`.

    Parameters
    ----------
    path : str or pathlib.Path
        The folder written by :func:`save_fit`.

    Returns
    -------
    LmmResult or BayesResult
        The fit, with its Model rebuilt from the saved formula, options and data.

    Raises
    ------
    IncompatibleFileError
        If ``path`` is not a saved hierlm fit or was written in a format
        version this hierlm cannot read.
    """
    folder = Path(path)
    manifest_path = folder / _MANIFEST
    if not manifest_path.is_file():
        raise IncompatibleFileError(f"{str(folder)!r} is not a saved hierlm fit (no {_MANIFEST}).")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise IncompatibleFileError(f"{str(manifest_path)!r} is not valid JSON: {error}") from None
    found = raw.get("format") if isinstance(raw, dict) else None
    if found != FORMAT_NAME:
        raise IncompatibleFileError(f"{str(folder)!r} is not a saved hierlm fit (format {found!r}, "
                                    f"expected {FORMAT_NAME!r}).")
    version = raw.get("format_version")
    if isinstance(version, bool) or version not in _READABLE_VERSIONS:
        raise IncompatibleFileError(
            f"{str(folder)!r} was written in fit-file format version {version!r} by hierlm "
            f"{raw.get('hierlm_version', '?')}; this hierlm ({__version__}) reads "
            f"format versions {', '.join(map(str, _READABLE_VERSIONS))}. Load it with a matching "
            "hierlm version and refit, or save it again."
        )
    try:
        manifest = _from_json(raw)
    except IncompatibleFileError as error:
        raise IncompatibleFileError(f"{str(manifest_path)!r}: {error}") from None
    check_manifest(manifest, manifest_path)
    if version >= 2:
        checksums = manifest.get("checksums")
        needed = (_DATA, _IDATA) if manifest["kind"] == "bayes" else (_DATA,)
        missing = [name for name in needed if not isinstance(checksums, dict) or name not in checksums]
        if missing:
            raise IncompatibleFileError(f"{str(manifest_path)!r} records no checksum of "
                                        f"{', '.join(missing)}; the manifest was changed.")
        check_checksums(folder, checksums)
    else:
        warnings.warn(f"{str(folder)!r} was saved in format version 1, which records no "
                      "checksums: its data files cannot be checked for changes. Save it again.",
                      HierlmWarning, stacklevel=2)
    data = _read_data(folder / _DATA, manifest["data"])
    spec = manifest["model"]
    link = manifest["fit"].get("link") if manifest["kind"] in ("glmm", "bayes") else None
    data, arguments = _row_arguments(data, spec, manifest_path)
    if manifest.get("engine") is not None:  # engine data: the build's answers replayed, no rows
        data, arguments = _engine_answers(folder, manifest, manifest_path), {"progress": False}
    try:
        model = Model(spec["formula"], data, family=spec["family"], link=link, priors=spec["priors"],
                      na_action=spec["na_action"], reference=spec["reference"] or None,
                      residual=spec.get("residual"), variance=spec.get("variance"), **arguments)
    except HierlmError as error:
        raise IncompatibleFileError(
            f"{str(manifest_path)!r}: the saved model cannot be rebuilt: {error}") from None
    if manifest["kind"] == "lmm":
        return _lmm_restore(model, manifest["fit"], manifest_path)
    if manifest["kind"] == "glmm":
        return _glmm_restore(model, manifest["fit"], manifest_path)
    return _bayes_restore(model, manifest["fit"], folder / _IDATA)


def _engine_answers(folder: Path, manifest: dict[str, Any], manifest_path: Path) -> Any:
    """The saved answers of an engine-data fit as a source that replays them (no SQL is run)."""
    from hierlm.sources.replay import ReplaySource

    engine = manifest["engine"]
    try:
        answers_list = engine["answers"]
        checksums = manifest.get("checksums") or {}
        answers = {}
        for k, entry in enumerate(answers_list):
            if engine_file(k) not in checksums:
                raise IncompatibleFileError(f"no checksum of {engine_file(k)}; the manifest was changed.")
            answers[str(entry["sql"])] = _read_data(folder / engine_file(k), entry["data"])
        saved = engine["residual_quantiles"]
        quantiles = {float(p): float(v) for p, v in zip(saved["probs"], saved["values"], strict=True)}
        return ReplaySource(str(engine["kind"]), bool(engine["partitioned"]),
                            {str(k): str(v) for k, v in engine["schema"].items()}, answers,
                            {str(k): str(v) for k, v in engine["missing"].items()}, quantiles)
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise IncompatibleFileError(f"{str(manifest_path)!r}: the saved engine summary is "
                                    f"incomplete ({type(error).__name__}: {error}).") from None


def _row_arguments(data: pd.DataFrame, spec: dict[str, Any], manifest_path: Path
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The model's data without the saved ``weights=``/``offset=`` arrays, and those arguments.

    A column argument is passed by name; an array was saved as a data column
    (:data:`hierlm.core.store.ROW_ARRAY_COLUMNS`) and is passed as the array.
    """
    arguments: dict[str, Any] = {}
    for name, column in ROW_ARRAY_COLUMNS.items():
        record = spec.get(name)
        if record is None:
            continue
        if "array" in record:
            if (record["array"] != column or column not in data.columns
                    or not pd.api.types.is_float_dtype(data[column])):
                raise IncompatibleFileError(f"{str(manifest_path)!r}: the saved {name}= array "
                                            f"(data column {column!r}) is missing or not numeric.")
            arguments[name] = data[column].to_numpy(dtype=float)
            data = data.drop(columns=column)
        else:
            arguments[name] = record["column"]
    return data, arguments


# ------------------------------------------------------------------ ML / REML
# Relative agreement of the saved and recomputed ML/REML criterion (same data, same kernel:
# they differ only by floating-point reassociation across BLAS builds).
_CRITERION_TOLERANCE = 1e-8
# The gradient is checked to 1e-7 times the criterion's size (10 x the tolerance above).


def _lmm_restore(model: Any, state: dict[str, Any], manifest_path: Path) -> Any:
    from hierlm.lmm.fit import FitRecord, blas_threads, fit_lmm, projected_gradient
    from hierlm.lmm.parameters import criterion_for
    from hierlm.lmm.result import LmmResult

    record = dict(state["record"])
    record["boundary"] = tuple(record["boundary"])
    for name in ("start", "end", "gradient"):
        record[name] = np.asarray(record[name], dtype=float)
    theta = np.asarray(state["theta"], dtype=float)
    with blas_threads(state["threads"]):
        kernel = criterion_for(model.design)
        if theta.shape != kernel.lower.shape:
            raise IncompatibleFileError(
                f"{str(manifest_path)!r}: the saved theta has {theta.size} entries but the rebuilt "
                f"model has {kernel.lower.size}; the file does not match its data.")
        below = theta < kernel.lower
        if below.any():
            raise IncompatibleFileError(
                f"{str(manifest_path)!r}: theta entry {int(np.argmax(below))} is {theta[below][0]!r}, "
                "below its lower bound 0 (a relative standard deviation); the file was changed.")
        if not np.array_equal(theta, record["end"]):
            raise IncompatibleFileError(
                f"{str(manifest_path)!r}: the saved theta differs from the optimiser record's end "
                "point; the file was changed.")
        try:
            recomputed, gradient = kernel.value_and_gradient(theta, reml=bool(state["reml"]))
            gradient = projected_gradient(theta, gradient, kernel.lower)
        except HierlmError as error:
            raise IncompatibleFileError(
                f"{str(manifest_path)!r}: the criterion cannot be evaluated at the saved theta: "
                f"{error}") from None
        saved = float(record["value"])
        if not abs(recomputed - saved) <= _CRITERION_TOLERANCE * max(1.0, abs(saved)):
            raise IncompatibleFileError(
                f"{str(manifest_path)!r}: the saved criterion {saved!r} differs from "
                f"{recomputed!r} recomputed at the saved theta on the saved data; the file "
                "was changed or does not match its data.")
        saved_gradient = np.asarray(record["gradient"], dtype=float)
        if saved_gradient.shape != gradient.shape or not np.allclose(
                gradient, saved_gradient, rtol=0.0,
                atol=_CRITERION_TOLERANCE * 10 * max(1.0, abs(saved))):
            raise IncompatibleFileError(
                f"{str(manifest_path)!r}: the saved gradient {saved_gradient!r} differs from "
                f"{gradient!r} recomputed at the saved theta; the file was changed.")
        return LmmResult(design=model.design, model=model, kernel=kernel, theta=theta,
                         reml=bool(state["reml"]), fit_record=FitRecord(**record),
                         threads=state["threads"], fitter=fit_lmm)


# ---------------------------------------------------------------------- GLMM
def _glmm_restore(model: Any, state: dict[str, Any], manifest_path: Path) -> Any:
    """The GlmmResult at the saved estimates, its deviance recomputed and checked."""
    from hierlm.glmm.deviance import Deviance
    from hierlm.glmm.fit import fit_glmm
    from hierlm.glmm.optimum import GlmmOptimum
    from hierlm.glmm.pirls import GlmmProblem
    from hierlm.glmm.result import GlmmResult

    where = repr(str(manifest_path))
    theta = np.asarray(state["theta"], dtype=float)
    beta = np.asarray(state["beta"], dtype=float)
    dispersion = None if state["dispersion"] is None else float(state["dispersion"])
    family = model.family
    if family.name != state["family"] or family.link.name != state["link"]:
        raise IncompatibleFileError(f"{where}: the fit's family {state['family']}/{state['link']} "
                                    f"differs from the model's {family.describe()}.")
    if family.has_dispersion != (dispersion is not None) or (
            dispersion is not None and not (np.isfinite(dispersion) and dispersion > 0)):
        raise IncompatibleFileError(f"{where}: dispersion {dispersion!r} does not fit the "
                                    f"{family.name} family; the file was changed.")
    problem = GlmmProblem(model.design, family)
    lower = problem.structure.layout.lower
    if theta.shape != lower.shape or beta.shape != (model.design.p,):
        raise IncompatibleFileError(
            f"{where}: the saved theta/beta have {theta.size}/{beta.size} entries but the rebuilt "
            f"model has {lower.size}/{model.design.p}; the file does not match its data.")
    if np.any(theta < lower):
        raise IncompatibleFileError(f"{where}: theta entry {int(np.argmax(theta < lower))} is "
                                    "below its lower bound 0; the file was changed.")
    nagq = int(state["nagq"])
    deviance = Deviance(problem, nagq)
    x = np.concatenate([theta, beta, [] if dispersion is None else [np.log(dispersion)]])
    try:
        mode = problem.mode(theta, beta, dispersion)
        recomputed = deviance.value_of(mode, x)
    except HierlmError as error:
        raise IncompatibleFileError(f"{where}: the deviance cannot be evaluated at the saved "
                                    f"estimates: {error}") from None
    saved = float(state["deviance"])
    if not abs(recomputed - saved) <= 1e-6 * max(1.0, abs(saved)):
        raise IncompatibleFileError(
            f"{where}: the saved deviance {saved!r} differs from {recomputed!r} recomputed at the "
            "saved estimates on the saved data; the file was changed or does not match its data.")
    hessian = None if state["hessian"] is None else np.asarray(state["hessian"], dtype=float)
    optimum = GlmmOptimum(theta=theta, beta=beta, dispersion=dispersion, deviance=recomputed,
                          mode=mode, hessian=hessian,
                          vcov_beta=np.asarray(state["vcov_beta"], dtype=float),
                          vcov_source=state["vcov_source"], converged=bool(state["converged"]),
                          message=state["message"], evaluations=int(state["evaluations"]),
                          nagq=nagq)
    return GlmmResult(problem, optimum, model=model, fitter=fit_glmm)


# ------------------------------------------------------------------- Bayesian
def _bayes_restore(model: Any, state: dict[str, Any], idata_path: Path) -> Any:
    import xarray as xr

    from hierlm.bayes.build import build_model
    from hierlm.bayes.diagnostics import DiagnosticReport
    from hierlm.bayes.naming import block_names
    from hierlm.bayes.priors import PriorRow, PriorTable
    from hierlm.bayes.result import BayesResult, DeferredModel

    try:
        priors = PriorTable(tuple(PriorRow(**row) for row in state["priors"]))
        diagnostics = (None if state["diagnostics"] is None
                       else DiagnosticReport(**state["diagnostics"]))
    except TypeError as error:
        raise IncompatibleFileError(
            f"{str(idata_path.parent)!r}: the saved priors or diagnostics are malformed: {error}"
        ) from None
    try:
        with xr.open_datatree(idata_path, engine="h5netcdf") as stored:
            idata = stored.load()
    except Exception as error:  # noqa: BLE001 - any failure to read untrusted bytes is the file's
        raise IncompatibleFileError(
            f"{str(idata_path)!r} cannot be read as the fit's draws ({type(error).__name__}: "
            f"{error}); it is damaged or does not belong to this manifest.") from None
    # The PyMC model is code, not data: rebuilt on first use (NUTS fits carry it; MAP fits do not).
    pymc_model = (DeferredModel(lambda: build_model(model, priors, state["formulation"]).pymc_model)
                  if state["method"] == "nuts" else None)
    # the model was rebuilt with the saved link; its family must be the fit's (None: Gaussian,
    # also in files saved before the family was stored)
    family = model.family
    name = getattr(family, "name", "gaussian")
    if (state.get("family") or "gaussian") != name:
        raise IncompatibleFileError(
            f"{str(idata_path.parent)!r}: the fit's family {state.get('family') or 'gaussian'!r} "
            f"differs from the model's {name!r}; the file was changed.")
    return BayesResult(idata=idata, pymc_model=pymc_model, formulation=state["formulation"],
                       sampler=state["sampler"], method=state["method"], design=model.design,
                       priors=priors, names=block_names(model.design), timing=state["timing"],
                       seed=state["seed"], settings=state["settings"], diagnostics=diagnostics,
                       info=state["info"], model=model, family=family)
