import re

import pytest

import hierlm as hl
from hierlm.bayes.report import BayesSummary


@pytest.fixture(scope="module")
def model():
    return hl.Model("Reaction ~ Days + (Days | Subject)", hl.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def nuts_fit(model):
    return model.fit(method="nuts", draws=150, tune=150, chains=2, random_seed=3, progressbar=False)


def _row(text: str, label: str) -> list[str]:
    """Cells of the report line that starts with ``label``."""
    for line in text.splitlines():
        if line.startswith(label + " "):
            return line[len(label) :].split()
    raise AssertionError(f"no line for {label!r} in\n{text}")


def test_nuts_report_prints_the_fit_tables(nuts_fit):
    text = str(BayesSummary(nuts_fit))
    fixef = nuts_fit.fixef()
    for term in ("Intercept", "Days"):
        cells = _row(text, term)
        assert float(cells[0]) == pytest.approx(round(fixef.loc[term, "estimate"], 2), abs=0.006)
        assert float(cells[1]) == pytest.approx(round(fixef.loc[term, "std_error"], 2), abs=0.006)
        assert float(cells[4]) == pytest.approx(fixef.loc[term, "r_hat"], abs=6e-4)
    varcorr = nuts_fit.varcorr()
    sd_days = varcorr[(varcorr.group == "Subject") & (varcorr.term1 == "Days") & varcorr.term2.isna()]
    assert float(_row(text, "sd(Days)")[0]) == pytest.approx(float(sd_days["estimate"].iloc[0]), abs=0.006)
    cor = varcorr[varcorr.term2 == "Days"]
    cor_estimate = float(cor["estimate"].iloc[0])
    assert float(_row(text, "cor(Intercept,Days)")[0]) == pytest.approx(cor_estimate, abs=0.006)
    sigma = varcorr[varcorr.group == "Residual"]
    assert float(_row(text, "sigma")[0]) == pytest.approx(float(sigma["estimate"].iloc[0]), abs=0.006)
    assert "2 chains, each with 150 draws after 150 tuning steps" in text
    assert re.search(r"Diagnostics: \d+ divergent transition", text)
    assert "Formula: Reaction ~ Days + (Days | Subject)" in text


def test_report_html_has_every_section(nuts_fit):
    page = BayesSummary(nuts_fit)._repr_html_()
    for heading in ("Group-level effects", "Population-level effects", "Family-specific parameters"):
        assert heading in page
    assert page.count("<table") == 3


def test_map_report_shows_estimates_without_diagnostics(model):
    fit = model.fit(method="map")
    text = str(BayesSummary(fit))
    assert "posterior mode (MAP)" in text
    expected = round(fit.fixef().loc["Days", "estimate"], 2)
    assert float(_row(text, "Days")[0]) == pytest.approx(expected, abs=0.006)
    assert "Diagnostics" not in text
