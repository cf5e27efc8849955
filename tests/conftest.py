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


def pytest_collection_modifyitems(config, items):
    """Run modules that hold slow tests first, keeping each module's tests together.

    With two xdist workers, a long test handed out last leaves the other worker idle; slow
    modules first and the many short tests last fill both workers to the end.
    """
    slow_modules = {item.module.__name__ for item in items
                    if item.get_closest_marker("slow") is not None and item.module is not None}
    items.sort(key=lambda item: 0 if item.module is not None and item.module.__name__ in slow_modules
               else 1)
