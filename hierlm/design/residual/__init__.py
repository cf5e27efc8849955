"""Residual covariance structures: correlated, heteroscedastic errors within a group.

``hl.Model("weight ~ week", pigs, residual="ar1(week | id)")`` lets the
residuals of one group (a pig, a patient) be correlated, with the structure
indexed by the time (or position) value, as nlme's ``gls``/``lme`` with
``correlation=`` and ``weights=varIdent(...)`` and mmrm do. The residual
covariance of group ``i`` is ``sigma^2 M_i S_i M_i`` with

* ``S_i`` the structure's relative covariance over the group's times
  (a submatrix of the matrix over every distinct time, so dropped visits
  and unbalanced data are handled by the time values, not row positions;
  ``car1`` builds it from the times themselves);
* ``M_i`` the diagonal of per-row SD ratios of ``variance=`` (nlme's
  ``varIdent``: the first level is 1), or the identity.

Structures (name, parameters):

====== ==========================================================
cs     compound symmetry: ``rho``
csh    ``cs`` with one SD ratio per time
un     unstructured: every variance and covariance over the times
ar1    AR(1) in the (integer) time: ``rho^|t - s|``
arh1   ``ar1`` with one SD ratio per time
toep   Toeplitz in the integer time lag: ``rho1 ... rhoK``
toeph  ``toep`` with one SD ratio per time
car1   continuous-time AR(1): ``phi^|t - s|``, ``0 < phi < 1``
====== ==========================================================

Each structure is one :class:`ResidualStructure` object: parameters, names,
start, and the relative covariance with its derivative.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hierlm.design.covariance import (
    FREE_LIMIT,
    AR1Correlation,
    CompoundSymmetryCorrelation,
    CorrelationModel,
    ToeplitzCorrelation,
)
from hierlm.errors import FormulaError

__all__ = [
    "RESIDUAL_STRUCTURES",
    "ResidualStructure",
    "ResidualSpec",
    "ResidualDesign",
    "parse_residual",
    "build_residual",
]

#: Residual structure names and what they mean.
RESIDUAL_STRUCTURES: dict[str, str] = {
    "independent": "independent residuals, one variance (the baseline; a linear model without "
                   "random effects)",
    "cs": "compound symmetry (one correlation, one variance)",
    "csh": "heterogeneous compound symmetry (one correlation, one variance per time)",
    "un": "unstructured (every variance and covariance over the times)",
    "ar1": "first-order autoregressive in the integer time",
    "arh1": "heterogeneous AR(1) (one variance per time)",
    "toep": "Toeplitz (one correlation per integer lag, one variance)",
    "toeph": "heterogeneous Toeplitz (one correlation per lag, one variance per time)",
    "car1": "continuous-time AR(1), corr = phi^|t - s| (nlme's corCAR1)",
}
_HETEROGENEOUS = {"csh": "cs", "arh1": "ar1", "toeph": "toep"}
_INTEGER_TIME = {"ar1", "toep"}
_SPEC = re.compile(r"^\s*([A-Za-z0-9_]+)\s*\(\s*(?:([^|()]+?)\s*\|\s*)?([^|()]+?)\s*\)\s*$")


@dataclass(frozen=True)
class ResidualSpec:
    """A residual structure as written: name, time column (or None) and group column."""

    name: str
    time: str | None
    group: str

    @property
    def text(self) -> str:
        """The structure written back, e.g. ``"ar1(week | id)"``."""
        if self.name == "independent" and self.group == "row":
            return "independent"
        return f"{self.name}({self.time} | {self.group})" if self.time else f"{self.name}({self.group})"


def parse_residual(text: str) -> ResidualSpec:
    """Parse ``"ar1(week | id)"`` or ``"cs(id)"``.

    Raises
    ------
    FormulaError
        For a malformed text, an unknown name (the valid ones are listed), or
        a structure that needs a time variable and has none.
    """
    if not isinstance(text, str):
        raise FormulaError(f"residual= must be a string such as 'ar1(week | id)', not "
                           f"{type(text).__name__}.")
    match = _SPEC.match(text)
    if match is None:
        raise FormulaError(f"Cannot read residual={text!r}; write 'name(time | group)', e.g. "
                           "'ar1(week | id)', or 'cs(group)'.")
    name, time, group = match.group(1), match.group(2), match.group(3)
    if name not in RESIDUAL_STRUCTURES:
        raise FormulaError(f"Unknown residual structure {name!r}; choose one of: "
                           + "; ".join(f"{k}: {v}" for k, v in RESIDUAL_STRUCTURES.items()) + ".")
    if time is None and name not in ("cs", "independent"):
        raise FormulaError(f"residual={text!r}: {name} needs a time variable, e.g. "
                           f"'{name}(week | {group})'.")
    for column in filter(None, (time, group)):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", column):
            raise FormulaError(f"residual={text!r}: {column!r} is not a column name.")
    return ResidualSpec(name, time, group)


class ResidualStructure:
    """The relative covariance of one group's residuals and its derivative.

    Parameters
    ----------
    name : str
        One of :data:`RESIDUAL_STRUCTURES`.
    times : numpy.ndarray
        The distinct time values (sorted), or the slot numbers ``0 .. T-1``
        for ``cs(group)`` without a time.
    time_labels : tuple of str
        Labels of the distinct times, for parameter names.
    """

    def __init__(self, name: str, times: np.ndarray, time_labels: tuple[str, ...]) -> None:
        self.name = name
        self.times = np.asarray(times, dtype=float)
        self.time_labels = time_labels
        self.n_times = self.times.size
        base = _HETEROGENEOUS.get(name, name)
        self.base = base
        self.heterogeneous = name in _HETEROGENEOUS
        self._grid: np.ndarray | None = None
        self._correlation: CorrelationModel | None
        if base in _INTEGER_TIME:
            offsets = self.times - self.times[0]
            self._grid = np.rint(offsets).astype(np.int64)
            size = int(self._grid[-1]) + 1 if self.n_times else 1
            self._correlation = (AR1Correlation(size) if base == "ar1"
                                 else ToeplitzCorrelation(size))
        elif base == "cs":
            self._correlation = CompoundSymmetryCorrelation(max(self.n_times, 2))
        else:
            self._correlation = None

    # ----------------------------------------------------------- parameters
    @property
    def n_correlation(self) -> int:
        """Number of correlation parameters."""
        if self.base == "independent":
            return 0
        if self.base == "un":
            return self.n_times * (self.n_times + 1) // 2 - 1
        if self.base == "car1":
            return 1
        assert self._correlation is not None
        return self._correlation.n_params

    @property
    def n_ratio(self) -> int:
        """Number of per-time SD ratios (heterogeneous structures)."""
        return self.n_times - 1 if self.heterogeneous else 0

    @property
    def n_params(self) -> int:
        """Number of parameters (counted in AIC/BIC and LRT df)."""
        return self.n_correlation + self.n_ratio

    def _un_pattern(self) -> list[tuple[int, int]]:
        pattern = [(i, j) for j in range(self.n_times) for i in range(j, self.n_times)]
        return pattern[1:]  # L[0, 0] = 1 fixes the scale (sigma is the first time's SD)

    def names(self) -> tuple[str, ...]:
        """Parameter names (on the optimiser's scale)."""
        if self.base == "independent":
            corr = []
        elif self.base == "un":
            lab = self.time_labels
            corr = [f"residual.L.{lab[i]}.{lab[j]}" for i, j in self._un_pattern()]
        elif self.base == "car1":
            corr = ["residual.logit_phi"]
        else:
            assert self._correlation is not None
            corr = [f"residual.r_{label}" for label in self._correlation.param_labels()]
        ratios = [f"residual.log_ratio.{label}" for label in self.time_labels[1:]][: self.n_ratio]
        return tuple(corr + ratios)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The optimiser's box: correlation reals within +-FREE_LIMIT, the rest free."""
        lower = np.full(self.n_params, -np.inf)
        upper = np.full(self.n_params, np.inf)
        if self.base in ("cs", "ar1", "toep", "car1"):
            lower[: self.n_correlation] = -FREE_LIMIT
            upper[: self.n_correlation] = FREE_LIMIT
        lower[self.n_correlation:] = -FREE_LIMIT  # SD ratios within exp(+-7)
        upper[self.n_correlation:] = FREE_LIMIT
        return lower, upper

    def start(self) -> np.ndarray:
        """Equal variances and no correlation (a small one for ``ar1``/``car1``)."""
        if self.base == "independent":
            corr = np.zeros(0)
        elif self.base == "un":
            corr = np.array([1.0 if i == j else 0.0 for i, j in self._un_pattern()])
        elif self.base == "car1":
            corr = np.array([-2.0])  # phi = 0.12
        elif self.base == "ar1":
            # rho = 0.3, not 0: with times two or more units apart every correlation is an even
            # power of rho, so rho = 0 is a stationary point the optimiser would never leave
            corr = np.array([np.arctanh(0.3)])[: self.n_correlation]
        else:
            assert self._correlation is not None
            corr = self._correlation.start()
        return np.concatenate([corr, np.zeros(self.n_ratio)])

    # ------------------------------------------------------------ matrices
    def _correlation_over_times(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correlation over the distinct times and its derivative (slot structures)."""
        assert self._correlation is not None
        matrix, grad = self._correlation.matrix_and_gradient(r)
        if self._grid is not None:
            index = self._grid
            return matrix[np.ix_(index, index)], grad[:, index][:, :, index]
        t = self.n_times
        return matrix[:t, :t], grad[:, :t, :t]

    def over_times(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relative covariance over the distinct times ``(T, T)`` and its derivative.

        Not for ``car1``, which depends on each group's own times (:meth:`for_times`).
        """
        params = np.asarray(params, dtype=float)
        t = self.n_times
        if self.base == "independent":
            return np.eye(t), np.zeros((0, t, t))
        if self.base == "un":
            lower = np.zeros((t, t))
            lower[0, 0] = 1.0
            pattern = self._un_pattern()
            rows, cols = (list(x) for x in zip(*pattern, strict=True)) if pattern else ([], [])
            lower[rows, cols] = params
            cov = lower @ lower.T
            grad = np.zeros((len(pattern), t, t))
            for k, (i, j) in enumerate(pattern):
                unit = np.zeros((t, t))
                unit[i, j] = 1.0
                grad[k] = unit @ lower.T + lower @ unit.T
            return cov, grad
        corr, d_corr = self._correlation_over_times(params[: self.n_correlation])
        if not self.heterogeneous:
            return corr, d_corr
        ratios = np.exp(np.concatenate([[0.0], params[self.n_correlation:]]))
        outer = np.outer(ratios, ratios)
        cov = corr * outer
        grad = np.zeros((self.n_params, t, t))
        grad[: self.n_correlation] = d_corr * outer
        for k in range(1, t):  # d/d log ratio_k of r_a r_b R_ab: (1[a=k] + 1[b=k]) cov_ab
            indicator = np.zeros(t)
            indicator[k] = 1.0
            grad[self.n_correlation + k - 1] = cov * (indicator[:, None] + indicator[None, :])
        return cov, grad

    def for_times(self, params: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``car1``: relative covariance of groups with times ``(k, m)`` and its derivative."""
        r = float(np.asarray(params, dtype=float)[0])
        phi = 1.0 / (1.0 + np.exp(-r))
        lag = np.abs(times[:, :, None] - times[:, None, :])
        cov = phi ** lag
        d_phi = phi * (1.0 - phi)
        with np.errstate(divide="ignore", invalid="ignore"):
            grad = np.where(lag > 0, lag * phi ** np.maximum(lag - 1.0, 0.0), 0.0) * d_phi
        return cov, grad[None]

    def natural(self, params: np.ndarray) -> dict[str, float]:
        """Natural-scale parameters: correlations (``rho``, ``phi``) and SD ratios."""
        params = np.asarray(params, dtype=float)
        out: dict[str, float] = {}
        if self.base == "car1":
            out["phi"] = float(1.0 / (1.0 + np.exp(-params[0])))
        elif self.base not in ("un", "independent"):
            assert self._correlation is not None
            values = self._correlation.natural(params[: self.n_correlation])
            labels = self._correlation.param_labels()
            if self.base == "toep" and self._grid is not None:
                out.update({f"rho{k}": float(v) for k, v in zip(range(1, len(values) + 1), values,
                                                               strict=True)})
            else:
                out.update(dict(zip(labels, map(float, values), strict=True)))
        ratios = np.exp(params[self.n_correlation:])
        out.update({f"ratio.{label}": float(v)
                    for label, v in zip(self.time_labels[1:], ratios, strict=False)})
        return out

    def __repr__(self) -> str:
        return f"ResidualStructure({self.name!r}, times={self.n_times})"


@dataclass(frozen=True, eq=False)
class ResidualDesign:
    """Per-row indices of a residual structure, for the engines.

    Attributes
    ----------
    spec : ResidualSpec
        As written.
    structure : ResidualStructure
        The structure over the distinct times.
    group_codes : numpy.ndarray
        Group of each row (0 .. G-1).
    group_labels : tuple of str
        Labels of the groups.
    slots : numpy.ndarray
        Index of each row's time among the distinct times.
    times : numpy.ndarray
        Each row's time value (position within its group for ``cs(group)``).
    variance_codes : numpy.ndarray or None
        Level of ``variance=`` (nlme's ``varIdent``) of each row.
    variance_labels : tuple of str
        Its levels; the first has SD ratio 1.
    variance_column : str or None
        The ``variance=`` column.
    """

    spec: ResidualSpec
    structure: ResidualStructure
    group_codes: np.ndarray
    group_labels: tuple[str, ...]
    slots: np.ndarray
    times: np.ndarray
    variance_codes: np.ndarray | None = None
    variance_labels: tuple[str, ...] = ()
    variance_column: str | None = None

    @property
    def n_variance(self) -> int:
        """Number of ``variance=`` SD ratios estimated (levels minus one)."""
        return max(len(self.variance_labels) - 1, 0)

    @property
    def n_params(self) -> int:
        """Structure parameters plus ``variance=`` ratios."""
        return self.structure.n_params + self.n_variance

    def names(self) -> tuple[str, ...]:
        """Parameter names of the structure and the ``variance=`` ratios."""
        extra = [f"residual.log_ratio.{self.variance_column}.{label}"
                 for label in self.variance_labels[1:]]
        return self.structure.names() + tuple(extra)

    def start(self) -> np.ndarray:
        """Starting parameters."""
        return np.concatenate([self.structure.start(), np.zeros(self.n_variance)])

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The optimiser's box of the structure and ``variance=`` parameters."""
        lower, upper = self.structure.box()
        extra = np.full(self.n_variance, FREE_LIMIT)
        return np.concatenate([lower, -extra]), np.concatenate([upper, extra])

    def describe(self) -> str:
        """Label for tables, e.g. ``"ar1(week | id)"`` (+ ``variance = Sex``)."""
        if self.spec.name == "independent":
            return f"independent, variance = {self.variance_column}"
        text = self.spec.text
        return text + (f", variance = {self.variance_column}" if self.variance_column else "")


def _labels(values: np.ndarray) -> tuple[str, ...]:
    out = []
    for value in values:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            out.append(str(int(value)))
        else:
            out.append(str(value))
    return tuple(out)


def build_residual(spec: ResidualSpec, frame: object, group_codes: np.ndarray,
                   group_labels: tuple[str, ...], variance: str | None = None,
                   variance_codes: np.ndarray | None = None,
                   variance_labels: tuple[str, ...] = ()) -> ResidualDesign:
    """Index the rows of a data frame for a residual structure.

    Parameters
    ----------
    spec : ResidualSpec
        The parsed structure.
    frame : pandas.DataFrame
        The model's rows (after missing-value handling).
    group_codes, group_labels : numpy.ndarray, tuple of str
        The residual group of each row, coded.
    variance : str, optional
        The ``variance=`` column.
    variance_codes, variance_labels : numpy.ndarray and tuple of str, optional
        Its level of each row and its levels (the first has SD ratio 1).

    Raises
    ------
    DataError
        For a time that repeats within a group, non-numeric times where the
        structure needs numbers, non-integer times for ``ar1``/``toep``, or
        ``un`` with more times than groups can identify.
    """
    import pandas as pd

    from hierlm.errors import DataError

    data = frame  # a DataFrame; typed loosely to keep pandas out of the signature
    assert isinstance(data, pd.DataFrame)
    n = len(data)
    if spec.time is None:
        order = pd.Series(group_codes).groupby(group_codes).cumcount().to_numpy()
        times = order.astype(float)
    else:
        column = data[spec.time]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            if spec.name in ("car1", "ar1", "arh1", "toep", "toeph"):
                raise DataError(f"residual={spec.text!r}: the time {spec.time!r} must be numeric "
                                f"for {spec.name} (it is {column.dtype}).")
            codes, uniques = pd.factorize(column, sort=True)
            times = codes.astype(float)
            labels_from = np.asarray(uniques, dtype=object)
        else:
            times = column.to_numpy(dtype=float)
            labels_from = None
        if not np.all(np.isfinite(times)):
            raise DataError(f"residual={spec.text!r}: the time {spec.time!r} has missing or "
                            "non-finite values.")
        pairs = pd.DataFrame({"g": group_codes, "t": times})
        repeated = pairs.duplicated()
        if repeated.any():
            row = int(np.argmax(repeated.to_numpy()))
            raise DataError(
                f"residual={spec.text!r}: time {spec.time}={_labels(times[[row]])[0]} repeats "
                f"within {spec.group}={group_labels[group_codes[row]]!r}; each group needs "
                "distinct times (aggregate the rows, or use another time variable).")
        if spec.name in ("ar1", "arh1", "toep", "toeph") and not np.allclose(times, np.rint(times)):
            raise DataError(f"residual={spec.text!r}: {spec.name} needs integer times; "
                            f"{spec.time!r} has fractional values (use car1 for continuous time).")
    distinct = np.unique(times)
    slots = np.searchsorted(distinct, times)
    if spec.time is not None and labels_from is not None:
        time_labels = tuple(str(v) for v in labels_from)
    else:
        time_labels = _labels(distinct)
    structure = ResidualStructure(spec.name, distinct, time_labels)
    n_groups = len(group_labels)
    if spec.name == "un" and structure.n_params + 1 > n:
        raise DataError(f"residual={spec.text!r}: un over {distinct.size} times has "
                        f"{structure.n_params + 1} variance parameters but only {n} rows; use a "
                        "structure with fewer parameters (e.g. csh or arh1).")
    if spec.name == "un" and n_groups <= distinct.size:
        raise DataError(f"residual={spec.text!r}: un over {distinct.size} times needs more groups "
                        f"than times to be identified, and {spec.group!r} has {n_groups}.")
    return ResidualDesign(spec, structure, np.asarray(group_codes, dtype=np.int64), group_labels,
                          slots.astype(np.int64), times, variance_codes, variance_labels, variance)
