"""The ML/REML criterion over the covariance structures' own parameters.

The kernel (:class:`~hierlm.lmm.objective.LmmObjective`) works on the entries
of the relative covariance factors (lme4's theta for ``us``/``diag`` blocks,
every lower-triangular entry for patterned blocks). :class:`ParameterMap`
maps the structures' parameters ``phi`` to those entries and gives the
Jacobian, and :class:`StructuredObjective` is the criterion over ``phi``:
the same value, and the kernel's exact gradient times the Jacobian. It
answers the kernel's interface (``components``, ``solution``, bounds,
start), so the optimiser, Satterthwaite's df and the result classes take it
in place of the kernel. When every block is ``us`` or ``diag``, ``phi`` is
lme4's theta and the kernel itself is used (:func:`criterion_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.design.blocks import Design
from hierlm.design.crossprod import crossproducts
from hierlm.lmm.conditioning import conditioned_objective
from hierlm.lmm.grouped import GroupedObjective
from hierlm.lmm.objective import Components, LmmObjective, Solution

__all__ = ["ParameterMap", "StructuredObjective", "Criterion", "criterion_for"]


@dataclass(frozen=True, eq=False)
class ParameterMap:
    """Where each block's structure parameters sit, and how they fill the kernel's theta.

    Attributes
    ----------
    design : Design
        The design whose blocks carry the structures.
    phi_start : numpy.ndarray
        Offset of each block's parameters in ``phi`` (length ``n_blocks + 1``).
    theta_start : numpy.ndarray
        Offset of each block's entries in the kernel's theta.
    """

    design: Design
    phi_start: np.ndarray
    theta_start: np.ndarray

    @classmethod
    def of(cls, design: Design, kernel: LmmObjective) -> ParameterMap:
        """Build the map of a design (its blocks' structures) for its kernel."""
        sizes = [block.structure.n_params for block in design.blocks]
        return cls(design, np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
                   np.asarray(kernel.cp.layout.block_start, dtype=np.int64))

    @property
    def size(self) -> int:
        """Number of structure parameters."""
        return int(self.phi_start[-1])

    @property
    def identity(self) -> bool:
        """True when every structure's parameters are lme4's theta."""
        return all(block.structure.is_lme4 for block in self.design.blocks)

    def _slices(self, vector: np.ndarray, start: np.ndarray) -> list[np.ndarray]:
        return [vector[start[k]:start[k + 1]] for k in range(len(self.design.blocks))]

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names, block by block (lme4's theta names for us/diag blocks)."""
        labels = self.design.block_labels()
        return tuple(name for block, label in zip(self.design.blocks, labels, strict=True)
                     for name in block.structure.param_names(label, block.columns))

    @property
    def lower(self) -> np.ndarray:
        """Lower bounds of ``phi``."""
        return np.concatenate([b.structure.lower() for b in self.design.blocks] or [np.zeros(0)])

    def start(self) -> np.ndarray:
        """Starting ``phi`` (unit relative SDs, no correlation)."""
        return np.concatenate([b.structure.start() for b in self.design.blocks] or [np.zeros(0)])

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The optimiser's box of ``phi`` (:meth:`CovarianceStructure.box`)."""
        boxes = [b.structure.box() for b in self.design.blocks]
        if not boxes:
            return np.zeros(0), np.zeros(0)
        return (np.concatenate([lo for lo, _ in boxes]), np.concatenate([hi for _, hi in boxes]))

    def block_of(self) -> np.ndarray:
        """Index of the design block of each parameter."""
        return np.repeat(np.arange(len(self.design.blocks)), np.diff(self.phi_start))

    def theta(self, phi: np.ndarray) -> np.ndarray:
        """The kernel's theta (template entries) at ``phi``."""
        phi = np.asarray(phi, dtype=float)
        out = np.empty(int(self.theta_start[-1]))
        for block, part, k in zip(self.design.blocks, self._slices(phi, self.phi_start),
                                  range(len(self.design.blocks)), strict=True):
            structure = block.structure
            template = structure.template(part)
            rows, cols = zip(*structure.kernel_pattern(), strict=True)
            out[self.theta_start[k]:self.theta_start[k + 1]] = template[list(rows), list(cols)]
        return out

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        """``d theta / d phi``, shape ``(n_theta, n_phi)`` (block diagonal)."""
        phi = np.asarray(phi, dtype=float)
        out = np.zeros((int(self.theta_start[-1]), self.size))
        for k, block in enumerate(self.design.blocks):
            structure = block.structure
            part = phi[self.phi_start[k]:self.phi_start[k + 1]]
            rows, cols = zip(*structure.kernel_pattern(), strict=True)
            d_template = structure.template_jacobian(part)[:, list(rows), list(cols)]
            out[self.theta_start[k]:self.theta_start[k + 1],
                self.phi_start[k]:self.phi_start[k + 1]] = d_template.T
        return out

    def natural(self, phi: np.ndarray) -> list[dict[str, float]]:
        """Per block, the structure's natural-scale parameters (``rho`` ...)."""
        return [block.structure.natural(part) for block, part in
                zip(self.design.blocks, self._slices(np.asarray(phi, float), self.phi_start),
                    strict=True)]


class StructuredObjective:
    """lme4's profiled deviance / REML criterion as a function of the structures' parameters.

    Parameters
    ----------
    kernel : LmmObjective
        The kernel over the template entries.
    parameters : ParameterMap
        The map from structure parameters to template entries.
    """

    #: The optimiser must keep the scale parameters at or above 0 (signs are not free).
    needs_bounds = True

    def __init__(self, kernel: LmmObjective, parameters: ParameterMap) -> None:
        self.kernel = kernel
        self.cp = kernel.cp
        self.parameters = parameters

    @property
    def evaluations(self) -> int:
        """Kernel evaluations so far."""
        return self.kernel.evaluations

    @property
    def n_theta(self) -> int:
        """Number of parameters."""
        return self.parameters.size

    @property
    def lower(self) -> np.ndarray:
        """Lower bounds of the parameters."""
        return self.parameters.lower

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names."""
        return self.parameters.names

    def start(self) -> np.ndarray:
        """Starting parameters."""
        return self.parameters.start()

    def theta(self, phi: np.ndarray) -> np.ndarray:
        """The kernel's template entries at ``phi``."""
        return self.parameters.theta(phi)

    def __call__(self, phi: np.ndarray, reml: bool = True) -> float:
        """Return the criterion at ``phi``."""
        return self.kernel(self.parameters.theta(phi), reml)

    def components(self, phi: np.ndarray, reml: bool = True, gradient: bool = True) -> Components:
        """The kernel's components at ``phi``, gradients by the chain rule."""
        phi = np.array(phi, dtype=float)
        comp = self.kernel.components(self.parameters.theta(phi), reml, gradient)
        if not gradient or comp.d_logdet is None or comp.d_r2 is None:
            return Components(phi, reml, comp.ldL2, comp.ldRX2, comp.r2, None, None)
        jac = self.parameters.jacobian(phi)
        return Components(phi, reml, comp.ldL2, comp.ldRX2, comp.r2,
                          jac.T @ comp.d_logdet, jac.T @ comp.d_r2)

    def criterion(self, comp: Components) -> float:
        """The criterion from components."""
        return self.kernel.criterion(comp)

    def criterion_gradient(self, comp: Components) -> np.ndarray:
        """The criterion's gradient from components evaluated with ``gradient=True``."""
        return self.kernel.criterion_gradient(comp)

    def value_and_gradient(self, phi: np.ndarray, reml: bool = True) -> tuple[float, np.ndarray]:
        """Return the criterion and its exact gradient in ``phi``."""
        comp = self.components(phi, reml, gradient=True)
        return self.criterion(comp), self.criterion_gradient(comp)

    def solution(self, phi: np.ndarray, reml: bool = True, cond_var: bool = True) -> Solution:
        """The penalised least-squares solution at ``phi`` (its ``theta`` is the kernel's)."""
        return self.kernel.solution(self.parameters.theta(phi), reml, cond_var)

    def parameter_blocks(self) -> np.ndarray:
        """Index of the design block of each parameter."""
        return self.parameters.block_of()

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """The optimiser's box."""
        return self.parameters.box()

    def parameter_levels(self) -> np.ndarray:
        """Number of levels of each parameter's grouping factor."""
        blocks = self.parameters.design.blocks
        return np.array([blocks[b].n_levels for b in self.parameters.block_of()], dtype=float)

    def canonical(self, phi: np.ndarray) -> np.ndarray:
        """Clip the scale parameters at their bound 0."""
        return np.maximum(np.asarray(phi, dtype=float), self.lower)

    def column_scale(self, design: Design) -> np.ndarray:
        """Root mean square of the columns a scale parameter multiplies; 1 for correlations."""
        out = np.ones(self.n_theta)
        for k, (block, rms) in enumerate(zip(design.blocks, design.column_rms(), strict=True)):
            rms = np.where(np.isfinite(rms) & (rms > 0), rms, 1.0)
            structure = block.structure
            start = self.parameters.phi_start[k]
            n_scale = getattr(structure, "n_scale", None)
            if n_scale is None:  # us / diag: theta entries scale with their template row
                rows = [i for i, _ in structure.kernel_pattern()]
                out[start:start + len(rows)] = rms[rows]
            elif n_scale == 1:
                out[start] = float(np.exp(np.mean(np.log(rms))))
            else:
                out[start:start + n_scale] = rms
        return out


#: Condition number of X above which the kernel works on an orthonormal basis of X
#: (:mod:`hierlm.lmm.conditioning`). Below it the raw cross-products lose no digits that matter
#: (sleepstudy's X: 12), and the raw kernel reproduces lme4's optima exactly, also on flat
#: likelihoods where the two kernels' roundoff leads an optimiser to different ends (Machines'
#: 3 x 3 profile moved 8e-4 on the orthonormal basis).
CONDITION_LIMIT = 1e3


def _ill_conditioned(design: Design) -> bool:
    """True when X's columns differ so much in scale that its cross-products lose digits."""
    if design.p == 0:
        return False
    return bool(np.linalg.cond(np.asarray(design.X, dtype=float)) > CONDITION_LIMIT)


#: The ML/REML criterion in any parametrisation.
Criterion = LmmObjective | StructuredObjective | GroupedObjective


def criterion_for(design: Design, kernel: LmmObjective | None = None,
                  ols: np.ndarray | None = None) -> Criterion:
    """The criterion to optimise for a design.

    The kernel over lme4's theta when every block is ``us``/``diag``, the
    kernel over the structures' parameters for patterned blocks, and the
    group-by-group criterion (:mod:`hierlm.lmm.grouped`) when the design has
    a residual structure. ``ols``: the least-squares coefficients of ``y`` on
    ``X`` when the caller has them (the grouped criterion's start uses them).
    """
    if design.residual is not None:
        return GroupedObjective(design, ols)
    if kernel is None:
        kernel = (conditioned_objective(design) if _ill_conditioned(design)
                  else LmmObjective(crossproducts(design)))
    parameters = ParameterMap.of(design, kernel)
    return kernel if parameters.identity else StructuredObjective(kernel, parameters)
