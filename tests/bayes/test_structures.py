"""Bayesian parameterisations of the covariance structures (hierlm.bayes.structures).

Checked for every random-effect structure (us, diag, cs, ar1, toep; homogeneous
and heterogeneous) and every residual structure (cs, csh, un, ar1, arh1, toep,
toeph, car1, with and without variance=):

* the unconstrained map round-trips;
* its log-Jacobian equals log|det| of the numerical Jacobian (central
  differences, tolerance 1e-6), and the LKJ density plus Jacobian equals the
  LKJ density of the correlations plus log|det| numerically, up to the
  normalising constant;
* NumPy and PyTensor evaluations agree (1e-10);
* the covariance at given natural parameters equals the design layer's
  (hierlm.design.covariance / residual) at the same parameters (1e-10).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.bayes import structure_math as sm
from hierlm.bayes.naming import block_names
from hierlm.bayes.priors import Prior, resolve_priors
from hierlm.bayes.structures import block_structure, residual_structure
from hierlm.errors import PriorError

SHARED = Path(__file__).parents[3] / "shared" / "data"


def _unoptimised():
    """PyTensor's pure-Python mode without graph rewrites (compiles in a fraction of a second)."""
    from pytensor.compile.mode import Mode

    return Mode(linker="py", optimizer=None)


def _pigs() -> pd.DataFrame:
    path = SHARED / "pigs.csv"
    if not path.is_file():
        pytest.skip(f"the shared pig data is not at {path}")
    return pd.read_csv(path).assign(id=lambda d: d["id"].astype(str))


BLOCK_FORMULAS = {
    "us": "score ~ Machine + (1 | Worker)",
    "us3": "score ~ Machine + (0 + Machine | Worker)",
    "diag": "score ~ Machine + diag(0 + Machine | Worker)",
    "cs": "score ~ Machine + cs(0 + Machine | Worker)",
    "csh": "score ~ Machine + cs(0 + Machine | Worker, hom = FALSE)",
    "ar1": "score ~ Machine + ar1(0 + Machine | Worker)",
    "ar1h": "score ~ Machine + ar1(0 + Machine | Worker, hom = FALSE)",
    "toep": "score ~ Machine + toep(0 + Machine | Worker)",
    "toeph": "score ~ Machine + toep(0 + Machine | Worker, hom = FALSE)",
}
RESIDUALS = {
    "cs": "cs(id)", "csh": "csh(week | id)", "un": "un(week | id)", "ar1": "ar1(week | id)",
    "arh1": "arh1(week | id)", "toep": "toep(week | id)", "toeph": "toeph(week | id)",
    "car1": "car1(week | id)",
}


def _block(key: str):
    model = hl.Model(BLOCK_FORMULAS[key], hl.datasets.load("Machines"))
    return block_names(model.design)[0], model


def _residual(key: str, variance: bool = False, drop: bool = False):
    data = _pigs()
    if drop:  # dropped visits: every fifth pig misses week 3, every seventh week 5
        ids = data["id"].astype(int)
        data = data[~(((ids % 5) == 0) & (data["week"] == 3))
                    & ~(((ids % 7) == 0) & (data["week"] == 5))]
    if variance:
        data = data.assign(half=np.where(data["id"].astype(int) <= 24, "a", "b"))
    kwargs = {"variance": "half"} if variance else {}
    model = hl.Model("weight ~ week", data, residual=RESIDUALS[key], **kwargs)
    return model.design.residual, model


def _structures():
    out = [(f"block-{k}", block_structure(_block(k)[0])) for k in BLOCK_FORMULAS]
    out += [(f"residual-{k}", residual_structure(_residual(k)[0])) for k in RESIDUALS]
    out.append(("residual-ar1-variance", residual_structure(_residual("ar1", variance=True)[0])))
    return out


@pytest.fixture(scope="module")
def structures():
    return _structures()


def _sampled(structure, values):
    return np.concatenate([np.atleast_1d(np.asarray(values[p.name], dtype=float))
                           for p in structure.parameters if p.kind != "cor"] or [np.zeros(0)])


def test_round_trip(structures):
    rng = np.random.default_rng(1)
    for label, structure in structures:
        u = rng.normal(scale=0.8, size=structure.unconstrained_size)
        values, _ = structure.from_unconstrained(u)
        back = structure.to_unconstrained(values)
        np.testing.assert_allclose(back, u, atol=1e-10, err_msg=label)


