"""Bundled example data sets, loaded as pandas DataFrames.

Each loader's docstring gives the data's source. Categorical columns come back
as pandas Categoricals whose categories are sorted as R sorts factor levels
by default (numbers numerically, text alphabetically), so treatment contrasts
and group orders match lme4 fitted on the same data with ``factor()``.
Full provenance: ``hierlm/datasets/data/SOURCES.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

import pandas as pd

from hierlm.errors import DataError

__all__ = [
    "load",
    "available",
    "sleepstudy",
    "instEval",
    "dyestuff",
    "dyestuff2",
    "pastes",
    "penicillin",
    "cake",
    "machines",
    "orthodont",
    "bodyweight",
    "cbpp",
    "grouseticks",
    "verbagg",
    "salamanders",
]


def _read(filename: str, factors: list[str]) -> pd.DataFrame:
    """Read a bundled CSV and make ``factors`` categorical in R's default level order."""
    with resources.as_file(resources.files("hierlm.datasets") / "data" / filename) as path:
        frame = pd.read_csv(path)
    for name in factors:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column):
            categories = sorted(column.unique().tolist())
        else:
            column = column.astype(str)
            categories = sorted(column.unique().tolist())
        frame[name] = pd.Categorical(column, categories=categories)
    return frame


def sleepstudy() -> pd.DataFrame:
    """Reaction times in a sleep-deprivation study (180 rows).

    Belenky et al. (2003), Journal of Sleep Research 12, 1-12; as distributed
    in the R package lme4 (``sleepstudy``). Columns: ``Reaction`` (mean
    reaction time, ms), ``Days`` (0-9, days of 3-hour sleep), ``Subject``
    (18 subjects, categorical).
    """
    return _read("sleepstudy.csv", ["Subject"])


def instEval() -> pd.DataFrame:  # noqa: N802 - the data set's own name
    """Lecture evaluations at ETH Zurich (73,421 rows; crossed students x lecturers).

    From the R package lme4 (``InstEval``). Columns: ``s`` (student, 2972
    levels), ``d`` (lecturer, 1128 levels), ``studage``, ``lectage``,
    ``service`` (0/1), ``dept`` (14 departments), ``y`` (rating 1-5). All but
    ``y`` are categorical.
    """
    return _read("InstEval.csv.gz", ["s", "d", "studage", "lectage", "service", "dept"])


def dyestuff() -> pd.DataFrame:
    """Yield of dyestuff in 6 batches x 5 preparations (30 rows).

    Davies & Goldsmith (1972), Statistical Methods in Research and Production;
    R package lme4 (``Dyestuff``). Columns: ``Batch`` (A-F), ``Yield`` (grams).
    """
    return _read("Dyestuff.csv", ["Batch"])


def dyestuff2() -> pd.DataFrame:
    """Simulated dyestuff-like data whose batch variance estimate is zero (30 rows).

    Box & Tiao (1973), Bayesian Inference in Statistical Analysis; R package
    lme4 (``Dyestuff2``). A standard example of a singular fit.
    """
    return _read("Dyestuff2.csv", ["Batch"])


def pastes() -> pd.DataFrame:
    """Paste strength: 3 casks nested in each of 10 batches, 2 assays each (60 rows).

    Davies & Goldsmith (1972); R package lme4 (``Pastes``). Columns:
    ``strength``, ``batch`` (A-J), ``cask`` (a-c, labels repeat across
    batches: nest with ``batch/cask``), ``sample`` (the batch-and-cask label).
    """
    return _read("Pastes.csv", ["batch", "cask", "sample"])


def penicillin() -> pd.DataFrame:
    """Penicillin potency assay: 24 plates crossed with 6 samples (144 rows).

    Davies & Goldsmith (1972); R package lme4 (``Penicillin``). Columns:
    ``diameter`` (mm of the growth-inhibition zone), ``plate`` (a-x),
    ``sample`` (A-F). Each plate holds every sample: a fully crossed design.
    """
    return _read("Penicillin.csv", ["plate", "sample"])


def cake() -> pd.DataFrame:
    """Breakage angle of chocolate cakes: 3 recipes x 6 baking temperatures (270 rows).

    Cook (1938), MS thesis, Iowa State College; R package lme4 (``cake``).
    Columns: ``replicate`` (1-15), ``recipe`` (A-C), ``temperature``
    (categorical, 175-225), ``angle`` (degrees), ``temp`` (numeric temperature).
    """
    return _read("cake.csv", ["replicate", "recipe", "temperature"])


def machines() -> pd.DataFrame:
    """Productivity scores of 6 workers on 3 machine brands, 3 times each (54 rows).

    Milliken & Johnson (1992), Analysis of Messy Data; R package nlme
    (``Machines``). Columns: ``Worker`` (1-6), ``Machine`` (A-C), ``score``.
    """
    return _read("Machines.csv", ["Worker", "Machine"])


