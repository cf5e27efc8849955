"""Helpers shared by the Bayesian engine's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import hierlm as hl
from hierlm.cards import find_data_file

ROOT = Path(__file__).resolve().parents[2]


def fixture_model(fx: dict) -> hl.Model:
    """hierlm Model of an lme4 fixture (bundled data, or the shared pig weights)."""
    if fx["dataset"] == "pigs":
        path = find_data_file("pigs.csv")
        data = pd.read_csv(path)
    else:
        data = hl.datasets.load(fx["dataset"])
    return hl.Model(fx["formula"], data)


def ml_observed_information(ml) -> tuple[np.ndarray, np.ndarray]:
    """The ML optimum ``(beta, phi, log sigma)`` and the observed information there.

    Central differences (relative step 1e-5) of the exact gradient of the ML engine's own
    :class:`hierlm.lmm.likelihood.GaussianLikelihood`, symmetrised: the Laplace
    approximation's curvature, computed without the Bayesian engine.
    """
    from hierlm.lmm.likelihood import GaussianLikelihood

    likelihood = GaussianLikelihood(ml.design)
    p = ml.design.p
    centre = np.concatenate([np.asarray(ml.solution.beta, dtype=float),
                             np.asarray(ml.theta, dtype=float), [np.log(float(ml.sigma))]])

    def gradient(v):
        got = likelihood.evaluate(v[:p], v[p:-1], float(np.exp(v[-1])))
        return np.concatenate([got.d_beta, got.d_phi, [got.d_sigma * np.exp(v[-1])]])

    hess = np.zeros((centre.size, centre.size))
    for k in range(centre.size):
        step = np.zeros(centre.size)
        step[k] = 1e-5 * max(1.0, abs(centre[k]))
        hess[:, k] = -(gradient(centre + step) - gradient(centre - step)) / (2 * step[k])
    return centre, 0.5 * (hess + hess.T)
