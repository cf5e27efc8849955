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

Loading rebuilds the :class:`~hierlm.Model` from formula, options and data,
then restores the result:

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
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import FitError, HierlmError, HierlmWarning, IncompatibleFileError, InputTypeError
from hierlm.io_validation import check_checksums, check_dtype_name, check_manifest, file_checksum

__all__ = ["save_fit", "load_fit", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "hierlm-fit"
# Bump when a file written by this version cannot be read by the previous
# reader, or the reader can no longer read older files.
FORMAT_VERSION = 2
# Version 1 files (no checksums) are still read, with a warning that their integrity is unchecked.
_READABLE_VERSIONS = (1, 2)
_MANIFEST = "hierlm.json"
_DATA = "data.nc"
_IDATA = "idata.nc"
_INDEX = "__index__"


# ------------------------------------------------------------------ JSON values
def _to_json(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and Prior objects into plain JSON values."""
    from hierlm.bayes.priors import Prior

    if isinstance(value, Prior):
        return {"__prior__": value.family, "params": dict(value.params)}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _to_json(value.tolist()), "dtype": str(value.dtype),
                "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return _to_json(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v) for v in value]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise InputTypeError(f"Cannot save a value of type {type(value).__name__} ({value!r}) in a fit file.")


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
def _encode_column(name: str, series: pd.Series) -> tuple[np.ndarray, dict[str, Any]]:
    """A column as a numeric array plus the schema that restores it exactly."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        return (series.cat.codes.to_numpy(dtype=np.int32),
                {"kind": "categorical", "levels": _levels(name, categories),
                 "levels_dtype": str(categories.dtype), "ordered": bool(dtype.ordered)})
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        # integer ticks since the epoch (UTC for zone-aware times); NaT is the minimum int64
        return np.asarray(series.array.asi8), {"kind": "time", "dtype": str(dtype),
                                               "unit": str(series.dt.unit)}
    if pd.api.types.is_bool_dtype(dtype) and not series.isna().any():
        return series.to_numpy(dtype=np.int8), {"kind": "bool", "dtype": str(dtype)}
    if pd.api.types.is_numeric_dtype(dtype):
        if isinstance(dtype, np.dtype):
            return series.to_numpy(), {"kind": "numeric", "dtype": str(dtype)}
        # nullable extension dtypes (Int64, Float64): floats with NaN for missing
        return (series.to_numpy(dtype=float, na_value=np.nan),
                {"kind": "numeric", "dtype": str(dtype)})
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        return (codes.astype(np.int32),
                {"kind": "text", "levels": _levels(name, pd.Index(uniques)), "dtype": str(dtype)})
    raise InputTypeError(
        f"Cannot save column {name!r} of dtype {dtype}; hierlm saves numeric, boolean, text and "
        "categorical columns. Convert it (e.g. to text) before fitting."
    )


def _levels(name: str, index: pd.Index) -> list[Any]:
    levels = []
    for value in index:
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (str, int, float, bool)):
            raise InputTypeError(
                f"Cannot save column {name!r}: its level {value!r} is a {type(value).__name__}; "
                "only text, numbers and booleans can be stored as levels."
            )
        levels.append(value)
    return levels


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


