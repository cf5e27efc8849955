"""A saved fit is untrusted input: crafted, tampered, truncated or corrupted files are refused.

Each test changes one thing in a real saved fit and checks that ``load_fit``
raises ``IncompatibleFileError`` naming the file and the problem, and that
nothing from the file was executed.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import HierlmWarning, IncompatibleFileError
from hierlm.io import load_fit, save_fit
from hierlm.io_validation import file_checksum


class _Marker:
    """Unpickling this object creates a file: proof that code from a file ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _saved(tmp_path: Path, formula: str = "Reaction ~ Days + (Days | Subject)",
           method: str = "reml") -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        fit = hl.Model(formula, hl.datasets.load("sleepstudy")).fit(method=method)
    return save_fit(fit, tmp_path / "fit")


def _edit_manifest(path: Path, edit) -> None:
    manifest = json.loads((path / "hierlm.json").read_text())
    edit(manifest)
    (path / "hierlm.json").write_text(json.dumps(manifest))


def _flip_byte(file: Path, position: int | None = None) -> None:
    content = bytearray(file.read_bytes())
    where = len(content) // 2 if position is None else position
    content[where] ^= 0xFF
    file.write_bytes(bytes(content))


def test_crafted_formula_cannot_unpickle_a_file(tmp_path):
    path = _saved(tmp_path)
    marker = tmp_path / "PWNED"
    np.save(tmp_path / "evil.npy", np.array([_Marker(str(marker))], dtype=object),
            allow_pickle=True)
    # The attack is real: the same expression, evaluated as formulaic would with NumPy, runs code.
    np.load(tmp_path / "evil.npy", allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    evil = f"Reaction ~ Days + np.load({str(tmp_path / 'evil.npy')!r}, allow_pickle=True)"
    _edit_manifest(path, lambda m: m["model"].update(formula=evil))
    with pytest.raises(IncompatibleFileError, match=r"np\.load is not an allowed transform"):
        load_fit(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    "__import__('os').system('touch {marker}')",
    "I(open('{marker}', 'w'))",
    "{{(lambda: __import__('os').system('touch {marker}'))()}}",
    "I(Days.__class__.__base__.__subclasses__())",
    "C(Subject, contr.__dict__)",
])
def test_crafted_formula_cannot_run_a_command(tmp_path, payload):
    path = _saved(tmp_path)
    marker = tmp_path / "PWNED"
    formula = "Reaction ~ Days + " + payload.format(marker=marker)
    _edit_manifest(path, lambda m: m["model"].update(formula=formula))
    with pytest.raises(IncompatibleFileError, match="not allowed"):
        load_fit(path)
    assert not marker.exists()


def test_crafted_response_and_bar_are_checked(tmp_path):
    path = _saved(tmp_path)
    _edit_manifest(path, lambda m: m["model"].update(
        formula="Reaction ~ Days + (I(eval('1')) | Subject)"))
    with pytest.raises(IncompatibleFileError, match=r"eval\(\) is not an allowed transform"):
        load_fit(path)
    _edit_manifest(path, lambda m: m["model"].update(formula="exec('1') ~ Days + (1 | Subject)"))
    with pytest.raises(IncompatibleFileError, match=r"exec\(\) is not an allowed transform"):
        load_fit(path)


def test_flipped_byte_in_data_is_refused(tmp_path):
    path = _saved(tmp_path)
    _flip_byte(path / "data.nc", position=-40)
    with pytest.raises(IncompatibleFileError, match=r"data\.nc.*checksum"):
        load_fit(path)


