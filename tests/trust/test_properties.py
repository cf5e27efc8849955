"""Property tests (hypothesis) on random small problems.

* The profiled ML/REML criterion of the kernel equals its dense marginal
  definition, written independently of the kernel's penalised least squares:
  ``V = sigma^2 V0`` with ``V0 = I + Z Lambda Lambda' Z'``, beta by GLS,
  ``r2 = (y - X beta)' V0^-1 (y - X beta)`` and

      ML:   log|V0| + n (1 + log(2 pi r2 / n))
      REML: log|V0| + log|X' V0^-1 X| + (n - p)(1 + log(2 pi r2 / (n - p))).

  Lambda is built here from theta by lme4's rule (template entries column by
  column, one block per bar, repeated per level), not by the package's layout
  code. Structures: scalar, correlated vector, ``||``, crossed, nested,
  interaction groupings. Tolerance 1e-8 relative: both sides are exact linear
  algebra in double precision on n <= 60 rows with condition numbers far
  below 1e6.
* ML/REML fits are invariant to the order of the rows and to relabelling the
  levels of grouping factors (fixef, varcorr, loglik).
* ``predict`` on the training data equals ``fitted``.
* The Bayesian marginal log-likelihood (group effects integrated out, ML and
  REML forms) equals scipy's dense multivariate normal log-density on random
  one-factor structures, including SDs exactly 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.linalg import block_diag
from scipy.stats import multivariate_normal

import hierlm as hl
from hierlm.bayes.groupstats import group_stats
from hierlm.bayes.marginal import marginal_loglik
from hierlm.design.crossprod import crossproducts
from hierlm.lmm.objective import LmmObjective

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

FIXED = ["y ~ 1", "y ~ x", "y ~ x + w", "y ~ x * k"]
BARS = ["(1 | a)", "(x | a)", "(x || a)", "(0 + x | a)", "(x + w | a)", "(1 | b)", "(w | b)",
        "(1 | a:b)", "(1 | a/c)", "(0 + w | b)"]


def make_data(seed: int, n: int) -> pd.DataFrame:
    """Random frame: factors a (3-5 levels), b (2-4, crossed with a), c nested in a."""
    rng = np.random.default_rng(seed)
    n_a, n_b = int(rng.integers(3, 6)), int(rng.integers(2, 5))
    a = rng.integers(0, n_a, n)
    a[:n_a] = np.arange(n_a)  # every level present
    b = rng.integers(0, n_b, n)
    b[:n_b] = np.arange(n_b)
    c = rng.integers(0, 2, n)
    frame = pd.DataFrame({
        "x": rng.normal(size=n),
        "w": rng.uniform(-1, 1, n),
        "k": np.array(["p", "q", "r"])[rng.integers(0, 3, n)],
        "a": [f"A{i}" for i in a],
        "b": [f"B{i}" for i in b],
        "c": [f"C{i}" for i in c],
    })
    frame["y"] = (1.0 + frame["x"] + rng.normal(size=n_a)[a] + 0.5 * rng.normal(size=n_b)[b]
                  + rng.normal(size=n_a)[a] * frame["x"] + rng.normal(scale=0.7, size=n))
    return frame


@st.composite
def problems(draw: st.DrawFn) -> tuple[str, pd.DataFrame]:
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(30, 60))
    fixed = draw(st.sampled_from(FIXED))
    bars = draw(st.lists(st.sampled_from(BARS), min_size=1, max_size=3, unique=True))
    return f"{fixed} + {' + '.join(bars)}", make_data(seed, n)


def build(formula: str, data: pd.DataFrame) -> hl.Model | None:
    """The model, or None when the random draw is not a valid design (too many effects...)."""
    try:
        return hl.Model(formula, data)
    except (hl.errors.DataError, hl.errors.RankDeficientError):
        return None


def lme4_lambda(design, theta: np.ndarray) -> np.ndarray:
    """Dense Lambda from theta by lme4's rule, written out independently of ThetaLayout."""
    mats, k = [], 0
    for block in design.blocks:
        q = block.q
        template = np.zeros((q, q))
        if block.correlated:
            for j in range(q):
                for i in range(j, q):
                    template[i, j] = theta[k]
                    k += 1
        else:
            for i in range(q):
                template[i, i] = theta[k]
                k += 1
        mats.append(np.kron(np.eye(block.n_levels), template))
    assert k == theta.size
    out = np.zeros((sum(m.shape[0] for m in mats),) * 2)
    start = 0
    for m in mats:
        out[start:start + m.shape[0], start:start + m.shape[0]] = m
        start += m.shape[0]
    return out


