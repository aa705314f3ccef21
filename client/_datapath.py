"""The chunk data path: reads, writes and truncates of file bytes on the storage servers.

Layers (docs/ARCHITECTURE.md "Processes"): the pure plans of `_plan.py` (which chunk requests, which
replica) -> `DataPath`, which sends chunk requests concurrently under its bounds and
retries each one -> `StoragePool` (channels) and `RoutingCache` (chains).

Rules the data path keeps:
- Writes go to the chain head only; each chunk update's request id is fixed before the
  first attempt, so a retry after a lost reply is answered from the head's reply cache
  instead of being applied twice.
- Reads go to a SERVING replica chosen by least outstanding requests (ties broken
  round-robin), carry `target_id`, and verify the CRC32C of the bytes received
  (`verify_crc`); a mismatch, an unreachable replica or a timeout moves the read to
  another replica at once, and marks the replica a suspect for `SUSPECT_S` seconds so
  that other reads try it last (routing may list a dead server as SERVING until the
  manager notices, 3FS clients avoid such targets the same way).
- A batch of small reads, of one file or many (`read_files`), travels as one READVM per
  chain on the bulk channel, to that chain's affine replica (`pick_affine_replica`); each
  piece is CRC-checked, and any piece it did not serve is read again alone by
  `read_chunk`, so the rules here still decide.
- StaleChainVersion / NotChainHead / TargetNotServing refresh routing and retry;
  retries wait the client's `RetryPolicy` backoff and stop at its limits.
- Bounds: at most `max_inflight` chunk requests of this client at once, and at most
  `per_server` to one storage server; requests wait for a slot, they never fail for one.
- A missing chunk is a hole (zeros); a short chunk is zero-filled to the file's length.
- Storage, not a length read earlier, bounds what a truncate removes: `truncate` asks
  each chain of the file for its last committed chunk (QueryLastChunk, the tail first:
  in CRAQ it holds exactly what is committed) and removes chunks up to the larger of
  that end and the length the metaserver had when it changed it. A writer whose
  report was stale recovers its length the same way (`storage_end`, `recovered_length`).
- Every chunk request carries the file's capability for its right (`_caps.py`); a
  storage server's refusal of it (CapabilityRefused: expired by a skewed clock, or its
  key retired) renews it at the metaserver and retries the request once; the
  metaserver's answer to the renewal decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import crc32c

from emberfs.common import bulkwire as w
from emberfs.common.bulkclient import ReadvRequest
from emberfs.common.errors import (
    CapabilityRefused,
    ChecksumMismatch,
    EmberError,
    FailedPrecondition,
    TargetNotServing,
)
from emberfs.common.layout import ChunkSpan, chain_for_chunk
from emberfs.common.routing import RoutingView
from emberfs.common.storagepool import StoragePool
from emberfs.proto import common_pb2, meta_pb2, storage_pb2

from ._plan import (
    ReadvBatch,
    ReadvPiece,
    effective_stripe,
    fill_chunk,
    live_suspects,
    pick_affine_replica,
    pick_replica,
    readv_plan,
    truncate_plan,
    untried_replicas,
)
from ._caps import RIGHT_READ, RIGHT_WRITE, CapabilityCache
from ._retry import RetryPolicy, chunk_retry
from ._routing import RoutingCache

__all__ = ["NO_CHAINS", "DataPath", "FileSpans", "bounded_all", "recovered_length", "stored_end"]

T = TypeVar("T")

NO_CHAINS = "no chains: run `emberfs admin init-chains`"
SUSPECT_S = 5.0  # how long a replica that failed is tried last by other reads


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


def stored_end(last_chunks: Iterable[tuple[int, int] | None], chunk_size: int) -> int:
    """The end of the bytes storage holds for a file: from each chain's last committed
    chunk (chunk_index, chunk_length), or None for a chain holding none; 0 if none hold any."""
    return max((index * chunk_size + length for index, length in filter(None, last_chunks)), default=0)


def recovered_length(storage_end: int, written_end: int) -> int:
    """The length a writer reports after its report was refused as stale (a truncate came
    after its view): what storage still holds, capped at the end of its own writes. Bytes
    past that cap are other writers' (they report them) or a truncate's leftovers; bytes
    of its own that the truncate removed are gone, so they no longer count."""
    return min(storage_end, written_end)


class FileLayout:
    """What the data path needs of a file: its inode and layout (from a Stat reply)."""

    __slots__ = ("inode_id", "chunk_size", "chain_ids", "stripe")

    def __init__(self, inode_id: int, layout: Any) -> None:
        self.inode_id = inode_id
        self.chunk_size = int(layout.chunk_size)
        self.chain_ids = list(layout.chain_ids)
        self.stripe = effective_stripe(layout.stripe, self.chain_ids)

    def chain_of(self, chunk_index: int) -> int:
        if not self.chain_ids:
            raise FailedPrecondition(NO_CHAINS)
        return chain_for_chunk(self.chain_ids, self.stripe, chunk_index)


class FileSpans(NamedTuple):
    """A file's part of a batched read (`DataPath.read_files`)."""

    file: FileLayout
    spans: Sequence[ChunkSpan]
    zero_filled: list[int] | None = None  # as read_chunk's


