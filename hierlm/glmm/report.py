"""The printed report of a GLMM fit, laid out like lme4's ``summary`` of a glmer fit."""

from __future__ import annotations

from typing import Any

from hierlm.lmm.report import LmmSummary, _table, format_pvalue, significance_stars

__all__ = ["GlmmSummary"]


def _lme4_name(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name


class GlmmSummary(LmmSummary):
    """Printable summary of a :class:`~hierlm.glmm.result.GlmmResult` (glmer's layout)."""

    def _header(self) -> list[str]:
        fit = self.fit
        how = ("Laplace Approximation" if fit.nagq == 1
               else f"Adaptive Gauss-Hermite Quadrature (nAGQ = {fit.nagq})")
        lines = [f"Generalized linear mixed model fit by maximum likelihood ({how})",
                 f" Family: {fit.family.name}  ( {fit.family.link.name} )"]
        if fit.dispersion is not None:
            lines[-1] += f"; {fit.family.dispersion_name} = {fit.dispersion:.4g}"
        model: Any = fit.model
        if model is not None:
            lines.append(f"Formula: {model.formula}")
        lines.append("")
        rows = [["AIC", "BIC", "logLik", "deviance", "df.resid"],
                [f"{fit.aic:.1f}", f"{fit.bic:.1f}", f"{fit.loglik:.1f}", f"{fit.deviance:.1f}",
                 f"{fit.df_residual}"]]
        lines.extend(_table(rows, ["r"] * 5))
        lines.append("")
        q = fit.scaled_residual_quantiles()
        lines.append("Scaled residuals:")
        lines.extend(_table([["Min", "1Q", "Median", "3Q", "Max"], [f"{v:.4f}" for v in q]],
                            ["r"] * 5))
        return lines

    def _random(self) -> list[str]:
        return super()._random()

    def _fixed(self) -> list[str]:
        rows = [["", "Estimate", "Std. Error", "z value", "Pr(>|z|)", ""]]
        for name, row in self.fixed.iterrows():
            rows.append([_lme4_name(str(name)), f"{row['estimate']:.4g}", f"{row['std_error']:.4g}",
                         f"{row['z_value']:.3f}", format_pvalue(row["p_value"]),
                         significance_stars(row["p_value"])])
        lines = ["Fixed effects:"]
        lines.extend(_table(rows, ["l", "r", "r", "r", "r", "l"]))
        lines.append("---")
        lines.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        return lines
