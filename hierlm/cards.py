"""Model cards: TOML files that name a data set, a formula and fit settings.

A card looks like::

    name = "sleepstudy_slope"
    description = "Correlated random intercept and slope per subject."

    [data]
    dataset = "sleepstudy"          # a bundled data set, or
    # path = "pigs.csv"             # a CSV, relative to the card's folder
    # categorical = ["id"]          # CSV columns to treat as categorical (or one name)

    [model]
    formula = "Reaction ~ Days + (Days | Subject)"
    family = "gaussian"

    [fit]
    method = "nuts"                 # "reml" | "ml" | "map" | "nuts"
    compare = "reml"                # optional: also fit this twin and print both side by side
    draws = 500                     # NUTS: draws, tune, chains, random_seed, ...
    chains = 4

Every section and key is checked: a misspelt ``[fitt]`` or ``draw = 500`` is
refused (a :class:`~hierlm.errors.DataError` naming the key and the allowed
ones) rather than silently ignored, and so is an option that neither the
card's method nor its ``compare`` twin uses (``draws`` for a REML fit).
The options each method takes are in :data:`METHOD_OPTIONS`.

A CSV that is not found next to the card is looked up by file name in the
folders listed in the environment variable ``HIERLM_DATA_PATH``
(``os.pathsep``-separated), so cards can point at shared data that lives
outside the repository. Empty, malformed and non-UTF-8 files (cards and CSVs)
raise a :class:`~hierlm.errors.DataError` that names the file.
"""

from __future__ import annotations

import csv
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hierlm import datasets
from hierlm.errors import DataError, InputTypeError

__all__ = [
    "ModelCard",
    "METHODS",
    "METHOD_OPTIONS",
    "load_card",
    "read_csv_data",
    "find_data_file",
    "card_toml",
    "method_options",
    "check_fit_options",
]

METHODS = ("reml", "ml", "map", "nuts")
# fit options (besides ``method`` and ``compare``) that each method takes
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "nuts": ("draws", "tune", "chains", "random_seed", "sampler", "formulation", "backend",
             "target_accept", "max_treedepth", "cores", "log_likelihood", "posterior_predictive"),
    "map": ("reml",),
    "reml": ("optimizer", "max_evaluations"),
    "ml": ("optimizer", "max_evaluations", "nagq"),  # nagq: GLMMs (adaptive Gauss-Hermite)
}
_TOP_KEYS = ("name", "description", "data", "model", "fit")
_SECTION_KEYS = {"data": ("dataset", "path", "categorical"),
                 "model": ("formula", "family", "residual", "variance")}
#: [model] keys passed to hierlm.Model as they are (residual structure, varIdent column).
_MODEL_OPTIONS = ("residual", "variance")
_INTEGER_OPTIONS = {"draws": 1, "chains": 1, "tune": 0, "random_seed": 0, "max_treedepth": 1,
                    "cores": 1, "max_evaluations": 1, "nagq": 1}


@dataclass(frozen=True)
class ModelCard:
    """A parsed model card.

    Attributes
    ----------
    name, description : str
        Identification for reports.
    formula : str
        lme4 formula.
    family : str
        Response family.
    data : pandas.DataFrame
        The loaded data.
    fit_options : dict
        ``method``, optionally ``compare``, and the keyword arguments of
        ``Model.fit``.
    source : Path or None
        The card file.
    data_spec : dict
        The ``[data]`` table that loads ``data`` again: ``{"dataset": name}``
        or ``{"path": absolute path, "categorical": [...]}``.
    model_options : dict
        ``residual`` (e.g. ``"ar1(week | id)"``) and ``variance`` of ``[model]``,
        passed to :class:`hierlm.Model`.
    """

    name: str
    description: str
    formula: str
    family: str
    data: pd.DataFrame
    fit_options: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    data_spec: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, str] = field(default_factory=dict)


def _categorical_list(categorical: object, where: str) -> list[str]:
    """Categorical columns as a list: one name (a string) or a list of names."""
    if categorical is None:
        return []
    if isinstance(categorical, str):
        return [categorical]
    if isinstance(categorical, (list, tuple)) and all(isinstance(c, str) for c in categorical):
        return list(categorical)
    raise InputTypeError(f"{where}: categorical must be a column name or a list of column names, "
                         f"got {categorical!r}.")


