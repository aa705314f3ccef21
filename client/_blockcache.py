"""Whole aligned blocks of immutable files kept in memory: the datasets' sample cache.

A shuffled epoch over small samples asks for thousands of tiny ranges; each one over
the network costs far more than the bytes it moves. When a dataset fits in the cache,
the datasets read whole `block`-sized pieces instead (one batched `read_ranges` for the
blocks a batch misses) and cut samples out of memory, as the page cache does for local
files. Blocks are evicted least-recently-used once `capacity` bytes are held.

Files are assumed not to change while cached (training data); each process (each
DataLoader worker) has its own cache, and a pickled or forked copy starts empty.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["BLOCK", "BlockCache"]

BLOCK = 1 << 20


class _Ranges(Protocol):
    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]: ...


class BlockCache:
    def __init__(self, capacity: int, block: int = BLOCK) -> None:
        if capacity < 0 or block <= 0:
            raise ValueError("capacity must be >= 0 and block > 0")
        self.capacity, self.block = capacity, block
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._held = 0
        self.hits = self.misses = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "block": self.block}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["capacity"], state["block"])  # type: ignore[misc]

    def read_ranges(self, fs: _Ranges, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """The bytes of each (path, offset, length), short at EOF as `fs.read_ranges`."""
        b = self.block
        blocks = self._blocks
        missing: dict[tuple[str, int], None] = {}
        for path, offset, length in ranges:
            if length <= 0:
                continue
            for k in range(offset // b, (offset + length - 1) // b + 1):
                if (path, k) not in blocks:
                    missing[(path, k)] = None
        self.misses += len(missing)
        if missing:
            keys = list(missing)
            for key, data in zip(keys, fs.read_ranges([(p, k * b, b) for p, k in keys]), strict=True):
                blocks[key] = data
                self._held += len(data)
        out = []
        for path, offset, length in ranges:
            out.append(self._cut(path, offset, length))
        self._evict()
        return out

    def _cut(self, path: str, offset: int, length: int) -> bytes:
        b, blocks = self.block, self._blocks
        if length <= 0:
            return b""
        first, last = offset // b, (offset + length - 1) // b
        if first == last:
            key = (path, first)
            data = blocks[key]
            blocks.move_to_end(key)
            self.hits += 1
            return data[offset - first * b: offset - first * b + length]
        parts = []
        for k in range(first, last + 1):
            key = (path, k)
            data = blocks[key]
            blocks.move_to_end(key)
            lo = max(offset - k * b, 0)
            hi = min(offset + length - k * b, b)
            parts.append(data[lo:hi])
            if len(data) < b:  # the file ends in this block
                break
        self.hits += 1
        return b"".join(parts)

    def _evict(self) -> None:
        while self._held > self.capacity and self._blocks:
            _, data = self._blocks.popitem(last=False)
            self._held -= len(data)
