"""A prior distribution as a value: :class:`Prior`, a family name and its checked parameters.

The table of families (their parameters, defaults and the supports they can
describe) is the one place a family is declared; :mod:`hierlm.bayes.priors`
documents the rules that choose and resolve priors and re-exports
:class:`Prior`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from hierlm.errors import PriorError

__all__ = ["Prior", "Support"]

Support = Literal["real", "positive", "correlation", "interval"]

# family -> (parameters in order, default values, supports the family can be used for)
_FAMILIES: dict[str, tuple[tuple[str, ...], dict[str, float], tuple[Support, ...]]] = {
    "normal": (("mu", "sigma"), {"mu": 0.0}, ("real",)),
    "student_t": (("nu", "mu", "sigma"), {"mu": 0.0}, ("real",)),
    "half_normal": (("sigma",), {}, ("positive",)),
    "half_student_t": (("nu", "sigma"), {}, ("positive",)),
    "half_cauchy": (("sigma",), {}, ("positive",)),
    "exponential": (("lam",), {}, ("positive",)),
    "lkj": (("eta",), {}, ("correlation",)),
    "uniform": (("lower", "upper"), {}, ("interval",)),
    "flat": ((), {}, ("real", "positive", "correlation", "interval")),
}
# parameters that must be strictly positive; "mu" only has to be finite
_POSITIVE_PARAMS = {"sigma", "nu", "lam", "eta"}


@dataclass(frozen=True, init=False)
class Prior:
    """A prior distribution: a family name and its parameters.

    Parameters
    ----------
    family : str
        One of ``"normal"`` (mu, sigma), ``"student_t"`` (nu, mu, sigma),
        ``"half_normal"`` (sigma), ``"half_student_t"`` (nu, sigma),
        ``"half_cauchy"`` (sigma), ``"exponential"`` (lam = rate),
        ``"lkj"`` (eta) and ``"flat"`` (no parameters). ``mu`` defaults to 0.
    **params : float
        The family's parameters by name (PyMC's names; ``sigma`` is always the
        scale).

    Raises
    ------
    PriorError
        For an unknown family, unknown or missing parameter names. Parameter
        values are checked when the prior is used (:func:`resolve_priors`), so
        that the error can name the key it was given under.

    Examples
    --------
    >>> Prior("normal", mu=0, sigma=10)
    Prior('normal', mu=0.0, sigma=10.0)
    >>> str(Prior("lkj", eta=2))
    'lkj(eta=2)'
    """

    family: str
    params: tuple[tuple[str, float], ...] = field(default=())

    def __init__(self, family: str, **params: float) -> None:
        if family not in _FAMILIES:
            raise PriorError(f"unknown prior family {family!r}; choose one of {', '.join(_FAMILIES)}")
        names, defaults, _ = _FAMILIES[family]
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise PriorError(
                f"Prior({family!r}) has no parameter {', '.join(unknown)}; "
                f"its parameters are: {', '.join(names) or '(none)'}"
            )
        values = {**defaults, **params}
        missing = [name for name in names if name not in values]
        if missing:
            raise PriorError(f"Prior({family!r}) needs parameter(s) {', '.join(missing)}")
        try:
            ordered = tuple((name, float(values[name])) for name in names)
        except (TypeError, ValueError) as exc:
            raise PriorError(f"Prior({family!r}) parameters must be numbers: {exc}") from None
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "params", ordered)

    @classmethod
    def flat(cls) -> Prior:
        """Return the flat (improper uniform) prior."""
        return cls("flat")

    def param(self, name: str) -> float:
        """Return the value of one parameter."""
        return dict(self.params)[name]

    @property
    def kwargs(self) -> dict[str, float]:
        """Parameters as a dict."""
        return dict(self.params)

    @property
    def is_flat(self) -> bool:
        """True for the flat prior, uniform priors and LKJ(1) (constant density on the support)."""
        return (self.family in ("flat", "uniform")
                or (self.family == "lkj" and self.param("eta") == 1.0))

    def problems(self) -> list[str]:
        """Return a list of reasons the parameter values are impossible (empty if fine)."""
        out = []
        for name, value in self.params:
            if not math.isfinite(value):
                out.append(f"{name}={value} is not finite")
            elif name in _POSITIVE_PARAMS and value <= 0:
                out.append(f"{name}={value:g} must be > 0")
        if self.family == "uniform" and not out and self.param("lower") >= self.param("upper"):
            out.append(f"lower={self.param('lower'):g} must be below upper={self.param('upper'):g}")
        return out

    def supports(self, support: Support) -> bool:
        """True when the family can be a prior for a parameter with this support."""
        return support in _FAMILIES[self.family][2]

    def __str__(self) -> str:
        args = ", ".join(f"{name}={value:.4g}" for name, value in self.params)
        return f"{self.family}({args})"

    def __repr__(self) -> str:
        args = "".join(f", {name}={value!r}" for name, value in self.params)
        return f"Prior({self.family!r}{args})"