def orthodont() -> pd.DataFrame:
    """Distance from the pituitary to the pterygomaxillary fissure in 27 children (108 rows).

    Potthoff & Roy (1964); R package nlme (``Orthodont``). Columns: ``distance``
    (mm), ``age`` (8, 10, 12, 14 years), ``Subject`` (F01-F11, M01-M16), ``Sex``
    (Female, Male; levels sorted, so Female is the reference).
    """
    return _read("Orthodont.csv", ["Subject", "Sex"])


def bodyweight() -> pd.DataFrame:
    """Body weights of 16 rats on 3 diets, measured on 11 unequally spaced days (176 rows).

    Crowder & Hand (1990); R package nlme (``BodyWeight``). Columns: ``weight``
    (g), ``Time`` (days 1-64, irregular), ``Rat`` (1-16), ``Diet`` (1-3).
    """
    return _read("BodyWeight.csv", ["Rat", "Diet"])


def cbpp() -> pd.DataFrame:
    """New cases of contagious bovine pleuropneumonia in 15 Ethiopian herds (56 rows).

    Lesnoff et al. (2004), Preventive Veterinary Medicine 64, 27-40; R package
    lme4 (``cbpp``). Columns: ``herd`` (1-15), ``incidence`` (new serological
    cases in the period), ``size`` (herd size at the start of the period, the
    binomial trials), ``period`` (1-4).
    """
    return _read("cbpp.csv", ["herd", "period"])


def grouseticks() -> pd.DataFrame:
    """Ticks counted on the heads of 403 red grouse chicks (403 rows).

    Elston et al. (2001), Parasitology 122, 563-569; R package lme4
    (``grouseticks``). Columns: ``INDEX`` (chick, one row each), ``TICKS``
    (count), ``BROOD`` (118 broods), ``HEIGHT`` (altitude, m), ``YEAR`` (95,
    96, 97), ``LOCATION`` (63 locations), ``cHEIGHT`` (centred altitude).
    ``INDEX``, ``BROOD``, ``YEAR`` and ``LOCATION`` are categorical.
    """
    return _read("grouseticks.csv", ["INDEX", "BROOD", "YEAR", "LOCATION"])


def verbagg() -> pd.DataFrame:
    """Verbal-aggression questionnaire: 316 respondents x 24 items (7,584 rows).

    De Boeck & Wilson (2004), Explanatory Item Response Models; R package lme4
    (``VerbAgg``). Columns: ``Anger`` (trait-anger score), ``Gender`` (F, M),
    ``item``, ``resp`` (no, perhaps, yes), ``id`` (respondent), ``btype``
    (curse, scold, shout), ``situ`` (other, self), ``mode`` (do, want) and
    ``r2`` (N = no, Y = perhaps or yes). All but ``Anger`` are categorical;
    the item categories are sorted labels, not lme4's questionnaire order.
    """
    return _read("VerbAgg.csv", ["Gender", "item", "resp", "id", "btype", "situ", "mode", "r2"])


def salamanders() -> pd.DataFrame:
    """Salamander counts at 23 streams, 4 surveys x 7 species or stages each (644 rows).

    Price et al. (2016), Journal of Applied Ecology 53, 459-468; R package
    glmmTMB (``Salamanders``). Columns: ``site``, ``mined`` (no, yes; sorted,
    so ``no`` is the reference, unlike glmmTMB's copy), ``cover``, ``sample``
    (1-4, numeric), ``DOP``, ``Wtemp``, ``DOY`` (standardised covariates),
    ``spp`` (species or life stage) and ``count``. ``site``, ``mined`` and
    ``spp`` are categorical.
    """
    return _read("Salamanders.csv", ["site", "mined", "spp"])


_LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "sleepstudy": sleepstudy,
    "InstEval": instEval,
    "Dyestuff": dyestuff,
    "Dyestuff2": dyestuff2,
    "Pastes": pastes,
    "Penicillin": penicillin,
    "cake": cake,
    "Machines": machines,
    "Orthodont": orthodont,
    "BodyWeight": bodyweight,
    "cbpp": cbpp,
    "grouseticks": grouseticks,
    "VerbAgg": verbagg,
    "Salamanders": salamanders,
}


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return list(_LOADERS)


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set by name (case-insensitive).

    Parameters
    ----------
    name : str
        One of :func:`available`, e.g. ``"sleepstudy"``.

    Returns
    -------
    pandas.DataFrame
        A fresh copy the caller may modify.
    """
    lookup = {key.lower(): loader for key, loader in _LOADERS.items()}
    loader = lookup.get(str(name).lower())
    if loader is None:
        raise DataError(f"Unknown data set {name!r}. Available: {', '.join(_LOADERS)}.")
    return loader()
