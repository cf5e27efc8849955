"""ML fits of generalised linear mixed models: PIRLS, Laplace and adaptive Gauss-Hermite quadrature.

``fit_glmm(design, family, nagq=1)`` (:mod:`hierlm.glmm.fit`) returns a
:class:`~hierlm.glmm.result.GlmmResult`. The penalised system and its block
Cholesky factor are in :mod:`hierlm.glmm.system`, PIRLS in
:mod:`hierlm.glmm.pirls`, quadrature in :mod:`hierlm.glmm.quadrature`.
"""

from hierlm.glmm.fit import fit_glmm

__all__ = ["fit_glmm"]
