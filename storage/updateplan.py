"""Validation of a chunk update and the plan for building its pending version.

Pure apart from one callback that reads committed bytes when an update rewrites
the middle of a chunk. The plan says what the pending file is made of and what
the whole chunk's length and CRC32C will be once it commits:

    update                         plan
    WRITE, empty data              copy the chunk as is (a version bump only)
    WRITE at/after the end         copy the chunk, write data at offset (the gap
                                   reads as zeros); CRC extended, nothing re-read
    WRITE covering the chunk       write data only
    WRITE inside the chunk         read the chunk, splice data in, write it all
    TRUNCATE to >= length          copy the chunk, zero-extend; CRC extended
    TRUNCATE to < length           read the kept prefix, write it
    REPLACE                        write data only
    REMOVE                         no file; the chunk goes at commit
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import crc32c

from emberfs.common.errors import ChecksumMismatch, InvalidArgument

from .records import UpdateKind

__all__ = [
    "MAX_CHUNK_SIZE",
    "Buffer",
    "PendingPlan",
    "plan_update",
    "validate_update",
    "zero_crc32c",
]

MAX_CHUNK_SIZE = 64 << 20  # 3FS's largest chunk; offsets stay far inside u32
Buffer = bytes | bytearray | memoryview
_ZEROS = memoryview(bytes(1 << 20))


@dataclass(frozen=True, slots=True)
class PendingPlan:
    """Build a pending version: copy the committed file's first `copy_prefix`
    bytes, write `writes` at their offsets, then set the file to `length`."""

    length: int
    crc32c: int
    copy_prefix: int
    writes: tuple[tuple[int, Buffer], ...]


def zero_crc32c(count: int, crc: int) -> int:
    """Extend `crc` over `count` zero bytes without allocating `count` bytes."""
    while count > 0:
        step = min(count, len(_ZEROS))
        crc = crc32c.crc32c(_ZEROS[:step], crc)
        count -= step
    return crc


def validate_update(
    kind: UpdateKind | int,
    offset: int,
    data: Buffer,
    length: int,
    update_version: int,
    chain_version: int,
    chunk_size: int,
    data_crc32c: int | None = None,
) -> UpdateKind:
    """Refuse malformed updates before anything is touched; return the kind."""
    try:
        kind = UpdateKind(kind)
    except ValueError:
        raise InvalidArgument(f"unknown update kind {kind!r}") from None
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidArgument(f"chunk size {chunk_size} outside 1..{MAX_CHUNK_SIZE}")
    if update_version < 1 or chain_version < 0:
        raise InvalidArgument(f"bad versions: update {update_version}, chain {chain_version}")
    size = memoryview(data).nbytes
    if kind in (UpdateKind.TRUNCATE, UpdateKind.REMOVE) and size:
        raise InvalidArgument(f"{kind.name} carries no data ({size} bytes given)")
    if kind == UpdateKind.WRITE and (offset < 0 or offset + size > chunk_size):
        raise InvalidArgument(f"write of {size} bytes at {offset} passes chunk size {chunk_size}")
    if kind == UpdateKind.TRUNCATE and not 0 <= length <= chunk_size:
        raise InvalidArgument(f"truncate to {length} outside 0..{chunk_size}")
    if kind == UpdateKind.REPLACE and size > chunk_size:
        raise InvalidArgument(f"replace with {size} bytes passes the chunk size {chunk_size}")
    # Checked before anything is written: corrupt data never becomes a version.
    if data_crc32c is not None and crc32c.crc32c(data) != data_crc32c:
        raise ChecksumMismatch(f"data CRC32C mismatch on a {size}-byte {kind.name}")
    return kind


def plan_update(
    kind: UpdateKind,
    offset: int,
    data: Buffer,
    length: int,
    committed_length: int,
    committed_crc32c: int,
    read_committed: Callable[[int], bytes],
) -> PendingPlan:
    """The pending version of a validated update (table in the module docstring).

    `read_committed(n)` returns the first n committed bytes; it is called only when
    the update rewrites bytes inside the chunk.
    """
    size = memoryview(data).nbytes
    old_len, old_crc = committed_length, committed_crc32c
    if kind == UpdateKind.REMOVE:
        return PendingPlan(0, 0, 0, ())
    if kind == UpdateKind.REPLACE:
        return PendingPlan(size, crc32c.crc32c(data), 0, ((0, data),) if size else ())
    if kind == UpdateKind.TRUNCATE:
        if length >= old_len:
            return PendingPlan(length, zero_crc32c(length - old_len, old_crc), old_len, ())
        prefix = read_committed(length)
        return PendingPlan(length, crc32c.crc32c(prefix), 0, ((0, prefix),) if length else ())
    if size == 0:
        return PendingPlan(old_len, old_crc, old_len, ())
    if offset >= old_len:
        crc = crc32c.crc32c(data, zero_crc32c(offset - old_len, old_crc))
        return PendingPlan(offset + size, crc, old_len, ((offset, data),))
    if offset == 0 and size >= old_len:
        return PendingPlan(size, crc32c.crc32c(data), 0, ((0, data),))
    content = bytearray(read_committed(old_len))
    content[offset : offset + size] = data
    return PendingPlan(len(content), crc32c.crc32c(content), 0, ((0, content),))
