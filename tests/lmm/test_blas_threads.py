"""blas_threads (hierlm.lmm.optimum): the BLAS pools are limited inside the block and restored after."""

from __future__ import annotations

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from hierlm.lmm.optimum import blas_threads  # noqa: E402


def _blas_threads() -> list[int]:
    return [info["num_threads"] for info in threadpoolctl.threadpool_info()
            if info["user_api"] == "blas"]


def test_limited_inside_and_restored_after():
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library found by threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        outer = _blas_threads()
        with blas_threads(1):
            assert _blas_threads() == [1] * len(outer)
        assert _blas_threads() == outer
    assert _blas_threads() == before


def test_restored_when_the_block_raises():
    before = _blas_threads()
    with pytest.raises(RuntimeError), blas_threads(1):
        raise RuntimeError("inside")
    assert _blas_threads() == before


def test_none_leaves_the_pools_alone():
    before = _blas_threads()
    with blas_threads(None):
        assert _blas_threads() == before
