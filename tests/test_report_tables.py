"""Tables for people (hierlm.report_tables): headers, rounding per column, alignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hierlm.report_tables import display_table, table_html, text_table_html, varcorr_display


def test_headers_are_readable():
    table = pd.DataFrame({"mean": [1.0], "sd": [0.5], "eti89_lb": [0.1], "eti89_ub": [1.9],
                          "ess_bulk": [812.4], "r_hat": [1.0004], "mcse_mean": [0.01],
                          "some_new_column": [2.0]}, index=pd.Index(["x"], name="term"))
    assert list(display_table(table).columns) == [
        "Term", "Mean", "SD", "89% low", "89% high", "ESS bulk", "R-hat", "MCSE mean", "Some new column"]


def test_estimate_scale_columns_share_the_decimals_of_the_smallest_estimate():
    table = pd.DataFrame({"estimate": [251.405105, 10.467286], "std_error": [6.824556, 1.545789],
                          "ci95_lb": [237.0, 7.2059], "t_value": [36.838, 6.7716],
                          "p_value": [1.2e-17, 0.0312]}, index=["Intercept", "Days"])
    shown = display_table(table)
    assert list(shown.iloc[0]) == ["Intercept", "251.41", "6.82", "237.00", "36.838", "<0.001"]
    assert list(shown.iloc[1]) == ["Days", "10.47", "1.55", "7.21", "6.772", "0.031"]


def test_counts_rhat_missing_values_and_rounded_zero():
    table = pd.DataFrame({"ess_tail": [1523.6, 88.2], "r_hat": [1.00049, np.nan],
                          "mean": [-0.00001, 0.25], "term2": ["Days", None]})
    shown = display_table(table, index=False)
    assert list(shown["ESS tail"]) == ["1524", "88"]
    assert list(shown["R-hat"]) == ["1.000", ""]
    assert list(shown["Mean"]) == ["0.000", "0.250"]  # no "-0.000"
    assert list(shown["Term2"]) == ["Days", ""]


@pytest.mark.parametrize("values, expected", [([12345.6, 2000.0], ["12346", "2000"]),
                                              ([0.0012345, 0.5], ["0.001", "0.500"])])
def test_decimals_are_between_zero_and_three(values, expected):
    assert list(display_table(pd.DataFrame({"variance": values}), index=False)["Variance"]) == expected


def test_html_aligns_numbers_right_and_text_left():
    page = table_html(pd.DataFrame({"group": ["Subject"], "estimate": [1.5]}), index=False)
    assert '<th class="text">Group</th><th class="num">Estimate</th>' in page
    assert '<td class="text">Subject</td><td class="num">1.500</td>' in page
    assert "&lt;b&gt;" in text_table_html(pd.DataFrame({"a": ["<b>"], "b": ["1"]}))


def test_varcorr_rows_are_labelled():
    table = pd.DataFrame({"group": ["Subject", "Subject", "Subject", "Residual"],
                          "term1": ["Intercept", "Days", "Intercept", None],
                          "term2": [None, None, "Days", None], "sdcor": [24.7, 5.9, 0.07, 25.6]})
    shown = varcorr_display(table)
    assert list(shown["parameter"]) == ["sd(Intercept)", "sd(Days)", "cor(Intercept, Days)", "sigma"]
    assert list(shown.columns) == ["group", "parameter", "sdcor"]
