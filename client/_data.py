"""The chunk data path: whole-file writes and reads through the storage servers.

Layers (DESIGN.md "Client"): pure plans (`write_plan`, `chunks_to_remove`,
`fill_chunk`, `pick_replica`) -> `DataPath`, which sends one chunk request at a time
with retry -> `StoragePool` (channels) and `RoutingCache` (chains).

Rules the data path keeps:
- Writes go to the chain head only; each chunk is one REPLACE whose request id is
  fixed before the first attempt, so a retry after a lost reply is answered from the
  head's reply cache instead of being applied twice.
- Reads go to a SERVING replica chosen by least outstanding requests (ties broken
  round-robin), carry `target_id`, and verify the CRC32C of the bytes received; a
  mismatch or an unreachable replica moves the read to another replica.
- StaleChainVersion / NotChainHead / TargetNotServing refresh routing and retry;
  every retry waits the client's `RetryPolicy` backoff and stops at its limits.
- A missing chunk is a hole (zeros); a short chunk is zero-filled to the length the
  file says it has.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import crc32c

from emberfs.common.errors import (
    ChecksumMismatch,
    EmberError,
    FailedPrecondition,
    NotChainHead,
    StaleChainVersion,
    TargetNotServing,
    Unavailable,
)
from emberfs.common.layout import ChunkSpan, chain_for_chunk, chunk_span
from emberfs.common.routing import RoutingView
from emberfs.proto import common_pb2, storage_pb2

from ._retry import RetryPolicy, retry_delay
from ._routing import RoutingCache
from emberfs.common.storagepool import StoragePool

__all__ = [
    "NO_CHAINS",
    "DataPath",
    "bounded_all",
    "chunks_to_remove",
    "effective_stripe",
    "fill_chunk",
    "pick_replica",
    "write_plan",
]

T = TypeVar("T")

NO_CHAINS = "no chains: run `emberfs admin init-chains`"
_ROUTING_MOVED = (StaleChainVersion, NotChainHead, TargetNotServing)


# -- pure plans -------------------------------------------------------------------------


def effective_stripe(stripe: int, chain_ids: Sequence[int]) -> int:
    """The stripe chunks are spread by: `pick_chains` caps a file's chain list at the
    chain table's size, so a layout may ask for more chains than it was given."""
    return min(stripe, len(chain_ids)) if stripe else len(chain_ids)


def write_plan(length: int, chunk_size: int) -> list[ChunkSpan]:
    """The chunks a whole-file write of `length` bytes replaces, in order."""
    return chunk_span(0, length, chunk_size)


