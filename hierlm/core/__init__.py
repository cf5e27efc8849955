"""Foundations shared by both engines and the results layer.

Nothing here imports an engine (``hierlm.lmm``, ``hierlm.bayes``) or the
results: these modules sit just above :mod:`hierlm.errors` in the package's
layer order (see ``tests/test_layers.py``).

* :mod:`hierlm.core.defaults`: package-wide defaults (``DEFAULT_PROB``);
* :mod:`hierlm.core.correlation`: the map between free LKJ variables and
  correlation Cholesky factors (the Bayesian parametrisation, also used by
  the profile likelihood of ML/REML fits);
* :mod:`hierlm.core.formatting`: p-values and significance stars as R prints them.
"""

from hierlm.core.defaults import DEFAULT_KIND, DEFAULT_PROB

__all__ = ["DEFAULT_PROB", "DEFAULT_KIND"]