def _chain_or_none(file: FileLayout, chunk_index: int) -> int | None:
    try:
        return file.chain_of(chunk_index)
    except EmberError:
        return None


class DataPath:
    """Chunk writes and reads with routing, replica choice, bounds and retries."""

    def __init__(
        self,
        routing: RoutingCache,
        pool: StoragePool,
        new_header: Callable[[], common_pb2.RequestHeader],
        caps: CapabilityCache | None = None,
        *,
        retry: RetryPolicy,
        timeout: float,
        verify_crc: bool = True,
        max_inflight: int = 64,
        per_server: int = 16,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_inflight < 1 or per_server < 1:
            raise ValueError("max_inflight and per_server_inflight must be at least 1")
        self.routing, self.pool, self._new_header = routing, pool, new_header
        self.caps = caps if caps is not None else CapabilityCache(_no_capabilities)
        self.retry, self.timeout, self.verify_crc = retry, timeout, verify_crc
        self.max_inflight, self.per_server = max_inflight, per_server
        self._rand, self._sleep, self._clock = rand, sleep, clock
        self._outstanding: Counter[int] = Counter()
        self._suspects: dict[int, float] = {}  # target -> monotonic time it stops being one
        self._turns = itertools.count()
        self._gate = asyncio.Semaphore(max_inflight)
        self._server_gates: dict[str, asyncio.Semaphore] = {}

    # -- one request ------------------------------------------------------------------

    async def _send(self, view: RoutingView, target: int, method: str, request: Any,
                    into: memoryview | None = None) -> Any:
        """One request to `target`'s server under the client-wide and per-server bounds."""
        address = view.address_of(target)
        gate = self._server_gates.get(address)
        if gate is None:
            gate = self._server_gates[address] = asyncio.Semaphore(self.per_server)
        async with self._gate, gate:
            timeout = min(self.retry.attempt_timeout, self.timeout)
            return await self.pool.call(address, method, request, timeout=timeout,
                                        bulk_address=view.bulk_address_of(target), into=into)

    async def _with_retry(
        self,
        chain_id: int,
        attempt: Callable[[RoutingView, set[int], list[int]], Awaitable[T]],
        *,
        any_replica: bool,
    ) -> T:
        """Run attempt(view, avoid, used) until it succeeds or the retry policy gives up.

        `used` receives the target an attempt addressed, so that a failure there can
        put it in `avoid` for the next attempt. any_replica: the request may go to any
        serving replica (a read), so a failed one is retried elsewhere without waiting.
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
                other = any_replica and _has_untried(view, chain_id, avoid | set(used))
                step = chunk_retry(
                    self.retry, tries, error, deadline - self._clock(), self._rand(), other_replica=other
                )
                if step is None:
                    raise
                if step.avoid:
                    avoid.update(used)
                    until = self._clock() + SUSPECT_S
                    self._suspects.update((t, until) for t in used)
                if step.refresh:
                    await self._refresh(view.version)
            if step.delay:
                await self._sleep(step.delay)

    async def _authorized(self, file: FileLayout, right: int, run: Callable[[bytes], Awaitable[T]]) -> T:
        """run(capability), renewed and run once more if a storage server refuses it."""
        blob = await self.caps.blob(file.inode_id, right)
        try:
            return await run(blob)
        except CapabilityRefused:
            self.caps.drop(file.inode_id, right, blob)
            return await run(await self.caps.blob(file.inode_id, right))

    async def _refresh(self, seen: int) -> None:
        with contextlib.suppress(OSError):  # the metaserver is unreachable: retry on the view we have
            await self.routing.refresh(seen)

    async def update_chunk(
        self,
        file: FileLayout,
        chunk_index: int,
        kind: int,
        data: bytes | memoryview = b"",
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> storage_pb2.WriteResponse:
        """One update of a chunk at its chain head, retried with one request id.

        kind: REPLACE / WRITE (data at offset) / TRUNCATE (to length) / REMOVE.
        """
        chain_id = file.chain_of(chunk_index)
        payload = bytes(data)
        request = storage_pb2.WriteRequest(
            header=self._new_header(),
            chain_id=chain_id,
            chunk=storage_pb2.ChunkId(inode_id=file.inode_id, chunk_index=chunk_index),
            kind=cast(storage_pb2.UpdateKind, kind),  # an int from the caller: the proto's enum values
            offset=offset,
            data=payload,
            crc32c=crc32c.crc32c(payload),
            length=len(payload) if length is None else length,
            chunk_size=file.chunk_size,
        )

        async def attempt(view: RoutingView, avoid: set[int], used: list[int]) -> storage_pb2.WriteResponse:
            chain = view.chain(chain_id)
            head = chain.head
            if head is None:
                raise TargetNotServing(f"chain {chain_id} has no serving target")
            used.append(head)
            request.chain_version = chain.chain_version
            return await self._send(view, head, "Write", request)

        async def run(capability: bytes) -> storage_pb2.WriteResponse:
            request.capability = capability
            return await self._with_retry(chain_id, attempt, any_replica=False)

        return await self._authorized(file, RIGHT_WRITE, run)

    async def read_chunk(self, file: FileLayout, span: ChunkSpan, into: memoryview | None = None,
                         zero_filled: list[int] | None = None) -> Any:
        """span's bytes of one chunk from a SERVING replica, CRC-checked, holes as zeros.

        into: a buffer of exactly span.length bytes to fill (the bulk channel receives
        straight into it); the result is then `into` itself. zero_filled: gets the
        chunk index when the replica held fewer bytes than the span (a hole, a short
        chunk, or a length that is no longer the file's: the caller may ask again)."""
        chain_id = file.chain_of(span.chunk_index)
        header = self._new_header()
        if into is not None and len(into) != span.length:
            raise ValueError(f"the buffer holds {len(into)} bytes, the span {span.length}")
        capability = b""

        async def attempt(view: RoutingView, avoid: set[int], used: list[int]) -> Any:
            chain = view.chain(chain_id)
            suspects = live_suspects(self._suspects, self._clock())
            target = pick_replica(chain.serving, self._outstanding, avoid, next(self._turns), suspects)
            if target is None:
                raise TargetNotServing(f"chain {chain_id} has no serving replica")
            used.append(target)
            request = storage_pb2.ReadRequest(
                header=header,
                chain_id=chain_id,
                chain_version=chain.chain_version,
                chunk=storage_pb2.ChunkId(inode_id=file.inode_id, chunk_index=span.chunk_index),
                offset=span.offset,
                length=span.length,
                target_id=target,
                capability=capability,
            )
            self._outstanding[target] += 1
            try:
                reply = await self._send(view, target, "Read", request, into)
            finally:
                self._outstanding[target] -= 1
            data = reply.data
            if len(data) > span.length:
                raise ChecksumMismatch(f"target {target} sent {len(data)} bytes for a read of {span.length}")
            if self.verify_crc and reply.exists and crc32c.crc32c(data) != reply.crc32c:
                raise ChecksumMismatch(
                    f"chunk {span.chunk_index} of inode {file.inode_id} from target {target}: CRC32C mismatch"
                )
            self._suspects.pop(target, None)
            if zero_filled is not None and (not reply.exists or len(data) < span.length):
                zero_filled.append(span.chunk_index)
            if into is None:
                return fill_chunk(data, reply.exists, span.length)
            n = len(data) if reply.exists else 0
            if n and not (isinstance(data, memoryview) and data.obj is into.obj):
                into[:n] = data  # it came by gRPC, or did not fit: one copy
            into[n:] = bytes(span.length - n)  # a hole or the short end of a chunk reads as zeros
            return into

        async def run(blob: bytes) -> Any:
            nonlocal capability
            capability = blob
            return await self._with_retry(chain_id, attempt, any_replica=True)

        return await self._authorized(file, RIGHT_READ, run)

    # -- many chunks ------------------------------------------------------------------

    async def read_spans(self, file: FileLayout, spans: Sequence[ChunkSpan],
                         zero_filled: list[int] | None = None) -> list[bytes]:
        """The bytes of each span, fetched concurrently (bounded by the path's gates)."""
        if len(spans) == 1:
            return [await self.read_chunk(file, spans[0], None, zero_filled)]
        jobs = [lambda s=span: self.read_chunk(file, s, None, zero_filled) for span in spans]
        return await bounded_all(jobs, self.max_inflight)

    async def read_batch(self, file: FileLayout, spans: Sequence[ChunkSpan],
                         zero_filled: list[int] | None = None) -> list[Any]:
        """Each span's bytes, holes and short ends as zeros, for many spans of one file
        (`read_files` of one file); a failure is raised as itself."""
        (outcome,) = await self.read_files([FileSpans(file, spans, zero_filled)])
        if isinstance(outcome, EmberError):
            raise outcome
        return outcome

    async def read_files(self, batch: Sequence[FileSpans]) -> list[list[Any] | EmberError]:
        """Each file's spans' bytes, holes and short ends as zeros, for a batch over many
        files; a file whose reads failed gets its first EmberError instead, and the other
        files are still read (the caller decides what a file's failure means).

        On the bulk channel the small spans of one chain, whatever their file, go out as
        one READVM to one replica (`readv_plan`, `_readv`); a piece that fails there (its
        own error, a bad CRC, or the whole frame) is read again alone by `read_chunk`,
        whose retries, routing refreshes and capability renewal then decide. Without the
        bulk channel, and for large spans, every span goes alone."""
        out: list[list[Any]] = [[None] * len(item.spans) for item in batch]
        errors: list[EmberError | None] = [None] * len(batch)
        where = [(f, i) for f, item in enumerate(batch) for i in range(len(item.spans))]
        if self.pool.bulk is not None:
            pieces = [ReadvPiece(_chain_or_none(batch[f].file, batch[f].spans[i].chunk_index), batch[f].file.inode_id,
                                 batch[f].spans[i].length) for f, i in where]
            batches, alone = readv_plan(pieces)
        else:
            batches, alone = [], list(range(len(where)))

        async def read_file_alone(f: int, indexes: Sequence[int]) -> None:
            item = batch[f]
            jobs = [functools.partial(self.read_chunk, item.file, item.spans[i], None, item.zero_filled)
                    for i in indexes]
            try:
                results = await bounded_all(jobs, self.max_inflight)
            except EmberError as exc:
                errors[f] = errors[f] or exc
                return
            for i, data in zip(indexes, results, strict=True):
                out[f][i] = data

        async def read_alone(indexes: Sequence[int]) -> None:
            by_file: dict[int, list[int]] = {}
            for k in indexes:
                f, i = where[k]
                by_file.setdefault(f, []).append(i)
            await bounded_all([functools.partial(read_file_alone, f, ix) for f, ix in by_file.items()],
                              self.max_inflight)

        async def read_together(plan: ReadvBatch) -> None:
            failed = await self._readv(batch, [where[k] for k in plan.indexes], plan.chain_id, out)
            await read_alone([plan.indexes[k] for k in failed])

        await bounded_all([functools.partial(read_together, b) for b in batches]
                          + [functools.partial(read_alone, alone)], self.max_inflight)
        return [error if error is not None else results for error, results in zip(errors, out, strict=True)]

    async def _readv(self, batch: Sequence[FileSpans], pieces: Sequence[tuple[int, int]], chain_id: int,
                     out: list[list[Any]]) -> list[int]:
        """One READVM for `pieces` ((file, span) positions in `batch`, all on `chain_id`)
        into `out`; the positions in `pieces` of those it did not serve."""
        view = await self.routing.current()
        try:
            chain = view.chain(chain_id)
        except EmberError:
            return list(range(len(pieces)))  # read_chunk refreshes routing and says what is wrong
        suspects = live_suspects(self._suspects, self._clock())
        # Affinity by chain, not by file: every batch's pieces of a chain meet one replica,
        # one frame per chain, and one copy of each chunk warms in a page cache.
        target = pick_affine_replica(chain.serving, self._outstanding, chain_id, suspects)
        if target is None or not view.bulk_address_of(target):
            return list(range(len(pieces)))
        blobs: dict[int, bytes] = {}  # inode -> capability, in file-table order
        for inode_id in dict.fromkeys(batch[f].file.inode_id for f, _ in pieces):
            with contextlib.suppress(EmberError, OSError):  # its pieces go alone: read_chunk says why
                blobs[inode_id] = await self.caps.blob(inode_id, RIGHT_READ)
        table = {inode_id: n for n, inode_id in enumerate(blobs)}
        failed = [k for k, (f, _) in enumerate(pieces) if batch[f].file.inode_id not in table]
        sent = [k for k, (f, _) in enumerate(pieces) if batch[f].file.inode_id in table]
        if not sent:
            return failed
        reads = [(table[batch[f].file.inode_id], *batch[f].spans[i]) for f, i in (pieces[k] for k in sent)]
        request = ReadvRequest(chain_id, chain.chain_version, target, list(blobs.items()), reads)
        self._outstanding[target] += len(sent)
        try:
            results = await self._send(view, target, "ReadV", request)
        except EmberError as error:
            await self._readv_failed(view, target, error, blobs)
            return list(range(len(pieces)))
        finally:
            self._outstanding[target] -= len(sent)
        bad = False
        for k, result in zip(sent, results, strict=True):
            f, i = pieces[k]
            item = batch[f]
            data, span = result.data, item.spans[i]
            if result.status != w.STATUS_OK:
                failed.append(k)
                if w.decode_error(result.error)[0] == CapabilityRefused.code:  # renewed by its first re-read
                    self.caps.drop(item.file.inode_id, RIGHT_READ, blobs[item.file.inode_id])
            elif len(data) > span.length or (self.verify_crc and result.exists
                                              and crc32c.crc32c(data) != result.crc32c):
                failed.append(k)
                bad = True
            else:
                out[f][i] = fill_chunk(data, result.exists, span.length)
                if item.zero_filled is not None and (not result.exists or len(data) < span.length):
                    item.zero_filled.append(span.chunk_index)
        if bad:  # as read_chunk after a bad CRC: other reads try this replica last for a while
            self._suspects[target] = self._clock() + SUSPECT_S
        else:
            self._suspects.pop(target, None)
        return failed

    async def _readv_failed(self, view: RoutingView, target: int, error: EmberError,
                            blobs: dict[int, bytes]) -> None:
        """What a failed READVM teaches the single reads that follow it: the retry policy's
        step for a first failure (avoid the replica, refresh routing); a refused
        capability is renewed by the first of them."""
        if isinstance(error, CapabilityRefused):
            for inode_id, blob in blobs.items():
                self.caps.drop(inode_id, RIGHT_READ, blob)
        step = chunk_retry(self.retry, 1, error, self.timeout, self._rand(), other_replica=True)
        if step is None:
            return
        if step.avoid:
            self._suspects[target] = self._clock() + SUSPECT_S
        if step.refresh:
            await self._refresh(view.version)

    async def read_spans_into(self, file: FileLayout, spans: Sequence[ChunkSpan], into: memoryview,
                              zero_filled: list[int] | None = None) -> None:
        """The spans' bytes, back to back, into `into` (exactly their total length)."""
        views, at = [], 0
        for span in spans:
            views.append(into[at:at + span.length])
            at += span.length
        if at != len(into):
            raise ValueError(f"the buffer holds {len(into)} bytes, the spans {at}")
        if len(spans) == 1:
            await self.read_chunk(file, spans[0], views[0], zero_filled)
            return
        await bounded_all(
            [functools.partial(self.read_chunk, file, span, view, zero_filled)
             for span, view in zip(spans, views, strict=True)],
            self.max_inflight,
        )

    async def last_chunk(self, file: FileLayout, chain_id: int) -> tuple[int, int] | None:
        """(chunk_index, chunk_length) of the file's last committed chunk on `chain_id`,
        or None when the chain holds none of it."""
        header = self._new_header()

        async def attempt(view: RoutingView, avoid: set[int], used: list[int]) -> tuple[int, int] | None:
            chain = view.chain(chain_id)
            tail_first = list(reversed(chain.serving))
            candidates = [t for t in tail_first if t not in avoid] or tail_first
            if not candidates:
                raise TargetNotServing(f"chain {chain_id} has no serving replica")
            target = candidates[0]
            used.append(target)
            request = storage_pb2.QueryLastChunkRequest(
                header=header, chain_id=chain_id, chain_version=chain.chain_version,
                inode_id=file.inode_id, target_id=target,
            )
            reply = await self._send(view, target, "QueryLastChunk", request)
            return (reply.chunk_index, reply.chunk_length) if reply.found else None

        return await self._with_retry(chain_id, attempt, any_replica=True)

    async def storage_end(self, file: FileLayout) -> int:
        """The end of the file's bytes on storage, from the last chunk of each of its
        chains (0 for a file without chains)."""
        chains = list(dict.fromkeys(file.chain_ids[: file.stripe]))
        jobs = [lambda c=chain_id: self.last_chunk(file, c) for chain_id in chains]
        return stored_end(await bounded_all(jobs, self.max_inflight), file.chunk_size)

    async def truncate(self, file: FileLayout, old_length: int, new_length: int) -> None:
        """Make storage agree with a length change: cut the boundary chunk, drop the
        chunks past the new end (so a later growth reads zeros, not old bytes).

        old_length: the length just before the change, from the same metaserver
        transaction (TruncateResponse/CreateResponse.old_length). Chunks are dropped up to
        the larger of it and what storage holds, so bytes a writer has sent but not
        reported yet, or a growth the caller never saw, do not survive a shrink. A
        growth keeps what storage holds below the new end: those are writes that came
        before it (their writer reports them), as on POSIX."""
        held = await self.storage_end(file)
        plan = truncate_plan(max(old_length, held), new_length, file.chunk_size)
        jobs: list[Callable[[], Awaitable[Any]]] = []
        if plan.cut is not None:
            cut_index, cut_length = plan.cut  # bound now: the loop below rebinds `index`
            jobs.append(lambda: self.update_chunk(file, cut_index, storage_pb2.TRUNCATE, length=cut_length))
        for index in plan.remove:
            jobs.append(functools.partial(self.update_chunk, file, index, storage_pb2.REMOVE))
        if jobs:
            await bounded_all(jobs, self.max_inflight)


async def _no_capabilities(inode_id: int, write: bool) -> meta_pb2.Capability:
    """Empty grants of every right, never expiring: a data path with no metaserver (tests)."""
    return meta_pb2.Capability(rights=RIGHT_READ | RIGHT_WRITE)


def _has_untried(view: RoutingView, chain_id: int, avoid: set[int]) -> bool:
    try:
        return untried_replicas(view.chain(chain_id).serving, avoid)
    except EmberError:
        return False
