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


HEADER = re.compile(r'<th class="(?:num|text)">(.*?)</th>')


def _section(page: str, heading: str) -> str:
    """The HTML from ``heading`` to the next heading."""
    start = page.index(heading)
    ends = [i for i in (page.find("<h2", start + 1), page.find("<h3", start + 1)) if i > 0]
    return page[start:min(ends) if ends else len(page)]


def _cells(table_html: str, first: str) -> list[str]:
    """Cells of the table row whose first cell is ``first``."""
    for row in re.findall(r"<tr>(.*?)</tr>", table_html):
        cells = re.findall(r"<td class=\"\w+\">(.*?)</td>", row)
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r}")


def test_tables_have_readable_headers_and_rounding(reml_report):
    page = reml_report.html.read_text()
    headers = set(HEADER.findall(page))
    assert {"Estimate", "Std. error", "t", "p"} <= headers
    raw = {"std_error", "eti95_lb", "ci95_lb", "t_value", "p_value", "term1", "sdcor", "vcov"}
    assert not headers & raw and "<th></th>" not in page  # no index-name rows or raw names
    fixed = _section(page, "<h3>Fixed effects</h3>")
    # one number of decimals per column, from its smallest value: 251.41 next to 10.47
    assert _cells(fixed, "Intercept")[1:3] == ["251.41", "6.82"]
    assert _cells(fixed, "Days")[1:3] == ["10.47", "1.55"]
    assert _cells(fixed, "Days")[-1] == "&lt;0.001"
    variance = _section(page, "<h3>Variance components</h3>")
    assert _cells(variance, "Subject")[1] == "sd(Intercept)"
    assert any("cor(Intercept, Days)" in row for row in re.findall(r"<tr>(.*?)</tr>", variance))


def test_point_fit_report_has_no_priors_and_says_why_there_is_no_loo(reml_report):
    page = reml_report.html.read_text()
    assert "<h3>Priors</h3>" not in page
    assert "PSIS-LOO needs posterior draws" in _section(page, 'id="loo"')


def test_posterior_report_has_a_loo_section_with_the_fit_numbers(posterior_report):
    draws, files = posterior_report
    page = files.html.read_text()
    loo_html = _section(page, 'id="loo"')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_row = hl.results.loo(draws)
        by_group = hl.results.loo(draws, level="group")
    row = _cells(loo_html, "one observation")
    assert row[1] == "180" and float(row[2]) == pytest.approx(by_row.elpd, abs=0.05)
    assert float(row[3]) == pytest.approx(by_row.se, abs=0.05)
    group = _cells(loo_html, "one level of Subject")
    assert group[1] == "18" and float(group[2]) == pytest.approx(by_group.elpd, abs=0.05)


def test_figures_sit_in_a_grid_with_wide_figures_across(posterior_report):
    page = posterior_report[1].html.read_text()
    grid = page[page.index('<div class="figures">'):page.index('<h2 id="card">')]
    assert len(IMAGE.findall(grid)) == len(CAPTION.findall(page))
    assert ".figures { display: grid;" in page
    wide = re.findall(r'<figure class="wide"><figcaption>(.*?)</figcaption>', grid)
    assert "Trace plots" in wide and "Normal QQ plot of group effects" not in wide


def test_report_of_a_nuts_fit_with_its_twin(reml_fit, card, tmp_path):
    draws = __import__("plots.helpers", fromlist=["pseudo_posterior"]).pseudo_posterior(reml_fit)
    files = write_report(reml_fit, card, tmp_path, compare=draws, time=False)
    page = files.html.read_text()
    table = _section(page, 'id="compare"')
    assert "NUTS next to REML" in table
    intercept = _cells(table, "Intercept")
    assert intercept[5] == "251.405" and intercept[6] == "6.825"  # REML estimate and SE
    with pytest.raises(InputTypeError, match="twin of the other kind"):
        write_report(reml_fit, card, tmp_path, compare=reml_fit)


def test_report_folder_that_is_a_file(reml_fit, card, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep")
    with pytest.raises(InputTypeError, match="is a file"):
        write_report(reml_fit, card, target)
    assert target.read_text() == "keep"


def test_saved_fit_folder_has_the_report_folder_permissions(reml_report):
    import stat

    out = reml_report.html.parent
    assert stat.S_IMODE((out / "fit").stat().st_mode) == stat.S_IMODE(out.stat().st_mode)


def test_card_with_other_options_than_its_file_is_rendered(reml_fit, card, tmp_path):
    from dataclasses import replace

    changed = replace(card, fit_options={"method": "reml"})
    files = write_report(reml_fit, changed, tmp_path, time=False)
    assert files.card.name == "sleepstudy_slope.toml"
    assert load_card(files.card).fit_options == {"method": "reml"}
    assert load_card(files.card).data_spec == {"dataset": "sleepstudy"}
    assert (MODELS / "sleepstudy_slope.toml").read_text() != files.card.read_text()


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
    np.testing.assert_allclose(reloaded.fixef()["estimate"], fit.fixef()["estimate"])


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


def _figure_columns(page: Path, tmp_path: Path) -> list[tuple[float, float]]:
    """(left, width) of every figure as Chromium lays out ``page`` 1200 pixels wide."""
    probe = tmp_path / "probe.html"
    script = ("<script>document.body.setAttribute('data-boxes', JSON.stringify("
              "[...document.querySelectorAll('.figures figure')].map(f => {"
              "const r = f.getBoundingClientRect(); return [r.left, r.width];})));</script>")
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    profile = tempfile.mkdtemp()
    try:
        done = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1200,2000", "--dump-dom", probe.resolve().as_uri()],
            check=True, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    boxes = re.search(r'data-boxes="([^"]*)"', done.stdout)
    assert boxes is not None, done.stdout[-500:]
    return [tuple(box) for box in json.loads(boxes.group(1).replace("&quot;", '"'))]


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_figures_are_laid_out_in_columns_in_chromium(nuts_report, tmp_path):
    _, files = nuts_report
    boxes = _figure_columns(files.html, tmp_path)
    assert len(boxes) == 11
    lefts = sorted({round(left) for left, _ in boxes})
    assert len(lefts) == 2 and lefts[1] - lefts[0] > 400  # two columns side by side
    widest = max(width for _, width in boxes)
    narrow = [width for _, width in boxes if width < widest - 1]
    assert narrow and all(width < widest / 2 + 50 for width in narrow)  # wide figures span both
