"""The printed report of an ML/REML fit, laid out like lme4's/lmerTest's ``summary``."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from hierlm.core.defaults import DEFAULT_PROB
from hierlm.core.formatting import format_pvalue, significance_stars
from hierlm.results.display import FitSummary, html_report

__all__ = ["LmmSummary", "abbreviate", "format_pvalue", "significance_stars"]


def _table(rows: list[list[str]], align: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(w) if a == "l" else c.rjust(w)
                 for c, w, a in zip(r, widths, align, strict=True)]
        lines.append(" ".join(cells).rstrip())
    return lines


def abbreviate(name: str, length: int = 6) -> str:
    """Shorten a name roughly as R's ``abbreviate`` does.

    Lower-case vowels, then other lower-case letters, are dropped from the end
    (never the first character) until the name fits, then it is truncated.
    """
    chars = list(name)
    for letters in ("aeiou", "abcdefghijklmnopqrstuvwxyz"):
        i = len(chars) - 1
        while len(chars) > length and i > 0:
            if chars[i] in letters:
                del chars[i]
            i -= 1
    return "".join(chars[:length])


def _lme4_name(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name


class LmmSummary(FitSummary):
    """Printable summary of an :class:`~hierlm.lmm.result.LmmResult`.

    Attributes
    ----------
    fit : LmmResult
        The fit being summarised.
    prob : float or None
        Confidence level of the intervals in the tables (``hierlm.DEFAULT_PROB`` when None).
    fixed : pandas.DataFrame
        ``fit.fixef(prob=prob)``: estimate, std_error, interval, df, t_value, p_value.
    random : pandas.DataFrame
        ``fit.varcorr(prob=prob)``.
    """

    def _header(self) -> list[str]:
        fit = self.fit
        how = "REML" if fit.reml else "maximum likelihood"
        lines = [f"Linear mixed model fit by {how}. t-tests use Satterthwaite's method"]
        model: Any = fit.model
        if model is not None:
            lines.append(f"Formula: {model.formula}")
        lines.append("")
        if fit.reml:
            lines.append(f"REML criterion at convergence: {fit.criterion:.1f}")
        else:
            rows = [["AIC", "BIC", "logLik", "deviance", "df.resid"],
                    [f"{fit.aic:.1f}", f"{fit.bic:.1f}", f"{fit.loglik:.1f}",
                     f"{fit.deviance:.1f}", f"{fit.df_residual}"]]
            lines.extend(_table(rows, ["r"] * 5))
        lines.append("")
        q = fit.scaled_residual_quantiles()
        lines.append("Scaled residuals:")
        lines.extend(_table([["Min", "1Q", "Median", "3Q", "Max"], [f"{v:.4f}" for v in q]],
                            ["r"] * 5))
        return lines

    def _random(self) -> list[str]:
        fit = self.fit
        vc = self.random
        rows = [["Groups", "Name", "Variance", "Std.Dev.", "Corr"]]
        for label in dict.fromkeys(vc["group"]):
            part = vc[vc["group"] == label]
            variances = part[part["term2"].isna()]
            cors = part[part["term2"].notna()]
            terms = list(variances["term1"]) if label != "Residual" else [""]
            for i, (_, row) in enumerate(variances.iterrows()):
                corr_cells = []
                for j in range(i):
                    hit = cors[(cors["term1"] == terms[j]) & (cors["term2"] == terms[i])]
                    corr_cells.append(f"{hit['estimate'].iloc[0]:.2f}" if len(hit) else "")
                name = "" if label == "Residual" else _lme4_name(str(row["term1"]))
                rows.append([label if i == 0 else "", name, f"{row['vcov']:.4g}",
                             f"{row['estimate']:.4g}", " ".join(corr_cells)])
        lines = ["Random effects:"]
        lines.extend(" " + line for line in _table(rows, ["l", "l", "r", "r", "l"]))
        groups = ", ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
        residual = fit.design.residual
        if (residual is not None and residual.spec.name != "independent"
                and residual.spec.group not in fit.ngroups):
            groups = ", ".join(filter(None, [groups, f"{residual.spec.group}, "
                                                     f"{len(residual.group_labels)}"]))
        lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
        return lines + self._structures()

    def _structures(self) -> list[str]:
        """The patterned and residual structures' own parameters (nlme's ``Correlation Structure``)."""
        table = self.fit.structure_parameters()
        if table.empty:
            return []
        lines = []
        for structure, part in table.groupby("structure", sort=False):
            values = ", ".join(f"{row['parameter']} = {row['estimate']:.4g}"
                               for _, row in part.iterrows())
            lines.append(f"Structure {structure}: {values}")
        residual = self.fit.design.residual
        if residual is not None:
            lines.append("The Residual row is the SD at the first time (and first variance level).")
        return lines

    def _fixed(self) -> list[str]:
        table = self.fixed
        rows = [["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)", ""]]
        for name, row in table.iterrows():
            rows.append([_lme4_name(str(name)), f"{row['estimate']:.4g}",
                         f"{row['std_error']:.4g}", f"{row['df']:.3f}", f"{row['t_value']:.3f}",
                         format_pvalue(row["p_value"]), significance_stars(row["p_value"])])
        lines = ["Fixed effects:"]
        lines.extend(_table(rows, ["l", "r", "r", "r", "r", "r", "l"]))
        lines.append("---")
        lines.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        return lines

    def _correlation(self) -> list[str]:
        names = [_lme4_name(n) for n in self.fit.design.fixed_names]
        p = len(names)
        if p < 2 or p > 6:
            return []
        cov = self.fit.vcov().to_numpy()
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
        short = [abbreviate(n) for n in names]
        rows = [[""] + short[:-1]]
        for i in range(1, p):
            rows.append([names[i]] + [f"{corr[i, j]:.3f}" for j in range(i)]
                        + [""] * (p - 1 - i))
        lines = ["Correlation of Fixed Effects:"]
        lines.extend(_table(rows, ["l"] + ["r"] * (p - 1)))
        return lines

    def _repr_html_(self) -> str:
        """The lme4-style report as preformatted text, then the two tables, for notebooks."""
        return (f"<div class='hierlm-result'><pre>{html.escape(str(self))}</pre></div>"
                + html_report([f"Tables at prob={self.prob or DEFAULT_PROB}"],
                              {"Fixed effects": self.fixed, "Variance components": self.random}))

    def __str__(self) -> str:
        parts = [self._header(), [""], self._random(), [""], self._fixed()]
        corr = self._correlation()
        if corr:
            parts += [[""], corr]
        record = self.fit.fit_record
        notes = []
        if self.fit.is_singular:
            notes.append("boundary (singular) fit: " + ", ".join(self.fit.singular_components()))
        if not record.converged:
            notes.append(f"optimizer did not converge: {record.message}")
        if notes:
            parts += [[""], notes]
        return "\n".join(line for part in parts for line in part)
