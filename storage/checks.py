"""Pure pieces of the CRAQ operator: request validation, chain-position decisions,
the request-id dedupe cache and per-chunk locks.

Nothing here does I/O or talks gRPC; the operator (craq.py) calls these so that a
malformed request is refused before any chunk is touched, with a message a person
understands.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import crc32c

from emberfs.common.chainstate import Chain
from emberfs.common.errors import (
    ChecksumMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotChainHead,
    StaleChainVersion,
)
from emberfs.common.layout import MAX_CHUNK_INDEX

from .records import ChunkId, UpdateKind

__all__ = [
    "ChunkLocks",
    "InflightUpdates",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "RecentReplies",
    "VersionCheck",
    "check_chain_version",
    "check_read",
    "check_read_range",
    "check_write",
    "local_target",
    "require_head",
]

MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 64 * 1024 * 1024


def check_write(req: Any) -> tuple[ChunkId, UpdateKind]:
    """Validate a WriteRequest's fields (not its chain); CRC32C of data last."""
    if not req.chain_id:
        raise InvalidArgument("write names no chain (chain_id 0)")
    if not req.HasField("chunk"):
        raise InvalidArgument("write names no chunk")
    chunk = ChunkId(req.chunk.inode_id, req.chunk.chunk_index)
    if chunk.chunk_index > MAX_CHUNK_INDEX:
        raise InvalidArgument(f"chunk index {chunk.chunk_index} out of range")
    try:
        kind = UpdateKind(req.kind)
    except ValueError:
        raise InvalidArgument(f"unknown update kind {req.kind}") from None
    size = req.chunk_size
    if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE or size & (size - 1):
        raise InvalidArgument(f"chunk_size {size} must be a power of two in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    n = len(req.data)
    if kind in (UpdateKind.TRUNCATE, UpdateKind.REMOVE) and n:
        raise InvalidArgument(f"{kind.name} carries no data ({n} bytes given)")
    if kind in (UpdateKind.TRUNCATE, UpdateKind.REMOVE, UpdateKind.REPLACE) and req.offset:
        raise InvalidArgument(f"{kind.name} takes no offset ({req.offset} given)")
    if kind == UpdateKind.WRITE and req.offset + n > size:
        raise InvalidArgument(f"write of {n} bytes at offset {req.offset} passes the chunk size {size}")
    if kind == UpdateKind.TRUNCATE and req.length > size:
        raise InvalidArgument(f"truncate to {req.length} bytes passes the chunk size {size}")
    if kind == UpdateKind.REPLACE and n > size:
        raise InvalidArgument(f"replace with {n} bytes passes the chunk size {size}")
    if crc32c.crc32c(req.data) != req.crc32c:
        raise ChecksumMismatch(
            f"data CRC32C mismatch on a {n}-byte {kind.name} of chunk {tuple(chunk)}: nothing written"
        )
    return chunk, kind


def check_read(req: Any) -> ChunkId:
    if not req.chain_id:
        raise InvalidArgument("read names no chain (chain_id 0)")
    if not req.HasField("chunk"):
        raise InvalidArgument("read names no chunk")
    check_read_range(req.offset, req.length)
    return ChunkId(req.chunk.inode_id, req.chunk.chunk_index)


def check_read_range(offset: int, length: int) -> None:
    """A read's range must fit in the largest chunk."""
    if length > MAX_CHUNK_SIZE:
        raise InvalidArgument(f"read of {length} bytes passes the largest chunk size {MAX_CHUNK_SIZE}")
    if offset >= MAX_CHUNK_SIZE:
        raise InvalidArgument(f"read offset {offset} is past the largest chunk size {MAX_CHUNK_SIZE}")


class VersionCheck:
    OK = "ok"
    NEWER = "newer"  # the request knows a newer chain: refresh routing, re-check


def check_chain_version(chain: Chain, request_version: int) -> str:
    """OK on a match; NEWER when this server is behind; an older one is refused."""
    if request_version == chain.chain_version:
        return VersionCheck.OK
    if request_version > chain.chain_version:
        return VersionCheck.NEWER
    raise StaleChainVersion(
        f"chain {chain.chain_id} is at version {chain.chain_version}; "
        f"the request named version {request_version}: refresh routing and retry"
    )


def local_target(chain: Chain, local_targets: set[int] | frozenset[int], node_id: int) -> int:
    """This node's target in `chain` (a target belongs to one chain; a node has at
    most one target per chain)."""
    mine = [t.target_id for t in chain.targets if t.target_id in local_targets]
    if not mine:
        raise FailedPrecondition(f"chain {chain.chain_id} has no target on node {node_id}")
    return mine[0]


def require_head(chain: Chain, target_id: int) -> None:
    head = chain.head
    if head != target_id:
        raise NotChainHead(
            f"target {target_id} is not the head of chain {chain.chain_id} "
            f"(version {chain.chain_version}; head is {head}): send writes to the head"
        )


class RecentReplies:
    """Replies of finished requests by (client_id, request_id), oldest evicted first,
    and an in-flight map so a duplicate that arrives mid-flight waits for the first."""

    def __init__(self, capacity: int = 8192) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._done: OrderedDict[Hashable, Any] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}

    def get(self, key: Hashable) -> Any | None:
        reply = self._done.get(key)
        if reply is not None:
            self._done.move_to_end(key)
        return reply

    def put(self, key: Hashable, reply: Any) -> None:
        self._done[key] = reply
        self._done.move_to_end(key)
        while len(self._done) > self.capacity:
            self._done.popitem(last=False)

    def __len__(self) -> int:
        return len(self._done)

    def inflight(self, key: Hashable) -> asyncio.Future[Any] | None:
        return self._inflight.get(key)

    def begin(self, key: Hashable) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        return fut

    def finish(self, key: Hashable, reply: Any | None, error: BaseException | None) -> None:
        """Record the outcome; errors are not cached (a retry applies afresh) but the
        duplicates waiting right now get the same error."""
        fut = self._inflight.pop(key, None)
        if reply is not None:
            self.put(key, reply)
        if fut is not None and not fut.done():
            if error is not None:
                fut.set_exception(error)
                fut.exception()  # mark retrieved: nobody may be waiting
            else:
                fut.set_result(reply)


class ChunkLocks:
    """One asyncio lock per (target, chunk) in use; an entry is freed when its last
    user leaves, so the map holds only chunks being updated."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class InflightUpdates:
    """How many updates (client writes at the head, forwards at a replica) are in
    progress under each (chain, chain version) they were admitted with.

    An update admitted under an older chain forwards along that chain, so it never
    reaches a successor the new chain added as SYNCING. A resync therefore waits
    until no update older than its chain version remains on the sender before it
    lists the sender's chunks: after that, every committed chunk is either in the
    listing or reaches the syncing target as a live forward."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, int], int] = {}

    @contextmanager
    def track(self, chain_id: int, chain_version: int) -> Iterator[None]:
        key = (chain_id, chain_version)
        self._counts[key] = self._counts.get(key, 0) + 1
        try:
            yield
        finally:
            left = self._counts[key] - 1
            if left:
                self._counts[key] = left
            else:
                del self._counts[key]

    def older_than(self, chain_id: int, chain_version: int) -> int:
        return sum(n for (c, v), n in self._counts.items() if c == chain_id and v < chain_version)
