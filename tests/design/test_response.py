import numpy as np
import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import ColumnNotFoundError, DataError


@pytest.fixture
def sleep():
    return hl.datasets.load("sleepstudy")


def test_transformed_response_uses_r_spelling(sleep):
    model = hl.Model("log(Reaction) ~ Days + (Days | Subject)", sleep)
    np.testing.assert_allclose(model.design.y, np.log(sleep["Reaction"].to_numpy()))
    assert model.spec.variables() == ["Reaction", "Days", "Subject"]


def test_transformed_response_not_needed_for_new_data(sleep):
    model = hl.Model("np.sqrt(Reaction) ~ Days + (1 | Subject)", sleep)
    design, _ = model.spec.design_for(sleep.drop(columns="Reaction"))
    assert np.isnan(design.y).all()
    design, _ = model.spec.design_for(sleep, with_response=True)
    np.testing.assert_allclose(design.y, np.sqrt(sleep["Reaction"].to_numpy()))


def test_response_expression_outside_domain_names_rows(sleep):
    with pytest.raises(DataError, match=r"log\(Reaction - 300\).*not finite in 102 row"):
        hl.Model("log(Reaction - 300) ~ Days + (1 | Subject)", sleep)


def test_response_expression_unknown_column(sleep):
    with pytest.raises(ColumnNotFoundError, match="Reactoin"):
        hl.Model("log(Reactoin) ~ Days + (1 | Subject)", sleep)


def test_response_expression_of_text_column_is_rejected():
    data = pd.DataFrame({"y": list("abcdefgh"), "g": list("aabbccdd")})
    with pytest.raises(DataError, match="'y' is not numeric"):
        hl.Model("log(y) ~ 1 + (1 | g)", data)
