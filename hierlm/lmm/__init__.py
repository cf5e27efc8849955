"""ML / REML fitting of linear mixed models with lme4's criteria.

``fit_lmm(design, reml=...)`` minimises the profiled criterion of
:mod:`hierlm.lmm.objective` over theta and returns an :class:`LmmResult`.
"""

from hierlm.lmm.fit import fit_lmm
from hierlm.lmm.objective import LmmObjective, objective
from hierlm.lmm.optimum import FitRecord
from hierlm.lmm.result import LmmResult

__all__ = ["fit_lmm", "FitRecord", "LmmObjective", "LmmResult", "objective"]