def read_csv_data(path: str | Path, categorical: list[str] | str | None = None,
                  base: Path | None = None) -> pd.DataFrame:
    """Read a CSV for a model, making ``categorical`` columns pandas Categoricals.

    Parameters
    ----------
    path : str or Path
        File name; relative names are tried against ``base`` and then each
        folder in ``HIERLM_DATA_PATH``.
    categorical : list of str or str, optional
        Columns to convert (levels sorted numerically for numbers); a string
        names one column.
    base : Path, optional
        Folder to resolve relative paths against.

    Raises
    ------
    DataError
        If the file is missing, empty, not UTF-8 text, not a valid CSV, or
        lacks a categorical column.
    """
    resolved = find_data_file(path, base)
    columns = _categorical_list(categorical, resolved.name)
    try:
        frame = pd.read_csv(resolved, encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"Data file {resolved.name} is not UTF-8 text ({error.reason} at byte "
                        f"{error.start}).") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"Data file {resolved.name} is empty.") from None
    except (pd.errors.ParserError, csv.Error) as error:
        detail = " ".join(str(error).split())
        raise DataError(f"Data file {resolved.name} is not a valid CSV: {detail}") from None
    if frame.empty:
        raise DataError(f"Data file {resolved.name} has a header but no rows.")
    for name in columns:
        if name not in frame.columns:
            raise DataError(f"categorical column {name!r} is not in {resolved.name}; "
                            f"columns are {list(frame.columns)}.")
        column = frame[name]
        frame[name] = pd.Categorical(column, categories=sorted(column.dropna().unique().tolist()))
    return frame


def find_data_file(path: str | Path, base: Path | None = None) -> Path:
    """Find a data file: as given, next to ``base`` or the working folder, or by name in HIERLM_DATA_PATH."""
    path = Path(path)
    candidates = [path] if path.is_absolute() else [(base or Path.cwd()) / path, Path.cwd() / path]
    for folder in os.environ.get("HIERLM_DATA_PATH", "").split(os.pathsep):
        if folder:
            candidates.append(Path(folder) / path.name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"Data file {str(path)!r} not found (tried: {tried}). "
                    "Give a path relative to the card, or set HIERLM_DATA_PATH.")


