"""Test-session setup shared by every test folder."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Shared data that lives beside the repository (../shared/data/pigs.csv) is found through
# HIERLM_DATA_PATH, as the CLI finds it; scripts/run-tests sets the same default.
_DEFAULT_FOLDERS = [str(ROOT.parent / "shared" / "data")]
os.environ["HIERLM_DATA_PATH"] = os.pathsep.join(
    [p for p in os.environ.get("HIERLM_DATA_PATH", "").split(os.pathsep) if p] + _DEFAULT_FOLDERS
)
