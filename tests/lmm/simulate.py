"""Hand-built designs and a dense reference implementation of lme4's criteria.

The reference follows the textbook definition literally (dense Z, dense
Lambda, one Cholesky factor of the full penalised system), so agreement with
the fast kernel checks the block elimination, the coupling pairs and the
merging of blocks on one factor.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from hierlm.design.blocks import Design, RandomBlock
from hierlm.design.covariance import make_structure
from hierlm.design.crossprod import theta_layout


def make_block(group, codes, z, columns, correlated=None):
    codes = np.asarray(codes, dtype=np.int64)
    z = np.asarray(z, dtype=float).reshape(codes.size, -1)
    n_levels = int(codes.max()) + 1
    if correlated is None:
        correlated = z.shape[1] > 1
    structure = make_structure("us" if correlated else "diag", z.shape[1])
    return RandomBlock(group, tuple(columns), structure,
                       tuple(str(i) for i in range(n_levels)), codes, z)


def simulate(structure, n=400, seed=0, p=2):
    """Return a Design with the given random structure and a simulated response.

    ``structure`` is a list of (group name, n_levels or codes, columns) with
    columns a list of "Intercept" / "x" / "w" names.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    w = rng.uniform(-1, 1, size=n)
    covariates = {"Intercept": np.ones(n), "x": x, "w": w}
    X = np.column_stack([np.ones(n), x, w][:p])
    y = X @ np.linspace(1.0, 0.5, p)
    blocks = []
    for entry in structure:
        group, levels, columns = entry[:3]
        correlated = entry[3] if len(entry) > 3 else None
        codes = rng.integers(0, levels, size=n) if np.isscalar(levels) else np.asarray(levels)
        codes = np.unique(codes, return_inverse=True)[1]
        z = np.column_stack([covariates[c] for c in columns])
        blocks.append(make_block(group, codes, z, columns, correlated))
        effects = rng.normal(scale=0.8, size=(codes.max() + 1, len(columns)))
        y = y + np.einsum("ij,ij->i", z, effects[codes])
    y = y + rng.normal(scale=0.5, size=n)
    return Design(y=y, X=X, fixed_names=tuple(["Intercept", "x", "w"][:p]), blocks=tuple(blocks),
                  response="y", row_index=np.arange(n))


def dense_lambda(design, theta):
    layout = theta_layout(design.blocks)
    templates = layout.templates(np.asarray(theta, float), [b.q for b in design.blocks])
    return sla.block_diag(*[np.kron(np.eye(b.n_levels), t)
                            for b, t in zip(design.blocks, templates, strict=True)])


def dense_reference(design, theta, reml):
    """Criterion and PLS solution straight from the definition (small problems only)."""
    n, p = design.n, design.p
    Z = design.sparse_z().toarray()
    lam = dense_lambda(design, theta)
    q = Z.shape[1]
    U = np.hstack([Z @ lam, design.X, design.y[:, None]])
    omega = U.T @ U
    omega[np.arange(q), np.arange(q)] += 1.0
    L = np.linalg.cholesky(omega)
    d = np.diag(L)
    ldL2 = 2 * np.log(d[:q]).sum()
    ldRX2 = 2 * np.log(d[q:q + p]).sum()
    r2 = d[-1] ** 2
    if reml:
        value = ldL2 + ldRX2 + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))
        sigma2 = r2 / (n - p)
    else:
        value = ldL2 + n * (1 + np.log(2 * np.pi * r2 / n))
        sigma2 = r2 / n
    sol = np.linalg.solve(omega[:-1, :-1], omega[:-1, -1])
    u, beta = sol[:q], sol[q:]
    b = lam @ u
    a_inv = np.linalg.inv(omega[:q, :q])
    cond_var = sigma2 * lam @ a_inv @ lam.T
    rx = L[q:q + p, q:q + p].T
    unscaled = np.linalg.inv(rx.T @ rx)
    return dict(value=value, ldL2=ldL2, ldRX2=ldRX2, r2=r2, beta=beta, u=u, b=b,
                sigma=np.sqrt(sigma2), cond_var=cond_var, unscaled=unscaled)
