import json
import subprocess
import sys
from pathlib import Path

import pytest

from hierlm.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_card_fit_prints_lme4_numbers(capsys):
    assert main(["fit", str(ROOT / "models" / "sleepstudy_slope.toml")]) == 0
    out = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6" in out
    assert "24.74" in out and "5.922" in out and "25.59" in out


def test_ad_hoc_fit_with_method(capsys):
    assert main(["fit", "--data", "Dyestuff", "--formula", "Yield ~ 1 + (1 | Batch)", "--method", "ml"]) == 0
    assert "maximum likelihood" in capsys.readouterr().out.lower()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["fit", "--data", "sleepstudy", "--formula", "Reaction ~ Dayz + (1 | Subject)"],
         "Did you mean 'Days'"),
        (["fit", "missing.toml"], "not found"),
        (["fit", "--data", "nope.csv", "--formula", "y ~ 1 + (1 | g)"], "not found"),
        (["fit", "--data", "sleepstudy"], "give a model card, or both --data and --formula"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, fragment):
    done = subprocess.run([sys.executable, "-m", "hierlm.cli", *argv], capture_output=True, text=True)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_report_writes_page_fit_and_card(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["fit", str(ROOT / "models" / "pastes_nested.toml"), "--report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"Report: {out / 'report.html'}" in printed
    assert (out / "report.html").read_text().count("<img") >= 1
    assert (out / "pastes_nested.toml").is_file()
    import hierlm as hl

    fixture = json.loads((ROOT / "tests" / "fixtures" / "lme4" / "pastes_nested_reml.json").read_text())
    assert hl.load_fit(out / "fit").reml_criterion == pytest.approx(fixture["reml_criterion"], abs=1e-4)