def chunk_count(length: int, chunk_size: int) -> int:
    return -(-length // chunk_size)


def chunks_to_remove(old_length: int, new_length: int, chunk_size: int) -> range:
    """Chunk indexes that held bytes of the old file and lie wholly past the new end."""
    return range(chunk_count(new_length, chunk_size), chunk_count(old_length, chunk_size))


def fill_chunk(data: bytes, exists: bool, expected: int) -> bytes:
    """A chunk's bytes as the file sees them: a hole or a short chunk reads as zeros up
    to `expected` (the part of the chunk inside the file); extra bytes are clipped."""
    if not exists:
        return bytes(expected)
    if len(data) >= expected:
        return data[:expected]
    return data + bytes(expected - len(data))


def pick_replica(
    serving: Sequence[int], outstanding: Counter[int], avoid: Iterable[int], turn: int
) -> int | None:
    """The serving replica with the fewest requests in flight; ties go round-robin by
    `turn`. Replicas in `avoid` (failed this read) are skipped while others remain."""
    avoided = set(avoid)
    candidates = [t for t in serving if t not in avoided] or list(serving)
    if not candidates:
        return None
    n = len(candidates)
    rotated = [candidates[(turn + i) % n] for i in range(n)]
    return min(rotated, key=lambda t: outstanding[t])


async def bounded_all(jobs: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run the jobs with at most `limit` in flight; results in order. The first
    failure cancels the rest and is raised as itself (not an ExceptionGroup)."""
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(job)) for job in jobs]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


# -- execution --------------------------------------------------------------------------


class DataPath:
    """Chunk writes and reads with routing, replica choice and retries."""

    def __init__(
        self,
        routing: RoutingCache,
        pool: StoragePool,
        new_header: Callable[[], common_pb2.RequestHeader],
        *,
        retry: RetryPolicy,
        timeout: float,
        parallel: int = 8,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routing, self.pool, self._new_header = routing, pool, new_header
        self.retry, self.timeout, self.parallel = retry, timeout, parallel
        self._rand, self._sleep, self._clock = rand, sleep, clock
        self._outstanding: Counter[int] = Counter()
        self._turns = itertools.count()

    async def _with_retry(self, attempt: Callable[[RoutingView, set[int], list[int]], Awaitable[T]]) -> T:
        """Run attempt(view, avoid, used) until it succeeds or the retry policy gives up.

        `used` receives the target an attempt addressed, so that a failure there can
        put it in `avoid` for the next attempt.
        """
        deadline = self._clock() + self.timeout
        avoid: set[int] = set()
        tries = 0
        while True:
            tries += 1
            view = await self.routing.current()
            used: list[int] = []
            try:
                return await attempt(view, avoid, used)
            except EmberError as error:
                as_retry = error
                if isinstance(error, (Unavailable, ChecksumMismatch)):
                    avoid.update(used)
                    # Another replica may hold good bytes: retry as for an outage.
                    as_retry = Unavailable(error.message)
                delay = retry_delay(self.retry, tries, as_retry, deadline - self._clock(), self._rand())
                if delay is None:
                    raise
                if isinstance(error, (*_ROUTING_MOVED, Unavailable)):
                    await self._refresh(view.version)
            await self._sleep(delay)

    async def _refresh(self, seen: int) -> None:
        try:
            await self.routing.refresh(seen)
        except OSError:
            pass  # the metaserver is unreachable: retry on the view we have

    def _attempt_timeout(self) -> float:
        return min(self.retry.attempt_timeout, self.timeout)

    async def update_chunk(
        self,
        chain_id: int,
        inode_id: int,
        chunk_index: int,
        kind: int,
        chunk_size: int,
        data: bytes = b"",
    ) -> storage_pb2.WriteResponse:
        """One REPLACE or REMOVE of a chunk at its chain head, retried with one request id."""
        request = storage_pb2.WriteRequest(
            header=self._new_header(),
            chain_id=chain_id,
            chunk=storage_pb2.ChunkId(inode_id=inode_id, chunk_index=chunk_index),
            kind=kind,
            data=data,
            crc32c=crc32c.crc32c(data),
            length=len(data),
            chunk_size=chunk_size,
        )

        async def attempt(view: RoutingView, avoid: set[int], used: list[int]) -> storage_pb2.WriteResponse:
            chain = view.chain(chain_id)
            head = chain.head
            if head is None:
                raise TargetNotServing(f"chain {chain_id} has no serving target")
            used.append(head)
            request.chain_version = chain.chain_version
            return await self.pool.call(view.address_of(head), "Write", request, timeout=self._attempt_timeout())

        return await self._with_retry(attempt)

    async def read_chunk(self, chain_id: int, inode_id: int, span: ChunkSpan) -> bytes:
        """span's bytes of one chunk from a SERVING replica, CRC-checked, holes as zeros."""
        header = self._new_header()

        async def attempt(view: RoutingView, avoid: set[int], used: list[int]) -> bytes:
            chain = view.chain(chain_id)
            target = pick_replica(chain.serving, self._outstanding, avoid, next(self._turns))
            if target is None:
                raise TargetNotServing(f"chain {chain_id} has no serving replica")
            used.append(target)
            request = storage_pb2.ReadRequest(
                header=header,
                chain_id=chain_id,
                chain_version=chain.chain_version,
                chunk=storage_pb2.ChunkId(inode_id=inode_id, chunk_index=span.chunk_index),
                offset=span.offset,
                length=span.length,
                target_id=target,
            )
            self._outstanding[target] += 1
            try:
                reply = await self.pool.call(
                    view.address_of(target), "Read", request, timeout=self._attempt_timeout()
                )
            finally:
                self._outstanding[target] -= 1
            if reply.exists and crc32c.crc32c(reply.data) != reply.crc32c:
                raise ChecksumMismatch(
                    f"chunk {span.chunk_index} of inode {inode_id} from target {target}: CRC32C mismatch"
                )
            return fill_chunk(reply.data, reply.exists, span.length)

        return await self._with_retry(attempt)

    # -- whole files ----------------------------------------------------------------------

    async def write_chunks(
        self, inode_id: int, layout: Any, data: memoryview, old_length: int
    ) -> None:
        """Replace every chunk of the new contents; remove chunks past the new end."""
        chunk_size, chains = layout.chunk_size, list(layout.chain_ids)
        stripe = effective_stripe(layout.stripe, chains)
        removes = chunks_to_remove(old_length, len(data), chunk_size)
        if not chains:
            if len(data) or len(removes):
                raise FailedPrecondition(NO_CHAINS)
            return
        jobs: list[Callable[[], Awaitable[Any]]] = []
        for span in write_plan(len(data), chunk_size):
            start = span.chunk_index * chunk_size
            piece = bytes(data[start : start + span.length])
            chain = chain_for_chunk(chains, stripe, span.chunk_index)
            jobs.append(
                lambda c=chain, i=span.chunk_index, p=piece: self.update_chunk(
                    c, inode_id, i, storage_pb2.REPLACE, chunk_size, p
                )
            )
        for index in removes:
            chain = chain_for_chunk(chains, stripe, index)
            jobs.append(
                lambda c=chain, i=index: self.update_chunk(c, inode_id, i, storage_pb2.REMOVE, chunk_size)
            )
        await bounded_all(jobs, self.parallel)

    async def read_chunks(self, inode_id: int, layout: Any, length: int) -> bytes:
        spans = chunk_span(0, length, layout.chunk_size, length) if length else []
        if spans and not layout.chain_ids:
            raise FailedPrecondition(NO_CHAINS)
        chains = list(layout.chain_ids)
        stripe = effective_stripe(layout.stripe, chains)
        jobs = [
            lambda s=span: self.read_chunk(chain_for_chunk(chains, stripe, s.chunk_index), inode_id, s)
            for span in spans
        ]
        return b"".join(await bounded_all(jobs, self.parallel))
