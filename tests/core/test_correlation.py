"""The LKJ/C-vine map: one vector (plain floats, the profiles' path) equals the batched one."""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.core.correlation import cholesky_from_raw


@pytest.mark.parametrize("q", [1, 2, 3, 4, 6])
def test_one_vector_equals_its_row_of_the_batch(q):
    raw = np.random.default_rng(q).normal(0.0, 2.0, size=(7, q * (q - 1) // 2))
    batch = cholesky_from_raw(raw, q)
    for row, factor in zip(raw, batch, strict=True):
        one = cholesky_from_raw(row, q)
        np.testing.assert_allclose(one, factor, rtol=0, atol=1e-13)
        np.testing.assert_allclose(np.sum(one**2, axis=1), 1.0, rtol=0, atol=1e-12)
        assert np.allclose(np.triu(one, 1), 0.0)
