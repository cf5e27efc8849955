"""lme4 formula language: text -> response, fixed part and random-effect terms. Knows no data."""

from hierlm.formula.expand import BarTerm, expand_bars
from hierlm.formula.parser import Bar, ParsedFormula, parse_formula

__all__ = ["Bar", "BarTerm", "ParsedFormula", "expand_bars", "parse_formula"]