def method_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of ``options`` that ``method`` takes (``method``/``compare`` excluded)."""
    return {key: value for key, value in options.items() if key in METHOD_OPTIONS[method]}


def _check_value(key: str, value: object, where: str) -> None:
    """Refuse an option value of the wrong type or range."""
    if key in ("method", "compare"):
        if value not in METHODS:
            raise DataError(f"{where}: {key} = {value!r}; choose one of {', '.join(METHODS)}.")
    elif key in _INTEGER_OPTIONS:
        lowest = _INTEGER_OPTIONS[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise DataError(f"{where}: {key} must be an integer >= {lowest}, got {value!r}.")
    elif key == "reml" and not isinstance(value, bool):
        raise DataError(f"{where}: {key} must be true or false, got {value!r}.")


def check_fit_options(options: dict[str, Any], where: str = "fit options") -> None:
    """Check a ``[fit]`` table: known keys, valid values, and no option the fits would ignore.

    Parameters
    ----------
    options : dict
        ``method`` (default ``"reml"``), optional ``compare`` and the options.
    where : str
        What to name in the message (the card's file name).

    Raises
    ------
    DataError
        For an unknown key, a bad value, an option that neither ``method``
        nor ``compare`` takes, or a ``compare`` that is not one NUTS fit and
        one point fit.
    """
    known = {"method", "compare", *(key for keys in METHOD_OPTIONS.values() for key in keys)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(f"{where}: unknown [fit] key(s) {', '.join(map(repr, unknown))}; "
                        f"allowed: {', '.join(sorted(known))}.")
    for key, value in options.items():
        _check_value(key, value, where)
    methods = [options.get("method", "reml")] + ([options["compare"]] if "compare" in options else [])
    if len(methods) == 2 and sorted(m == "nuts" for m in methods) != [False, True]:
        raise DataError(f"{where}: compare = {methods[1]!r} with method = {methods[0]!r}; the "
                        "side-by-side table needs one 'nuts' fit and one point fit (reml, ml or map).")
    used = {key for method in methods for key in METHOD_OPTIONS[method]}
    ignored = [key for key in options if key not in ("method", "compare") and key not in used]
    if ignored:
        owners = {key: [m for m, keys in METHOD_OPTIONS.items() if key in keys] for key in ignored}
        detail = "; ".join(f"{key!r} applies to {' / '.join(owners[key])}" for key in ignored)
        raise DataError(f"{where}: {detail}, but the card fits {' and '.join(methods)}.")


def _read_toml(card_path: Path) -> dict[str, Any]:
    """The card file parsed, with one-line errors for unreadable files."""
    if not card_path.exists():
        raise DataError(f"Model card {str(card_path)!r} not found.")
    if not card_path.is_file():
        raise DataError(f"Model card {str(card_path)!r} is not a file.")
    try:
        text = card_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"Model card {card_path.name} is not UTF-8 text ({error.reason} at byte "
                        f"{error.start}).") from None
    if not text.strip():
        raise DataError(f"Model card {card_path.name} is empty.")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DataError(f"Model card {card_path.name} is not valid TOML: {error}") from None


def _section(content: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    """A table of the card, checked for unknown keys."""
    section = content.get(name, {})
    if not isinstance(section, dict):
        raise DataError(f"{where}: {name!r} must be a [{name}] table.")
    allowed = _SECTION_KEYS.get(name)
    if allowed is not None:
        unknown = sorted(set(section) - set(allowed))
        if unknown:
            raise DataError(f"{where}: unknown [{name}] key(s) {', '.join(map(repr, unknown))}; "
                            f"allowed: {', '.join(allowed)}.")
    return section


def _string(section: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    """A string entry of the card."""
    value = section.get(key, default)
    if not isinstance(value, str):
        raise DataError(f"{where}: {key} must be a string, got {value!r}.")
    return value


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a model card.

    Raises
    ------
    DataError
        If the file is missing, empty, not UTF-8, not valid TOML, has an
        unknown section or key, lacks a required entry, or names data that
        cannot be read.
    InputTypeError
        If ``categorical`` is neither a name nor a list of names.
    """
    card_path = Path(path)
    content = _read_toml(card_path)
    where = f"Model card {card_path.name}"
    unknown = sorted(set(content) - set(_TOP_KEYS))
    if unknown:
        raise DataError(f"{where}: unknown section(s) or key(s) {', '.join(map(repr, unknown))}; "
                        f"a card has {', '.join(_TOP_KEYS[:2])} and the sections "
                        f"{', '.join(f'[{s}]' for s in _TOP_KEYS[2:])}.")
    data_section = _section(content, "data", where)
    model_section = _section(content, "model", where)
    fit_options = dict(_section(content, "fit", where))
    if "formula" not in model_section:
        raise DataError(f"{where} has no [model] formula.")
    check_fit_options(fit_options, where)
    if "dataset" in data_section and "path" in data_section:
        raise DataError(f"{where}: [data] has both 'dataset' and 'path'; give one.")
    if "dataset" in data_section:
        if "categorical" in data_section:
            raise DataError(f"{where}: [data] categorical applies to a CSV 'path', not a bundled dataset.")
        name = _string(data_section, "dataset", where)
        data = datasets.load(name)
        data_spec: dict[str, Any] = {"dataset": name}
    elif "path" in data_section:
        categorical = _categorical_list(data_section.get("categorical"), where)
        resolved = find_data_file(_string(data_section, "path", where), card_path.parent)
        data = read_csv_data(resolved, categorical)
        data_spec = {"path": str(resolved.resolve()), "categorical": categorical}
    else:
        raise DataError(f"{where}: [data] needs 'dataset' or 'path'.")
    return ModelCard(
        name=_string(content, "name", where, card_path.stem),
        description=_string(content, "description", where, ""),
        formula=_string(model_section, "formula", where),
        family=_string(model_section, "family", where, "gaussian"),
        data=data,
        fit_options=fit_options,
        source=card_path,
        data_spec=data_spec,
        model_options={key: _string(model_section, key, where) for key in _MODEL_OPTIONS
                       if key in model_section},
    )


def _toml_value(value: Any) -> str:
    """One TOML value (strings, numbers, booleans, lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def card_toml(card: ModelCard) -> str:
    """The card as TOML text that :func:`load_card` reads back into the same card.

    The ``[data]`` table is ``card.data_spec`` (a CSV by its absolute path,
    which is also found by file name in ``HIERLM_DATA_PATH``); without one,
    no ``[data]`` table can be written and the text says so in a comment.
    """
    lines = [f"name = {_toml_value(card.name)}", f"description = {_toml_value(card.description)}", ""]
    if card.data_spec:
        lines.append("[data]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in card.data_spec.items()
                  if value not in (None, [])]
    else:
        lines.append("# [data]: the fit's data frame was given in memory; add dataset = ... or path = ...")
    lines += ["", "[model]", f"formula = {_toml_value(card.formula)}",
              f"family = {_toml_value(card.family)}"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in card.model_options.items()]
    lines += ["", "[fit]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in card.fit_options.items()]
    return "\n".join(lines) + "\n"
