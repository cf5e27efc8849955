"""The HTML report: content, embedded figures, saved fit and card, and how Chromium renders it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import tomllib
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.cards import ModelCard, load_card
from hierlm.errors import InputTypeError, SamplingWarning
from hierlm.report import write_report

matplotlib.use("Agg")

MODELS = Path(__file__).resolve().parents[1] / "models"
IMAGE = re.compile(r'<img alt="figure" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
CAPTION = re.compile(r"<figcaption>(.*?)</figcaption>")


@pytest.fixture(scope="module")
def card():
    return load_card(MODELS / "sleepstudy_slope.toml")


@pytest.fixture(scope="module")
def reml_fit(card):
    return hl.Model(card.formula, card.data).fit(method="reml")


@pytest.fixture(scope="module")
def reml_report(reml_fit, card, tmp_path_factory):
    return write_report(reml_fit, card, tmp_path_factory.mktemp("reml"))


@pytest.fixture(scope="module")
def posterior_report(reml_fit, card, tmp_path_factory):
    from plots.helpers import pseudo_posterior

    draws = pseudo_posterior(reml_fit)
    return draws, write_report(draws, card, tmp_path_factory.mktemp("posterior"))


def test_reml_report_embeds_the_point_fit_figures(reml_report):
    page = reml_report.html.read_text()
    captions = CAPTION.findall(page)
    assert captions == [
        "Shrinkage by Subject: no pooling -&gt; partial pooling", "Group effects by Subject",
        "Trajectories over Days", "Residuals vs fitted values", "Normal QQ plot of group effects"]
    images = IMAGE.findall(page)
    assert len(images) == len(captions)
    import base64
    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    # self-contained: nothing is fetched from elsewhere
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # only data: URIs and in-page anchors
    assert "<link" not in page and "<script" not in page


def test_reml_report_tables_and_saved_fit(reml_report, reml_fit):
    page = reml_report.html.read_text()
    for heading in ("Fixed effects", "Variance components", "Intraclass correlation", "Shrinkage by Subject"):
        assert f"<h3>{heading}</h3>" in page
    assert "251.4" in page and "REML criterion at convergence: 1743.6" in page
    names = sorted(path.name for path in reml_report.fit)
    assert names == ["fit", "fit.json", "fixef.csv", "parameters.csv", "ranef.csv", "varcorr.csv"]
    reloaded = hl.load_fit(reml_report.html.parent / "fit")
    np.testing.assert_allclose(reloaded.fixef()["estimate"], reml_fit.fixef()["estimate"])
    fixef = pd.read_csv(reml_report.html.parent / "fixef.csv", index_col=0)
    np.testing.assert_allclose(fixef["estimate"], reml_fit.fixef()["estimate"])
    ranef = pd.read_csv(reml_report.html.parent / "ranef.csv")
    np.testing.assert_allclose(ranef["estimate"], reml_fit.ranef()["estimate"])
    facts = json.loads((reml_report.html.parent / "fit.json").read_text())
    assert facts["method"] == "reml" and facts["nobs"] == 180
    assert facts["loglik"] == pytest.approx(reml_fit.loglik)
    assert facts["fit_record"]["converged"] is True


def test_card_is_copied(reml_report):
    assert reml_report.card.name == "sleepstudy_slope.toml"
    assert reml_report.card.read_text() == (MODELS / "sleepstudy_slope.toml").read_text()
    assert reml_report.all()[:2] == [reml_report.html, reml_report.card]


def test_posterior_report_adds_posterior_figures_and_netcdf(posterior_report):
    import xarray as xr

    draws, files = posterior_report
    page = files.html.read_text()
    captions = CAPTION.findall(page)
    for caption in ("Variance components (posterior)", "Intraclass correlation (posterior)",
                    "Correlations of group effects (posterior)", "Posterior predictive check",
                    "Trace plots", "Rank plots"):
        assert caption in captions
    assert len(IMAGE.findall(page)) == len(captions)
    assert "Posterior summary and convergence diagnostics" in page and "R-hat" in page
    (saved,) = files.fit
    assert saved.name == "fit.nc"
    tree = xr.open_datatree(saved, engine="h5netcdf")
    np.testing.assert_allclose(tree["posterior"]["fixef"].values.reshape(-1, 2), draws.beta)


def test_card_assembled_in_memory_is_written_as_toml(reml_fit, tmp_path):
    card = ModelCard(name="adhoc", description="", formula="Reaction ~ Days + (Days | Subject)",
                     family="gaussian", data=hl.datasets.load("sleepstudy"), fit_options={"method": "reml"})
    files = write_report(reml_fit, card, tmp_path / "out", time=False)
    content = tomllib.loads(files.card.read_text())
    assert content["model"]["formula"] == card.formula and content["fit"]["method"] == "reml"
    assert "Trajectories" not in files.html.read_text()


def test_a_figure_that_does_not_apply_is_listed_with_its_reason(tmp_path):
    card = load_card(MODELS / "penicillin_crossed.toml")
    fit = hl.Model(card.formula, card.data).fit(method="reml")
    files = write_report(fit, card, tmp_path, time="plate")
    page = files.html.read_text()
    assert "Not shown:" in page and "pass group=" in page  # trajectories need one factor
    assert "Group effects by plate" in page and "Group effects by sample" in page


def test_bad_card(reml_fit, tmp_path):
    with pytest.raises(InputTypeError, match="ModelCard"):
        write_report(reml_fit, {"formula": "y ~ x"}, tmp_path)


@pytest.fixture(scope="module")
def nuts_report(card, tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # short chains on purpose
        fit = hl.Model(card.formula, card.data).fit(method="nuts", chains=2, draws=100, tune=100,
                                                    random_seed=2)
    return fit, write_report(fit, card, tmp_path_factory.mktemp("nuts"))


@pytest.mark.slow
def test_nuts_report_saves_the_idata_and_shows_every_figure(nuts_report):
    import xarray as xr

    fit, files = nuts_report
    page = files.html.read_text()
    captions = CAPTION.findall(page)
    assert len(captions) == 11 and len(IMAGE.findall(page)) == 11
    assert "Trajectories over Days" in captions and "Rank plots" in captions
    assert "Not shown:" not in page
    folder, idata_path = files.fit
    assert folder.name == "fit" and idata_path == folder / "idata.nc"
    saved = xr.open_datatree(idata_path, engine="h5netcdf")
    np.testing.assert_array_equal(saved["posterior"]["fixef"].values, fit.idata["posterior"]["fixef"].values)
    reloaded = hl.load_fit(folder)
    np.testing.assert_allclose(reloaded.fixef()["mean"], fit.fixef()["mean"])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _screenshot(page: Path, target: Path, height: int) -> np.ndarray:
    """Render ``page`` in headless Chromium at 1200 x ``height`` pixels and return the pixels."""
    profile = tempfile.mkdtemp()
    try:
        subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--screenshot={target}", f"--window-size=1200,{height}",
             page.resolve().as_uri()],
            check=True, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return matplotlib.image.imread(target)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(nuts_report, tmp_path):
    _, files = nuts_report
    top = _screenshot(files.html, tmp_path / "top.png", 2000)
    assert top.shape[:2] == (2000, 1200)
    grey = top[..., :3].mean(axis=2)
    # dark text on a white page, and the light grey of the styled summary block and table headers
    assert (grey < 0.3).mean() > 0.005 and (grey > 0.99).mean() > 0.5
    assert ((grey > 0.94) & (grey < 0.975)).mean() > 0.01
    # the whole page: the embedded PNG figures decode and show in colour
    whole = _screenshot(files.html, tmp_path / "whole.png", 12000)
    colour = np.abs(whole[..., 0] - whole[..., 2]) > 0.3
    assert colour.mean() > 0.002
    assert colour[:2000].mean() < colour[2000:].mean()  # figures come after the tables
