"""Helpers shared by the Bayesian engine's tests."""

from __future__ import annotations

import ctypes
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


def crossed_model() -> hl.Model:
    """A simulated crossed design: 3000 rows, 300 students, 150 lecturers in 6 departments (seed 5)."""
    rng = np.random.default_rng(5)
    n = 3000
    lecturer = rng.integers(0, 150, n)
    student = rng.integers(0, 300, n)
    data = pd.DataFrame({"student": [f"s{k}" for k in student],
                         "lecturer": [f"d{k}" for k in lecturer],
                         "dept": [f"g{k % 6}" for k in lecturer],
                         "x": rng.standard_normal(n)})
    effects = (0.4 * rng.standard_normal(300)[student] + 0.5 * rng.standard_normal(150)[lecturer]
               + 0.3 * rng.standard_normal(6)[lecturer % 6])
    data["y"] = 3.0 + 0.2 * data["x"] + effects + rng.standard_normal(n)
    return hl.Model("y ~ x + (1 | student) + (1 | lecturer) + (1 | dept)", data)


def nutpie_draws(compiled, names: list[str], tune: int, seed: int) -> np.ndarray:
    """400 draws in each of 2 chains of a compiled nutpie model, shape ``(2, 400, k)``.

    The chains run on two cores with one BLAS thread each; ``k`` counts the values of the
    stored variables ``names``, concatenated in that order.
    """
    import nutpie
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        trace = nutpie.sample(compiled, draws=400, tune=tune, chains=2, cores=2, seed=seed,
                              progress_bar=False)
    post = trace.posterior
    return np.concatenate([post[name].values.reshape(2, 400, -1) for name in names], axis=2)


#: ctypes types of nutpie's two C callbacks (hierlm.bayes.nutpie_callbacks), to call them from tests
LOGP_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_void_p)
EXPAND_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.c_void_p)
