"""Fits on data held by an engine equal the in-memory fit (hierlm.sources.learn).

Reference: the pandas fit of the same rows (its agreement with lme4 is tested in
tests/lmm). Tolerance: rel 1e-7 on theta, beta, sigma and the criterion (the
issue's acceptance), with the square-root rows reproducing every cross-product
to ~1e-13. theta and beta are compared norm-wise.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import DataError, MissingDataWarning

duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")
dd = pytest.importorskip("dask.dataframe")

REL = 1e-7


def simulate(n: int, groups: int, seed: int = 1) -> pd.DataFrame:
    """y ~ x + f + (x | g) with a three-level factor f."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    b0, b1 = rng.normal(size=groups), 0.5 * rng.normal(size=groups)
    f = rng.choice(np.array(["a", "b", "c"]), n)
    y = 1 + 2 * x + 0.3 * (f == "b") + b0[g] + b1[g] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "f": f})


def assert_same_fit(reference: object, fit: object, theta_rel: float = REL) -> None:
    # theta and beta norm-wise (a small off-diagonal theta entry moves with the optimiser's
    # stopping point by ~1e-7 of the vector, not of itself); sigma and the criterion entry-wise
    for name, rel in (("theta", theta_rel), ("beta", REL)):
        got, want = np.asarray(getattr(fit, name)), np.asarray(getattr(reference, name))
        assert np.linalg.norm(got - want) <= rel * np.linalg.norm(want), name
    for name in ("sigma", "criterion"):
        assert getattr(fit, name) == pytest.approx(getattr(reference, name), rel=REL)
    assert fit.nobs == reference.nobs
    assert_same_fixef(fit.fixef(), reference.fixef())


def assert_same_fixef(got: pd.DataFrame, want: pd.DataFrame, rel: float = 1e-6) -> None:
    """Fixed-effect tables equal: every column to ``rel``, interval bounds on their own scale.

    A bound ``estimate -/+ w`` (``w = t_q(df) SE``, the half-width) carries the errors of the
    estimate and of ``w``, i.e. ``rel (|estimate| + w)`` absolute; relative to itself that is
    unbounded where the bound is near zero (crossed design: the intercept's lower bound -0.025
    of estimate 0.48, w 0.51, moves 3.5e-8 with a 4.6e-8 relative change of its SE).
    """
    bounds = [c for c in want.columns if c.endswith(("_lb", "_ub"))]
    pd.testing.assert_frame_equal(got.drop(columns=bounds), want.drop(columns=bounds), rtol=rel)
    assert list(got.columns) == list(want.columns)
    for lb, ub in ((c, c[:-3] + "_ub") for c in bounds if c.endswith("_lb")):
        scale = np.abs(want["estimate"]) + (want[ub] - want[lb]) / 2
        for column in (lb, ub):
            assert np.all(np.abs(got[column] - want[column]) <= rel * scale), column


def kinds(df: pd.DataFrame, tmp_path: object) -> dict[str, object]:
    path = f"{tmp_path}/part"
    for k, chunk in enumerate(np.array_split(np.arange(len(df)), 3)):
        df.iloc[chunk].to_parquet(f"{path}{k}.parquet")
    return {
        "duckdb": duckdb.from_df(df),
        "parquet": f"{path}*.parquet",
        "polars": pl.from_pandas(df).lazy(),
        "dask": dd.from_pandas(df, npartitions=3),
    }


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "polars", "dask"])
def test_same_estimates_small(kind: str, tmp_path: object) -> None:
    df = simulate(3000, 40)
    formula = "y ~ x + f + (x | g)"
    reference = hl.Model(formula, df).fit()
    data = kinds(df, tmp_path)[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)  # dask without a client
        model = hl.Model(formula, data, progress=False)
    assert model.design.rowless
    fit = model.fit()
    assert_same_fit(reference, fit)
    ml = model.fit(method="ml")
    assert ml.criterion == pytest.approx(hl.Model(formula, df).fit(method="ml").criterion, rel=REL)
    pd.testing.assert_frame_equal(fit.ranef(), reference.ranef(), rtol=1e-6)