def dense_criterion(design, theta: np.ndarray, reml: bool) -> tuple[float, np.ndarray, float]:
    """Criterion, GLS beta and sigma from V0 = I + Z Lambda Lambda' Z' (dense, n x n)."""
    n, p = design.n, design.p
    Z = design.sparse_z().toarray()
    zl = Z @ lme4_lambda(design, theta)
    v0 = np.eye(n) + zl @ zl.T
    v0_inv = np.linalg.inv(v0)
    X, y = design.X, design.y
    xvx = X.T @ v0_inv @ X
    beta = np.linalg.solve(xvx, X.T @ v0_inv @ y)
    resid = y - X @ beta
    r2 = float(resid @ v0_inv @ resid)
    logdet_v0 = np.linalg.slogdet(v0)[1]
    if reml:
        value = logdet_v0 + np.linalg.slogdet(xvx)[1] + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))
        sigma = np.sqrt(r2 / (n - p))
    else:
        value = logdet_v0 + n * (1 + np.log(2 * np.pi * r2 / n))
        sigma = np.sqrt(r2 / n)
    return float(value), beta, float(sigma)


@SETTINGS
@given(problem=problems(), theta_seed=st.integers(0, 2**31 - 1), reml=st.booleans(),
       zero=st.booleans())
def test_kernel_equals_dense_marginal_definition(problem, theta_seed, reml, zero):
    model = build(*problem)
    if model is None:
        return
    design = model.design
    kernel = LmmObjective(crossproducts(design))
    rng = np.random.default_rng(theta_seed)
    lower = kernel.lower
    diagonal = np.isfinite(lower)
    theta = np.where(diagonal, rng.uniform(0.05, 2.0, lower.size), rng.normal(size=lower.size))
    if zero:  # a variance parameter exactly on its bound (singular Lambda)
        theta[rng.choice(np.flatnonzero(diagonal))] = 0.0
    value, beta, sigma = dense_criterion(design, theta, reml)
    assert kernel(theta, reml) == pytest.approx(value, rel=1e-8, abs=1e-8)
    sol = kernel.solution(theta, reml, cond_var=False)
    np.testing.assert_allclose(sol.beta, beta, rtol=1e-7, atol=1e-9)
    assert sol.sigma == pytest.approx(sigma, rel=1e-8)


# ----------------------------------------------------------------- invariances
INVARIANCE_FORMULAS = ["y ~ x + (x | a)", "y ~ x + (1 | a) + (1 | b)", "y ~ x + w + (x || a)",
                       "y ~ x + (1 | a/c)", "y ~ x * k + (w | b) + (1 | a)"]


