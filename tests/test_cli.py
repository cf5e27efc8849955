"""The ``hierlm`` command: fits, the twin comparison, saved cards that repeat the fit, bad input."""

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hierlm.cli import main

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SLEEP = ["--data", "sleepstudy", "--formula", "Reaction ~ Days + (1 | Subject)"]
SMALL_NUTS = ["--draws", "60", "--tune", "60", "--chains", "2"]


def _fails(argv: list[str], capsys) -> str:
    """Run the command, assert exit code 2 and exactly one line on stderr; return that line."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    assert captured.err.startswith("hierlm") and "Traceback" not in captured.err
    return captured.err.strip()


def _summary_lines(text: str) -> list[str]:
    """Printed lines without the run time."""
    return [line for line in text.splitlines() if not line.startswith("(") or " fit in " not in line]


# ----------------------------------------------------------------------------- fits
def test_reml_card_prints_lme4_numbers(capsys):
    assert main(["fit", str(MODELS / "pastes_nested.toml")]) == 0
    out = capsys.readouterr().out
    fixture = json.loads((ROOT / "tests" / "fixtures" / "lme4" / "pastes_nested_reml.json").read_text())
    assert f"REML criterion at convergence: {fixture['reml_criterion']:.1f}" in out
    assert "NUTS next to" not in out


def test_residual_structure_card_prints_nlme_numbers(capsys, tmp_path):
    from hierlm.cards import card_toml, load_card

    assert main(["fit", str(MODELS / "pigs_ar1.toml")]) == 0
    out = capsys.readouterr().out
    fixture = json.loads((ROOT / "tests" / "fixtures" / "nlme" / "residual.json").read_text())
    ar1 = next(f for f in fixture["fits"] if f["id"] == "pigs_AR1_reml")
    assert f"Structure ar1(week | id): rho = {ar1['correlation_parameters']['Phi']:.4g}" in out
    assert f"REML criterion at convergence: {-2 * ar1['logLik']:.1f}" in out
    card = load_card(MODELS / "pigs_ar1.toml")
    assert card.model_options == {"residual": "ar1(week | id)"}
    (tmp_path / "again.toml").write_text(card_toml(card))
    assert load_card(tmp_path / "again.toml").model_options == card.model_options


def test_ad_hoc_fit_with_method(capsys):
    assert main(["fit", "--data", "Dyestuff", "--formula", "Yield ~ 1 + (1 | Batch)", "--method", "ml"]) == 0
    assert "maximum likelihood" in capsys.readouterr().out.lower()


def test_main_card_prints_nuts_and_its_reml_twin_side_by_side(capsys):
    card = tomllib.loads((MODELS / "sleepstudy_slope.toml").read_text())
    assert card["fit"]["method"] == "nuts" and card["fit"]["compare"] == "reml"
    assert card["fit"]["draws"] * card["fit"]["chains"] <= 2000  # the main command stays quick
    assert main(["fit", str(MODELS / "sleepstudy_slope.toml"), *SMALL_NUTS]) == 0
    out = capsys.readouterr().out
    assert "Population-Level Effects:" in out and "2 chains, each with 60 draws" in out
    assert "REML criterion at convergence: 1743.6" in out  # lme4's number, from the twin
    assert "# NUTS next to REML, side by side" in out
    table = out[out.index("# NUTS next to REML"):].splitlines()
    assert "Posterior mean" in table[1] and "REML estimate" in table[1]
    rows = {line.split()[0]: line.split() for line in table[2:] if line.strip()}
    assert set(rows) >= {"Intercept", "Days", "sigma", "ICC(Subject)"}
    assert float(rows["Intercept"][-4]) == pytest.approx(251.405, abs=1e-3)  # REML estimate
    assert float(rows["Days"][-3]) == pytest.approx(1.546, abs=1e-3)  # its standard error


def test_compare_flag_and_none(capsys):
    assert main(["fit", *SLEEP, "--compare", "nuts", *SMALL_NUTS, "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "# Twin fit by nuts" in out and "# NUTS next to REML" in out
    assert main(["fit", str(MODELS / "sleepstudy_slope.toml"), "--compare", "none", "--method", "reml"]) == 0
    out = capsys.readouterr().out
    assert "REML criterion" in out and "Twin fit" not in out and "Population-Level" not in out


def test_method_override_drops_the_card_sampler_settings(capsys, tmp_path):
    out = tmp_path / "report"
    assert main(["fit", str(MODELS / "sleepstudy_bayes.toml"), "--method", "map", "--report", str(out)]) == 0
    saved = tomllib.loads((out / "sleepstudy_bayes.toml").read_text())
    assert saved["fit"] == {"method": "map"}
    assert "posterior mode (MAP)" in capsys.readouterr().out


def test_categorical_given_as_one_name(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("y,x,g\n" + "".join(
        f"{i + (i % 3) * 2 + 0.1 * (i % 5)},{i % 4},{i % 3 + 1}\n" for i in range(30)))
    card = tmp_path / "c.toml"
    card.write_text('[data]\npath = "d.csv"\ncategorical = "g"\n[model]\nformula = "y ~ x + (1 | g)"\n')
    from hierlm.cards import load_card

    assert str(load_card(card).data["g"].dtype) == "category"
    assert main(["fit", str(card)]) == 0
    assert "groups:  g, 3" in capsys.readouterr().out
    card.write_text('[data]\npath = "d.csv"\ncategorical = 3\n[model]\nformula = "y ~ x + (1 | g)"\n')
    assert "categorical must be a column name or a list of column names, got 3" in _fails(
        ["fit", str(card)], capsys)


# ----------------------------------------------------------------------------- saved cards
def test_saved_card_repeats_a_nuts_fit_with_overrides(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["fit", str(MODELS / "sleepstudy_intercept.toml"), "--method", "nuts", *SMALL_NUTS,
                 "--report", str(out)]) == 0
    first = capsys.readouterr().out
    saved = tomllib.loads((out / "sleepstudy_intercept.toml").read_text())
    assert saved["fit"]["method"] == "nuts" and saved["fit"]["draws"] == 60
    assert saved["fit"]["chains"] == 2 and isinstance(saved["fit"]["random_seed"], int)
    assert saved["data"] == {"dataset": "sleepstudy"}
    assert main(["fit", str(out / "sleepstudy_intercept.toml")]) == 0
    again = capsys.readouterr().out
    assert _summary_lines(again) == [line for line in _summary_lines(first)
                                     if not line.startswith(("Report:", "Card:", "Fit:"))]


def test_saved_card_of_an_ad_hoc_csv_fit(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data.csv"
    data.write_text("y,x,g\n" + "".join(f"{i * 0.5 + (i % 4) ** 2},{i % 5},{'abcd'[i % 4]}\n"
                                         for i in range(40)))
    out = tmp_path / "report"
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--data", "data.csv", "--formula", "y ~ x + (1 | g)", "--categorical", "g",
                 "--method", "ml", "--report", str(out)]) == 0
    first = capsys.readouterr().out
    saved = tomllib.loads((out / "card.toml").read_text())
    assert saved["fit"] == {"method": "ml"}
    assert saved["data"] == {"path": str(data.resolve()), "categorical": ["g"]}
    monkeypatch.chdir(ROOT)
    assert main(["fit", str(out / "card.toml")]) == 0
    assert _summary_lines(capsys.readouterr().out) == [
        line for line in _summary_lines(first) if not line.startswith(("Report:", "Card:", "Fit:"))]


def test_saved_card_of_an_unchanged_card_is_a_copy(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["fit", str(MODELS / "pastes_nested.toml"), "--report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"Report: {out / 'report.html'}" in printed
    assert (out / "pastes_nested.toml").read_text() == (MODELS / "pastes_nested.toml").read_text()
    assert (out / "report.html").read_text().count("<img") >= 1
    import hierlm as hl

    fixture = json.loads((ROOT / "tests" / "fixtures" / "lme4" / "pastes_nested_reml.json").read_text())
    assert hl.load_fit(out / "fit").reml_criterion == pytest.approx(fixture["reml_criterion"], abs=1e-4)


def test_saved_folders_are_readable_as_the_report(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        out = tmp_path / "report"
        assert main(["fit", *SLEEP, "--report", str(out)]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    report_mode = stat.S_IMODE(out.stat().st_mode)
    assert report_mode == 0o755
    for path in [out / "fit", *(out / "fit").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044, (path, oct(mode))  # group and others can read
        if path.is_dir():
            assert mode == report_mode, (path, oct(mode))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "Data file bad.csv is empty"),
        (b"\xff\xfe\x00y\x00\n\x81", "Data file bad.csv is not UTF-8 text"),
        (b"y,g\n1,a\n2,b,3,4\n", "Data file bad.csv is not a valid CSV: Error tokenizing data"),
        (b"y,g\n", "Data file bad.csv has a header but no rows"),
    ],
    ids=["empty", "not-utf8", "malformed", "header-only"],
)
def test_unreadable_csv(tmp_path, capsys, content, fragment):
    (tmp_path / "bad.csv").write_bytes(content)
    line = _fails(["fit", "--data", str(tmp_path / "bad.csv"), "--formula", "y ~ 1 + (1 | g)"], capsys)
    assert fragment in line


_CARD = '[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (1 | Subject)"\n'


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "Model card c.toml is empty"),
        (b"\xff\xfe[fit]\n", "Model card c.toml is not UTF-8 text"),
        (b"[model\nformula = 1", "Model card c.toml is not valid TOML"),
        ((_CARD + '[fitt]\nmethod = "ml"\n').encode(), "unknown section(s) or key(s) 'fitt'"),
        ((_CARD + "[fit]\ndraw = 10\n").encode(), "unknown [fit] key(s) 'draw'"),
        ((_CARD + '[fit]\nmethod = "reml"\ndraws = 10\n').encode(),
         "'draws' applies to nuts, but the card fits reml"),
        ((_CARD + '[fit]\nmethod = "nuts"\ndraws = -5\n').encode(), "draws must be an integer >= 1"),
        ((_CARD + '[fit]\nmethod = "nuts"\nrandom_seed = -1\n').encode(),
         "random_seed must be an integer >= 0"),
        ((_CARD + '[fit]\nmethod = "bayes"\n').encode(),
         "method = 'bayes'; choose one of reml, ml, map, nuts"),
        ((_CARD + '[fit]\nmethod = "reml"\ncompare = "ml"\n').encode(),
         "needs one 'nuts' fit and one point fit"),
        (_CARD.replace("[model]", 'path = "x.csv"\n[model]').encode(), "has both 'dataset' and 'path'"),
        (_CARD.replace("[model]", 'categorical = ["Subject"]\n[model]').encode(),
         "categorical applies to a CSV 'path'"),
        (_CARD.replace("formula", "formul").encode(), "unknown [model] key(s) 'formul'"),
        (_CARD.replace("dataset", "datset").encode(), "unknown [data] key(s) 'datset'"),
        (_CARD.replace("Days + (1", "Dayz + (1").encode(), "Did you mean 'Days'"),
    ],
    ids=["empty", "not-utf8", "bad-toml", "section", "fit-key", "ignored-option", "negative-draws",
         "negative-seed", "method", "compare-pair", "dataset-and-path", "categorical-dataset",
         "model-key", "data-key", "formula"],
)
def test_bad_card(tmp_path, capsys, content, fragment):
    (tmp_path / "c.toml").write_bytes(content)
    assert fragment in _fails(["fit", str(tmp_path / "c.toml")], capsys)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["fit", *SLEEP, "--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
        (["fit", *SLEEP, "--draws", "many"], "argument --draws: expected an integer, got 'many'"),
        (["fit", *SLEEP, "--draws", "500"], "--draws applies to nuts fits, but this run fits reml"),
        (["fit", *SLEEP, "--method", "map", "--seed", "1"],
         "--seed applies to nuts fits, but this run fits map"),
        (["fit", *SLEEP, "--compare", "ml"], "--compare ml with method reml"),
        (["fit", "--data", "sleepstudy"], "give a model card, or both --data and --formula"),
        (["fit", str(MODELS / "pastes_nested.toml"), *SLEEP], "give either a model card or --data"),
        (["fit", "missing.toml"], "Model card 'missing.toml' not found"),
        (["fit", str(MODELS)], "is not a file"),
        (["fit", "--data", "nope.csv", "--formula", "y ~ 1 + (1 | g)"], "Data file 'nope.csv' not found"),
        (["fit", "--data", "sleepstudy", "--formula", "Reaction ~ Dayz + (1 | Subject)"],
         "Did you mean 'Days'"),
        (["fit", *SLEEP, "--categorical", "x"], "--categorical applies to a CSV file"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_command_line(argv, fragment, capsys):
    assert fragment in _fails(argv, capsys)


def test_report_pointing_at_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    assert "--report" in _fails(["fit", *SLEEP, "--report", str(target)], capsys)
    assert "Not a directory" in _fails(["fit", *SLEEP, "--report", str(target / "sub")], capsys)
    assert target.read_text() == "not a folder"


def test_any_hierlm_error_is_one_line(monkeypatch, capsys):
    from hierlm import model
    from hierlm.errors import FitError

    def broken(self, *args, **kwargs):
        raise FitError("first line of the problem\nsecond line with details")

    monkeypatch.setattr(model.Model, "fit", broken)
    assert _fails(["fit", *SLEEP], capsys) == "hierlm: error: first line of the problem"


def test_warnings_are_one_line(capsys, tmp_path):
    (tmp_path / "d.csv").write_text("y,g\n1,a\n2,a\n,b\n4,b\n5,c\n7,c\n")
    assert main(["fit", "--data", str(tmp_path / "d.csv"), "--formula", "y ~ 1 + (1 | g)"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("hierlm: warning:") and all(line.startswith("hierlm: warning:")
                                                      for line in err.splitlines())


def test_other_libraries_warnings_name_their_class(monkeypatch, capsys):
    import warnings

    from hierlm import model

    original = model.Model.fit

    def noisy(self, *args, **kwargs):
        warnings.warn("invalid value\nencountered in subtract", RuntimeWarning, stacklevel=1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(model.Model, "fit", noisy)
    assert main(["fit", *SLEEP]) == 0
    expected = "hierlm: warning: RuntimeWarning: invalid value encountered in subtract\n"
    assert capsys.readouterr().err == expected


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hierlm.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, **kwargs)


def test_bad_input_in_a_fresh_process_has_no_traceback(tmp_path):
    (tmp_path / "c.toml").write_bytes(b"\xff\xfe")
    done = _run(["fit", str(tmp_path / "c.toml")])
    assert done.returncode == 2
    assert done.stderr == ("hierlm: error: Model card c.toml is not UTF-8 text "
                           "(invalid start byte at byte 0).\n")


def test_broken_pipe_exits_2_with_one_line():
    process = subprocess.Popen([sys.executable, "-m", "hierlm.cli", "fit", *SLEEP], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `hierlm fit ... | head` does when head is done
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 2
    assert err == "hierlm: error: the output pipe was closed before the output was written\n"


# ----------------------------------------------------------------------------- scripts
def test_scripts_find_the_shared_data_relative_to_the_repository():
    for name in ("run-tests", "run-main"):
        text = (ROOT / "scripts" / name).read_text()
        assert '$root/../shared/data' in text, name
        assert "HIERLM_DATA_PATH" in text, name
        assert "/work/" not in text, name  # no one machine's absolute path
