"""Write a fit to a folder, without pickle: the saving half of :mod:`hierlm.io`.

Each result class says what is stored through its ``_state()`` method, which
returns ``{"kind": "lmm" | "bayes", "fit": <JSON-able dict>, "idata":
<DataTree or None>}``; :func:`save_fit` writes the folder that
:func:`hierlm.io.load_fit` reads (and restores through the class of that
kind). Writing needs nothing of the engines, so ``fit.save()`` (a method of
every fit, :mod:`hierlm.results.methods`) calls it without importing
:mod:`hierlm.io`, which sits above the engines. The folder's layout and the
reading, validation and checksums are described in :mod:`hierlm.io`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierlm.core.version import __version__
from hierlm.errors import FitError, InputTypeError
from hierlm.io_validation import file_checksum

__all__ = ["save_fit", "to_json", "FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "DATA", "IDATA",
           "INDEX", "ROW_ARRAY_COLUMNS", "engine_file"]

FORMAT_NAME = "hierlm-fit"
# Bump when a file written by this version cannot be read by the previous
# reader, or the reader can no longer read older files.
FORMAT_VERSION = 3  # 3: weights=/offset= arguments (manifest "model.weights"/"offset")
MANIFEST = "hierlm.json"
DATA = "data.nc"
IDATA = "idata.nc"
INDEX = "__index__"
#: data columns that hold a ``weights=`` / ``offset=`` array beside the model's columns
ROW_ARRAY_COLUMNS = {"weights": "__weights_array__", "offset": "__offset_array__"}
_MANIFEST, _DATA, _IDATA, _INDEX = MANIFEST, DATA, IDATA, INDEX


def _state_of(fit: Any) -> dict[str, Any]:
    """The fit's ``_state()``; InputTypeError for anything that is not a hierlm fit."""
    method = getattr(fit, "_state", None)
    if not callable(method):
        raise InputTypeError(f"save_fit saves hierlm fits (LmmResult, BayesResult), not "
                             f"{type(fit).__name__}.")
    return dict(method())


def _to_json(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and priors into plain JSON values.

    A prior (:class:`hierlm.Prior`) is recognised by its ``family`` and
    ``params``, so that this module does not import the Bayesian engine.
    """
    if _is_prior(value):
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


def _is_prior(value: Any) -> bool:
    """True for a prior object: a ``family`` name and its ``params`` as (name, value) pairs."""
    params = getattr(value, "params", None)
    return isinstance(getattr(value, "family", None), str) and isinstance(params, tuple | Mapping)


to_json = _to_json


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


def save_fit(fit: Any, path: str | Path, overwrite: bool = False) -> Path:
    """Save an ML/REML or Bayesian fit to a folder (no pickle).

    Parameters
    ----------
    fit : LmmResult or BayesResult
        A fit made through :class:`hierlm.Model` (``Model(...).fit(...)``); its
        ``_state()`` says what to store (see the module docstring).
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
    model = getattr(fit, "model", None)
    design = getattr(fit, "design", None)
    rowless = bool(getattr(design, "rowless", False))
    recorded = design.summary.source.source if rowless else None  # type: ignore[union-attr]
    state = _state_of(fit)
    if rowless and state["kind"] != "lmm":
        raise FitError(
            f"save() of a {type(fit).__name__} on data held by an engine is not available: only "
            "ML/REML fits on such data are saved (their summary replays on loading); refit the "
            "model from the engine data instead.")
    kind = state["kind"]
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
        "hierlm_version": __version__,
        "kind": kind,
        "model": {"formula": model.formula, "family": getattr(model.family, "name", model.family),
                  "priors": model.user_priors, "na_action": getattr(model, "na_action", "omit"),
                  "reference": dict(model.spec.reference),
                  "residual": getattr(model, "residual", None),
                  "variance": getattr(model, "variance", None),
                  **(_row_argument_records(model) if recorded is None
                     else {"weights": None, "offset": None})},
        "fit": state["fit"],
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if recorded is not None:  # engine data: the build's aggregate answers, no rows
            data = pd.DataFrame(index=pd.RangeIndex(0))
            manifest["engine"] = _write_engine_answers(recorded, staging)
            probs = [0.0, 0.25, 0.5, 0.75, 1.0]  # the summary's, by a second pass now
            manifest["engine"]["residual_quantiles"] = {
                "probs": probs, "values": [float(v) for v in fit.scaled_residual_quantiles()]}
        else:
            data = model.data[model.spec.variables()]
            for name, values in getattr(model, "row_arrays", {}).items():
                data = data.assign(**{ROW_ARRAY_COLUMNS[name]: values})
        manifest["data"] = _write_data(data, staging / _DATA)
        if state.get("idata") is not None:
            state["idata"].to_netcdf(staging / _IDATA, engine="h5netcdf")
        files = [_DATA, _IDATA] + [engine_file(k) for k in range(len(
            manifest.get("engine", {}).get("answers", [])))]
        manifest["checksums"] = {name: file_checksum(staging / name)
                                 for name in files if (staging / name).is_file()}
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


def engine_file(k: int) -> str:
    """File of the ``k``-th saved engine answer of a fit on engine data."""
    return f"engine_{k}.nc"


def _write_engine_answers(recorded: Any, staging: Path) -> dict[str, Any]:
    """Write the aggregate answers that built an engine-data model (``RecordingSource.state``)."""
    kind, partitioned, schema, answers, missing = recorded.state()
    written = []
    for k, (sql, frame) in enumerate(answers.items()):
        written.append({"sql": sql, "data": _write_data(frame.reset_index(drop=True),
                                                        staging / engine_file(k))})
    return {"kind": kind, "partitioned": partitioned, "schema": schema, "missing": missing,
            "answers": written}


def _row_argument_records(model: Any) -> dict[str, Any]:
    """``weights``/``offset`` of the manifest: ``{"column": name}``, ``{"array": data column}`` or None.

    An array is saved as a data column (:data:`ROW_ARRAY_COLUMNS`, covered by the
    data's checksum), its values those of the rows kept in ``model.data``.
    """
    out: dict[str, Any] = {}
    for name, column in ROW_ARRAY_COLUMNS.items():
        value = getattr(model, name, None)
        if column in getattr(model.data, "columns", ()):
            raise InputTypeError(f"The data have a column {column!r}, the name save() gives a "
                                 f"{name}= array; rename that column to save the fit.")
        out[name] = (None if value is None else {"column": value} if isinstance(value, str)
                     else {"array": column})
    return out


def _current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