def test_log_jacobian_numerical(structures):
    rng = np.random.default_rng(2)
    step = 1e-6
    for label, structure in structures:
        u = rng.normal(scale=0.8, size=structure.unconstrained_size)
        # the LKJ reals' Jacobian is in their density (test_lkj_density): hold them fixed
        free = np.concatenate([np.full(p.size, p.kind != "cor") for p in structure.parameters])
        index = np.flatnonzero(free)
        _, log_jac = structure.from_unconstrained(u)
        jac = np.empty((index.size, index.size))
        for col, k in enumerate(index):
            up, down = u.copy(), u.copy()
            up[k] += step
            down[k] -= step
            jac[:, col] = (_sampled(structure, structure.from_unconstrained(up)[0])
                           - _sampled(structure, structure.from_unconstrained(down)[0])) / (2 * step)
        expected = np.linalg.slogdet(jac)[1] if index.size else 0.0
        assert float(log_jac) == pytest.approx(expected, abs=1e-6), label


def _lkj_log_density_numerical(raw: np.ndarray, q: int, eta: float) -> float:
    """(eta - 1) log det R + log|d offdiag(R) / d raw| by central differences."""
    def offdiag(x):
        chol, _ = sm.lkj_cholesky(x, q, eta)
        corr = chol @ chol.T
        return corr[np.tril_indices(q, -1)]

    step = 1e-6
    jac = np.empty((raw.size, raw.size))
    for k in range(raw.size):
        up, down = raw.copy(), raw.copy()
        up[k] += step
        down[k] -= step
        jac[:, k] = (offdiag(up) - offdiag(down)) / (2 * step)
    chol, _ = sm.lkj_cholesky(raw, q, eta)
    return (eta - 1) * np.linalg.slogdet(chol @ chol.T)[1] + np.linalg.slogdet(jac)[1]


