"""The local limits: the file read from the page cache, and written to local disk.

Reads are `os.preadv` straight into the caller's buffer, inline on the event loop
(a page-cache copy has nothing to wait for), so "in flight" does not apply: the
figure is one core copying from the kernel. The write baseline stores the bytes once
per replica with an fsync per chunk, the least the replicas' disks must do.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..measure import LOCAL, MIBS, Row, Sample, progress, timed_inline
from ..workloads import SEQ_WRITE, size_label

__all__ = ["PageCacheSource", "local_write"]


class PageCacheSource:
    system = "page cache"
    role = LOCAL
    unavailable = ""

    def __init__(self, path: Path, max_read: int) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._scratch = memoryview(bytearray(max_read))
        size = os.fstat(self._fd).st_size
        warm = bytearray(min(size, 64 << 20))
        for offset in range(0, size, len(warm)):  # warm the cache, as the servers' files are warm
            os.preadv(self._fd, [warm], offset)

    def close(self) -> None:
        os.close(self._fd)

    async def read_into(self, offset: int, length: int, view: memoryview | None) -> int:
        return os.preadv(self._fd, [view if view is not None else self._scratch[:length]], offset)

    async def read_bytes(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def server_pids(self) -> list[int] | None:
        return None


def local_write(directory: Path, data: bytes, copies: int, chunk_size: int) -> Row:
    """`copies` local files of the data, pwrite + fsync per chunk; removed afterwards."""
    view = memoryview(data)
    paths = [directory / f"local-write-{i}.bin" for i in range(copies)]

    def op(copy: int) -> int:
        fd = os.open(paths[copy], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for offset in range(0, len(data), chunk_size):
                os.pwrite(fd, view[offset:offset + chunk_size], offset)
                os.fsync(fd)
        finally:
            os.close(fd)
        return len(data)

    try:
        s = timed_inline(op, max_ops=copies, max_seconds=float("inf"))
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
    # The figure is the file's bytes per second (as the cluster's), with every copy written.
    sample = Sample(1, len(data), s.seconds, s.cpu_client_s, None)
    row = Row.of(SEQ_WRITE, 0, "local disk", LOCAL, MIBS, sample,
                 detail=f"x{copies} copies, fsync per {size_label(chunk_size)}")
    progress(row.describe())
    return row