def test_truncated_data_is_refused(tmp_path):
    path = _saved(tmp_path)
    content = (path / "data.nc").read_bytes()
    (path / "data.nc").write_bytes(content[: len(content) // 3])
    with pytest.raises(IncompatibleFileError, match=r"data\.nc"):
        load_fit(path)


def test_damaged_data_with_a_matching_checksum_is_refused(tmp_path):
    """Checksums match (the manifest was edited too), but the bytes are not netCDF."""
    path = _saved(tmp_path)
    (path / "data.nc").write_bytes(b"not a netCDF file at all")
    _edit_manifest(path, lambda m: m["checksums"].update({"data.nc": file_checksum(path / "data.nc")}))
    with pytest.raises(IncompatibleFileError, match=r"cannot be read as the fit's data"):
        load_fit(path)


def test_negative_theta_is_refused(tmp_path):
    path = _saved(tmp_path)

    def negate(manifest):
        theta = manifest["fit"]["theta"]["__ndarray__"]
        theta[0] = -theta[0]

    _edit_manifest(path, negate)
    with pytest.raises(IncompatibleFileError, match="lower bound"):
        load_fit(path)


@pytest.mark.parametrize(("entry", "factor", "message"), [
    (0, 1.5, "criterion"),  # far from the optimum: the criterion moves
    (1, 1.001, "gradient"),  # near the optimum the criterion moves to 2nd order only
])
def test_tampered_estimate_is_refused(tmp_path, entry, factor, message):
    path = _saved(tmp_path)

    def nudge(manifest):
        for key in (manifest["fit"]["theta"], manifest["fit"]["record"]["end"]):
            key["__ndarray__"][entry] *= factor

    _edit_manifest(path, nudge)
    with pytest.raises(IncompatibleFileError, match="recomputed at the saved theta") as info:
        load_fit(path)
    assert message in str(info.value)


def test_theta_and_record_must_agree(tmp_path):
    path = _saved(tmp_path)
    _edit_manifest(path, lambda m: m["fit"]["theta"]["__ndarray__"].__setitem__(2, 0.5))
    with pytest.raises(IncompatibleFileError, match="optimiser record"):
        load_fit(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(kind="python"), "unknown kind of fit 'python'"),
    (lambda m: m["data"][1].update(dtype="O; import os"), "dtype 'O; import os'"),
    (lambda m: m["data"][1].update(kind="pickle"), "unknown kind 'pickle'"),
    (lambda m: m["data"][1].update(variable="../x"), "invalid storage name"),
    (lambda m: m["model"].update(formula=3), "'model.formula' should be str"),
    (lambda m: m["model"].update(na_action="eval"), "unknown na_action"),
    (lambda m: m["fit"].update(theta=[1.0, "x", 0.2]), "not a finite number"),
    (lambda m: m["fit"]["theta"].update(dtype="object"), "arrays are numeric"),
    (lambda m: m.pop("checksums"), "no checksum of data.nc"),
    (lambda m: m["checksums"].update({"other.bin": "0"}), "unexpected checksum entry"),
])
def test_malformed_manifest_is_refused(tmp_path, edit, message):
    path = _saved(tmp_path)
    _edit_manifest(path, edit)
    with pytest.raises(IncompatibleFileError, match="hierlm") as info:
        load_fit(path)
    assert message in str(info.value)


def test_malformed_prior_is_refused(tmp_path):
    path = _saved(tmp_path)
    _edit_manifest(path, lambda m: m["model"].update(
        priors={"Intercept": {"__prior__": "os.system", "params": {}}}))
    with pytest.raises(IncompatibleFileError, match="prior"):
        load_fit(path)


def test_version_1_files_load_with_a_warning(tmp_path):
    path = _saved(tmp_path)

    def downgrade(manifest):
        manifest["format_version"] = 1
        manifest.pop("checksums")

    _edit_manifest(path, downgrade)
    with pytest.warns(HierlmWarning, match="no checksums"):
        loaded = load_fit(path)
    assert loaded.theta.size == 3


def test_loading_executes_no_pickle(tmp_path, monkeypatch):
    path = _saved(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("load_fit unpickled something")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    loaded = load_fit(path)
    assert isinstance(loaded.fixef(), pd.DataFrame)


def test_flipped_byte_in_bayesian_draws_is_refused(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierlmWarning)
        fit = hl.Model("Reaction ~ Days + (1 | Subject)", hl.datasets.load("sleepstudy")).fit("map")
    path = save_fit(fit, tmp_path / "map")
    _flip_byte(path / "idata.nc", position=-40)
    with pytest.raises(IncompatibleFileError, match=r"idata\.nc.*checksum"):
        load_fit(path)