@pytest.mark.parametrize("q, eta", [(2, 1.0), (3, 2.0), (4, 0.7)])
def test_lkj_density(q: int, eta: float):
    rng = np.random.default_rng(q)
    draws = [rng.normal(scale=0.7, size=q * (q - 1) // 2) for _ in range(3)]
    ours = [float(sm.lkj_cholesky(raw, q, eta)[1]) for raw in draws]
    numeric = [_lkj_log_density_numerical(raw, q, eta) for raw in draws]
    # equal up to the normalising constant
    np.testing.assert_allclose(np.diff(ours), np.diff(numeric), atol=1e-6)
    # the factor has unit rows and reproduces the reals
    chol, _ = sm.lkj_cholesky(draws[0], q, eta)
    np.testing.assert_allclose(np.sum(chol ** 2, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(sm.lkj_raw_from_cholesky(chol), draws[0], atol=1e-10)


def _outputs(structure, values, log_jac) -> list:
    if hasattr(structure, "cholesky"):
        out = [log_jac, structure.cholesky(values)]
    else:
        out = [log_jac, structure.correlation(values), structure.time_scales(values),
               structure.correlation_at(values, structure.structure.times[[0, 2, 3]])]
    return out + [values[name] for name in sorted(values)]


def test_numpy_and_pytensor_agree(structures):
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(3)
    for label, structure in structures:
        u = pt.vector(f"u_{label}")
        values, log_jac = structure.from_unconstrained(u)
        outputs = [pt.as_tensor_variable(x) * 1.0 for x in _outputs(structure, values, log_jac)]
        function = pytensor.function([u], outputs, mode=_unoptimised(), on_unused_input="ignore")
        x = rng.normal(scale=0.8, size=structure.unconstrained_size)
        refs = _outputs(structure, *structure.from_unconstrained(x))
        for value, ref in zip(function(x), refs, strict=True):
            np.testing.assert_allclose(np.asarray(value, dtype=float),
                                       np.asarray(ref, dtype=float), atol=1e-10, err_msg=label)


@pytest.mark.parametrize("key", sorted(set(BLOCK_FORMULAS) - {"us", "us3", "diag"}))
def test_block_covariance_matches_design(key: str):
    bn, _ = _block(key)
    design_structure = bn.block.structure
    rng = np.random.default_rng(4)
    phi = design_structure.start() + rng.normal(scale=0.5, size=design_structure.n_params)
    phi[: design_structure.n_scale] = np.abs(phi[: design_structure.n_scale]) + 0.3
    expected = design_structure.relative_covariance(phi)  # sigma = 1: absolute SDs
    structure = block_structure(bn)
    scales = phi[: design_structure.n_scale]
    values = {}
    scale = structure.parameters[0]
    values[scale.name] = scales[0] if structure.homogeneous else scales
    natural = design_structure.natural(phi)
    corr_param = structure.parameters[1]
    if corr_param.kind == "pacf":  # design's reals are atanh of the partial autocorrelations
        values[corr_param.name] = np.tanh(phi[design_structure.n_scale:])
    else:
        values[corr_param.name] = natural["rho"]
    u = structure.to_unconstrained(values)
    full, _ = structure.from_unconstrained(u)
    np.testing.assert_allclose(structure.covariance(full), expected, atol=1e-10)
    if corr_param.kind == "pacf":
        lag_values = [natural[f"rho{k}"] for k in range(1, bn.block.q)]
        np.testing.assert_allclose(full[f"rho_{bn.label}"], lag_values, atol=1e-12)
    # the correlation rows of varcorr
    corr = expected / np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
    np.testing.assert_allclose(full[bn.cor], [corr[i, j] for i, j in bn.pairs], atol=1e-12)


def test_unstructured_block_matches_lkj():
    bn, _ = _block("us3")
    structure = block_structure(bn)
    rng = np.random.default_rng(5)
    u = rng.normal(scale=0.5, size=structure.unconstrained_size)
    values, _ = structure.from_unconstrained(u)
    q = bn.block.q
    chol, _ = sm.lkj_cholesky(u[q:], q, 1.0)
    expected = np.diag(np.exp(u[:q])) @ chol
    np.testing.assert_allclose(structure.cholesky(values), expected, atol=1e-12)


def _residual_values(structure, design_structure, params):
    """Our natural values at the design's optimiser parameters ``params``."""
    base = design_structure.base
    values = {}
    n_corr = design_structure.n_correlation
    if base == "un":
        cov, _ = design_structure.over_times(params)
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
        values["corr_raw_residual"] = sm.lkj_raw_from_cholesky(np.linalg.cholesky(corr))
        values["log_ratio_residual"] = np.log(sd[1:] / sd[0])
        return values
    natural = design_structure.natural(params)
    if base in ("cs", "ar1"):
        values["rho_residual"] = natural["rho"]
    elif base == "toep":
        values["pacf_residual"] = np.tanh(params[:n_corr])
    elif base == "car1":
        values["phi_residual"] = natural["phi"]
    if design_structure.n_ratio:
        values["log_ratio_residual"] = params[n_corr:]
    return values


@pytest.mark.parametrize("key", sorted(RESIDUALS))
@pytest.mark.parametrize("drop", [False, True])
def test_residual_covariance_matches_design(key: str, drop: bool):
    residual, _ = _residual(key, drop=drop)
    design_structure = residual.structure
    structure = residual_structure(residual)
    rng = np.random.default_rng(6)
    params = design_structure.start() + rng.normal(scale=0.3, size=design_structure.n_params)
    values = _residual_values(structure, design_structure, params)
    full, _ = structure.from_unconstrained(structure.to_unconstrained(values))
    if key == "car1":
        times = design_structure.times
        expected, _ = design_structure.for_times(params, times[None, :])
        np.testing.assert_allclose(structure.relative_covariance(full), expected[0], atol=1e-10)
    else:
        expected, _ = design_structure.over_times(params)
        np.testing.assert_allclose(structure.relative_covariance(full), expected, atol=1e-10)
    # one group's submatrix at its own times
    times = design_structure.times[[0, 2, 3]]
    sub = np.asarray(structure.correlation_at(full, times), dtype=float)
    index = [0, 2, 3]
    corr = structure.correlation(full)
    np.testing.assert_allclose(sub, np.asarray(corr)[np.ix_(index, index)], atol=1e-12)


def test_variance_ratios_by_row():
    residual, model = _residual("ar1", variance=True)
    structure = residual_structure(residual)
    names = [p.name for p in structure.parameters]
    assert names == ["rho_residual", "log_ratio_residual_variance"]
    values, _ = structure.from_unconstrained(np.array([0.3, np.log(1.7)]))
    scales = structure.row_scales(values)
    half = model.data.loc[model.design.row_index, "half"].to_numpy()
    np.testing.assert_allclose(scales, np.where(half == "b", 1.7, 1.0), atol=1e-12)


def test_interval_transform_matches_pymc():
    import pymc as pm

    with pm.Model() as model:
        pm.Uniform("rho", -0.25, 1.0)
    import pytensor

    u = np.array(0.37)
    value = model.rvs_to_values[model["rho"]]
    logp, natural = pytensor.function([value], [model.logp(jacobian=True),
                                                model.unobserved_value_vars[1]],
                                      mode=_unoptimised())(u)
    ours = sm.interval_log_jacobian(u, -0.25, 1.0) - np.log(1.25)
    assert float(logp) == pytest.approx(float(ours), abs=1e-12)
    assert float(natural) == pytest.approx(float(sm.interval_forward(u, -0.25, 1.0)), abs=1e-14)


# ------------------------------------------------------------------- priors
def test_default_prior_rows_and_names():
    _, model = _block("toep")
    table = resolve_priors(model.design).to_frame()
    rows = dict(zip(table["parameter"], table["prior"], strict=True))
    assert rows["sd_common_Worker"].startswith("half_student_t(nu=3")
    assert [rows[f"pacf_Worker[{k}]"] for k in (1, 2)] == ["uniform(lower=-1, upper=1)"] * 2
    _, model = _block("cs")
    rows = dict(zip(*resolve_priors(model.design).to_frame()[["parameter", "prior"]].T.values,
                    strict=True))
    assert rows["rho_Worker"] == "uniform(lower=-0.5, upper=1)"  # 3 terms: rho > -1/2
    _, model = _residual("arh1", variance=True)
    table = resolve_priors(model.design).to_frame()
    tail = list(table["parameter"][-11:])
    assert tail == (["sigma", "rho_residual"] + [f"log_ratio_residual[{w}]" for w in range(2, 10)]
                    + ["log_ratio_residual_variance[b]"])
    assert set(table["prior"][-10:-9]) == {"uniform(lower=-1, upper=1)"}
    assert set(table["prior"][-9:]) == {"normal(mu=0, sigma=1)"}


def test_prior_overrides_by_name():
    _, model = _residual("toeph")
    table = resolve_priors(model.design, {
        "pacf:residual:2": Prior("uniform", lower=-0.5, upper=0.5),
        "pacf": Prior("uniform", lower=0.0, upper=1.0),
        "log_ratio:residual": Prior("normal", mu=0.0, sigma=0.5),
    })
    assert table.structure("pacf", "residual", "2").kwargs == {"lower": -0.5, "upper": 0.5}
    assert table.structure("pacf", "residual", "3").kwargs == {"lower": 0.0, "upper": 1.0}
    assert table.structure("log_ratio", "residual", "5").param("sigma") == 0.5
    structure = residual_structure(model.design.residual)
    values, _ = structure.from_unconstrained(np.full(structure.unconstrained_size, 10.0), table)
    assert values["pacf_residual"][1] == pytest.approx(0.5, abs=1e-4)
    flat = resolve_priors(model.design, "flat")
    assert flat.structure("pacf", "residual", "1").kwargs == {"lower": -1.0, "upper": 1.0}
    _, model = _block("cs")
    table = resolve_priors(model.design, {"sd:Worker": Prior("half_normal", sigma=10.0),
                                          "rho:Worker": "flat"})
    assert table.structure("sd_common", "Worker").family == "half_normal"
    assert table.structure("rho", "Worker").kwargs == {"lower": -0.5, "upper": 1.0}


def test_prior_errors_name_the_parameter():
    _, model = _block("cs")
    with pytest.raises(PriorError, match=r"rho_Worker lies in \(-0.5, 1\)"):
        resolve_priors(model.design, {"rho": Prior("uniform", lower=-1.0, upper=1.0)})
    with pytest.raises(PriorError, match="cannot describe rho_Worker"):
        resolve_priors(model.design, {"rho": Prior("normal", mu=0.0, sigma=1.0)})
    with pytest.raises(PriorError, match="must be below upper"):
        resolve_priors(model.design, {"rho": Prior("uniform", lower=0.5, upper=0.2)})
    with pytest.raises(PriorError, match="unknown key 'phi'"):
        resolve_priors(model.design, {"phi": Prior("uniform", lower=0.0, upper=1.0)})


def test_full_formulation_refuses_residual_structures():
    from hierlm.bayes.full import build_full_model
    from hierlm.errors import FitError

    _, model = _residual("ar1")
    with pytest.raises(FitError, match=r"residual='ar1\(week \| id\)'.*formulation='marginal'"):
        build_full_model(model.design, resolve_priors(model.design))
