"""The top-level namespace: lazy names resolve, and fit methods are pointed to, not duplicated."""

from __future__ import annotations

import pytest

import hierlm as hl


def test_emmeans_has_one_public_spelling_and_the_top_level_name_points_to_it() -> None:
    fit = hl.Model("Reaction ~ Days + (1 | Subject)", hl.datasets.load("sleepstudy")).fit("reml")
    assert list(fit.emmeans("Days", at={"Days": [0, 9]}).table["Days"]) == [0, 9]
    for name, hint in (("emmeans", "fit.emmeans(specs"), ("contrast", ".contrast(")):
        assert name not in dir(hl)
        with pytest.raises(AttributeError, match=r"method of a fit") as info:
            getattr(hl, name)
        assert hint in str(info.value)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'$"):
        hl.no_such_name  # noqa: B018


def test_lazy_names_resolve_to_their_modules() -> None:
    from hierlm.io import load_fit
    from hierlm.results.anova import anova

    assert hl.load_fit is load_fit and hl.anova is anova
