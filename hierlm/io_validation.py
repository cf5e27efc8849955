"""Checks of a saved fit's files before anything in them is used.

A saved fit (:mod:`hierlm.io`) is read from disk, so it is untrusted input.
These checks run before the data are decoded or the model is rebuilt:

* the manifest's shape: every key :func:`hierlm.io.load_fit` reads has the
  expected type, kinds and dtypes come from fixed lists, numbers are finite;
* the SHA-256 checksum of every data file the manifest lists;
* after the rebuild (in :mod:`hierlm.io`), theta within its bounds and the
  saved criterion equal to the one recomputed at the saved theta.

Every failure is an :class:`~hierlm.errors.IncompatibleFileError` that names
the file and what is wrong with it. The formula itself is checked by the
formula parser (:mod:`hierlm.formula.safety`), as every formula is.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

from hierlm.errors import IncompatibleFileError

__all__ = [
    "COLUMN_KINDS",
    "file_checksum",
    "check_checksums",
    "check_manifest",
    "check_dtype_name",
]

#: Kinds of saved data columns.
COLUMN_KINDS = frozenset({"numeric", "bool", "time", "categorical", "text"})

_NA_ACTIONS = frozenset({"omit", "raise"})
_FIT_KINDS = frozenset({"lmm", "bayes", "glmm"})
_BAYES_METHODS = frozenset({"nuts", "map"})
_DTYPE = re.compile(
    r"^(?:u?int(?:8|16|32|64)|U?Int(?:8|16|32|64)|float(?:16|32|64)|Float(?:32|64)|bool|boolean"
    r"|object|str|string|string\[(?:python|pyarrow)\]|category"
    r"|(?:datetime|timedelta)64\[(?:s|ms|us|ns)\]|datetime64\[(?:s|ms|us|ns), [A-Za-z0-9_/+\-:]+\])$"
)
_VARIABLE = re.compile(r"^c[0-9]+$")
_CHUNK = 1 << 20


def file_checksum(path: Path) -> str:
    """Return the SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_checksums(folder: Path, checksums: Any) -> None:
    """Refuse a saved fit whose data files do not match the checksums in its manifest.

    Parameters
    ----------
    folder : pathlib.Path
        The saved fit's folder.
    checksums : dict
        File name -> SHA-256 hex digest, as written by :func:`hierlm.io.save_fit`.

    Raises
    ------
    IncompatibleFileError
        If a listed file is missing or its content differs from what was saved.
    """
    manifest = str(folder / "hierlm.json")
    if not isinstance(checksums, dict) or not checksums:
        raise IncompatibleFileError(f"{manifest!r} lists no data-file checksums.")
    for name, expected in checksums.items():
        known = name in ("data.nc", "idata.nc") or (  # engine_<k>.nc: an engine-data fit's summary
            isinstance(name, str) and re.fullmatch(r"engine_[0-9]{1,6}\.nc", name) is not None)
        if not known or not isinstance(expected, str):
            raise IncompatibleFileError(f"{manifest!r}: unexpected checksum entry {name!r}.")
        path = folder / name
        if not path.is_file():
            raise IncompatibleFileError(f"{str(path)!r} is missing from the saved fit.")
        if file_checksum(path) != expected:
            raise IncompatibleFileError(
                f"{str(path)!r} does not match the checksum saved with it: the file was "
                "changed, truncated or corrupted after it was saved. Refit and save again."
            )


def check_dtype_name(name: Any, where: str) -> str:
    """Return ``name`` if it is a dtype hierlm writes, else raise IncompatibleFileError."""
    if not isinstance(name, str) or not _DTYPE.match(name):
        raise IncompatibleFileError(f"{where}: dtype {name!r} is not one hierlm saves.")
    return name


def _fail(path: Path, problem: str) -> IncompatibleFileError:
    return IncompatibleFileError(f"{str(path)!r} is not a valid saved fit: {problem}.")


