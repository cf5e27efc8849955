"""Exception and warning classes raised by hierlm.

Every error a user can trigger with bad input is one of these classes, so that
callers can catch hierlm's complaints without catching unrelated bugs. Each
subclasses the matching builtin (``ValueError``, ``KeyError``, ``TypeError``)
so ordinary ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "HierlmError",
    "FormulaError",
    "DataError",
    "ColumnNotFoundError",
    "InputTypeError",
    "RankDeficientError",
    "NewLevelError",
    "PriorError",
    "FitError",
    "FamilyError",
    "IncompatibleFileError",
    "GridError",
    "IncompatibleFitsError",
    "AdjustmentError",
    "HypothesisError",
    "HierlmWarning",
    "MissingDataWarning",
    "SingularFitWarning",
    "ConvergenceWarning",
    "SamplingWarning",
    "RankDeficientWarning",
]


class HierlmError(Exception):
    """Base class of every error hierlm raises on purpose."""


class FormulaError(HierlmError, ValueError):
    """A formula that cannot be parsed or does not make sense for the data."""


class DataError(HierlmError, ValueError):
    """Data that cannot be used as given (missing, non-finite, too few levels...)."""


class ColumnNotFoundError(HierlmError, KeyError):
    """A formula names a column the data frame does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class InputTypeError(HierlmError, TypeError):
    """An argument of the wrong type (e.g. data that is not a DataFrame)."""


class RankDeficientError(HierlmError, ValueError):
    """Fixed-effect columns that are linear combinations of other columns."""


class NewLevelError(HierlmError, ValueError):
    """New data holds grouping levels the model never saw, where that is not allowed."""


class PriorError(HierlmError, ValueError):
    """An unknown prior name or impossible prior parameters."""


class FitError(HierlmError, ValueError):
    """Bad arguments to a fit (unknown method, draws=0, ...)."""


class FamilyError(HierlmError, ValueError):
    """An unknown family, or a family/link pair that does not exist (e.g. Poisson with logit)."""


class IncompatibleFileError(HierlmError, ValueError):
    """A saved fit written by an incompatible version of hierlm."""


class GridError(HierlmError, ValueError):
    """A reference grid that cannot be built (a spec that is not a factor, a bad ``at=``)."""


class IncompatibleFitsError(HierlmError, ValueError):
    """Two fits that cannot be compared: different rows, random parts or estimation methods."""


class AdjustmentError(HierlmError, ValueError):
    """An unknown multiple-comparison adjustment (``adjust=``)."""


class HypothesisError(HierlmError, ValueError):
    """A hypothesis that cannot be read: bad syntax, non-linear, or an unknown coefficient."""


class HierlmWarning(UserWarning):
    """Base class of hierlm's warnings."""


class MissingDataWarning(HierlmWarning):
    """Rows were dropped because of missing values."""


class SingularFitWarning(HierlmWarning):
    """A variance component is estimated at (or next to) zero."""


class ConvergenceWarning(HierlmWarning):
    """An optimiser stopped without meeting its convergence criteria."""


class SamplingWarning(HierlmWarning):
    """MCMC diagnostics flag a problem (divergences, R-hat, low ESS, tree depth)."""


class RankDeficientWarning(HierlmWarning):
    """Aliased fixed-effect columns were dropped (lme4's "rank deficient so dropping ...")."""
