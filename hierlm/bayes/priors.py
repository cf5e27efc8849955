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

The value types live in :mod:`~hierlm.bayes.prior_family` (:class:`Prior`) and
:mod:`~hierlm.bayes.prior_table` (:class:`PriorTable`, :class:`PriorRow`), the
defaults in :mod:`~hierlm.bayes.prior_defaults`; this module resolves a model's
priors from them and re-exports their names.
"""

from __future__ import annotations

from collections.abc import Mapping

from hierlm.bayes.likelihoods import family_name
from hierlm.bayes.naming import block_names
from hierlm.bayes.prior_defaults import _default_table, _link_scale_table, default_priors_note, structure_rows
from hierlm.bayes.prior_family import _FAMILIES, Prior, Support
from hierlm.bayes.prior_table import PriorRow, PriorTable
from hierlm.bayes.structures import INTERVAL_KINDS, RESIDUAL_LABEL, STRUCTURE_KINDS
from hierlm.design.blocks import Design
from hierlm.errors import PriorError

__all__ = ["Prior", "PriorTable", "PriorRow", "resolve_priors", "default_priors_note",
           "structure_rows"]


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
