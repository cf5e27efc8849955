"""The family registry and ``get_family``: a name (or object) and a link to one Family object."""

from __future__ import annotations

from hierlm.errors import FamilyError, InputTypeError
from hierlm.families.base import Family
from hierlm.families.distributions import Binomial, Gaussian, NegativeBinomial, Poisson
from hierlm.families.links import Link

__all__ = ["FAMILIES", "get_family"]

#: Every family by registry name.
FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (Gaussian, Binomial, Poisson,
                                                              NegativeBinomial)}


def get_family(family: str | Family, link: str | Link | None = None) -> Family:
    """The Family object for a name or object, with ``link`` (the family's default when None).

    Parameters
    ----------
    family : str or Family
        ``"gaussian"``, ``"binomial"``, ``"poisson"``, ``"negative_binomial"``,
        or a Family object (returned as is unless ``link`` asks for another link).
    link : str or Link, optional
        A link the family allows.

    Raises
    ------
    FamilyError
        For an unknown family or a family/link pair that does not exist (the
        message lists the allowed ones).
    InputTypeError
        When ``family`` is neither a name nor a Family.
    """
    if isinstance(family, Family):
        if link is None or (isinstance(link, str) and link == family.link.name):
            return family
        return type(family)(link)
    if not isinstance(family, str):
        raise InputTypeError(
            f"family must be a name such as 'binomial' or a Family object, not {type(family).__name__}.")
    key = family.strip().lower()
    if key not in FAMILIES:
        raise FamilyError(f"Unknown family {family!r}; hierlm fits {', '.join(FAMILIES)} models.")
    return FAMILIES[key](link)
