"""hierlm.design (with hierlm.formula) imports none of the Bayesian stack."""

import subprocess
import sys

CHECK = (
    "import hierlm.formula, hierlm.design, sys; "
    "assert not any(m.split('.')[0] in ('pymc','pytensor','arviz') for m in sys.modules)"
)


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_formula_and_design_do_not_import_pymc():
    result = run(CHECK)
    assert result.returncode == 0, result.stderr


def test_the_check_would_see_such_an_import():
    # control: a module of that stack in sys.modules makes the same check fail
    result = run("import sys, types; sys.modules['pytensor.fake'] = types.ModuleType('x'); " + CHECK)
    assert result.returncode != 0 and "AssertionError" in result.stderr
