"""Model cards: TOML files that name a data set, a formula and fit settings.

A card looks like::

    name = "sleepstudy_slope"
    description = "Correlated random intercept and slope per subject."

    [data]
    dataset = "sleepstudy"          # a bundled data set, or
    # path = "pigs.csv"             # a CSV, relative to the card's folder
    # categorical = ["id"]          # CSV columns to treat as categorical

    [model]
    formula = "Reaction ~ Days + (Days | Subject)"
    family = "gaussian"

    [fit]
    method = "reml"                 # "reml" | "ml" | "map" | "nuts"
    # draws = 1000, tune = 1000, chains = 4, random_seed = 1

A CSV that is not found next to the card is looked up by file name in the
folders listed in the environment variable ``HIERLM_DATA_PATH``
(``os.pathsep``-separated), so cards can point at shared data that lives
outside the repository.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hierlm import datasets
from hierlm.errors import DataError, InputTypeError

__all__ = ["ModelCard", "load_card", "read_csv_data", "find_data_file"]

_FIT_KEYS = {"method", "draws", "tune", "chains", "random_seed", "sampler", "formulation",
             "target_accept", "reml"}


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
        Keyword arguments for ``Model.fit`` (``method`` included).
    source : Path or None
        The card file.
    """

    name: str
    description: str
    formula: str
    family: str
    data: pd.DataFrame
    fit_options: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None


def read_csv_data(path: str | Path, categorical: list[str] | None = None,
                  base: Path | None = None) -> pd.DataFrame:
    """Read a CSV for a model, making ``categorical`` columns pandas Categoricals.

    Parameters
    ----------
    path : str or Path
        File name; relative names are tried against ``base`` and then each
        folder in ``HIERLM_DATA_PATH``.
    categorical : list of str, optional
        Columns to convert (levels sorted numerically for numbers).
    base : Path, optional
        Folder to resolve relative paths against.
    """
    resolved = find_data_file(path, base)
    frame = pd.read_csv(resolved)
    for name in categorical or []:
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


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a model card.

    Raises
    ------
    DataError
        If the file is missing, is not valid TOML, or lacks a required entry.
    """
    card_path = Path(path)
    if not card_path.is_file():
        raise DataError(f"Model card {str(card_path)!r} not found.")
    try:
        content = tomllib.loads(card_path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise DataError(f"Model card {card_path.name} is not valid TOML: {error}") from None
    data_section = content.get("data", {})
    model_section = content.get("model", {})
    if "formula" not in model_section:
        raise DataError(f"Model card {card_path.name} has no [model] formula.")
    if "dataset" in data_section:
        data = datasets.load(data_section["dataset"])
    elif "path" in data_section:
        data = read_csv_data(data_section["path"], data_section.get("categorical"),
                             base=card_path.parent)
    else:
        raise DataError(f"Model card {card_path.name}: [data] needs 'dataset' or 'path'.")
    fit_options = dict(content.get("fit", {}))
    unknown = set(fit_options) - _FIT_KEYS
    if unknown:
        raise InputTypeError(f"Model card {card_path.name}: unknown [fit] keys {sorted(unknown)}; "
                             f"allowed: {sorted(_FIT_KEYS)}.")
    return ModelCard(
        name=str(content.get("name", card_path.stem)),
        description=str(content.get("description", "")),
        formula=str(model_section["formula"]),
        family=str(model_section.get("family", "gaussian")),
        data=data,
        fit_options=fit_options,
        source=card_path,
    )
