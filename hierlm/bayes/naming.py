"""Names of the posterior variables, dimensions and coordinates of a Bayesian fit.

Both formulations (full and marginal) and every sampler produce the same names,
so that results code never needs to know how a posterior was obtained:

==========================  =====================================  ===============
variable                    dims                                   meaning
==========================  =====================================  ===============
``fixef``                   ``fixef_term``                         fixed effects
``sigma``                   (scalar)                               residual SD
``sd_<block>``              ``<block>_term``                       SDs of a block
``cor_<block>``             ``<block>_pair``                       correlations
``ranef_<block>``           ``<block>_term``, ``<block>_level``    group effects
==========================  =====================================  ===============

(after the sample dims ``chain``, ``draw``; a MAP fit has none).

``<block>`` is the grouping factor's name, with ``.1``, ``.2`` ... appended for
the second, third ... block on the same factor (``(1 | g) + (0 + x | g)`` gives
blocks ``g`` and ``g.1``), which is the labelling of lme4's
``as.data.frame(VarCorr(fit))``. A correlation pair coordinate is the string
``"Intercept,Days"`` (``varcorr()`` has the two terms in separate columns).

The layout is chosen so that ArviZ reads the posterior as it is stored:

* every coordinate is an index coordinate of its dimension (no auxiliary
  coordinates), so ``az.summary`` can combine the variables' summaries;
* a dimension shared by two variables (``<block>_term`` in ``sd_<block>``
  and ``ranef_<block>``) comes first in both. ArviZ 1.3 stacks a
  dataset's variables along the dimensions in their order of first
  appearance but labels each value in its variable's own dimension order, so
  ``ranef_Subject(Subject_level, Subject_term)`` after
  ``sd_Subject(Subject_term)`` would get the labels of the transposed
  values. With the term first the order is the same whichever variable comes
  first, and ``az.summary(fit.idata)`` labels every value right.

Code that reads the draws should select dimensions by name
(:meth:`BlockNames.effects`), not by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.design.blocks import Design, RandomBlock

__all__ = [
    "FIXEF",
    "SIGMA",
    "OBS_DIM",
    "FIXEF_DIM",
    "BlockNames",
    "block_names",
    "pair_label",
    "observation_coords",
    "response_variable",
]

FIXEF = "fixef"
SIGMA = "sigma"
OBS_DIM = "obs"
FIXEF_DIM = "fixef_term"


def observation_coords(design: Design) -> list[object]:
    """Labels of the observations: the data frame's row index when known, else 0..n-1."""
    if design.row_index is not None and len(design.row_index) == design.n:
        return list(np.asarray(design.row_index))
    return list(range(design.n))


def response_variable(design: Design) -> str:
    """Name of the response in the DataTree groups: the response's text, ``/`` written ``∕``.

    DataTree variable names cannot hold ``/`` (a path separator), which a
    proportion response such as ``incidence/size`` has; U+2215 (division
    slash) stands in for it.
    """
    return design.response.replace("/", "\u2215")


def pair_label(term1: str, term2: str) -> str:
    """Return the coordinate label of one correlation pair, e.g. ``"Intercept,Days"``."""
    return f"{term1},{term2}"


@dataclass(frozen=True)
class BlockNames:
    """Every name used for one random-effect block in a posterior.

    Attributes
    ----------
    label : str
        Unique block label (group name, ``.1``-suffixed for repeats).
    block : RandomBlock
        The design block these names belong to.
    """

    label: str
    block: RandomBlock

    @property
    def sd(self) -> str:
        """Name of the block's SD vector."""
        return f"sd_{self.label}"

    @property
    def cor(self) -> str:
        """Name of the block's vector of pairwise correlations."""
        return f"cor_{self.label}"

    @property
    def ranef(self) -> str:
        """Name of the block's group effects (terms x levels, see :attr:`ranef_dims`)."""
        return f"ranef_{self.label}"

    @property
    def corr_chol(self) -> str:
        """Name of the free Cholesky factor of the block's correlation matrix."""
        return f"corr_chol_{self.label}"

    @property
    def z_std(self) -> str:
        """Name of the standard-normal innovations of the full formulation."""
        return f"z_{self.label}"

    @property
    def term_dim(self) -> str:
        """Dimension of the block's terms."""
        return f"{self.label}_term"

    @property
    def level_dim(self) -> str:
        """Dimension of the block's grouping levels."""
        return f"{self.label}_level"

    @property
    def pair_dim(self) -> str:
        """Dimension of the block's correlation pairs."""
        return f"{self.label}_pair"

    @property
    def ranef_dims(self) -> tuple[str, str]:
        """Dimensions of the group effects after the sample dims: ``(<block>_term, <block>_level)``."""
        return (self.term_dim, self.level_dim)

    def effects(self, group: Any) -> np.ndarray:
        """The block's group effects in ``group`` as an array ``(..., levels, terms)``.

        Parameters
        ----------
        group : xarray.Dataset or xarray.DataTree
            A ``posterior``, ``prior`` or ``map`` group holding :attr:`ranef`.

        Returns
        -------
        numpy.ndarray
            The sample dims (if any) first, then levels and terms, whatever
            order the dims are stored in (fits saved before the term-first
            layout keep levels first).
        """
        values = group[self.ranef]
        return np.asarray(values.transpose(..., self.level_dim, self.term_dim).values)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """Index pairs ``(i, j)`` with ``i < j`` in lme4's order (column-major lower triangle)."""
        q = self.block.q
        return [(i, j) for i in range(q) for j in range(i + 1, q)]

    @property
    def pair_terms(self) -> list[tuple[str, str]]:
        """Term-name pairs of the correlations, in the order of :attr:`pairs`."""
        cols = self.block.columns
        return [(cols[i], cols[j]) for i, j in self.pairs]

    def coords(self) -> dict[str, list[str]]:
        """Dimension coordinates of the block's variables."""
        coords = {
            self.term_dim: list(self.block.columns),
            self.level_dim: [str(level) for level in self.block.levels],
        }
        if self.block.correlated:
            coords[self.pair_dim] = [pair_label(a, b) for a, b in self.pair_terms]
        return coords


def block_names(design: Design) -> list[BlockNames]:
    """Return the names of every block of ``design``, in the design's block order.

    Parameters
    ----------
    design : Design
        The model's design.

    Returns
    -------
    list of BlockNames
        One entry per random-effect block; labels are unique.
    """
    return [
        BlockNames(label=label, block=block)
        for label, block in zip(design.block_labels(), design.blocks, strict=True)
    ]
