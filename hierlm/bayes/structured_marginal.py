"""The marginal formulation of patterned random-effect structures (``cs``, ``ar1``, ``toep``).

The PyMC model has the variables of the full formulation's blocks (the same
transforms, priors and names: :func:`hierlm.bayes.parameters.add_parameters`
and :mod:`hierlm.bayes.structure_model`: ``sd_<b>`` or ``sd_common_<b>``,
``rho_<b>``, ``pacf_<b>``, ``cor_<b>``, ``corr_chol_<b>``) but no group effects:
its likelihood is the one Gaussian likelihood
(:class:`hierlm.lmm.likelihood.GaussianLikelihood` over the ML/REML kernel's
template entries), wrapped as a PyTensor Op whose gradient is the likelihood's
exact gradient. The kernel's entries are those of ``T_b = L_b / sigma``
(``L_b = diag(sd) chol(R)`` of each block), so the chain rule through the
structures' transforms is PyTensor's. Group effects are drawn afterwards, per
draw, from their exact conditional (:func:`hierlm.bayes.likelihood_model.
draw_effects_any_design`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.bayes.parameters import add_parameters, model_coords
from hierlm.bayes.priors import PriorTable
from hierlm.design.blocks import Design
from hierlm.design.crossprod import theta_layout
from hierlm.errors import FitError
from hierlm.lmm.likelihood import GaussianLikelihood

__all__ = ["LIKELIHOOD_POTENTIAL", "likelihood_op", "build_structured_marginal_model"]

#: Name of the potential holding the marginal log-likelihood.
LIKELIHOOD_POTENTIAL = "marginal_loglik"


def likelihood_op(likelihood: GaussianLikelihood) -> tuple[Any, Any]:
    """PyTensor Ops ``(beta, theta, sigma) -> log p`` and its gradient, from the one likelihood.

    ``theta`` is the criterion's parameter vector (the kernel's template entries
    when the criterion is the kernel). A point outside the likelihood's domain
    (numerically singular) has log density ``-inf`` and a zero gradient.
    """
    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    cache: dict[str, Any] = {"key": None, "value": None}

    def evaluate(beta: np.ndarray, theta: np.ndarray, sigma: float) -> tuple[float, np.ndarray,
                                                                            np.ndarray, float]:
        key = (beta.tobytes(), theta.tobytes(), float(sigma))
        if cache["key"] != key:
            try:
                if not (np.all(np.isfinite(theta)) and np.isfinite(sigma) and sigma > 0):
                    raise FitError("outside the domain")
                got = likelihood.evaluate(beta, theta, float(sigma))
                assert got.d_phi is not None
                cache["value"] = (got.value, got.d_beta, got.d_phi, got.d_sigma)
            except (FitError, np.linalg.LinAlgError):
                cache["value"] = (-np.inf, np.zeros_like(beta), np.zeros_like(theta), 0.0)
            cache["key"] = key
        return cache["value"]

    # the Ops' method signatures are PyTensor's, loosely typed here
    class LikelihoodGrad(Op):  # type: ignore[misc]
        """Gradient of the marginal log-likelihood in (beta, theta, sigma)."""

        __props__ = ()

        def make_node(self, beta: Any, theta: Any, sigma: Any) -> Apply:  # type: ignore[override]
            inputs = [pt.as_tensor_variable(v) for v in (beta, theta, sigma)]
            return Apply(self, inputs, [inputs[0].type(), inputs[1].type(), inputs[2].type()])

        def perform(self, node: Any, inputs: Any, outputs: Any) -> None:
            beta, theta, sigma = inputs
            _, d_beta, d_theta, d_sigma = evaluate(beta, theta, float(sigma))
            outputs[0][0] = np.asarray(d_beta, dtype=float)
            outputs[1][0] = np.asarray(d_theta, dtype=float)
            outputs[2][0] = np.asarray(d_sigma, dtype=float)

    gradient_op = LikelihoodGrad()

    class Likelihood(Op):  # type: ignore[misc]
        """The marginal log-likelihood of the design at (beta, theta, sigma)."""

        __props__ = ()

        def make_node(self, beta: Any, theta: Any, sigma: Any) -> Apply:  # type: ignore[override]
            inputs = [pt.as_tensor_variable(v) for v in (beta, theta, sigma)]
            return Apply(self, inputs, [pt.dscalar()])

        def perform(self, node: Any, inputs: Any, outputs: Any) -> None:
            beta, theta, sigma = inputs
            outputs[0][0] = np.asarray(evaluate(beta, theta, float(sigma))[0], dtype=float)

        def pullback(self, inputs: Any, outputs: Any, output_grads: Any) -> Any:
            d_beta, d_theta, d_sigma = gradient_op(*inputs)  # type: ignore[misc]
            g = output_grads[0]
            return [g * d_beta, g * d_theta, g * d_sigma]

        def grad(self, inputs: Any, output_grads: Any) -> Any:
            return self.pullback(inputs, [], output_grads)

    return Likelihood(), gradient_op


def build_structured_marginal_model(design: Design, priors: PriorTable,
                                    with_likelihood: bool = True) -> Any:
    """The marginal PyMC model of a Gaussian design with patterned random-effect blocks.

    Parameters
    ----------
    design : Design
        Any Gaussian design without a residual structure (patterned, us and diag
        blocks; one factor, nested or crossed).
    priors : PriorTable
        Resolved priors (the same rows as the full formulation's).
    with_likelihood : bool
        Add the likelihood potential (False: the prior model only, for
        :func:`hierlm.bayes.prior_split.split_density`, which calls the
        likelihood itself; MAP).

    Returns
    -------
    pymc.Model or tuple
        Free variables of the full formulation's parameters, no group effects,
        and the potential :data:`LIKELIHOOD_POTENTIAL`; without the likelihood,
        ``(model, inputs)`` with the likelihood's inputs ``[beta, theta, sigma]``
        (``theta`` the kernel's template entries) as tensors of the model's variables.
    """
    import pymc as pm
    import pytensor.tensor as pt

    if design.residual is not None:
        raise FitError("the marginal formulation does not take residual structures yet")
    criterion = GaussianLikelihood(design).criterion
    likelihood = GaussianLikelihood(design, criterion=getattr(criterion, "kernel", criterion))
    layout = theta_layout(design.blocks)
    op, _ = likelihood_op(likelihood)
    with pm.Model(coords=model_coords(design)) as model:
        params = add_parameters(design, priors)
        assert params.sigma is not None  # Gaussian
        entries = [params.chols[int(b)][int(r), int(c)] / params.sigma
                   for b, r, c in zip(layout.block, layout.row, layout.col, strict=True)]
        theta = pt.stack(entries)
        if not with_likelihood:
            return model, [params.fixef, theta, params.sigma]
        pm.Potential(LIKELIHOOD_POTENTIAL, op(params.fixef, theta, params.sigma))
    return model
