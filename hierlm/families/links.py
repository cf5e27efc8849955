"""Link functions: the map between the mean ``mu`` and the linear predictor ``eta``.

Each link is one object with ``link(mu)``, ``inverse(eta)`` and ``mu_eta(eta)``
(the derivative d mu / d eta). The inverses and derivatives are bounded away
from the edges of the mean's range as R's ``make.link`` does (probabilities
in ``[eps, 1 - eps]``, derivatives at least ``eps``, with ``eps`` the double
precision machine epsilon), so that IRLS weights and log-likelihoods stay
finite when ``eta`` is large.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from hierlm.errors import FamilyError, InputTypeError

__all__ = ["Link", "Identity", "Log", "Logit", "Probit", "Cloglog", "LINKS", "get_link"]

_EPS = float(np.finfo(float).eps)
_LOGIT_BOUND = -np.log(_EPS)          # |eta| beyond which expit(eta) is 0 or 1 in doubles


class Link:
    """A link function ``eta = g(mu)``.

    Attributes
    ----------
    name : str
        ``"identity"``, ``"log"``, ``"logit"``, ``"probit"`` or ``"cloglog"``.
    latent_variance : float or None
        Variance of the latent residual of a binary model on this link's scale
        (Nakagawa, Johnson & Schielzeth 2017): ``pi^2/3`` (logit), 1 (probit),
        ``pi^2/6`` (cloglog); None for links without a latent-threshold reading.
    ratio_name : str or None
        What ``exp`` of a difference on this link's scale is (``"odds ratio"``
        for logit, ``"ratio"`` for log): how contrasts of means read on the
        response scale, as emmeans reports them; None when such a difference
        has no response-scale reading (it stays on the link scale).
    """

    name: str = ""
    latent_variance: float | None = None
    ratio_name: str | None = None

    def link(self, mu: np.ndarray) -> np.ndarray:
        """Linear predictor of the mean, ``g(mu)``."""
        raise NotImplementedError

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """Mean of the linear predictor, ``g^-1(eta)`` (bounded as described in the module)."""
        raise NotImplementedError

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """Derivative ``d mu / d eta`` at ``eta`` (at least machine epsilon where it can vanish)."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Link) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("link", self.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(Link):
    """``eta = mu``."""

    name = "identity"

    def link(self, mu: np.ndarray) -> np.ndarray:
        """``g(mu)``."""
        return np.asarray(mu, dtype=float)

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """``g^-1(eta)``, bounded as the module describes."""
        return np.asarray(eta, dtype=float)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """``d mu / d eta``."""
        return np.ones_like(np.asarray(eta, dtype=float))


class Log(Link):
    """``eta = log(mu)``; the mean is at least machine epsilon."""

    name = "log"
    ratio_name = "ratio"

    def link(self, mu: np.ndarray) -> np.ndarray:
        """``g(mu)``."""
        return np.log(np.asarray(mu, dtype=float))

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """``g^-1(eta)``, bounded as the module describes."""
        return np.maximum(np.exp(np.asarray(eta, dtype=float)), _EPS)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """``d mu / d eta``."""
        return np.maximum(np.exp(np.asarray(eta, dtype=float)), _EPS)


class Logit(Link):
    """``eta = log(mu / (1 - mu))``, the canonical binomial link."""

    name = "logit"
    latent_variance = float(np.pi ** 2 / 3)
    ratio_name = "odds ratio"

    def link(self, mu: np.ndarray) -> np.ndarray:
        """``g(mu)``."""
        return special.logit(np.asarray(mu, dtype=float))

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """``g^-1(eta)``, bounded as the module describes."""
        eta = np.clip(np.asarray(eta, dtype=float), -_LOGIT_BOUND, _LOGIT_BOUND)
        return np.clip(special.expit(eta), _EPS, 1.0 - _EPS)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """``d mu / d eta``."""
        p = special.expit(np.asarray(eta, dtype=float))
        return np.maximum(p * (1.0 - p), _EPS)


class Probit(Link):
    """``eta = Phi^-1(mu)``, the standard normal quantile."""

    name = "probit"
    latent_variance = 1.0

    def link(self, mu: np.ndarray) -> np.ndarray:
        """``g(mu)``."""
        return special.ndtri(np.asarray(mu, dtype=float))

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """``g^-1(eta)``, bounded as the module describes."""
        return np.clip(special.ndtr(np.asarray(eta, dtype=float)), _EPS, 1.0 - _EPS)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """``d mu / d eta``."""
        eta = np.asarray(eta, dtype=float)
        return np.maximum(np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi), _EPS)


class Cloglog(Link):
    """``eta = log(-log(1 - mu))``, the complementary log-log link."""

    name = "cloglog"
    latent_variance = float(np.pi ** 2 / 6)

    def link(self, mu: np.ndarray) -> np.ndarray:
        """``g(mu)``."""
        return np.log(-np.log1p(-np.asarray(mu, dtype=float)))

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """``g^-1(eta)``, bounded as the module describes."""
        eta = np.asarray(eta, dtype=float)
        return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700.0))), _EPS, 1.0 - _EPS)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """``d mu / d eta``."""
        eta = np.minimum(np.asarray(eta, dtype=float), 700.0)
        return np.maximum(np.exp(eta - np.exp(eta)), _EPS)


#: Every link by name.
LINKS: dict[str, type[Link]] = {cls.name: cls for cls in (Identity, Log, Logit, Probit, Cloglog)}


def get_link(link: str | Link) -> Link:
    """The link object for a name (or the object itself).

    Raises
    ------
    InputTypeError
        If ``link`` is neither a name nor a Link.
    """
    if isinstance(link, Link):
        return link
    if not isinstance(link, str):
        raise InputTypeError(f"link must be a name such as 'logit' or a Link, not {type(link).__name__}.")
    if link not in LINKS:
        raise FamilyError(f"Unknown link {link!r}; hierlm has {', '.join(LINKS)}.")
    return LINKS[link]()
