"""Prior distributions of the Bayesian engine: the ``Prior`` value type, defaults, overrides.

A model has four classes of parameters, each with one prior per parameter:

* fixed effects (``fixef``): one prior per coefficient;
* standard deviations of group effects (``sd``): one per block and term;
* correlations (``cor``): one LKJ prior per correlated block;
* the residual standard deviation (``sigma``).

Default priors (``priors=None``)
--------------------------------
Weakly informative and scaled to the data, so that the same model gives
sensible inferences whether ``y`` is measured in milliseconds or seconds.
With ``s_y`` the standard deviation of the response and ``s_x`` the standard
deviation of the predictor column a coefficient multiplies (1 for the
intercept; 1 for a constant column):

======================  ============================================  ==========
parameter               default                                       taken from
======================  ============================================  ==========
``Intercept``           normal(mean(y), 2.5 s_y)                      rstanarm
other fixed effects     normal(0, 2.5 s_y / s_x)                      rstanarm
SD of a term            half_student_t(3, 2.5 s_y / s_x)              brms shape,
                                                                      rstanarm scaling
``sigma``               half_student_t(3, 2.5 s_y)                    brms
correlations            lkj(1)                                        brms
======================  ============================================  ==========

Why this rule: rstanarm's autoscaling puts each coefficient's prior in the units
of that coefficient (a slope on a predictor measured in thousands gets a prior a
thousand times narrower), which brms does not do for fixed effects nor for SDs.
For scale parameters brms's heavy-tailed half Student-t with 3 degrees of
freedom is kept: it is nearly flat over plausible values, has most mass below a
few ``s_y`` but still allows large values, and it has positive density at zero
so it does not push SDs away from zero (rstanarm's decov prior and Gamma priors
do). We use the standard deviation of ``y`` where brms uses its MAD, to match
rstanarm's choice for the fixed effects and keep one scale. LKJ(1) is uniform
over correlation matrices. The intercept is the intercept of the model matrix
as given (predictors are not centred), so its prior is centred on ``mean(y)``
with a width of 2.5 ``s_y``, which covers any plausible value at x = 0 unless
the predictors' ranges are far from zero relative to their spread.

Non-Gaussian families (binomial, Poisson, negative binomial) get link-scale
defaults instead, from the family's ``default_prior_scales``
(:func:`_link_scale_table`): ``Intercept ~ normal(0, 5)``, other fixed effects
``normal(0, 2.5 / s_x)``, SDs ``exponential(s_x)``, LKJ(1), and
``theta ~ exponential(1)`` for the negative binomial (key ``"theta"``); no
``sigma`` row.

Overrides
---------
``priors`` maps keys to :class:`Prior` objects (or the string ``"flat"``). The
most specific key wins:

* fixed effects: ``"<name>"`` or ``"b:<name>"`` (e.g. ``"Days"``), then ``"b"``
  (every fixed effect except ``Intercept``), then ``"Intercept"``'s own default;
* SDs: ``"sd:<group>:<term>"``, then ``"sd:<group>"``, then ``"sd"``; a group
  with several blocks (``(1 | g) + (0 + x | g)``) can also be addressed per
  block by its label (``"sd:g.1"``);
* correlations: ``"cor:<group>"`` then ``"cor"``;
* ``"sigma"``.

``priors="flat"`` puts flat priors on the fixed effects, on the SDs and sigma
(improper, uniform on (0, inf)) and LKJ(1) on correlations, so that the
posterior density is the likelihood and its mode is the ML estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from hierlm.bayes.likelihoods import family_name, family_of, likelihood_of
from hierlm.bayes.naming import block_names
from hierlm.bayes.structures import (
    INTERVAL_KINDS,
    RESIDUAL_LABEL,
    STRUCTURE_KINDS,
    BlockParameterisation,
    ResidualParameterisation,
    design_structures,
)
from hierlm.design.blocks import Design
from hierlm.errors import PriorError

__all__ = ["Prior", "PriorTable", "PriorRow", "resolve_priors", "default_priors_note",
           "structure_rows"]

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


@dataclass(frozen=True)
class PriorRow:
    """One parameter's prior in a :class:`PriorTable`.

    Attributes
    ----------
    kind : str
        ``"fixef"``, ``"sd"``, ``"cor"``, ``"sigma"`` (Gaussian residual SD) or
        ``"dispersion"`` (another family's dispersion, e.g. the negative
        binomial's ``theta``; ``term`` holds its name).
    block : str
        Block label for ``sd`` and ``cor`` rows, else ``""``.
    term : str
        Fixed-effect or block term name (``""`` for ``cor`` and ``sigma``).
    prior : Prior
        The prior that will be used.
    source : str
        ``"default"``, ``"flat"`` or the key of ``priors`` it came from.
    lower, upper : float
        Natural range of an interval parameter (``rho``, ``pacf``, ``phi``) of a
        covariance structure (kinds of :mod:`hierlm.bayes.structures`).
    """

    kind: str
    block: str
    term: str
    prior: Prior
    source: str
    lower: float = -math.inf
    upper: float = math.inf

    @property
    def parameter(self) -> str:
        """The posterior variable (and coordinate) this row is the prior of."""
        if self.kind in STRUCTURE_KINDS:
            return f"{self.kind}_{self.block}" + (f"[{self.term}]" if self.term else "")
        if self.kind == "fixef":
            return f"fixef[{self.term}]"
        if self.kind == "sd":
            return f"sd_{self.block}[{self.term}]"
        if self.kind == "cor":
            return f"cor_{self.block}"
        if self.kind == "dispersion":
            return self.term
        return "sigma"


@dataclass(frozen=True)
class PriorTable:
    """The priors a model will use, one row per parameter; printable.

    Attributes
    ----------
    rows : tuple of PriorRow
        Fixed effects (design order), SDs per block and term, correlations per
        correlated block, then sigma.
    """

    rows: tuple[PriorRow, ...]

    def fixef(self, name: str) -> Prior:
        """Prior of one fixed effect."""
        return self._find("fixef", "", name)

    def sd(self, block: str, term: str) -> Prior:
        """Prior of the SD of ``term`` in the block labelled ``block``."""
        return self._find("sd", block, term)

    def cor(self, block: str) -> Prior:
        """LKJ prior of the correlations of the block labelled ``block``."""
        return self._find("cor", block, "")

    @property
    def sigma(self) -> Prior:
        """Prior of the residual SD."""
        return self._find("sigma", "", "")

    def structure(self, kind: str, block: str, term: str = "") -> Prior:
        """Prior of a covariance-structure parameter (kinds of :mod:`hierlm.bayes.structures`)."""
        return self._find(kind, block, term)

    def interval(self, kind: str, block: str, term: str, lower: float,
                 upper: float) -> tuple[float, float]:
        """Range of an interval parameter: its uniform prior's bounds, else ``(lower, upper)``."""
        prior = self._find(kind, block, term)
        if prior.family == "uniform":
            return prior.param("lower"), prior.param("upper")
        return lower, upper

    def dispersion(self, name: str) -> Prior:
        """Prior of a non-Gaussian family's dispersion parameter (e.g. ``"theta"``)."""
        if name == "sigma":
            return self.sigma
        return self._find("dispersion", "", name)

    @property
    def has_sigma(self) -> bool:
        """True when the table has a residual-SD row (Gaussian models)."""
        return any(row.kind == "sigma" for row in self.rows)

    @property
    def is_flat(self) -> bool:
        """True when every prior is flat, so the posterior mode is the ML estimate."""
        return all(row.prior.is_flat for row in self.rows)

    @property
    def fixef_flat(self) -> bool:
        """True when every fixed effect has a flat prior (needed for REML)."""
        return all(row.prior.is_flat for row in self.rows if row.kind == "fixef")

    def _find(self, kind: str, block: str, term: str) -> Prior:
        for row in self.rows:
            if row.kind == kind and row.block == block and row.term == term:
                return row.prior
        raise KeyError(f"no {kind} prior for block={block!r} term={term!r}")

    def to_frame(self) -> pd.DataFrame:
        """Return the table as a DataFrame (columns parameter, class, group, term, prior, source)."""
        return pd.DataFrame(
            {
                "parameter": [row.parameter for row in self.rows],
                "class": [row.kind for row in self.rows],
                "group": [row.block for row in self.rows],
                "term": [row.term for row in self.rows],
                "prior": [str(row.prior) for row in self.rows],
                "source": [row.source for row in self.rows],
            }
        )

    def __str__(self) -> str:
        return self.to_frame().to_string(index=False)

    def _repr_html_(self) -> str:
        return str(self.to_frame().to_html(index=False))


def default_priors_note() -> str:
    """Return the one-paragraph statement of the default-prior rule (for docs and summaries)."""
    return (
        "Defaults: Intercept ~ normal(mean(y), 2.5 sd(y)); other fixed effects ~ "
        "normal(0, 2.5 sd(y)/sd(x)); SDs ~ half_student_t(3, 2.5 sd(y)/sd(x)); "
        "sigma ~ half_student_t(3, 2.5 sd(y)); correlations ~ lkj(1); structure "
        "correlations (rho, Toeplitz partial autocorrelations, car1's phi) ~ uniform over "
        "their range; log SD ratios of heterogeneous residuals ~ normal(0, 1)."
    )


def _positive_or_one(spread: float) -> float:
    """A standard deviation used for scaling; 1 when it is zero or undefined (as :func:`_spread`)."""
    return float(spread) if math.isfinite(spread) and spread > 0 else 1.0


def _spread(values: np.ndarray) -> float:
    """Standard deviation used for scaling; 1 when it is zero or undefined."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return 1.0
    spread = float(np.std(values, ddof=1))
    return spread if math.isfinite(spread) and spread > 0 else 1.0


def _default_table(design: Design) -> list[PriorRow]:
    """Rows of the data-scaled default priors (see the module docstring)."""
    moments = design.column_moments()  # of the rows, or of a row-less design's summary
    s_y = _positive_or_one(moments.y_sd)
    rows = []
    for k, name in enumerate(design.fixed_names):
        if name == "Intercept":
            prior = Prior("normal", mu=moments.y_mean, sigma=2.5 * s_y)
        else:
            prior = Prior("normal", mu=0.0, sigma=2.5 * s_y / _positive_or_one(moments.x_sd[k]))
        rows.append(PriorRow("fixef", "", name, prior, "default"))
    names = block_names(design)
    blocks, residual = design_structures(names, design.residual)
    for bn, structure in zip(names, blocks, strict=True):
        z_sd = moments.z_sd[next(i for i, b in enumerate(design.blocks) if b is bn.block)]
        spreads = [1.0 if term == "Intercept" else _positive_or_one(z_sd[k])
                   for k, term in enumerate(bn.block.columns)]
        if structure.homogeneous:  # one SD for every term: the widest of their rules
            prior = Prior("half_student_t", nu=3.0, sigma=2.5 * s_y / min(spreads))
            rows.append(PriorRow("sd_common", bn.label, "", prior, "default"))
            continue
        for term, s_x in zip(bn.block.columns, spreads, strict=True):
            prior = Prior("half_student_t", nu=3.0, sigma=2.5 * s_y / s_x)
            rows.append(PriorRow("sd", bn.label, term, prior, "default"))
    for structure in blocks:
        rows += structure_rows(structure)
    rows.append(PriorRow("sigma", "", "", Prior("half_student_t", nu=3.0, sigma=2.5 * s_y), "default"))
    if residual is not None:
        rows += structure_rows(residual)
    return rows


def structure_rows(structure: BlockParameterisation | ResidualParameterisation) -> list[PriorRow]:
    """Default rows of a structure's correlation and SD-ratio parameters (not its SDs).

    LKJ(1) on a correlation matrix (``cor``), uniform over the natural range
    on ``rho``, ``pacf`` and ``phi``, normal(0, 1) on log SD ratios.
    """
    rows = []
    for p in structure.parameters:
        if p.kind in ("sd", "sd_common"):
            continue
        for term in p.terms:
            if p.kind == "cor":
                prior = Prior("lkj", eta=1.0)
            elif p.kind in INTERVAL_KINDS:
                prior = Prior("uniform", lower=p.lower, upper=p.upper)
            else:  # log SD ratios
                prior = Prior("normal", mu=0.0, sigma=1.0)
            rows.append(PriorRow(p.kind, p.block, term, prior, "default", p.lower, p.upper))
    return rows


def _structure_keys(row: PriorRow, group_of: Mapping[str, str]) -> list[str]:
    """Prior keys of a structure parameter, most specific first.

    ``kind:block:term``, ``kind:group:term``, ``kind:block``, ``kind:group``,
    ``kind`` (residual rows: block ``residual``, no group keys).
    """
    if row.kind == "sd_common":
        return list(dict.fromkeys([f"sd:{row.block}", f"sd:{group_of[row.block]}", "sd"]))
    group = group_of.get(row.block, row.block)
    keys = [f"{row.kind}:{row.block}:{row.term}", f"{row.kind}:{group}:{row.term}"] if row.term else []
    keys += [f"{row.kind}:{row.block}", f"{row.kind}:{group}", row.kind]
    return list(dict.fromkeys(keys))


def _link_scale_table(design: Design, family: object) -> list[PriorRow]:
    """Rows of the link-scale default priors of a non-Gaussian family (see ``docs/priors.md``).

    The linear predictor is on the link scale, where a unit means the same in
    every data set (a log odds ratio, a log rate ratio), so the scales are not
    taken from the response. With the family's ``default_prior_scales``
    (:class:`hierlm.families.PriorScales`, rstanarm's numbers) and ``s_x`` the
    SD of a predictor: ``Intercept ~ normal(0, 2 intercept)`` (the intercept
    of the model matrix as written, not centred, so twice rstanarm's scale
    for the centred one), other coefficients ``normal(0, coefficients /
    s_x)``, each group-level SD ``exponential(s_x / group_sd)`` (``s_x = 1``
    for an intercept), LKJ(1) on correlations and ``exponential(1 /
    dispersion)`` on a dispersion parameter (the negative binomial's
    ``theta``).
    """
    fam = family_of(family)
    scales = fam.default_prior_scales
    rows = []
    for k, name in enumerate(design.fixed_names):
        if name == "Intercept":
            prior = Prior("normal", mu=0.0, sigma=2.0 * scales.intercept)
        else:
            prior = Prior("normal", mu=0.0, sigma=scales.coefficients / _spread(design.X[:, k]))
        rows.append(PriorRow("fixef", "", name, prior, "default"))
    names = block_names(design)
    for bn in names:
        for k, term in enumerate(bn.block.columns):
            s_x = 1.0 if term == "Intercept" else _spread(bn.block.z[:, k])
            prior = Prior("exponential", lam=s_x / scales.group_sd)
            rows.append(PriorRow("sd", bn.label, term, prior, "default"))
    for bn in names:
        if bn.block.correlated:
            rows.append(PriorRow("cor", bn.label, "", Prior("lkj", eta=1.0), "default"))
    if likelihood_of(fam).dispersion and fam.dispersion_name is not None:
        prior = Prior("exponential", lam=1.0 / scales.dispersion)
        rows.append(PriorRow("dispersion", "", fam.dispersion_name, prior, "default"))
    return rows


def _candidate_keys(row: PriorRow, group_of: Mapping[str, str]) -> list[str]:
    """User keys that apply to ``row``, most specific first."""
    if row.kind in STRUCTURE_KINDS or row.block in (RESIDUAL_LABEL, "residual_variance"):
        return _structure_keys(row, group_of)
    if row.kind == "fixef":
        keys = [f"b:{row.term}", row.term]
        if row.term != "Intercept":
            keys.append("b")
        return keys
    if row.kind == "sd":
        group = group_of[row.block]
        keys = [f"sd:{row.block}:{row.term}", f"sd:{group}:{row.term}", f"sd:{row.block}"]
        keys += [f"sd:{group}", "sd"]
        return list(dict.fromkeys(keys))
    if row.kind == "cor":
        group = group_of[row.block]
        return list(dict.fromkeys([f"cor:{row.block}", f"cor:{group}", "cor"]))
    if row.kind == "dispersion":
        return [row.term, "dispersion"]
    return ["sigma"]


_SUPPORT_OF_KIND: dict[str, Support] = {
    "fixef": "real",
    "sd": "positive",
    "sigma": "positive",
    "dispersion": "positive",
    "cor": "correlation",
}
_SUPPORT_OF_KIND.update({"sd_common": "positive", "rho": "interval", "pacf": "interval",
                         "phi": "interval", "log_ratio": "real"})


def _as_prior(key: str, value: object) -> Prior:
    """Turn a user value (a Prior or the string "flat") into a Prior."""
    if isinstance(value, Prior):
        return value
    if isinstance(value, str) and value == "flat":
        return Prior.flat()
    raise PriorError(f"priors[{key!r}] must be a hierlm.Prior (or the string 'flat'), got {value!r}")


def _interval_prior(key: str, prior: Prior, row: PriorRow) -> Prior:
    """A uniform prior within the parameter's range (flat: the whole range)."""
    if prior.family == "flat":
        return Prior("uniform", lower=row.lower, upper=row.upper)
    low, high = prior.param("lower"), prior.param("upper")
    if low < row.lower - 1e-12 or high > row.upper + 1e-12:
        raise PriorError(
            f"priors[{key!r}] = {prior}: {row.parameter} lies in ({row.lower:.4g}, "
            f"{row.upper:.4g}); give bounds inside that range, e.g. "
            f"Prior('uniform', lower={row.lower:.4g}, upper={row.upper:.4g})")
    return prior


def resolve_priors(
    design: Design,
    user_priors: Mapping[str, object] | str | PriorTable | None = None,
    family: object = "gaussian",
) -> PriorTable:
    """Return the table of priors a model will use.

    Parameters
    ----------
    design : Design
        The model's design (response, fixed-effect names, blocks).
    user_priors : dict, "flat", PriorTable or None
        None for the defaults; ``"flat"`` for flat priors everywhere; a dict of
        overrides (keys described in the module docstring); a
        :class:`PriorTable` is returned unchanged.
    family : str or family object
        The response family; non-Gaussian families get the link-scale
        defaults of :func:`_link_scale_table`.

    Returns
    -------
    PriorTable
        One row per parameter with the prior and where it came from.

    Raises
    ------
    PriorError
        For a key that names no parameter of this model (the message lists the
        valid keys), a family that cannot describe the parameter (e.g. a normal
        prior on an SD), or impossible parameter values (non-positive scale,
        eta <= 0).
    """
    if isinstance(user_priors, PriorTable):
        return user_priors
    if family_name(family) == "gaussian":
        rows = _default_table(design)
    else:
        rows = _link_scale_table(design, family)
    if user_priors is None:
        return PriorTable(tuple(rows))
    if isinstance(user_priors, str):
        if user_priors != "flat":
            raise PriorError(f"priors={user_priors!r}: the only named prior set is 'flat'")
        flat_rows = []
        for row in rows:
            prior = Prior("lkj", eta=1.0) if row.kind == "cor" else Prior.flat()
            if row.kind in INTERVAL_KINDS:  # flat on the range
                prior = Prior("uniform", lower=row.lower, upper=row.upper)
            flat_rows.append(PriorRow(row.kind, row.block, row.term, prior, "flat",
                                      row.lower, row.upper))
        return PriorTable(tuple(flat_rows))
    if not isinstance(user_priors, Mapping):
        raise PriorError(
            f"priors must be None, 'flat' or a dict of key -> Prior, got {type(user_priors).__name__}"
        )
    group_of = {bn.label: bn.block.group for bn in block_names(design)}
    candidates = [_candidate_keys(row, group_of) for row in rows]
    valid = list(dict.fromkeys(key for keys in candidates for key in keys))
    for key in user_priors:
        if key not in valid:
            raise PriorError(
                f"priors has unknown key {key!r}; valid keys for this model are: "
                + ", ".join(repr(k) for k in valid)
            )
    given = {key: _as_prior(key, value) for key, value in user_priors.items()}
    resolved = []
    for row, keys in zip(rows, candidates, strict=True):
        matched = [k for k in keys if k in given]
        if not matched:
            resolved.append(row)
            continue
        key = matched[0]
        prior = given[key]
        support = _SUPPORT_OF_KIND[row.kind]
        if not prior.supports(support):
            allowed = [f for f, (_, _, sup) in _FAMILIES.items() if support in sup]
            raise PriorError(
                f"priors[{key!r}] = {prior}: a {prior.family} prior cannot describe "
                f"{row.parameter} ({support} parameter); use one of {', '.join(allowed)}"
            )
        problems = prior.problems()
        if problems:
            raise PriorError(f"priors[{key!r}] = {prior!r}: " + "; ".join(problems))
        if row.kind == "cor" and prior.family == "flat":
            prior = Prior("lkj", eta=1.0)
        if row.kind in INTERVAL_KINDS:
            prior = _interval_prior(key, prior, row)
        resolved.append(PriorRow(row.kind, row.block, row.term, prior, key, row.lower, row.upper))
    return PriorTable(tuple(resolved))
