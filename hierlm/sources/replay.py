"""The engine's answers that built a model, kept for saving it; replayed when it is loaded.

A model on data held by an engine is built from a few aggregate queries
(schema, missing-value counts, factor levels, the per-cell cross-products).
:class:`RecordingSource` keeps those answers while the model is built; they
are the fit's whole state besides its parameters (O(groups x q^2 + p^2), no
rows). :class:`ReplaySource` answers the same queries from the saved tables,
so loading rebuilds exactly the same spec and design by the same code. The
saved SQL text is only compared with the SQL the builder asks, never run.
Second passes over the rows are refused after loading.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from hierlm.errors import FitError, IncompatibleFileError

__all__ = ["RecordingSource", "ReplaySource"]


class RecordingSource:
    """A data source that keeps its answers to the aggregate queries of the build.

    Parameters
    ----------
    source : DataSource
        The engine holding the rows; every call is passed on to it.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.kind: str = source.kind
        self.partitioned: bool = source.partitioned
        self.answers: dict[str, pd.DataFrame] = {}
        self.column_kinds: dict[str, str] | None = None
        self.conditions: dict[str, str] = {}
        self._recording = True

    def stop(self) -> None:
        """Stop recording (second passes after the build are not part of the state)."""
        self._recording = False

    def schema(self) -> dict[str, str]:
        """The engine's schema (recorded)."""
        found = dict(self.source.schema())
        if self._recording and self.column_kinds is None:
            self.column_kinds = dict(found)
        return found

    def missing(self, column: str, kind: str) -> str:
        """The engine's SQL condition for a missing value."""
        condition = str(self.source.missing(column, kind))
        if self._recording:
            self.conditions[f"{column}\x1f{kind}"] = condition
        return condition

    def query(self, sql: str) -> pd.DataFrame:
        """Run ``sql`` in the engine; recorded during the build."""
        frame = self.source.query(sql)
        if self._recording:
            self.answers[sql] = frame.copy()
        return frame

    def __getattr__(self, name: str) -> Any:  # second_pass, batches, ...: the engine's own
        if name.startswith("__") or name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    def state(self) -> tuple[str, bool, dict[str, str], dict[str, pd.DataFrame], dict[str, str]]:
        """``(kind, partitioned, schema, answers, missing conditions)`` to save.

        Raises
        ------
        FitError
            When the build's answers were not recorded.
        """
        if self.column_kinds is None or not self.answers:
            raise FitError("this engine-data model kept no record of its build; fit it again to save it.")
        return (self.kind, self.partitioned, dict(self.column_kinds), dict(self.answers),
                dict(self.conditions))


class ReplaySource:
    """Answers the build's queries from a saved fit's tables; refuses everything else.

    Parameters
    ----------
    kind : str
        The engine the fit was made on (for messages).
    partitioned : bool
        Whether the saved answers are per-partition partial results.
    column_kinds : dict
        The saved schema.
    answers : dict
        SQL text -> saved result.
    missing : dict
        ``"column<US>kind"`` (joined by the unit separator, chr 31) -> the
        engine's SQL condition for a missing value.
    quantiles : dict, optional
        Probability -> quantile of the scaled residuals, computed by the
        engine when the fit was saved (the summary's).
    """

    def __init__(self, kind: str, partitioned: bool, column_kinds: Mapping[str, str],
                 answers: Mapping[str, pd.DataFrame], missing: Mapping[str, str],
                 quantiles: Mapping[float, float] | None = None) -> None:
        self.kind = kind
        self._quantiles = dict(quantiles or {})
        self.partitioned = partitioned
        self._schema = dict(column_kinds)
        self._answers = dict(answers)
        self._missing = dict(missing)

    def _refuse(self, what: str) -> FitError:
        return FitError(
            f"{what} needs the rows, and this fit was loaded from a file: it keeps the "
            f"{self.kind} data's summary, not the rows. Fit the model on the engine data again "
            "for it (docs: 'Data larger than memory').")

    def schema(self) -> dict[str, str]:
        """The saved schema."""
        return dict(self._schema)

    def missing(self, column: str, kind: str) -> str:
        """The saved SQL condition for a missing value (the fit's own engine's)."""
        key = f"{column}\x1f{kind}"
        if key not in self._missing:
            raise IncompatibleFileError(f"the saved fit has no missing-value condition for {column!r}.")
        return self._missing[key]

    def query(self, sql: str) -> pd.DataFrame:
        """The saved answer to ``sql``; any other query is refused."""
        if sql not in self._answers:
            raise self._refuse("This query")
        return self._answers[sql].copy()

    def saved_quantiles(self, probs: list[float]) -> list[float]:
        """The scaled residuals' quantiles saved with the fit; other probabilities are refused."""
        if not all(p in self._quantiles for p in probs):
            raise self._refuse("These quantiles of the residuals")
        return [self._quantiles[p] for p in probs]

    def second_pass(self, select: str, effects: dict[str, pd.DataFrame]) -> Any:
        """Refused: the rows are not in the saved fit."""
        raise self._refuse("A second pass over the data (fitted values, residuals, residual quantiles)")

    def batches(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: the rows are not in the saved fit."""
        raise self._refuse("Streaming the rows")
