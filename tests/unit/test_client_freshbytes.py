"""`fresh_bytes` (client/_freshbytes.py): a new bytes object filled through a view."""

from __future__ import annotations

import gc
import sys

import pytest

from emberfs.client._freshbytes import MIN_BYTES, fresh_bytes

pytestmark = pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's C API")


@pytest.mark.parametrize("n", [MIN_BYTES, MIN_BYTES + 1, 4 * 2**20 + 3])
def test_the_view_fills_a_new_bytes_object(n: int) -> None:
    fresh = fresh_bytes(n)
    assert fresh is not None
    result, view = fresh
    assert type(result) is bytes and len(result) == n
    assert not view.readonly and view.nbytes == n and view.format == "B"
    pattern = bytes(range(256)) * (n // 256 + 1)
    view[:] = pattern[:n]
    assert result == pattern[:n]
    assert hash(result) == hash(bytes(pattern[:n]))  # an ordinary bytes object once filled


def test_two_results_never_share_memory() -> None:
    a, b = fresh_bytes(MIN_BYTES), fresh_bytes(MIN_BYTES)
    assert a is not None and b is not None
    a[1][:] = b"a" * MIN_BYTES
    b[1][:] = b"b" * MIN_BYTES
    assert a[0] == b"a" * MIN_BYTES and b[0] == b"b" * MIN_BYTES


def test_the_view_keeps_the_result_alive() -> None:
    fresh = fresh_bytes(MIN_BYTES)
    assert fresh is not None
    view = fresh[1]
    del fresh
    gc.collect()
    view[:] = b"z" * MIN_BYTES  # the bytes object is still there: no write to freed memory
    assert bytes(view[:3]) == b"zzz"
    assert view.obj.owner == b"z" * MIN_BYTES


@pytest.mark.parametrize("n", [0, 1, MIN_BYTES - 1])
def test_small_reads_are_joined_instead(n: int) -> None:
    assert fresh_bytes(n) is None
