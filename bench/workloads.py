"""The data workloads, defined once and run the same way against every baseline.

Every system reads the same file bytes: the baselines a local copy, EmberFS the file
the sequential-write phase stored. Random reads use one seeded offset list per read
size (4 KiB-aligned, inside the file), so every system reads the same ranges in the
same order; a phase takes its prefix, bounded by count and seconds.

A baseline is a `RangeSource`: something that can read `length` bytes at `offset`
into a buffer. The sequential read asks it for the file in `piece`-sized requests,
`inflight` at a time, into one preallocated buffer; random reads ask for one range per
request with 1 or N in flight. Before a random phase the first few ranges are read
and compared with the file, so a fast wrong answer cannot win.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Protocol

from .measure import MIBS, Row, progress, timed

__all__ = [
    "SEQ_READ", "SEQ_WRITE", "CHECKED_READS", "RangeSource", "rand_name", "random_offsets", "size_label",
    "source_random_read", "source_seq_read", "verify",
]

SEQ_WRITE = "seq write"
SEQ_READ = "seq read"
CHECKED_READS = 4  # ranges compared with the file before each random phase
_ALIGN = 4096


def size_label(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} B"


def rand_name(read_size: int) -> str:
    return f"rand read {size_label(read_size)}"


def random_offsets(seed: int, file_size: int, read_size: int, count: int) -> list[int]:
    """`count` aligned offsets with a whole `read_size` range inside the file."""
    rng = random.Random(f"{seed}:{read_size}")
    slots = (file_size - read_size) // _ALIGN + 1
    return [rng.randrange(slots) * _ALIGN for _ in range(count)]


class RangeSource(Protocol):
    system: str
    role: str
    unavailable: str  # why it cannot be measured ("" when it can)

    async def read_into(self, offset: int, length: int, view: memoryview | None) -> int:
        """Read into view (or a scratch buffer of its own when None); return the bytes read."""
        ...

    async def read_bytes(self, offset: int, length: int) -> bytes:
        ...

    def server_pids(self) -> list[int] | None:
        """The processes serving it (their CPU is counted), or None for in-process."""
        ...


def verify(system: str, data: bytes | memoryview, checks: Iterable[tuple[int, bytes]], length: int) -> None:
    for offset, got in checks:
        if bytes(got) != bytes(data[offset:offset + length]):
            raise RuntimeError(f"{system}: the {length} bytes at offset {offset} differ from the file")


async def source_seq_read(src: RangeSource, data: bytes, piece: int, inflight: int, keep: bool) -> Row:
    """The whole file, `piece` bytes per request, `inflight` requests at a time.

    keep: read into one preallocated buffer and compare it with the file afterwards
    (sources whose client hands back fresh bytes anyway pass False: no extra copy).
    """
    size = len(data)
    buffer = bytearray(size) if keep else None
    view = memoryview(buffer) if buffer is not None else None
    pieces = (size + piece - 1) // piece

    async def op(i: int) -> int:
        offset = i * piece
        length = min(piece, size - offset)
        return await src.read_into(offset, length, view[offset:offset + length] if view is not None else None)

    sample = await timed(op, in_flight=inflight, max_ops=pieces, max_seconds=float("inf"),
                         server_pids=src.server_pids)
    if sample.nbytes != size:
        raise RuntimeError(f"{src.system}: sequential read got {sample.nbytes} of {size} bytes")
    if buffer is not None and buffer != data:
        raise RuntimeError(f"{src.system}: sequential read returned different bytes")
    row = Row.of(SEQ_READ, 0, src.system, src.role, MIBS, sample, detail=f"{size_label(piece)} x{inflight}")
    progress(row.describe())
    return row


async def source_random_read(
    src: RangeSource, data: bytes, read_size: int, depth: int, offsets: list[int], max_seconds: float
) -> Row:
    checks = [(o, await src.read_bytes(o, read_size)) for o in offsets[:CHECKED_READS]]
    verify(src.system, data, checks, read_size)

    async def op(i: int) -> int:
        return await src.read_into(offsets[i], read_size, None)

    sample = await timed(op, in_flight=depth, max_ops=len(offsets), max_seconds=max_seconds,
                         server_pids=src.server_pids)
    row = Row.of(rand_name(read_size), depth, src.system, src.role, MIBS, sample)
    progress(row.describe())
    return row
