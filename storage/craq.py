"""The CRAQ operator: chunk writes, forwards, reads and housekeeping over this
node's targets, independent of gRPC's server side (a bulk channel can reuse it).
Every version decision is a call into replication.py; this module does the I/O.

Write path (client -> head only):
  validate (fields, CRC32C) -> dedupe by (client_id, request_id) -> chain and
  version check (newer: refresh routing, re-check) -> chunk lock -> head_plan
  (re-drive a pending version an interrupted update left) -> the chunk's request
  history (a retry that already committed is answered, not applied again) ->
  prepare the pending version copy-on-write -> Forward to the successor and await
  -> compare its ack (check_ack) -> commit -> reply.
A replica (Forward) re-validates, applies `decide_update`, forwards on, compares
its successor's ack, and commits, so the tail commits first.

Invariants: nothing is written before a request is fully validated; updates of
one chunk are serialised by a per-chunk asyncio lock; the locked work of an update
runs in a task of its own that a cancelled handler (a caller's deadline, a dropped
bulk connection) does not cancel, so the lock is released only once the store work
is done; a forward failure leaves the pending version in place (never aborted) so
the next head_plan re-drives it; a tail that finds a pending version outside a
running update commits it before it answers (replication.read_plan TAKE_OVER);
store calls run in the I/O thread pool, except reads of cached bytes, which never
wait (not for the disk, not for a commit in progress).

Failure rules (issue 5):
- lease (lease.py): reads, writes and forwards are refused TargetNotServing while
  this server's last successful heartbeat is older than the manager's timeout;
- a SYNCING successor gets every update as a whole chunk (REPLACE of the pending
  version just prepared here, or REMOVE), applied with sync semantics, so it never
  needs the bytes it missed to apply a WRITE or TRUNCATE (3FS: forwarding to a
  syncing target);
- a forward that fails UNAVAILABLE, or whose successor left the chain while it was
  in flight, refreshes routing and fails the write UNAVAILABLE (retryable);
- a disk error (oserrors.DiskFailure) marks the target failed in NodeHealth: it is
  refused from then on and the agent reports it LOCAL_OFFLINE at once.

What every request handler shares (the stores, the I/O pool, the chain a request names,
chunk locks, work that outlives a cancelled caller) is `LocalTargets`
(localtargets.py); the requests off the write path are housekeeping.py and syncrecv.py,
and the forward to a successor is forwarding.py. They import none of this module.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from typing import cast

import crc32c
import grpc

from emberfs.common.chainstate import Chain, PublicState
from emberfs.common.errors import (
    ChunkGone,
    ChunkNotCommitted,
    EmberError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ReplicaDiverged,
    TargetNotServing,
    Unavailable,
    from_rpc_error,
)
from emberfs.common.storagepool import StoragePool
from emberfs.proto import common_pb2, storage_pb2

from .checks import (
    MAX_CHUNK_SIZE,
    InflightUpdates,
    RecentReplies,
    check_read,
    check_read_range,
    check_write,
    require_head,
)
from .chunkfiles import WouldBlock
from .chunkstore import ChunkStore
from .forwarding import Forwarder
from .housekeeping import Housekeeping
from .localstate import NodeHealth
from .localtargets import LocalTargets
from .records import ChunkId, ChunkMeta, PendingInfo, UpdateKind
from .region import ChunkRegion
from .replication import (
    ABSENT,
    PURGE_VERSION,
    Digest,
    DirtyRead,
    ReadPlan,
    UpdateAction,
    check_ack,
    decide_update,
    head_plan,
    read_plan,
    resolve_dirty_read,
)
from .routingsource import RoutingSource
from .syncrecv import SyncReceiver

__all__ = ["Operator"]

log = logging.getLogger("emberfs.storage.craq")

PEER_TIMEOUT_S = 5.0
READ_ATTEMPTS = 8
INLINE_READ_MAX = 256 * 1024  # reads up to this size try the page cache on the event loop first


def _reply(meta: ChunkMeta) -> storage_pb2.WriteResponse:
    return storage_pb2.WriteResponse(
        commit_version=meta.commit_version, chunk_length=meta.length, chunk_crc32c=meta.crc32c,
        chunk_exists=meta.exists,
    )


def _digest(info: PendingInfo) -> Digest:
    return Digest(False) if info.kind == UpdateKind.REMOVE else Digest(True, info.length, info.crc32c)


def _request_of(header: common_pb2.RequestHeader) -> bytes:
    """What a chunk remembers of the client request behind an update (chunkstore)."""
    if not (header.client_id and header.request_id):
        return b""
    return header.request_id.to_bytes(8, "big") + header.client_id.encode()[:128]


def _header_of(request: bytes) -> common_pb2.RequestHeader:
    if len(request) < 8:
        return common_pb2.RequestHeader()
    return common_pb2.RequestHeader(client_id=request[8:].decode(errors="replace"),
                                    request_id=int.from_bytes(request[:8], "big"))


class Operator:
    """The CRAQ replication driver over this node's targets (see the module docstring).
    What every handler shares (stores, I/O pool, chains, chunk locks) is `targets`;
    `housekeeping` and `sync` serve the requests off the write path."""

    def __init__(
        self,
        node_id: int,
        stores: dict[int, ChunkStore],
        routing: RoutingSource,
        peers: StoragePool,
        executor: ThreadPoolExecutor,
        *,
        recent_capacity: int = 8192,
        health: NodeHealth | None = None,
    ) -> None:
        self.targets = LocalTargets(node_id, stores, routing, executor, health=health)
        self.peers = peers
        self.recent = RecentReplies(recent_capacity)
        self.inflight = InflightUpdates()
        self.forwarder = Forwarder(routing, peers)
        self.housekeeping = Housekeeping(self.targets)
        self.sync = SyncReceiver(self.targets)

    # -- writes --------------------------------------------------------------

    async def write(self, req: storage_pb2.WriteRequest) -> storage_pb2.WriteResponse:
        chunk, kind = check_write(req)
        # Only a request naming both ids can be recognised as a retry.
        header = req.header
        key = (header.client_id, header.request_id) if header.client_id and header.request_id else None
        if key is not None:
            done = self.recent.get(key)
            if done is not None:
                return done
            pending = self.recent.inflight(key)
            if pending is not None:
                return await asyncio.shield(pending)
            self.recent.begin(key)
        return await self.targets.finish(self._recorded_write(req, chunk, kind, key))

    async def _recorded_write(self, req: storage_pb2.WriteRequest, chunk: ChunkId, kind: UpdateKind,
                              key: tuple[str, int] | None) -> storage_pb2.WriteResponse:
        reply: storage_pb2.WriteResponse | None = None
        error: BaseException | None = None
        try:
            reply = await self._head_write(req, chunk, kind)
            return reply
        except BaseException as exc:
            error = exc
            raise
        finally:
            if key is not None:
                self.recent.finish(key, reply, error)

    async def _head_write(self, req: storage_pb2.WriteRequest, chunk: ChunkId,
                          kind: UpdateKind) -> storage_pb2.WriteResponse:
        self.targets.health.lease.check()
        chain = await self.targets.chain(req.chain_id, req.chain_version)
        with self.inflight.track(chain.chain_id, chain.chain_version):  # resync.py waits on these
            return await self._head_update(req, chunk, kind, chain)

    async def _head_update(self, req: storage_pb2.WriteRequest, chunk: ChunkId, kind: UpdateKind,
                           chain: Chain) -> storage_pb2.WriteResponse:
        target = self.targets.in_chain(chain)
        require_head(chain, target)
        store = self.targets.store_of(target)
        header = req.header
        async with self.targets.locks.hold((target, chunk)):
            meta = await self.targets.tio(target, store.meta, chunk)
            plan = head_plan(meta.replica, remove=kind == UpdateKind.REMOVE)
            if plan.noop:
                return _reply(meta)  # removing a chunk that never existed
            if plan.redrive_pending is not None:
                await self._redrive(chain, target, store, chunk, plan.redrive_pending, req.chunk_size)
                meta = await self.targets.tio(target, store.meta, chunk)
                plan = head_plan(meta.replica, remove=kind == UpdateKind.REMOVE)
            if header.client_id and header.request_id and await self.targets.tio(
                    target, store.applied, chunk, header.client_id, header.request_id) is not None:
                return _reply(meta)  # a retry of a request that committed before (maybe on another head)
            u = plan.update_version
            info = await self.targets.tio(target, store.prepare, chunk, kind, req.offset, req.data, req.length, u,
                                          chain.chain_version, req.chunk_size, data_crc32c=req.crc32c,
                                          request=_request_of(header))
            await self._forward_on(chain, target, req, u, store, _digest(info))
            self.targets.health.lease.check()  # frozen mid-write: the chain may have moved on
            return _reply(await self.targets.tio(target, store.commit, chunk, u))

    async def _redrive(self, chain: Chain, target: int, store: ChunkStore, chunk: ChunkId,
                       version: int, chunk_size: int) -> None:
        """Finish pending `version` left by an interrupted update: send the pending whole
        chunk (or its REMOVE) down the chain at that version, then commit it here."""
        header = _header_of(await self.targets.tio(target, store.pending_request, chunk))
        update = await self.whole_chunk_update(chain, target, store, chunk, chunk_size, version=version,
                                               header=header)
        log.info("target %d chunk %s: re-driving pending version %d (%s)", target, chunk, version,
                 UpdateKind(update.kind).name)
        expected = Digest(True, len(update.data), update.crc32c) if update.kind == UpdateKind.REPLACE else ABSENT
        await self._forward_on(chain, target, update, version, store, expected)
        await self.targets.tio(target, store.commit, chunk, version)

    async def whole_chunk_update(self, chain: Chain, target: int, store: ChunkStore, chunk: ChunkId,
                                 chunk_size: int, *, version: int | None,
                                 header: common_pb2.RequestHeader | None = None) -> storage_pb2.WriteRequest:
        """A REPLACE carrying the whole chunk at `version` (committed or pending; None:
        the committed one), or a REMOVE when that version has no bytes."""
        data, meta = await self.targets.tio(target, store.read, chunk, 0, MAX_CHUNK_SIZE, version=version)
        kind = UpdateKind.REPLACE if meta.exists else UpdateKind.REMOVE
        return storage_pb2.WriteRequest(
            header=header or common_pb2.RequestHeader(), chain_id=chain.chain_id,
            chain_version=chain.chain_version,
            chunk=storage_pb2.ChunkId(inode_id=chunk.inode_id, chunk_index=chunk.chunk_index),
            kind=cast(storage_pb2.UpdateKind, int(kind)), data=data, crc32c=crc32c.crc32c(data),
            chunk_size=max(chunk_size, _pow2_at_least(len(data))),
        )

    async def _forward_on(self, chain: Chain, target: int, update: storage_pb2.WriteRequest,
                          version: int, store: ChunkStore, expected: Digest) -> None:
        """Send the update to `target`'s successor, await its ack and compare it with
        `expected`, what `version` holds here (nothing to do at the tail)."""
        successor = chain.successor(target)
        if successor is None:
            return
        if chain.state_of(successor) == PublicState.SYNCING and update.kind not in (
            UpdateKind.REPLACE, UpdateKind.REMOVE
        ):
            # The syncing successor may lack the bytes a WRITE/TRUNCATE applies to.
            chunk = ChunkId(update.chunk.inode_id, update.chunk.chunk_index)
            update = await self.whole_chunk_update(chain, target, store, chunk, update.chunk_size, version=version,
                                                   header=update.header)
        reply = await self.forwarder.send_forward(chain, storage_pb2.ForwardRequest(
            update=update, update_version=version, from_target=target, to_target=successor))
        acked = Digest(reply.chunk_exists, reply.chunk_length, reply.chunk_crc32c) if reply.chunk_exists else ABSENT
        verdict = check_ack(version, expected, reply.commit_version, acked)
        if not verdict.ok:
            chunk = ChunkId(update.chunk.inode_id, update.chunk.chunk_index)
            log.error("chain %d v%d chunk %s: target %d -> %d: %s", chain.chain_id, chain.chain_version,
                      tuple(chunk), target, successor, verdict.why)
            raise ReplicaDiverged(f"chunk {tuple(chunk)} of chain {chain.chain_id}: target {successor} "
                                  f"answered for target {target}: {verdict.why}; the update is refused")

    async def forward(self, req: storage_pb2.ForwardRequest) -> storage_pb2.WriteResponse:
        if not req.HasField("update"):
            raise InvalidArgument("forward carries no update")
        update = req.update
        chunk, kind = check_write(update)
        if req.update_version < 1 and not (req.update_version == PURGE_VERSION and kind == UpdateKind.REMOVE):
            raise InvalidArgument(f"update versions start at 1, not {req.update_version} "
                                  "(version 0 is only a REMOVE to a syncing target)")
        self.targets.health.lease.check()
        chain = await self.targets.chain(update.chain_id, update.chain_version)
        return await self.targets.finish(self._tracked_forward(req, update, chunk, kind, chain))

    async def _tracked_forward(self, req: storage_pb2.ForwardRequest, update: storage_pb2.WriteRequest,
                               chunk: ChunkId, kind: UpdateKind, chain: Chain) -> storage_pb2.WriteResponse:
        with self.inflight.track(chain.chain_id, chain.chain_version):  # resync.py waits on these
            return await self._apply_forward(req, update, chunk, kind, chain)

    async def _apply_forward(self, req: storage_pb2.ForwardRequest, update: storage_pb2.WriteRequest,
                             chunk: ChunkId, kind: UpdateKind, chain: Chain) -> storage_pb2.WriteResponse:
        target = req.to_target
        if target not in self.targets.ids:
            raise NotFound(f"to_target {target} is not on node {self.targets.node_id}")
        if target not in chain.write_path:
            raise FailedPrecondition(f"target {target} is not on the write path of chain {chain.chain_id} "
                                     f"(version {chain.chain_version})")
        if chain.successor(req.from_target) != target:
            raise FailedPrecondition(f"from_target {req.from_target} is not the predecessor of target {target} "
                                     f"in chain {chain.chain_id} (version {chain.chain_version})")
        # Everything a SYNCING target receives is a whole chunk (or a REMOVE) that
        # overrides whatever stale version it holds (decide_update's sync row).
        syncing = chain.state_of(target) == PublicState.SYNCING
        if syncing and kind not in (UpdateKind.REPLACE, UpdateKind.REMOVE):
            # Its bytes may be stale: a partial update must never land on them.
            raise FailedPrecondition(f"target {target} is SYNCING in chain {chain.chain_id} (version "
                                     f"{chain.chain_version}): it takes whole-chunk updates only, not {kind.name}")
        store = self.targets.store_of(target)
        u = req.update_version
        if u == PURGE_VERSION and not syncing:
            raise InvalidArgument(f"a REMOVE at version 0 goes only to a SYNCING target; target {target} is "
                                  f"{chain.state_of(target).name} in chain {chain.chain_id}")  # type: ignore[union-attr]
        async with self.targets.locks.hold((target, chunk)):
            meta = await self.targets.tio(target, store.meta, chunk)
            gone = await self.targets.tio(target, store.is_gone, chunk.inode_id)
            action = decide_update(meta.replica, u, sync=syncing, gone=gone)
            if action == UpdateAction.ALREADY_COMMITTED:
                return _reply(meta)  # the sender compares this with what it sent
            if action == UpdateAction.GONE:
                raise ChunkGone(f"target {target} chunk {tuple(chunk)}: the file was deleted and its chunks "
                               "collected here; nothing is re-created")
            if action == UpdateAction.AHEAD:
                raise ReplicaDiverged(
                    f"target {target} chunk {tuple(chunk)} holds version {meta.commit_version}, newer than "
                    f"update {u} from target {req.from_target}: the replicas diverged; refused")
            if action == UpdateAction.MISSING:
                raise FailedPrecondition(
                    f"target {target} chunk {tuple(chunk)} holds version {meta.commit_version} "
                    f"(pending {meta.pending_version}) but update {u} arrived: it missed updates and needs a resync"
                )
            if u == PURGE_VERSION:
                await self.targets.tio(target, store.purge, chunk)
                return storage_pb2.WriteResponse(commit_version=PURGE_VERSION)
            info = await self.targets.tio(target, store.prepare, chunk, kind, update.offset, update.data,
                                          update.length, u, chain.chain_version, update.chunk_size,
                                          data_crc32c=update.crc32c, sync=syncing, request=_request_of(update.header))
            await self._forward_on(chain, target, update, u, store, _digest(info))
            return _reply(await self.targets.tio(target, store.commit, chunk, u))

    # -- reads ---------------------------------------------------------------

    async def read(self, req: storage_pb2.ReadRequest) -> storage_pb2.ReadResponse:
        data, crc, meta = await self.read_data(req)
        assert isinstance(data, bytes)  # a ChunkRegion only with region_ok
        return storage_pb2.ReadResponse(data=data, crc32c=crc, commit_version=meta.commit_version,
                                        chunk_length=meta.length, exists=meta.exists)

    async def _read_store(self, target: int, store: ChunkStore, chunk: ChunkId, offset: int,
                          length: int) -> tuple[bytes, ChunkMeta]:
        """A small read whose bytes are all in the page cache runs right here: a hop to
        the I/O threads costs more than the read (and queues behind the GIL). Anything
        else, or a miss, goes to the I/O pool."""
        if length <= INLINE_READ_MAX:
            try:
                with self.targets.failing_target(target):
                    return store.read(chunk, offset, length, cached_only=True)
            except WouldBlock:
                pass
        return await self.targets.tio(target, store.read, chunk, offset, length)

    async def _read_target(self, chain_id: int, chain_version: int, target_id: int) -> tuple[Chain, int, ChunkStore]:
        """The chain, the local target a read names and its store: refused unless this
        server holds its lease, the chain version is current and the target SERVING."""
        self.targets.health.lease.check()
        chain = await self.targets.chain(chain_id, chain_version)
        target = self.targets.named(chain, target_id)
        state = chain.state_of(target)
        if state != PublicState.SERVING:
            raise TargetNotServing(f"target {target} is {state.name if state else 'not'} in chain "
                                   f"{chain.chain_id} (version {chain.chain_version}); read another replica")
        return chain, target, self.targets.store_of(target)

    async def read_data(self, req: storage_pb2.ReadRequest, *, region_ok: bool = False
                        ) -> tuple[bytes | ChunkRegion, int, ChunkMeta]:
        """The bytes a read asks for, their CRC32C and the chunk's metadata (both transports).

        region_ok: a read of a whole committed chunk may come back as a ChunkRegion (an
        open file for sendfile) instead of bytes; its CRC32C is the one stored at commit."""
        chunk = check_read(req)
        chain, target, store = await self._read_target(req.chain_id, req.chain_version, req.target_id)
        if region_ok and req.offset == 0:
            region = await self._whole_chunk_region(target, store, chunk, req.length, chain.tail == target)
            if region is not None:
                return region
        data, meta = await self._read_store(target, store, chunk, req.offset, req.length)
        return await self._read_by_plan(chain, target, store, chunk, req.offset, req.length, data, meta)

    async def _read_by_plan(self, chain: Chain, target: int, store: ChunkStore, chunk: ChunkId, offset: int,
                            length: int, data: bytes, meta: ChunkMeta) -> tuple[bytes, int, ChunkMeta]:
        """CRAQ's read rule over a first read of the committed version (`data`, `meta`):
        clean => serve it; dirty => ask the tail which version to serve; a pending
        version at the tail that no update owns => take it over, then read again."""
        is_tail = chain.tail == target
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                data, meta = await self._read_store(target, store, chunk, offset, length)
            how_read = read_plan(meta.replica, is_tail=is_tail)
            if how_read == ReadPlan.TAKE_OVER:
                await self.take_over(chain, target, store, chunk)
                continue
            if how_read == ReadPlan.ASK_TAIL:
                tail_version = await self._tail_commit_version(chain, chunk)
                how = resolve_dirty_read(meta.replica, tail_version)
                if how == DirtyRead.RETRY:
                    continue
                if how == DirtyRead.SERVE_PENDING:
                    try:
                        data, meta = await self.targets.tio(target, store.read, chunk, offset, length,
                                                            version=meta.pending_version)
                    except ChunkNotCommitted:
                        continue  # committed or replaced meanwhile: read again
            self.targets.health.lease.check()  # frozen mid-read: these bytes may be stale now
            return data, _crc_of(data, meta), meta
        raise Unavailable(f"chunk {tuple(chunk)} kept changing during {READ_ATTEMPTS} read attempts; retry")

    async def read_batch(self, chain_id: int, chain_version: int, target_id: int,
                         reads: Sequence[tuple[ChunkId, int, int]]) -> list[tuple[bytes, int, ChunkMeta] | EmberError]:
        """Many small reads of one target (a READV or READVM), each answered as `read_data`
        would answer it, each failure its own result; what refuses them all (lease, chain
        version, target state) raises. The committed bytes of every read come from one
        I/O-pool job (store.read_many): one thread hop for the batch, each chunk file
        opened once, the disk asked for all the ranges at once. A read whose chunk is
        dirty goes on through `_read_by_plan` (ask the tail, take over), as in read_data."""
        chain, target, store = await self._read_target(chain_id, chain_version, target_id)
        results: list[tuple[bytes, int, ChunkMeta] | EmberError] = []
        valid: list[int] = []
        for index, (_, offset, length) in enumerate(reads):
            try:
                check_read_range(offset, length)
                valid.append(index)
            except EmberError as exc:
                results.append(exc)
                continue
            results.append(_NOT_READ)
        stored = await self.targets.tio(target, store.read_many, [reads[i] for i in valid])
        dirty: list[tuple[int, bytes, ChunkMeta]] = []
        for index, got in zip(valid, stored, strict=True):
            if isinstance(got, EmberError):
                results[index] = self._failed_read(target, got)
            elif read_plan(got[1].replica, is_tail=chain.tail == target) != ReadPlan.SERVE_COMMITTED:
                dirty.append((index, *got))
            else:
                results[index] = (got[0], _crc_of(*got), got[1])
        self.targets.health.lease.check()  # frozen mid-read: these bytes may be stale now
        if dirty:
            served = await asyncio.gather(*(self._read_by_plan(chain, target, store, *reads[index], data, meta)
                                            for index, data, meta in dirty), return_exceptions=True)
            for (index, _, _), result in zip(dirty, served, strict=True):
                if isinstance(result, EmberError) or not isinstance(result, BaseException):
                    results[index] = result
                else:
                    raise result
        return results

    def _failed_read(self, target: int, error: EmberError) -> EmberError:
        """A read's error from store.read_many, after a disk failure has failed the target
        (as `tio` does for a single read)."""
        try:
            with self.targets.failing_target(target):
                raise error
        except EmberError as failed:
            return failed

    async def _whole_chunk_region(self, target: int, store: ChunkStore, chunk: ChunkId, length: int,
                                  is_tail: bool) -> tuple[ChunkRegion, int, ChunkMeta] | None:
        """The committed chunk as a file region, when the read wants all of it and no
        dirty-read question arises (no pending update, or this is the tail); else None."""
        fd, meta = await self.targets.tio(target, store.open_committed, chunk)
        if fd is None:
            return None
        if length < meta.length or meta.pending_version is not None:
            os.close(fd)
            return None
        try:
            self.targets.health.lease.check()
        except BaseException:
            os.close(fd)
            raise
        return ChunkRegion(fd, meta.length), meta.crc32c, meta

    async def take_over(self, chain: Chain, target: int, store: ChunkStore, chunk: ChunkId) -> ChunkMeta:
        """As the tail, commit a pending version that no running update owns: a former
        successor may have committed and served it (replication.read_plan). A SYNCING
        successor gets it first, as a whole chunk: the commit must not skip a target on
        the write path, or its next update would find a version missing."""
        async def locked() -> ChunkMeta:
            async with self.targets.locks.hold((target, chunk)):
                meta = await self.targets.tio(target, store.meta, chunk)
                p = meta.pending_version
                if p is None:
                    return meta  # the update that held the lock committed it
                log.info("target %d chunk %s: as the tail, committing pending version %d that no update owns",
                         target, tuple(chunk), p)
                if chain.successor(target) is not None:
                    update = await self.whole_chunk_update(chain, target, store, chunk, 0, version=p)
                    await self._forward_on(chain, target, update, p, store, meta.replica.pending or ABSENT)
                return await self.targets.tio(target, store.commit, chunk, p)
        return await self.targets.finish(locked())

    async def take_over_all(self, chain: Chain, target: int) -> int:
        """take_over every pending version of `target` (a resync source lists its chunks
        only after this, so it never sends an older version than the chain served)."""
        store = self.targets.store_of(target)
        chunks = await self.targets.tio(target, store.pending_chunks)
        for chunk in chunks:
            await self.take_over(chain, target, store, chunk)
        return len(chunks)

    async def _tail_commit_version(self, chain: Chain, chunk: ChunkId) -> int:
        tail = chain.tail
        assert tail is not None
        request = storage_pb2.GetCommitVersionRequest(
            chain_id=chain.chain_id, chain_version=chain.chain_version,
            chunk=storage_pb2.ChunkId(inode_id=chunk.inode_id, chunk_index=chunk.chunk_index),
        )
        try:
            address = self.targets.routing.view.address_of(tail)
            reply = await self.peers.stub(address).GetCommitVersion(request, timeout=PEER_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
            raise type(error)(f"asking tail target {tail} for the committed version: {error.message}") from None
        except (NotFound, KeyError):
            raise Unavailable(f"tail target {tail} of chain {chain.chain_id} has no known address") from None
        return reply.commit_version

    async def get_commit_version(self, req: storage_pb2.GetCommitVersionRequest
                                 ) -> storage_pb2.GetCommitVersionResponse:
        if not req.HasField("chunk"):
            raise InvalidArgument("request names no chunk")
        self.targets.health.lease.check()
        chain = await self.targets.chain(req.chain_id, req.chain_version)
        target = self.targets.in_chain(chain)
        store = self.targets.store_of(target)
        chunk = ChunkId(req.chunk.inode_id, req.chunk.chunk_index)
        meta = await self.targets.tio(target, store.meta, chunk)
        if chain.tail == target and read_plan(meta.replica, is_tail=True) == ReadPlan.TAKE_OVER:
            meta = await self.take_over(chain, target, store, chunk)
        return storage_pb2.GetCommitVersionResponse(commit_version=meta.commit_version, exists=meta.exists)


_NOT_READ = Internal("read_batch: a read was never answered")  # replaced for every valid read


def _crc_of(data: bytes, meta: ChunkMeta) -> int:
    # A whole chunk was just checked against its stored CRC: no need to compute it again.
    return meta.crc32c if data and len(data) == meta.length else crc32c.crc32c(data)


def _pow2_at_least(n: int) -> int:
    size = 64 * 1024
    while size < n:
        size *= 2
    return size

