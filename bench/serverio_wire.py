"""The serverio benchmark's wire format and the chunk files it serves, shared by its
server and client processes (bench/serverio.py runs them).

Wire format, kept minimal so that it measures the strategy rather than a protocol:
request = 16 bytes `<IIII` (tag, chunk number, offset, length); response = 8 bytes
`<II` (tag, length) and the bytes. The tag is the client's in-flight slot, whose
preallocated buffer the payload lands in (BufferedProtocol); responses may come in
any order.

Every 4 KiB block of every chunk file starts with a stamp (chunk number, block
number) that the client checks in every response: a pooled buffer reused too soon
makes a run fail as corrupt instead of looking fast.
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Sequence
from pathlib import Path

__all__ = ["GIB", "LOOPS", "MIB", "READY_PREFIX", "REQUEST", "RESPONSE", "STAMP_EVERY", "STAMP_STRIDE",
           "STRATEGIES", "stamps_of", "write_data"]

STRATEGIES = ("aiofiles", "preadv-pool", "preadv-nowait", "pread-bytes", "pread-bytes-nofc", "loop.sendfile",
              "os.sendfile")
LOOPS = ("asyncio", "uvloop")
REQUEST = struct.Struct("<IIII")  # tag, chunk number, offset, length
RESPONSE = struct.Struct("<II")  # tag, length
READY_PREFIX = "emberfs-bench-serverio listening on "
MIB, GIB = 1 << 20, 1 << 30
STAMP_EVERY = 4096  # bytes between stamps; each stamp is a u64 (chunk << 32 | block)
STAMP_STRIDE = STAMP_EVERY // 8


# -- data set ----------------------------------------------------------------------------


def stamps_of(chunk: int, chunk_size: int) -> array[int]:
    return array("Q", ((chunk << 32) | block for block in range(chunk_size // STAMP_EVERY)))


def write_data(directory: Path, chunk_sizes: Sequence[int], data_bytes: int) -> dict[int, list[int]]:
    """Chunk files of each size, numbered apart (`directory/<number>`); their numbers by size."""
    filler = bytearray(os.urandom(max(chunk_sizes)))
    numbers: dict[int, list[int]] = {}
    first = 0
    for size in chunk_sizes:
        count = max(1, data_bytes // size)
        numbers[size] = list(range(first, first + count))
        first += count
        body = filler[:size]
        for chunk in numbers[size]:
            memoryview(body).cast("Q")[::STAMP_STRIDE] = memoryview(stamps_of(chunk, size))
            with open(directory / str(chunk), "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())  # no writeback during the rounds
    for path in directory.iterdir():  # warm: every byte read once
        with open(path, "rb") as f:
            while f.read(8 * MIB):
                pass
    return numbers