def _write_data(frame: pd.DataFrame, path: Path) -> list[dict[str, Any]]:
    import xarray as xr

    if isinstance(frame.index, pd.MultiIndex):
        raise InputTypeError("Cannot save a fit whose data has a MultiIndex row index; fit on "
                             "data.reset_index() instead.")
    schema, variables = [], {}
    columns = [(_INDEX, frame.index.to_series(index=np.arange(len(frame))))]
    columns += [(str(c), frame[c].reset_index(drop=True)) for c in frame.columns]
    for k, (name, series) in enumerate(columns):
        values, info = _encode_column(name, series)
        variables[f"c{k}"] = ("row", values)
        schema.append({"name": name, "variable": f"c{k}", **info})
    schema[0]["index_name"] = frame.index.name
    xr.Dataset(variables).to_netcdf(path, engine="h5netcdf")
    return schema


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
def save_fit(fit: Any, path: str | Path, overwrite: bool = False) -> Path:
    """Save an ML/REML or Bayesian fit to a folder (no pickle).

    Parameters
    ----------
    fit : LmmResult or BayesResult
        A fit made through :class:`hierlm.Model` (``Model(...).fit(...)``).
    path : str or pathlib.Path
        Folder to create.
    overwrite : bool
        Replace an existing saved fit at ``path``.

    Returns
    -------
    pathlib.Path
        The folder written.

    Raises
    ------
    InputTypeError
        If ``fit`` is not a hierlm fit of a Model, or a data column cannot be stored.
    FitError
        If ``path`` exists and ``overwrite`` is False, or is not a saved fit.
    """
    import hierlm

    model = getattr(fit, "model", None)
    kind = _kind(fit)
    if model is None or not hasattr(model, "formula"):
        raise InputTypeError("save_fit needs a fit made through hierlm.Model(...).fit(); this "
                             f"{type(fit).__name__} has no Model (formula and data) attached.")
    target = Path(path)
    if target.exists():
        if not overwrite:
            raise FitError(f"{str(target)!r} already exists; pass overwrite=True to replace it.")
        if not (target / _MANIFEST).is_file():
            raise FitError(f"{str(target)!r} exists and is not a saved hierlm fit; not replacing it.")
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "hierlm_version": hierlm.__version__,
        "kind": kind,
        "model": {"formula": model.formula, "family": model.family,
                  "priors": model.user_priors, "na_action": getattr(model, "na_action", "omit"),
                  "reference": dict(model.spec.reference),
                  "residual": getattr(model, "residual", None),
                  "variance": getattr(model, "variance", None)},
        "fit": _lmm_state(fit) if kind == "lmm" else _bayes_state(fit),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        data = model.data[model.spec.variables()]
        manifest["data"] = _write_data(data, staging / _DATA)
        if kind == "bayes":
            fit.idata.to_netcdf(staging / _IDATA, engine="h5netcdf")
        manifest["checksums"] = {name: file_checksum(staging / name)
                                 for name in (_DATA, _IDATA) if (staging / name).is_file()}
        text = json.dumps(_to_json(manifest), indent=1)
        (staging / _MANIFEST).write_text(text, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        # mkdtemp made the staging folder 0700; the saved fit gets an ordinary folder's mode
        target.chmod(0o777 & ~_current_umask())
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    import hierlm

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
            f"{raw.get('hierlm_version', '?')}; this hierlm ({hierlm.__version__}) reads "
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
    try:
        model = hierlm.Model(spec["formula"], data, family=spec["family"], priors=spec["priors"],
                             na_action=spec["na_action"], reference=spec["reference"] or None,
                             residual=spec.get("residual"), variance=spec.get("variance"))
    except HierlmError as error:
        raise IncompatibleFileError(
            f"{str(manifest_path)!r}: the saved model cannot be rebuilt: {error}") from None
    if manifest["kind"] == "lmm":
        return _lmm_restore(model, manifest["fit"], manifest_path)
    return _bayes_restore(model, manifest["fit"], folder / _IDATA)


def _kind(fit: Any) -> str:
    from hierlm.lmm.result import LmmResult

    if isinstance(fit, LmmResult):
        return "lmm"
    if hasattr(fit, "idata") and hasattr(fit, "formulation"):
        return "bayes"
    raise InputTypeError(f"save_fit saves hierlm fits (LmmResult, BayesResult), not "
                         f"{type(fit).__name__}.")


# ------------------------------------------------------------------ ML / REML
# Relative agreement of the saved and recomputed ML/REML criterion (same data, same kernel:
# they differ only by floating-point reassociation across BLAS builds).
_CRITERION_TOLERANCE = 1e-8
# The gradient is checked to 1e-7 times the criterion's size (10 x the tolerance above).
_RECORD_FIELDS = ("optimizer", "criterion", "start", "end", "value", "n_evaluations",
                  "converged", "message", "boundary", "gradient", "seconds")


def _lmm_state(fit: Any) -> dict[str, Any]:
    record = fit.fit_record
    return {"reml": fit.reml, "theta": fit.theta, "threads": fit.threads,
            "record": {name: getattr(record, name) for name in _RECORD_FIELDS}}


def _lmm_restore(model: Any, state: dict[str, Any], manifest_path: Path) -> Any:
    from hierlm.lmm.fit import FitRecord, blas_threads, projected_gradient
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
                         threads=state["threads"])


# ------------------------------------------------------------------- Bayesian
def _bayes_state(fit: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "method": fit.method, "formulation": fit.formulation, "sampler": fit.sampler,
        "seed": fit.seed, "settings": fit.settings, "timing": fit.timing, "info": fit.info,
        "diagnostics": None if fit.diagnostics is None else asdict(fit.diagnostics),
        "priors": [{"kind": row.kind, "block": row.block, "term": row.term, "prior": row.prior,
                    "source": row.source} for row in fit.priors.rows],
    }


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
    return BayesResult(idata=idata, pymc_model=pymc_model, formulation=state["formulation"],
                       sampler=state["sampler"], method=state["method"], design=model.design,
                       priors=priors, names=block_names(model.design), timing=state["timing"],
                       seed=state["seed"], settings=state["settings"], diagnostics=diagnostics,
                       info=state["info"], model=model)
