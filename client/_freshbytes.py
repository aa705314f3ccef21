"""A new `bytes` object filled in place: how `read_file` returns bytes without a join.

`fresh_bytes(n)` gives a bytes object of n bytes and a writable memoryview of its
buffer; the data path receives chunk payloads straight into the view (as `read_into`
does into a caller's buffer), so the file's bytes are copied once, kernel to result.
The join it replaces cost a second copy plus a fresh, page-faulted allocation of the
whole file, and every chunk a zeroed buffer of its own.

This is CPython's own way of building bytes (`PyBytes_FromStringAndSize(NULL, n)`:
"the contents are uninitialized", filled by the caller before anyone else sees the
object; `socket.recv` does the same). Rules the callers keep: every byte is written
before the object is returned; the object is not hashed, shared or returned while
the view can still be written (a failed read drops both; the bulk channel never lets a
late payload land in a buffer whose request was abandoned). Elsewhere than CPython,
or below `MIN_BYTES` (where the bytes arrive in one staging copy anyway and a join of
one part is free), there is none: the caller joins the chunks as before.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

__all__ = ["MIN_BYTES", "fresh_bytes"]

MIN_BYTES = 64 * 1024


def _c_api() -> tuple[Any, Any] | None:
    if sys.implementation.name != "cpython":
        return None
    api = ctypes.pythonapi  # a PyDLL: the GIL is held during these calls, as the C API needs
    new = api.PyBytes_FromStringAndSize
    new.restype, new.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_ssize_t)
    buffer_of = api.PyBytes_AsString
    buffer_of.restype, buffer_of.argtypes = ctypes.c_void_p, (ctypes.py_object,)
    return new, buffer_of


_API = _c_api()


def fresh_bytes(n: int) -> tuple[bytes, memoryview] | None:
    """(result, writable view of its n bytes) to fill, or None: join instead."""
    if _API is None or n < MIN_BYTES:
        return None
    new, buffer_of = _API
    result = new(None, n)
    array = (ctypes.c_char * n).from_address(buffer_of(result))
    array.owner = result  # type: ignore[attr-defined]  # the view keeps the bytes alive too
    return result, memoryview(array).cast("B")