def test_transforms_and_interactions() -> None:
    df = simulate(2000, 30, seed=3)
    df["w"] = np.exp(df["x"] / 3) + 1
    formula = "y ~ log(w) + I(x ** 2) + x:f + sqrt(w) + (1 | g) + (0 + x | g)"
    reference = hl.Model(formula, df).fit()
    fit = hl.Model(formula, duckdb.from_df(df), progress=False).fit()
    assert_same_fit(reference, fit)


def test_crossed_design() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    df = pd.DataFrame({"a": rng.integers(0, 60, n), "b": rng.choice(list("pqrstuvw"), n),
                       "x": rng.normal(size=n)})
    df["y"] = (df["x"] + rng.normal(size=60)[df["a"]] + pd.Series(rng.normal(size=8),
               index=list("pqrstuvw"))[df["b"]].to_numpy() + rng.normal(size=n))
    formula = "y ~ x + (1 | a) + (1 | b)"
    reference = hl.Model(formula, df).fit()
    fit = hl.Model(formula, duckdb.from_df(df), progress=False).fit()
    assert_same_fit(reference, fit)
    assert [t.n_levels for t in fit.model.random_terms] == [60, 8]


def test_missing_values_dropped_as_in_memory() -> None:
    df = simulate(2000, 25, seed=7)
    df.loc[[3, 10, 11], "x"] = np.nan
    df.loc[[5, 10], "f"] = None
    with pytest.warns(MissingDataWarning) as expected:
        reference = hl.Model("y ~ x + f + (x | g)", df).fit()
    with pytest.warns(MissingDataWarning) as got:
        fit = hl.Model("y ~ x + f + (x | g)", duckdb.from_df(df), progress=False).fit()
    assert str(got[0].message) == str(expected[0].message)
    assert "Dropped 4 of 2000" in str(got[0].message)
    assert_same_fit(reference, fit)
    with pytest.raises(DataError, match="4 row"):
        hl.Model("y ~ x + f + (x | g)", duckdb.from_df(df), na_action="raise", progress=False)


def test_progress_lines(capsys: pytest.CaptureFixture[str]) -> None:
    df = simulate(500, 10)
    hl.Model("y ~ x + (1 | g)", duckdb.from_df(df))
    err = capsys.readouterr().err
    assert "[hierlm duckdb] sufficient statistics:" in err
    hl.Model("y ~ x + (1 | g)", duckdb.from_df(df), progress=False)
    assert capsys.readouterr().err == ""


def _write_chunks(path: str, n: int, groups: int, chunks: int) -> pd.DataFrame:
    df = simulate(n, groups, seed=11)
    for k, rows in enumerate(np.array_split(np.arange(n), chunks)):
        df.iloc[rows].to_parquet(f"{path}/part{k:02d}.parquet")
    return df


@pytest.mark.slow
def test_one_million_rows_every_kind(tmp_path: object) -> None:
    df = _write_chunks(str(tmp_path), 1_000_000, 2000, 4)
    formula = "y ~ x + f + (x | g)"
    reference = hl.Model(formula, df).fit()
    data = {
        "duckdb": duckdb.read_parquet(f"{tmp_path}/*.parquet"),
        "parquet": f"{tmp_path}/*.parquet",
        "polars": pl.scan_parquet(f"{tmp_path}/*.parquet"),
    }
    for source in data.values():
        model = hl.Model(formula, source, progress=False)
        # From lme4's start both optimisers stop where the relative decrease of the criterion
        # falls below ftol = 1e-12 (hierlm.lmm.fit): on 1M rows that fixes theta to ~3e-7 of
        # its norm (the two criteria differ in the 15th digit), so theta is compared at 1e-6
        # here, and again at 1e-7 from the pandas optimum, which must stay the optimum.
        assert_same_fit(reference, model.fit(), theta_rel=1e-6)
        assert_same_fit(reference, model.fit(start=reference.theta))


