"""hierlm.formula knows no data and imports none of the Bayesian stack."""

import subprocess
import sys


def test_formula_does_not_import_pymc():
    code = (
        "import hierlm.formula, sys; "
        "assert not any(m.split('.')[0] in ('pymc','pytensor','arviz') for m in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_public_names():
    import hierlm.formula as formula

    assert set(formula.__all__) == {"Bar", "BarTerm", "ParsedFormula", "expand_bars", "parse_formula"}