def fit_quiet(model: hl.Model, method: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        return model.fit(method=method)


def relabel(data: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Shuffle the rows and give every grouping level a new name in a shuffled order."""
    out = data.iloc[rng.permutation(len(data))].copy()
    for column in ("a", "b", "c"):
        old = sorted(out[column].unique())
        new = rng.permutation(len(old))
        out[column] = out[column].map({o: f"L{int(nw):02d}{column}" for o, nw in zip(old, new, strict=True)})
    return out.reset_index(drop=True)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(40, 80),
       formula=st.sampled_from(INVARIANCE_FORMULAS), method=st.sampled_from(["reml", "ml"]))
def test_fit_invariant_to_row_order_and_level_labels(seed, n, formula, method):
    data = make_data(seed, n)
    model = build(formula, data)
    if model is None:
        return
    other = build(formula, relabel(data, np.random.default_rng(seed + 1)))
    assert other is not None
    fit_a, fit_b = fit_quiet(model, method), fit_quiet(other, method)
    # The optimum is found to a projected gradient ~1e-6 in theta, so the criterion
    # agrees to ~1e-9 relative; parameters on a flat ridge (near-singular fits) move
    # by up to ~sqrt(1e-9) relative, hence 1e-4 on estimates and variance components.
    assert fit_b.loglik == pytest.approx(fit_a.loglik, rel=1e-8, abs=1e-7)
    fa, fb = fit_a.fixef(), fit_b.fixef()
    assert list(fa.index) == list(fb.index)
    np.testing.assert_allclose(fb["estimate"], fa["estimate"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fb["std_error"], fa["std_error"], rtol=1e-3, atol=1e-4)
    va, vb = fit_a.varcorr(), fit_b.varcorr()
    assert va[["group", "term1", "term2"]].equals(vb[["group", "term1", "term2"]])
    finite = np.isfinite(va["estimate"].to_numpy())
    np.testing.assert_allclose(vb["estimate"].to_numpy()[finite], va["estimate"].to_numpy()[finite],
                               rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(vb["vcov"], va["vcov"], rtol=1e-3, atol=1e-3)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(problem=problems(), method=st.sampled_from(["reml", "ml"]))
def test_predictions_on_training_data_equal_fitted_values(problem, method):
    model = build(*problem)
    if model is None:
        return
    fit = fit_quiet(model, method)
    fitted = fit.fitted()
    np.testing.assert_allclose(fit.predict()["estimate"], fitted, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fit.predict(model.data)["estimate"], fitted, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fit.predict(model.data, include_random=False)["estimate"],
                               model.design.X @ fit.beta, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fitted + fit.residuals(), model.design.y, rtol=1e-12, atol=1e-10)


# ------------------------------------------------- Bayesian marginal likelihood
MARGINAL_BARS = ["(1 | a)", "(x | a)", "(x || a)", "(x + w | a)", "(1 | a) + (0 + w | a)",
                 "(w | a) + (0 + x | a)", "(1 | b)", "(x | b)"]


def _random_cholesky(rng: np.random.Generator, q: int, correlated: bool) -> np.ndarray:
    sd = rng.uniform(0.0, 2.0, q)
    sd[rng.random(q) < 0.2] = 0.0  # an SD exactly 0 is allowed (L singular)
    if not correlated or q == 1:
        return np.diag(sd)
    a = rng.normal(size=(q, q + 2))
    cov = a @ a.T
    d = np.sqrt(np.diag(cov))
    return np.diag(sd) @ np.linalg.cholesky(cov / np.outer(d, d))


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(20, 50),
       fixed=st.sampled_from(FIXED), bars=st.sampled_from(MARGINAL_BARS))
def test_marginal_loglik_equals_dense_multivariate_normal(seed, n, fixed, bars):
    """The Bayesian marginal log-likelihood (ML and REML) == scipy's dense Gaussian log-density.

    y ~ N(X beta, sigma^2 I + Z G Z'), G = kron(I_levels, L_b L_b') per block, built here
    from the dense Z; REML adds -1/2 log|X'V^-1 X| + p/2 log(2 pi) at the GLS beta.
    Tolerance 1e-9 relative (Woodbury per level vs dense Cholesky of n <= 50 rows).
    """
    model = build(f"{fixed} + {bars}", make_data(seed, n))
    if model is None:
        return
    design = model.design
    stats = group_stats(design)
    rng = np.random.default_rng(seed + 7)
    chols = [_random_cholesky(rng, b.q, b.correlated) for b in design.blocks]
    chol = block_diag(*chols)
    beta = rng.normal(size=design.p)
    sigma = float(rng.uniform(0.3, 2.0))

    b_, s_, c_ = pt.dvector("beta"), pt.dscalar("sigma"), pt.dmatrix("chol")
    compiled = pytensor.function(
        [b_, s_, c_], [marginal_loglik(stats, b_, s_, c_), marginal_loglik(stats, None, s_, c_, reml=True)],
        mode="FAST_COMPILE", on_unused_input="ignore")
    ml, reml = compiled(beta, sigma, chol)

    Z = design.sparse_z().toarray()
    G = block_diag(*[np.kron(np.eye(b.n_levels), c @ c.T) for b, c in zip(design.blocks, chols, strict=True)])
    V = sigma**2 * np.eye(design.n) + Z @ G @ Z.T
    X, y = design.X, design.y
    expected = multivariate_normal(X @ beta, V).logpdf(y)
    assert float(ml) == pytest.approx(expected, rel=1e-9)
    v_inv = np.linalg.inv(V)
    xvx = X.T @ v_inv @ X
    beta_hat = np.linalg.solve(xvx, X.T @ v_inv @ y)
    expected_reml = (multivariate_normal(X @ beta_hat, V).logpdf(y) - 0.5 * np.linalg.slogdet(xvx)[1]
                     + 0.5 * design.p * np.log(2 * np.pi))
    assert float(reml) == pytest.approx(expected_reml, rel=1e-9)
