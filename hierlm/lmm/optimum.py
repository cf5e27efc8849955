"""What an ML/REML optimum records, and the checks made on it.

:class:`FitRecord` (how the optimum was found), lme4's singularity rule
(:func:`singular_components`), the projected gradient at a bounded optimum
and the BLAS thread limit used while fitting and afterwards. They sit below
both :mod:`hierlm.lmm.fit` (which finds the optimum) and
:mod:`hierlm.lmm.result` (which reports on it), so neither imports the other
back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.results.display import html_report

__all__ = ["FitRecord", "SINGULAR_TOL", "blas_threads", "projected_gradient", "singular_components"]

SINGULAR_TOL = 1e-4
@dataclass(frozen=True)
class FitRecord:
    """How an ML/REML optimum was found.

    Attributes
    ----------
    optimizer : str
        Name of the optimiser (scipy method name).
    criterion : str
        ``"REML criterion"`` or ``"deviance"``.
    start, end : numpy.ndarray
        Theta at the start and at the optimum.
    value : float
        Criterion at ``end``.
    n_evaluations : int
        Number of evaluations of the criterion (with or without gradient).
    converged : bool
        Whether the optimiser met its convergence criteria.
    message : str
        The optimiser's own message.
    boundary : tuple of str
        lme4 names of the theta entries that ended exactly on their bound (0).
    gradient : numpy.ndarray
        Projected gradient of the criterion at ``end`` (0 for entries held
        on their bound with a non-negative derivative).
    seconds : float
        Wall time of the whole fit (cross-products, optimisation, polish).
    """

    optimizer: str
    criterion: str
    start: np.ndarray
    end: np.ndarray
    value: float
    n_evaluations: int
    converged: bool
    message: str
    boundary: tuple[str, ...]
    gradient: np.ndarray
    seconds: float

    def __str__(self) -> str:
        status = "converged" if self.converged else "NOT converged"
        lines = [
            f"optimizer {self.optimizer}: {status} after {self.n_evaluations} evaluations "
            f"in {self.seconds:.3g} s ({self.message})",
            f"{self.criterion} at optimum: {self.value:.6f}",
            f"theta start: {np.array2string(self.start, precision=4)}",
            f"theta end:   {np.array2string(self.end, precision=6)}",
            f"max |projected gradient|: {np.max(np.abs(self.gradient), initial=0.0):.3g}",
        ]
        if self.boundary:
            lines.append(f"on the boundary: {', '.join(self.boundary)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        status = "converged" if self.converged else "did not converge"
        return (f"<FitRecord: {self.optimizer} {status} after {self.n_evaluations} evaluations, "
                f"{self.criterion} {self.value:.6g}>")

    def _repr_html_(self) -> str:
        """The record's lines, for notebooks."""
        lines = str(self).split("\n")
        return html_report(["Optimiser record", *lines])


_CONTROLLER: Any = None


@contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit the BLAS thread pool inside the block (no limit when ``limit`` is None).

    The kernel's dense matrices are at most a few thousand wide, where a
    second BLAS thread gains little but a busy machine (other processes on
    the cores) makes OpenBLAS's spinning threads many times slower.
    """
    global _CONTROLLER
    if limit is None:
        yield
        return
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl comes with pymc
            yield
            return
        # Finding the BLAS libraries scans the process's memory map; do it once.
        _CONTROLLER = ThreadpoolController()
    # Each BLAS library's pool set directly, and only when it differs (threadpoolctl's limit()
    # builds an info table of every library on entry and exit, a few hundred microseconds).
    libraries = [lib for lib in _CONTROLLER.lib_controllers if lib.user_api == "blas"]
    before = [lib.get_num_threads() for lib in libraries]
    changed = [(lib, n) for lib, n in zip(libraries, before, strict=True) if n != limit]
    for lib, _ in changed:
        lib.set_num_threads(limit)
    try:
        yield
    finally:
        for lib, n in changed:
            lib.set_num_threads(n)


def projected_gradient(theta: np.ndarray, grad: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Return the gradient with the entries that push a theta at its bound outwards set to 0."""
    at_bound = (theta <= lower) & (grad > 0)
    return np.where(at_bound, 0.0, grad)


def singular_components(theta: np.ndarray, lower: np.ndarray, names: tuple[str, ...],
                        tol: float = SINGULAR_TOL,
                        column_scale: np.ndarray | None = None) -> list[str]:
    """Names of bounded theta entries below ``tol`` (lme4's ``isSingular`` rule).

    With ``column_scale`` (:func:`hierlm.lmm.fit.theta_column_scale`) the rule is applied to
    ``theta * column_scale``, so that measuring a predictor in smaller units
    (which shrinks its theta entries) does not make a fit singular.
    """
    bounded = np.isfinite(lower)
    scaled = theta if column_scale is None else theta * column_scale
    return [names[k] for k in range(theta.size) if bounded[k] and scaled[k] < lower[k] + tol]
