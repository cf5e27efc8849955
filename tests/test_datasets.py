"""hierlm.datasets: every bundled data set loads with its documented shape and factor columns."""

import pandas as pd
import pytest

import hierlm as hl
from hierlm.errors import DataError

# name -> (rows, columns or None, {categorical column: number of levels})
EXPECTED = {
    "sleepstudy": (180, 3, {"Subject": 18}),
    "InstEval": (73421, 7, {"s": 2972, "d": 1128, "studage": 4, "lectage": 6, "service": 2, "dept": 14}),
    "Dyestuff": (30, 2, {"Batch": 6}),
    "Dyestuff2": (30, 2, {"Batch": 6}),
    "Pastes": (60, 4, {"batch": 10, "cask": 3, "sample": 30}),
    "Penicillin": (144, 3, {"plate": 24, "sample": 6}),
    "cake": (270, 5, {"replicate": 15, "recipe": 3, "temperature": 6}),
    "Machines": (54, 3, {"Worker": 6, "Machine": 3}),
    "Orthodont": (108, 4, {"Subject": 27, "Sex": 2}),
    "BodyWeight": (176, 4, {"Rat": 16, "Diet": 3}),
    "cbpp": (56, 4, {"herd": 15, "period": 4}),
    "grouseticks": (403, 7, {"INDEX": 403, "BROOD": 118, "YEAR": 3, "LOCATION": 63}),
    "VerbAgg": (
        7584,
        9,
        {"Gender": 2, "item": 24, "resp": 3, "id": 316, "btype": 3, "situ": 2, "mode": 2, "r2": 2},
    ),
    "Salamanders": (644, 9, {"site": 23, "mined": 2, "spp": 7}),
}


def test_available_lists_every_data_set():
    assert sorted(hl.datasets.available()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shape_and_factors(name):
    rows, ncol, factors = EXPECTED[name]
    frame = hl.datasets.load(name)
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (rows, ncol)
    for column, n_levels in factors.items():
        assert isinstance(frame[column].dtype, pd.CategoricalDtype), column
        assert len(frame[column].cat.categories) == n_levels, column
        assert not frame[column].isna().any()
    others = [c for c in frame.columns if c not in factors]
    for column in others:
        assert pd.api.types.is_numeric_dtype(frame[column]), column
    assert frame.notna().all().all()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_categories_are_sorted_as_r_sorts_them(name):
    frame = hl.datasets.load(name)
    for column in EXPECTED[name][2]:
        categories = list(frame[column].cat.categories)
        assert categories == sorted(categories)  # numbers numerically, text alphabetically


def test_numeric_labels_sort_numerically():
    subjects = list(hl.datasets.load("sleepstudy").Subject.cat.categories)
    assert subjects[0] == 308 and subjects[-1] == 372
    temperatures = list(hl.datasets.load("cake").temperature.cat.categories)
    assert temperatures == [175, 185, 195, 205, 215, 225]


def test_sleepstudy_days():
    frame = hl.datasets.load("sleepstudy")
    assert sorted(frame.Days.unique()) == list(range(10))
    assert (frame.groupby("Subject", observed=True).size() == 10).all()


def test_name_is_case_insensitive():
    pd.testing.assert_frame_equal(hl.datasets.load("SLEEPSTUDY"), hl.datasets.load("sleepstudy"))


def test_each_load_is_a_fresh_copy():
    first = hl.datasets.load("Dyestuff")
    first.loc[0, "Yield"] = -1
    assert hl.datasets.load("Dyestuff").loc[0, "Yield"] != -1


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(DataError) as info:
        hl.datasets.load("sleepstudyy")
    message = str(info.value)
    assert "'sleepstudyy'" in message and "sleepstudy" in message and "InstEval" in message


def test_cbpp_incidence_is_a_count_out_of_size():
    frame = hl.datasets.load("cbpp")
    assert ((frame.incidence >= 0) & (frame.incidence <= frame["size"])).all()
    # totals from R: sum(cbpp$incidence), sum(cbpp$size)
    assert int(frame.incidence.sum()) == 99 and int(frame["size"].sum()) == 842


def test_grouseticks_centred_height_and_one_row_per_chick():
    frame = hl.datasets.load("grouseticks")
    centred = frame.HEIGHT - frame.HEIGHT.mean()
    assert abs(frame.cHEIGHT - centred).max() < 1e-12
    assert frame.INDEX.is_unique
    assert list(frame.YEAR.cat.categories) == [95, 96, 97]


def test_verbagg_r2_is_the_binary_response_and_items_sort_by_code_point():
    frame = hl.datasets.load("VerbAgg")
    assert ((frame.r2 == "Y") == (frame.resp != "no")).all()
    assert (frame.groupby("id", observed=True).size() == 24).all()
    items = list(frame.item.cat.categories)
    assert items.index("S4wantCurse") == items.index("S4WantShout") + 1


def test_salamanders_mined_is_a_site_property():
    frame = hl.datasets.load("Salamanders")
    per_site = frame.groupby("site", observed=True).mined.nunique()
    assert (per_site == 1).all()
    mined_sites = sorted(frame.loc[frame.mined == "yes", "site"].unique())
    assert len(mined_sites) == 11 and all(site.startswith("VF-") for site in mined_sites)
    assert list(frame.mined.cat.categories) == ["no", "yes"]
