"""Intraclass correlation: how much of the variance the grouping factors explain.

For a random-intercept model ``y_ij = x_ij' beta + b_j + e_ij`` with
``b_j ~ N(0, tau^2)`` and ``e_ij ~ N(0, sigma^2)``, two observations of the
same group have correlation

    ICC = tau^2 / (tau^2 + sigma^2),

which is also the share of the (conditional-on-X) variance that lies between
groups. With several grouping factors every block k contributes a variance
``v_k`` and

    share_k = v_k / (sum_m v_m + sigma^2)

while two observations that share the levels of a set of factors have
correlation ``sum_{k shared} v_k / (sum_m v_m + sigma^2)``. Sharing a level of
a nested factor (a cask) implies sharing the level of the factor it is nested
in (its batch), so those blocks are shared too; nesting is read off the data.

With random slopes the variance a block adds depends on the row's covariates,
``z_i' G z_i``. The *adjusted ICC* of Nakagawa, Johnson & Schielzeth (2017, J.
R. Soc. Interface 14: 20170213) uses its mean over the observed rows,
``v_k = mean_i z_i' G_k z_i``; ``at={"Days": 0}`` evaluates ``z' G_k z`` at
chosen covariate values instead (the correlation of two observations of one
group that both have those values).

All of this is computed per draw, so a Bayesian fit gets the posterior of each
ICC and a frequentist fit the plug-in estimate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hierlm.design.blocks import Design
from hierlm.errors import ColumnNotFoundError, DataError, InputTypeError
from hierlm.results.common import (
    as_draws,
    block_labels,
    chains_of,
    mean_random_variance,
    observation_level_blocks,
    random_variance_at,
    residual_variance,
)
from hierlm.results.display import html_report
from hierlm.results.grouped import nested_in
from hierlm.results.structures import require_single_residual_variance
from hierlm.results.summary import point_or_posterior

__all__ = ["IccResult", "icc", "icc_draws", "nesting_matrix"]


def nesting_matrix(design: Design) -> np.ndarray:
    """Which blocks' grouping factors are nested in which.

    Parameters
    ----------
    design : Design
        The model's design.

    Returns
    -------
    numpy.ndarray
        Boolean (K, K): entry ``[a, b]`` is True when each level of block a's
        factor lies inside one level of block b's factor (always True on the
        diagonal and between blocks on the same factor).
    """
    blocks = design.blocks
    out = np.zeros((len(blocks), len(blocks)), dtype=bool)
    for a, inner in enumerate(blocks):
        for b, outer in enumerate(blocks):
            out[a, b] = a == b or nested_in(np.asarray(inner.codes), np.asarray(outer.codes))
    return out


@dataclass(frozen=True)
class IccResult:
    """Intraclass correlations and variance shares of a fit.

    Attributes
    ----------
    correlations : pandas.DataFrame
        One row per set of shared grouping factors: the correlation of two
        observations in the same level(s). Column ``blocks`` lists the
        variance components counted as shared; the other columns are the
        estimate (point fits) or posterior summary (Bayesian fits).
    components : pandas.DataFrame
        One row per variance component (each block, then ``Residual``): its
        variance (``variance``: estimate or posterior mean) and its share of
        the total variance (estimate or posterior summary).
    adjusted : bool
        True when some block has random slopes, so the variances are
        design-averaged (or evaluated at ``at``).
    at : dict or None
        The covariate values used instead of the design average, if any.
    """

    correlations: pd.DataFrame
    components: pd.DataFrame
    adjusted: bool
    at: dict[str, float] | None = field(default=None)

    @property
    def value(self) -> float:
        """The single ICC (estimate or posterior mean) of a one-factor model.

        Raises
        ------
        DataError
            If the model has more than one set of shared factors; read
            :attr:`correlations` then.
        """
        if len(self.correlations) != 1:
            raise DataError(
                f"The fit has {len(self.correlations)} ICCs ({', '.join(self.correlations.index)}); "
                "read them from .correlations."
            )
        row = self.correlations.iloc[0]
        return float(row["estimate"] if "estimate" in row else row["mean"])

    def __repr__(self) -> str:
        kind = "Intraclass correlation"
        if self.at is not None:
            kind += f" at {self.at}"
        elif self.adjusted:
            kind += " (adjusted: random-slope variance averaged over the observed rows)"
        with pd.option_context("display.width", 120, "display.precision", 4):
            return (f"{kind}\n{self.correlations.to_string()}\n\n"
                    f"Variance components and their shares\n{self.components.to_string()}")

    def _repr_html_(self) -> str:
        """The correlations and the variance components, for notebooks."""
        kind = "Intraclass correlation" + (f" at {self.at}" if self.at is not None
                                           else " (adjusted)" if self.adjusted else "")
        return html_report([kind], {"Correlations": self.correlations,
                                    "Variance components and their shares": self.components})


def _shared_sets(design: Design,
                 shared: Iterable[str | Iterable[str]] | None) -> list[tuple[str, list[int]]]:
    """Resolve the requested sets of shared factors to (row label, block indices)."""
    nested = nesting_matrix(design)
    groups = [block.group for block in design.blocks]
    if shared is None:
        requested: list[tuple[str, ...]] = [(g,) for g in dict.fromkeys(groups)]
    else:
        if isinstance(shared, str):
            raise InputTypeError(
                f"shared= takes a list of factor sets, e.g. shared=[({shared!r},)], "
                f"not the string {shared!r}."
            )
        requested = [(item,) if isinstance(item, str) else tuple(item) for item in shared]
    out = []
    for factors in requested:
        unknown = [f for f in factors if f not in groups]
        if unknown or not factors:
            raise ColumnNotFoundError(
                f"shared= names {unknown or factors}, which are not grouping factors of the model; "
                f"its grouping factors are {sorted(set(groups))}."
            )
        members = [k for k, g in enumerate(groups) if g in factors]
        included = sorted({b for a in members for b in range(len(groups)) if nested[a, b]})
        out.append((" & ".join(factors), included))
    return out


def icc(
    fit: object,
    shared: Iterable[str | Iterable[str]] | None = None,
    at: Mapping[str, float] | None = None,
    prob: float | None = None,
    method: str = "lognormal",
    expected_count: np.ndarray | None = None,
) -> IccResult:
    """Intraclass correlation(s) and variance shares of a fit.

    Parameters
    ----------
    fit : FitDraws or fit result
        Any hierlm fit (or its draws).
    shared : list of str or of tuples of str, optional
        Sets of grouping factors two observations share, e.g.
        ``[("plate", "sample")]``; each set gives one row of
        ``correlations``. Default: one row per grouping factor.
    at : dict, optional
        Values of the random-slope columns at which to evaluate the variance
        (``{"Days": 0}``) instead of averaging over the observed rows.
    prob : float, optional
        Interval probability for Bayesian fits (ArviZ default when None).
    method, expected_count
        The latent-scale distribution-specific variance that plays the
        residual variance for non-Gaussian families (see
        :func:`hierlm.results.common.residual_variance`).

    Returns
    -------
    IccResult

    Raises
    ------
    DataError
        If the model has no random effects.
    """
    require_single_residual_variance(fit, "The ICC")
    draws = as_draws(fit)
    design = draws.design
    labels = block_labels(design)
    sets, correlation_draws, variances = icc_draws(draws, shared=shared, at=at, method=method,
                                                   expected_count=expected_count)
    residual = residual_variance(draws, method, expected_count)
    total = variances.sum(axis=1) + residual
    chains = chains_of(draws)
    correlations = point_or_posterior(correlation_draws, draws.point, chains=chains, prob=prob)
    correlations.insert(0, "blocks", [" + ".join(labels[k] for k in idx) for _, idx in sets])
    correlations.index = pd.Index([name for name, _ in sets], name="shared")

    all_variances = np.column_stack([variances, residual])
    shares = point_or_posterior(all_variances / total[:, None], draws.point, chains=chains, prob=prob)
    shares.insert(0, "variance", all_variances.mean(axis=0))
    shares.insert(0, "term", [block.term for block in design.blocks] + [""])
    shares.index = pd.Index(labels + ["Residual"], name="component")
    adjusted = any(column != "Intercept" for block in design.blocks for column in block.columns)
    return IccResult(correlations=correlations, components=shares, adjusted=adjusted,
                     at=None if at is None else dict(at))


def icc_draws(
    fit: object,
    shared: Iterable[str | Iterable[str]] | None = None,
    at: Mapping[str, float] | None = None,
    method: str = "lognormal",
    expected_count: np.ndarray | None = None,
) -> tuple[list[tuple[str, list[int]]], np.ndarray, np.ndarray]:
    """Per-draw intraclass correlations (one draw for a point fit).

    Parameters
    ----------
    fit : FitDraws or fit result
        Any hierlm fit (or its draws).
    shared, at, method, expected_count
        As in :func:`icc`.

    Returns
    -------
    sets : list of (str, list of int)
        Each set of shared factors (``"plate & sample"``) and the blocks it counts.
    correlations : numpy.ndarray
        Shape (S, n_sets): the ICC of each set, per draw.
    variances : numpy.ndarray
        Shape (S, n_blocks): each block's variance, per draw.

    Raises
    ------
    DataError
        If the model has no random effects.
    """
    draws = as_draws(fit)
    design = draws.design
    if not design.blocks:
        residual = getattr(design, "residual", None)
        if residual is not None:
            raise DataError(
                "The model has no random effects, so it has no intraclass correlation (no "
                f"variance share of a group); the within-{residual.spec.group} correlation of "
                f"residual={residual.describe()!r} is read from "
                "fit.residual_covariance(correlation=True).")
        raise DataError("The model has no random effects, so it has no intraclass correlation.")
    variances = mean_random_variance(draws) if at is None else random_variance_at(draws, at)
    variances[:, observation_level_blocks(draws)] = 0.0  # overdispersion: in the residual
    total = variances.sum(axis=1) + residual_variance(draws, method, expected_count)
    sets = _shared_sets(design, shared)
    correlations = np.column_stack([variances[:, idx].sum(axis=1) / total for _, idx in sets])
    return sets, correlations, variances
