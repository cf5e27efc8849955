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
``ranef_<block>``           ``<block>_level``, ``<block>_term``    group effects
==========================  =====================================  ===============

``<block>`` is the grouping factor's name, with ``.1``, ``.2`` ... appended for
the second, third ... block on the same factor (``(1 | g) + (0 + x | g)`` gives
blocks ``g`` and ``g.1``), which is the labelling of lme4's
``as.data.frame(VarCorr(fit))``. A correlation pair coordinate is the string
``"Intercept,Days"``; the two coordinates ``<block>_term1`` and
``<block>_term2`` along the pair dimension carry the two term names separately,
so a row of the correlation table is found without parsing strings.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        """Name of the block's group effects (levels x terms)."""
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
