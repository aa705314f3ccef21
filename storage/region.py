"""A committed chunk file handed to the bulk channel to send with sendfile(2).

The bytes go from the page cache to the socket without entering Python: a storage
server's CPU per GiB read roughly halves (python -m emberfs.bench.serverio). Only whole
committed chunks travel this way: their CRC32C is the one stored at commit, which the
client checks end to end; a committed chunk file is never changed in place (updates
write a new file and rename it), so the open descriptor keeps the exact bytes the
metadata describes.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

__all__ = ["ChunkRegion", "native_sendfile"]


def native_sendfile(loop: asyncio.AbstractEventLoop) -> bool:
    """asyncio's selector loop does sendfile(2) on its transports; uvloop has no loop.sendfile."""
    return isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)  # type: ignore[attr-defined]


class ChunkRegion:
    """The first `length` bytes of an open chunk file; owns the descriptor."""

    __slots__ = ("fd", "length")

    def __init__(self, fd: int, length: int) -> None:
        self.fd, self.length = fd, length

    def __len__(self) -> int:
        return self.length

    async def send_to(self, transport: Any) -> None:
        fd, self.fd = self.fd, -1
        with open(fd, "rb", buffering=0, closefd=True) as file:
            await asyncio.get_running_loop().sendfile(transport, file, 0, self.length, fallback=True)

    def discard(self) -> None:
        """Never sent (the connection went away): close the descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