@pytest.mark.slow
def test_one_million_rows_dask_cluster(tmp_path: object) -> None:
    distributed = pytest.importorskip("distributed")
    df = _write_chunks(str(tmp_path), 1_000_000, 2000, 4)
    formula = "y ~ x + f + (x | g)"
    reference = hl.Model(formula, df).fit()
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        with warnings.catch_warnings():
            warnings.simplefilter("error", hl.errors.HierlmWarning)  # a client: no note
            model = hl.Model(formula, dd.read_parquet(f"{tmp_path}/*.parquet"), progress=False)
        fit = model.fit()
        again = model.fit(start=reference.theta)
    assert_same_fit(reference, fit, theta_rel=1e-6)  # see test_one_million_rows_every_kind
    assert_same_fit(reference, again)


@pytest.mark.parametrize("kind", ["duckdb"] + [pytest.param(k, marks=pytest.mark.slow)
                                                for k in ("parquet", "polars", "dask")])
def test_second_pass_fitted_and_residuals(kind: str, tmp_path: object) -> None:
    """fitted()/residuals() run in the engine and equal the in-memory ones (abs 1e-12)."""
    df = simulate(1500, 20, seed=4)
    df["id"] = np.arange(len(df))
    df.loc[[2, 7], "x"] = np.nan
    formula = "y ~ x + f + (x | g)"
    with pytest.warns(MissingDataWarning):
        reference = hl.Model(formula, df).fit()
    kept = df.dropna()
    expected = pd.DataFrame({"id": kept["id"].to_numpy(), "fitted": reference.fitted(),
                             "residual": reference.residuals()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        fit = hl.Model(formula, kinds(df, tmp_path)[kind], progress=False).fit()
    out = fit.residuals()
    table = (out.df() if hasattr(out, "df") else
             out.collect().to_pandas() if hasattr(out, "collect") else out.compute())
    merged = expected.merge(table[["id", "fitted", "residual"]], on="id", suffixes=("", "_engine"))
    assert len(merged) == len(kept)
    np.testing.assert_allclose(merged["fitted_engine"], merged["fitted"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(merged["residual_engine"], merged["residual"], rtol=0, atol=1e-12)


def test_map_equals_in_memory_map() -> None:
    """MAP on engine data: the default priors (from the summary's moments) and the mode as pandas."""
    df = simulate(2000, 25, seed=8)
    formula = "y ~ x + (x | g)"
    model = hl.Model(formula, duckdb.from_df(df), progress=False)
    reference = hl.Model(formula, df)
    pd.testing.assert_frame_equal(model.priors.to_frame(), reference.priors.to_frame())
    got, want = model.fit(method="map"), reference.fit(method="map")
    assert_same_fixef(got.fixef(), want.fixef())
    a, b = got.varcorr(), want.varcorr()
    np.testing.assert_allclose(a["estimate"], b["estimate"], rtol=1e-6)
    # the SEs of the variance parameters: the Laplace Hessian is central differences of the exact
    # gradient (hierlm.bayes.laplace; ~1e-8 relative, tests/bayes/test_laplace.py), so the SEs move
    # only with the two modes' last digits (measured 2e-9 relative apart)
    np.testing.assert_allclose(a["std_error"], b["std_error"], rtol=1e-6)


@pytest.mark.slow
def test_nuts_marginal_agrees_with_in_memory() -> None:
    """NUTS on engine data samples the same posterior: means within 4 Monte Carlo SEs."""
    df = simulate(3000, 30, seed=9)
    formula = "y ~ x + (x | g)"
    options = {"draws": 500, "chains": 2, "random_seed": 3}
    got = hl.Model(formula, duckdb.from_df(df), progress=False).fit(method="nuts", **options)
    want = hl.Model(formula, df).fit(method="nuts", **options)
    assert "log_likelihood_group" in got.idata.children
    assert "observed_data" not in got.idata.children
    for table in ("fixef", "varcorr"):
        a, b = getattr(got, table)(), getattr(want, table)()
        # a Monte Carlo SE of each mean: posterior SD / sqrt(draws), draws taken as 300 effective
        se = np.hypot(a["std_error"], b["std_error"]) / np.sqrt(300)
        assert np.all(np.abs(a["estimate"] - b["estimate"]) <= 4 * se), table


def test_summary_residual_quantiles_from_a_second_pass() -> None:
    """The summary's scaled-residual quantiles: exact (R's type 7) in DuckDB and polars."""
    df = simulate(1200, 15, seed=12)
    formula = "y ~ x + (1 | g)"
    want = hl.Model(formula, df).fit().scaled_residual_quantiles()
    for data in (duckdb.from_df(df), pl.from_pandas(df).lazy()):
        got = hl.Model(formula, data, progress=False).fit().scaled_residual_quantiles()
        np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("formula", ["y ~ x + ok + (1 | a/b)", "y ~ x + (1 | a:b) + (x || a)"])
def test_nested_and_interaction_groupings(formula: str) -> None:
    """Groupings on several columns (a/b, a:b) group by the observed cells; a logical predictor."""
    rng = np.random.default_rng(3)
    n = 2000
    df = pd.DataFrame({"a": rng.choice(list("pqrstu"), n), "b": rng.integers(0, 8, n),
                       "x": rng.normal(size=n), "ok": rng.random(n) > 0.5})
    cell = df["b"] * 6 + df["a"].map({c: i for i, c in enumerate("pqrstu")})
    df["y"] = df["x"] + rng.normal(size=48)[cell] + rng.normal(size=n)
    reference = hl.Model(formula, df).fit()
    fit = hl.Model(formula, duckdb.from_df(df), progress=False).fit()
    assert_same_fit(reference, fit)
    assert [t.n_levels for t in fit.model.random_terms] == [
        t.n_levels for t in reference.model.random_terms]
    pd.testing.assert_frame_equal(fit.ranef(), reference.ranef(), rtol=1e-6)


@pytest.mark.parametrize("formula", ["y ~ x + (x | g)", "y ~ x + (1 | g) + (1 | f)"])
def test_icc_and_r2_from_the_statistics(formula: str) -> None:
    """Nakagawa's R² and the ICC need only X'X, column sums and Z'Z: equal to pandas' (abs 1e-12)."""
    df = simulate(2000, 20, seed=13)
    want = hl.Model(formula, df).fit()
    got = hl.Model(formula, duckdb.from_df(df), progress=False).fit()
    np.testing.assert_allclose(got.r2()["estimate"], want.r2()["estimate"], rtol=0, atol=1e-12)
    for table in ("correlations", "components"):
        a, b = getattr(got.icc(), table), getattr(want.icc(), table)
        np.testing.assert_allclose(a.select_dtypes("number"), b.select_dtypes("number"),
                                   rtol=1e-10, atol=1e-12)


def test_shrinkage_from_the_statistics() -> None:
    """shrinkage() needs per-level cross-products and counts only: equal to pandas' (rel 1e-9)."""
    df = simulate(2500, 25, seed=14)
    formula = "y ~ x + f + (x | g)"
    want = hl.Model(formula, df).fit().shrinkage("g", complete="ols")
    got = hl.Model(formula, duckdb.from_df(df), progress=False).fit().shrinkage("g", complete="ols")
    assert list(got.table["level"]) == list(want.table["level"])
    np.testing.assert_array_equal(got.table["n"], want.table["n"])
    numbers = [c for c in want.table.select_dtypes("number").columns if c != "pull"]
    np.testing.assert_allclose(got.table[numbers], want.table[numbers], rtol=1e-6, atol=1e-9)
    # pull divides by the level's own deviation from the pooled value, which magnifies the two
    # optimisers' ~1e-7 stopping differences (see assert_same_fit) where that deviation is small
    np.testing.assert_allclose(got.table["pull"], want.table["pull"], rtol=1e-4)


@pytest.mark.parametrize("formula", [
    "y ~ center(x) + f + (center(x) | g)",
    "y ~ scale(x) + standardize(x2) + f + (scale(x2, center=False) || g)",
])
def test_centring_and_scaling_learned_by_the_engine(formula: str) -> None:
    """center()/scale()/standardize(): constants by aggregate queries = formulaic's on the rows.

    The states agree to rel 1e-12 (sums in another order), the fits to the usual 1e-7, and
    predict(new_data) uses the learned constants (abs 1e-10).
    """
    df = simulate(2500, 20, seed=15)
    df["x"] = df["x"] + 5.0  # a mean far from 0: centring matters
    df["x2"] = np.exp(0.3 * df["x"])
    reference = hl.Model(formula, df).fit()
    for data in (duckdb.from_df(df), pl.from_pandas(df).lazy()):
        fit = hl.Model(formula, data, progress=False).fit()
        assert_same_fit(reference, fit)
        got = fit.model.spec.fixed_spec.transform_state
        for key, want in reference.model.spec.fixed_spec.transform_state.items():
            for name in ("center", "scale"):
                if want[name] is None:
                    assert got[key][name] is None
                else:
                    assert float(got[key][name]) == pytest.approx(float(want[name]), rel=1e-12)
        new = simulate(50, 25, seed=16).assign(x=lambda d: d["x"] + 4.0)
        new["x2"] = np.exp(0.3 * new["x"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hl.errors.HierlmWarning)  # unseen levels
            np.testing.assert_allclose(fit.predict(new)["estimate"],
                                       reference.predict(new)["estimate"], rtol=0, atol=1e-10)


def test_group_log_likelihood_and_loo_by_group() -> None:
    """loo/waic(level='group') on engine data: the per-level marginal log-likelihood is exact.

    Reference: the same draws evaluated on the in-memory design (rel 1e-10), and the
    per-level log-likelihood the sampler stored from the statistics.
    """
    import dataclasses

    from hierlm.results.grouped import group_loglik

    df = simulate(1500, 15, seed=17)
    formula = "y ~ x + (x | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hl.errors.HierlmWarning)
        fit = hl.Model(formula, duckdb.from_df(df), progress=False).fit(
            method="nuts", chains=2, draws=60, tune=60, random_seed=2, progressbar=False)
    draws = fit.draws()
    in_memory = dataclasses.replace(draws, design=hl.Model(formula, df).design)
    want = group_loglik(in_memory, "g")
    np.testing.assert_allclose(group_loglik(draws, "g"), want, rtol=1e-10)
    stored = fit.idata["log_likelihood_group"]["y"].values.reshape(want.shape)
    np.testing.assert_allclose(stored, want, rtol=1e-10)
    assert np.isfinite(fit.loo(level="group").elpd)


def test_emmeans_from_the_frozen_spec() -> None:
    """Reference grids on engine data: levels from the spec, covariate means by a query.

    The grid's covariate mean equals pandas' (rel 1e-12); the marginal means and
    contrasts equal the in-memory ones to the fits' agreement (rel 1e-6).
    """
    from hierlm.results.refgrid import fixed_variables

    df = simulate(2500, 20, seed=18)
    df["x"] = df["x"] + 3.0
    formula = "y ~ x * f + (1 | g)"
    want = hl.Model(formula, df).fit()
    for data in (duckdb.from_df(df), dd.from_pandas(df, npartitions=2)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hl.errors.HierlmWarning)  # dask: no client
            got = hl.Model(formula, data, progress=False).fit()
            variables = fixed_variables(got)
        assert variables.factors == {"f": ["a", "b", "c"]}
        assert variables.covariates["x"] == pytest.approx(df["x"].mean(), rel=1e-12)
        for table in (lambda fit: fit.emmeans("f").table,
                      lambda fit: fit.emmeans("f").contrast()):
            a, b = table(got), table(want)
            numbers = b.select_dtypes("number").columns
            np.testing.assert_allclose(a[numbers], b[numbers], rtol=1e-6)
