"""Estimated marginal means (least-squares means) and their contrasts, as R's emmeans.

``fit.emmeans("Machine")`` builds the reference grid of the model
(:mod:`hierlm.results.refgrid`: every factor's levels, covariates at their
means or at ``at=``), predicts each grid row from the fixed effects and
averages, with equal weights, over the factors not named in ``specs`` or
``by``. Each marginal mean is a linear function ``L beta`` of the fixed
effects, so:

* ML/REML fits: ``estimate = L beta_hat``, ``std_error = sqrt(L V L')`` and
  Satterthwaite's df (lmerTest's, which emmeans uses with
  ``lmer.df = "satterthwaite"``) or Kenward-Roger's adjusted covariance and df
  (pbkrtest's, emmeans's default for lmer fits); t intervals.
* Bayesian fits: ``L beta`` per posterior draw; posterior mean, SD and
  equal-tailed interval.

:meth:`EmmeansResult.pairs` compares every two means (``level_i - level_j``
for i before j, emmeans's ``pairs``) with a multiple-comparison adjustment
within each ``by`` group: Tukey's studentized range for the number of means
in the family (emmeans's default), Holm, Bonferroni or none. On posterior
draws the p-value is replaced by ``prob_direction``, the posterior
probability of the estimate's sign. :meth:`EmmeansResult.contrast` takes
custom weights, or a named family (``"pairwise"``, ``"revpairwise"``,
``"trt.vs.ctrl"``, ``"consec"``).

Non-Gaussian fits: the means are linear on the link scale. ``type="response"``
reports them as emmeans's ``type = "response"`` does (``prob`` of a binomial
model, ``rate`` of a count model): ``g^-1(L beta)``, the delta-method standard
error ``|d mu / d eta| * SE``, and the link-scale interval's bounds mapped
through ``g^-1`` (asymp.LCL/UCL; not ``estimate +- z SE``). Bayesian fits
transform every draw instead (posterior mean, SD and equal-tailed interval of
``g^-1(L beta)``). Contrasts of response-scale means on a logit or log link
are the ``exp`` of the link-scale contrasts: odds ratios or ratios (``"a /
b"``, SE by the delta method, bounds ``exp`` of the link-scale ones, the test
on the link scale); on other links they stay on the link scale, as emmeans's.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from hierlm.core.ddf import check_ddf
from hierlm.errors import GridError, InputTypeError
from hierlm.results.common import as_draws
from hierlm.results.linear import (
    LinearEstimates,
    LinearFunction,
    check_adjust,
    comparison_table,
    estimate_linear,
    interval_table,
)
from hierlm.results.refgrid import reference_grid

__all__ = ["EmmeansResult", "emmeans", "response_scale", "SCALES"]

_METHODS = ("pairwise", "revpairwise", "trt.vs.ctrl", "consec")

#: ``type=`` choices: the link scale (the linear predictor) or the response (mean) scale.
SCALES = ("link", "response")


def response_scale(est: LinearEstimates, link: Any) -> LinearEstimates:
    """Means on the link scale mapped to the response scale (emmeans's ``type = "response"``).

    Draws are transformed one by one. Point estimates get ``g^-1(estimate)`` and
    the delta-method SE ``|d mu / d eta| * SE``; their interval bounds are
    :func:`response_bounds` of the link-scale interval.
    """
    if est.draws is not None:
        values = np.asarray(link.inverse(est.draws), dtype=float)
        std = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.zeros(values.shape[1])
        return LinearEstimates(estimate=values.mean(axis=0), std_error=std, df=est.df,
                               draws=values, n_chains=est.n_chains, bayesian=True)
    eta = np.asarray(est.estimate, dtype=float)
    return LinearEstimates(estimate=np.asarray(link.inverse(eta), dtype=float),
                           std_error=np.abs(link.mu_eta(eta)) * est.std_error, df=est.df,
                           bayesian=est.bayesian)


def response_table(est: LinearEstimates, link: Any, prob: float | None) -> pd.DataFrame:
    """:func:`interval_table` on the response scale: bounds ``g^-1`` of the link-scale ones."""
    table = interval_table(response_scale(est, link), prob)
    if est.draws is None:
        on_link = interval_table(est, prob)
        table["lower"] = link.inverse(on_link["lower"].to_numpy())
        table["upper"] = link.inverse(on_link["upper"].to_numpy())
    table.attrs["scale"] = "response"
    return table


def _ratio_table(est: LinearEstimates, table: pd.DataFrame, prob: float | None,
                 name: str) -> pd.DataFrame:
    """Link-scale contrasts ``d`` of a log or logit link read as ratios ``exp(d)``."""
    out = table.copy()
    if est.draws is None:
        bounds = interval_table(est, prob)
        out["estimate"] = np.exp(est.estimate)
        out["std_error"] = np.exp(est.estimate) * est.std_error
        out.insert(out.columns.get_loc("std_error") + 1, "lower", np.exp(bounds["lower"]))
        out.insert(out.columns.get_loc("lower") + 1, "upper", np.exp(bounds["upper"]))
        if est.bayesian:
            out = out.drop(columns=[c for c in ("df",) if c in out.columns])
    else:
        ratios = np.exp(est.draws)
        out["estimate"] = ratios.mean(axis=0)
        out["std_error"] = ratios.std(axis=0, ddof=1) if ratios.shape[0] > 1 else 0.0
        out["lower"], out["upper"] = np.exp(table["lower"]), np.exp(table["upper"])
    out.attrs.update(table.attrs, scale=name)
    return out


def _names(value: str | Sequence[str] | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InputTypeError(f"{what} must be a column name or a list of names, not {value!r}.")


def _label(row: pd.Series, keys: Sequence[str]) -> str:
    return " ".join(str(row[k]) for k in keys)


@dataclass(frozen=True, eq=False)
class EmmeansResult:
    """Estimated marginal means of a fit; contrasts of them with :meth:`pairs` and :meth:`contrast`.

    Attributes
    ----------
    fit : fit result
        The fit the means come from.
    specs, by : list of str
        The factors tabulated, and the factors that split the table (and the
        comparison families).
    cells : pandas.DataFrame
        One row per mean: the specs and by values.
    function : LinearFunction
        ``L``: the means as linear functions of the fixed effects.
    ddf : str
        Denominator df method of ML/REML fits.
    prob : float or None
        Interval probability.
    type : {"link", "response"}
        The scale of :attr:`table` (see the module docstring).
    """

    fit: Any
    specs: list[str]
    by: list[str]
    cells: pd.DataFrame
    function: LinearFunction
    ddf: str
    prob: float | None
    type: str = "link"

    @property
    def link(self) -> Any:
        """The fit's link (identity for Gaussian fits)."""
        from hierlm.families import get_link

        family = as_draws(self.fit).family
        return get_link("identity") if family is None else family.link

    @cached_property
    def _estimates(self) -> LinearEstimates:
        """The means evaluated on the fit (computed once)."""
        return estimate_linear(self.fit, self.function, self.ddf)

    @property
    def table(self) -> pd.DataFrame:
        """One row per mean: the factor columns, ``estimate``, ``std_error``, ``df``, ``lower``, ``upper``.

        Posterior draws have no ``df`` column (posterior mean, SD and equal-tailed interval).
        ``type="response"``: the means on the response scale (see the module docstring;
        ``attrs["scale"]``).
        """
        est = self._estimates
        if self.type == "response":
            body = response_table(est, self.link, self.prob)
        else:
            body = interval_table(est, self.prob)
            body.attrs["scale"] = "link"
        table = pd.concat([self.cells.reset_index(drop=True), body], axis=1)
        table.attrs.update(body.attrs, ddf=self.ddf if est.point else None)
        return table

    def _families(self) -> list[np.ndarray]:
        """Row indices of the means in each ``by`` group (one family without ``by``)."""
        if not self.by:
            return [np.arange(len(self.cells))]
        keys = self.cells[self.by].astype(str).agg("\x1f".join, axis=1).to_numpy()
        return [np.flatnonzero(keys == k) for k in pd.unique(keys)]

    def _weights(self, method: str | Mapping[str, Sequence[float]] | Sequence[float],
                 size: int) -> tuple[list[str], np.ndarray]:
        """Contrast labels and weights over one family's means (names of the family's means)."""
        if isinstance(method, str):
            if method not in _METHODS:
                raise InputTypeError(f"Unknown contrast method {method!r}; choose one of "
                                     f"{', '.join(_METHODS)}, or pass weights.")
            pairs: list[tuple[int, int]]
            if method == "pairwise":
                pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
            elif method == "revpairwise":
                pairs = [(j, i) for i in range(size) for j in range(i + 1, size)]
            elif method == "trt.vs.ctrl":
                pairs = [(j, 0) for j in range(1, size)]
            else:
                pairs = [(j + 1, j) for j in range(size - 1)]
            weights = np.zeros((len(pairs), size))
            for r, (i, j) in enumerate(pairs):
                weights[r, i], weights[r, j] = 1.0, -1.0
            return [f"{i} - {j}" for i, j in pairs], weights
        items = list(method.items()) if isinstance(method, Mapping) else [("contrast", method)]
        labels, rows = [], []
        for name, values in items:
            try:
                vector = np.asarray(values, dtype=float).ravel()
            except (TypeError, ValueError):
                raise InputTypeError(f"Contrast {name!r} must be numbers, got {values!r}.") from None
            if vector.size != size:
                raise InputTypeError(f"Contrast {name!r} has {vector.size} weights; there are {size} "
                                     "means per family.")
            labels.append(str(name))
            rows.append(vector)
        return labels, np.vstack(rows)

    def contrast(self, weights: str | Mapping[str, Sequence[float]] | Sequence[float] = "pairwise",
                 adjust: str = "none") -> pd.DataFrame:
        """Contrasts of the means within each ``by`` group.

        Parameters
        ----------
        weights : str, dict or sequence of float
            ``"pairwise"``, ``"revpairwise"``, ``"trt.vs.ctrl"`` (each vs the
            first), ``"consec"`` (each vs the previous); a dict label -> weights
            (one per mean of a family, in table order), or one weight vector.
        adjust : {"none", "tukey", "holm", "bonferroni"}
            Multiple-comparison adjustment within each family.

        Returns
        -------
        pandas.DataFrame
            ``contrast`` (and the by columns), then ``estimate, std_error, df,
            t_value, p_value`` (ML/REML/MAP) or ``estimate, std_error, lower,
            upper, prob_direction`` (posterior draws). Means on the response
            scale of a logit or log link: ``exp`` of the contrasts, odds ratios
            or ratios (labels ``a / b``; ``lower``, ``upper`` added; the test
            and ``prob_direction`` on the link scale; ``attrs["scale"]``).
        """
        adjust = check_adjust(adjust)
        families = self._families()
        size = len(families[0])
        rows, labels, keys, family_ids = [], [], [], []
        names = [_label(r, self.specs) for _, r in self.cells.iterrows()]
        ratio = self.link.ratio_name if self.type == "response" else None
        between = " / " if ratio else " - "
        for f, members in enumerate(families):
            contrast_labels, weights_matrix = self._weights(weights, size)
            full = np.zeros((weights_matrix.shape[0], len(self.cells)))
            full[:, members] = weights_matrix
            rows.append(full)
            if isinstance(weights, str):
                for text in contrast_labels:
                    i, j = (int(x) for x in text.split(" - "))
                    labels.append(f"{names[members[i]]}{between}{names[members[j]]}")
            else:
                labels.extend(contrast_labels)
            keys.extend([self.cells.iloc[members[0]][self.by]] * weights_matrix.shape[0])
            family_ids.extend([f] * weights_matrix.shape[0])
        function = self.function.combine(np.vstack(rows))
        est = estimate_linear(self.fit, function, self.ddf)
        body = comparison_table(est, adjust, n_means=size, prob=self.prob,
                                families=np.asarray(family_ids))
        head = pd.DataFrame({"contrast": labels})
        if self.by:
            head = pd.concat([head, pd.DataFrame(keys).reset_index(drop=True)], axis=1)
        if ratio:
            body = _ratio_table(est, body, self.prob, ratio)
        else:
            body.attrs["scale"] = "link"
        table = pd.concat([head, body], axis=1)
        table.attrs.update(body.attrs, n_means=size, ddf=self.ddf if est.point else None)
        return table

    def pairs(self, adjust: str = "tukey", reverse: bool = False) -> pd.DataFrame:
        """Every pairwise difference of the means within each ``by`` group (emmeans's ``pairs``).

        Parameters
        ----------
        adjust : {"tukey", "holm", "bonferroni", "none"}
            Multiple-comparison adjustment over the pairs of a family; Tukey
            uses the studentized range of the family's number of means.
        reverse : bool
            ``level_j - level_i`` instead of ``level_i - level_j``.

        Returns
        -------
        pandas.DataFrame
            As :meth:`contrast`.
        """
        return self.contrast("revpairwise" if reverse else "pairwise", adjust=adjust)

    def __repr__(self) -> str:
        by = f" by {', '.join(self.by)}" if self.by else ""
        return (f"Estimated marginal means of {', '.join(self.specs) or 'the grand mean'}{by}:\n"
                f"{self.table.to_string(index=False)}")

    def _repr_html_(self) -> str:
        """The table, for notebooks."""
        title = html.escape(f"Estimated marginal means of {', '.join(self.specs)}")
        return f"<p><b>{title}</b></p>" + self.table.to_html(index=False)


def emmeans(fit: Any, specs: str | Sequence[str], by: str | Sequence[str] | None = None,
            at: Mapping[str, Any] | None = None, ddf: str = "satterthwaite",
            prob: float | None = None, type: str = "link") -> EmmeansResult:  # noqa: A002
    """Estimated marginal means over a reference grid (see the module docstring).

    Parameters
    ----------
    fit : fit result
        A fit made through :class:`hierlm.Model` (REML, ML, MAP or NUTS).
    specs : str or list of str
        Factor(s) whose level combinations get a mean.
    by : str or list of str, optional
        Factor(s) that split the means into families.
    at : dict, optional
        Covariate -> value(s) for the grid (default: the covariate's mean);
        factor -> the levels to keep.
    ddf : {"satterthwaite", "kenward-roger"}
        Denominator df of ML/REML fits.
    prob : float, optional
        Interval probability (``hierlm.DEFAULT_PROB`` when None).
    type : {"link", "response"}
        Scale of the table: the linear predictor (emmeans's default) or the mean
        (``g^-1``, see the module docstring). The same for Gaussian fits.

    Returns
    -------
    EmmeansResult

    Raises
    ------
    GridError
        For a spec or by that is not a factor of the model, or ``at`` naming a
        column that is not one of its covariates or factors.
    """
    ddf = check_ddf(ddf)
    if type not in SCALES:
        raise InputTypeError(f"type={type!r}: choose 'link' (the linear predictor) or "
                             "'response' (the mean, through the inverse link).")
    spec_names, by_names = _names(specs, "specs"), _names(by, "by")
    if not spec_names:
        raise GridError("specs is empty; name the factor(s) whose means you want, e.g. 'Machine'.")
    overlap = sorted(set(spec_names) & set(by_names))
    if overlap:
        raise GridError(f"{overlap} appear in both specs and by; list each factor once.")
    grid = reference_grid(fit, spec_names + by_names, at)
    cells, weights = grid.cells(spec_names + by_names)
    function = LinearFunction(weights @ grid.X)
    # the first key varies fastest, so the by keys (last) already group the rows
    return EmmeansResult(fit=fit, specs=spec_names, by=by_names, cells=cells, function=function,
                         ddf=ddf, prob=prob, type=type)