def _require(value: Any, kind: type | tuple[type, ...], path: Path, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        raise _fail(path, f"{what} should be {getattr(kind, '__name__', kind)}, "
                          f"not {type(value).__name__}")
    return value


def _finite_numbers(values: Any, path: Path, what: str) -> None:
    flat = values.ravel().tolist() if hasattr(values, "ravel") else values
    if not isinstance(flat, list):
        raise _fail(path, f"{what} should be a list of numbers")
    for value in flat:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(path, f"{what} holds {value!r}, not a finite number")


def _check_schema(entries: Any, path: Path) -> None:
    _require(entries, list, path, "'data'")
    if not entries:
        raise _fail(path, "'data' lists no columns")
    seen: set[str] = set()
    for entry in entries:
        _require(entry, dict, path, "a 'data' entry")
        name = _require(entry.get("name"), str, path, "a column name")
        variable = entry.get("variable")
        if not isinstance(variable, str) or not _VARIABLE.match(variable) or variable in seen:
            raise _fail(path, f"column {name!r} has an invalid storage name {variable!r}")
        seen.add(variable)
        kind = entry.get("kind")
        if kind not in COLUMN_KINDS:
            raise _fail(path, f"column {name!r} has unknown kind {kind!r}")
        where = f"{str(path)!r}, column {name!r}"
        if kind == "categorical":
            check_dtype_name(entry.get("levels_dtype"), where)
            _require(entry.get("ordered"), bool, path, f"column {name!r} 'ordered'")
        else:
            check_dtype_name(entry.get("dtype"), where)
        if kind in ("categorical", "text"):
            levels = _require(entry.get("levels"), list, path, f"column {name!r} levels")
            for level in levels:
                if not isinstance(level, (str, int, float, bool)):
                    raise _fail(path, f"column {name!r} has a level of type {type(level).__name__}")
        if kind == "time" and entry.get("unit") not in ("s", "ms", "us", "ns"):
            raise _fail(path, f"column {name!r} has an unknown time unit {entry.get('unit')!r}")


def _check_lmm_state(state: Any, path: Path) -> None:
    _require(state, dict, path, "'fit'")
    _require(state.get("reml"), bool, path, "'fit.reml'")
    _finite_numbers(state.get("theta"), path, "'fit.theta'")
    threads = state.get("threads")
    if threads is not None:
        _require(threads, int, path, "'fit.threads'")
    record = _require(state.get("record"), dict, path, "'fit.record'")
    value = record.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, f"'fit.record.value' is {value!r}, not a finite number")


def _check_glmm_state(state: Any, path: Path) -> None:
    _require(state, dict, path, "'fit'")
    for key in ("family", "link", "vcov_source", "message"):
        _require(state.get(key), str, path, f"'fit.{key}'")
    for key in ("nagq", "evaluations"):
        _require(state.get(key), int, path, f"'fit.{key}'")
    _require(state.get("converged"), bool, path, "'fit.converged'")
    for key in ("theta", "beta", "vcov_beta"):
        _finite_numbers(state.get(key), path, f"'fit.{key}'")
    deviance = state.get("deviance")
    if isinstance(deviance, bool) or not isinstance(deviance, (int, float)) \
            or not math.isfinite(deviance):
        raise _fail(path, f"'fit.deviance' is {deviance!r}, not a finite number")


def _check_bayes_state(state: Any, path: Path) -> None:
    _require(state, dict, path, "'fit'")
    if state.get("method") not in _BAYES_METHODS:
        raise _fail(path, f"unknown Bayesian method {state.get('method')!r}")
    _require(state.get("formulation"), str, path, "'fit.formulation'")
    _require(state.get("priors"), list, path, "'fit.priors'")
    for key in ("family", "link"):
        if state.get(key) is not None:
            _require(state[key], str, path, f"'fit.{key}'")
    for key in ("settings", "timing", "info"):
        if state.get(key) is not None:
            _require(state[key], dict, path, f"'fit.{key}'")


def check_manifest(manifest: Any, path: Path) -> None:
    """Check the shape of a decoded manifest before any of it is used.

    Parameters
    ----------
    manifest : dict
        The decoded ``hierlm.json``.
    path : pathlib.Path
        Its path, for messages.

    Raises
    ------
    IncompatibleFileError
        Naming the file and the first key that is missing or of the wrong type.
    """
    _require(manifest, dict, path, "the manifest")
    if manifest.get("kind") not in _FIT_KINDS:
        raise _fail(path, f"unknown kind of fit {manifest.get('kind')!r}")
    model = _require(manifest.get("model"), dict, path, "'model'")
    _require(model.get("formula"), str, path, "'model.formula'")
    _require(model.get("family"), str, path, "'model.family'")
    if model.get("na_action") not in _NA_ACTIONS:
        raise _fail(path, f"unknown na_action {model.get('na_action')!r}")
    for key in ("residual", "variance"):
        if model.get(key) is not None:
            _require(model[key], str, path, f"'model.{key}'")
    for key in ("weights", "offset"):  # {"column": name} or {"array": the data column holding it}
        record = model.get(key)
        if record is not None:
            _require(record, dict, path, f"'model.{key}'")
            if len(record) != 1 or not isinstance(record.get("column", record.get("array")), str):
                raise _fail(path, f"'model.{key}' must be {{'column': name}} or {{'array': column}}, "
                                  f"not {record!r}")
    priors = model.get("priors")
    if priors is not None:
        _require(priors, dict, path, "'model.priors'")
    reference = model.get("reference")
    if reference is not None:
        _require(reference, dict, path, "'model.reference'")
        for key, value in reference.items():
            _require(value, (str, int, float), path, f"'model.reference.{key}'")
    _check_schema(manifest.get("data"), path)
    if manifest["kind"] == "lmm":
        _check_lmm_state(manifest.get("fit"), path)
    elif manifest["kind"] == "glmm":
        _check_glmm_state(manifest.get("fit"), path)
    else:
        _check_bayes_state(manifest.get("fit"), path)
