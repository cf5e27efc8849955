"""What ``Model`` asks of a data source: the spec and the row-less design, after the checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hierlm.design.blocks import Design
from hierlm.design.spec import ModelSpec
from hierlm.errors import FamilyError, FitError, FormulaError
from hierlm.formula import ParsedFormula
from hierlm.sources.base import DataSource, Progress
from hierlm.sources.learn import build_source_design
from hierlm.sources.replay import RecordingSource

__all__ = ["source_design", "RowlessData"]


def source_design(parsed: ParsedFormula, source: DataSource, family: Any = "gaussian",
                  na_action: str = "omit", reference: Mapping[str, object] | None = None,
                  residual: str | None = None, variance: str | None = None,
                  drop_aliased: bool = True, weights: Any = None, offset: Any = None,
                  progress: bool = True) -> tuple[ModelSpec, Design]:
    """Spec and row-less design of data held by an engine (Gaussian models only).

    Raises
    ------
    FamilyError
        For a non-Gaussian family (their likelihood has no sufficient statistics).
    FormulaError
        For ``residual=``, ``variance=``, ``weights=`` or ``offset=``.
    """
    name = getattr(family, "name", family)
    if name != "gaussian":
        raise FamilyError(
            f"family={name!r}: models on {source.kind} data are fitted from sufficient statistics, "
            "which only Gaussian models have; fit this family on a pandas DataFrame.")
    for option, value in (("residual", residual), ("variance", variance), ("weights", weights),
                          ("offset", offset)):
        if value is not None:
            raise FormulaError(f"{option}= is not available for {source.kind} data (the "
                               "sufficient statistics assume independent residuals with one "
                               "variance); fit it on a pandas DataFrame.")
    recorder = RecordingSource(source)  # the build's answers: what save() stores
    built = build_source_design(parsed, recorder, na_action=na_action, reference=reference,
                                drop_aliased=drop_aliased, progress=Progress(progress, source.kind))
    recorder.stop()
    return built


class RowlessData:
    """``Model.data`` of a model on engine data: the rows are not in Python.

    Any use of it as a frame (a reference grid, saving the fit, term codings
    over the rows) raises a :class:`~hierlm.errors.FitError` saying so; the
    user's object is ``source``.
    """

    def __init__(self, source: object, kind: str) -> None:
        self.source = source
        self.kind = kind

    def _refuse(self) -> FitError:
        return FitError(
            f"This needs the model's rows, which stay in the {self.kind} engine (the model was "
            "fitted from sufficient statistics). Fit a sample of the rows as a pandas DataFrame "
            "for it (docs: 'Data larger than memory').")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._refuse()

    def __getitem__(self, key: object) -> Any:
        raise self._refuse()

    def __len__(self) -> int:
        raise self._refuse()

    def __repr__(self) -> str:
        return f"RowlessData({self.kind})"
