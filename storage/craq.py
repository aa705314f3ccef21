"""The CRAQ operator: chunk writes, forwards, reads and housekeeping over this
node's targets, independent of gRPC's server side (a bulk channel can reuse it).

Write path (client -> head only), per DESIGN.md and versions.py:
  validate (fields, CRC32C) -> dedupe by (client_id, request_id) -> chain and
  version check (newer: refresh routing, re-check) -> chunk lock -> head_plan
  (re-drive a pending version a failed forward left) -> prepare the pending
  version copy-on-write -> Forward to the successor and await -> commit -> reply.
A replica (Forward) re-validates, applies `decide_update`, forwards on, and
commits when its successor's ack returns, so the tail commits first.

Invariants: nothing is written before a request is fully validated; updates of
one chunk are serialised by a per-chunk asyncio lock; a forward failure leaves the
pending version in place (never aborted) so the next head_plan re-drives it; all
ChunkStore calls run in the I/O thread pool, never on the event loop.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import crc32c
import grpc

from emberfs.common.chainstate import Chain, PublicState
from emberfs.common.errors import (
    ChunkNotCommitted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    StaleChainVersion,
    TargetNotServing,
    Unavailable,
    from_rpc_error,
)
from emberfs.common.routing import RoutingView
from emberfs.proto import common_pb2, storage_pb2

from .checks import (
    MAX_CHUNK_SIZE,
    ChunkLocks,
    InflightUpdates,
    RecentReplies,
    VersionCheck,
    check_chain_version,
    check_read,
    check_write,
    local_target,
    require_head,
)
from .chunkfiles import WouldBlock
from .chunkstore import ChunkStore
from .forwarding import FORWARD_TIMEOUT_S, Forwarder
from .housekeeping import Housekeeping
from .localstate import NodeHealth
from .syncrecv import SyncReceiver
from .oserrors import DiskFailure
from emberfs.common.storagepool import StoragePool as PeerPool
from .records import ChunkId, ChunkMeta, UpdateKind
from .region import ChunkRegion
from .versions import DirtyRead, UpdateAction, decide_update, head_plan, resolve_dirty_read

__all__ = ["FORWARD_TIMEOUT_S", "Operator", "RoutingSource"]

log = logging.getLogger("emberfs.storage.craq")

T = TypeVar("T")
PEER_TIMEOUT_S = 5.0
READ_ATTEMPTS = 8
INLINE_READ_MAX = 256 * 1024  # reads up to this size try the page cache on the event loop first


class RoutingSource(Protocol):
    """Where the operator gets routing: the current view, and a (single-flight)
    refresh that answers the newest view it could get. A source may also offer
    `async changed(version) -> RoutingView` (the first newer view; agent.RoutingHolder
    does): without it, forwards and the resync worker never see routing move."""

    @property
    def view(self) -> RoutingView: ...

    async def refresh(self) -> RoutingView: ...


def _reply(meta: ChunkMeta) -> storage_pb2.WriteResponse:
    return storage_pb2.WriteResponse(
        commit_version=meta.commit_version, chunk_length=meta.length, chunk_crc32c=meta.crc32c
    )


class Operator:
    def __init__(
        self,
        node_id: int,
        stores: dict[int, ChunkStore],
        routing: RoutingSource,
        peers: PeerPool,
        executor: ThreadPoolExecutor,
        *,
        recent_capacity: int = 8192,
        health: NodeHealth | None = None,
    ) -> None:
        self.node_id = node_id
        self.stores = stores
        self.routing = routing
        self.peers = peers
        self.executor = executor
        self.recent = RecentReplies(recent_capacity)
        self.locks = ChunkLocks()
        self.inflight = InflightUpdates()
        self._local = frozenset(stores)
        self.health = health or NodeHealth()
        self.forwarder = Forwarder(routing, peers)
        self.housekeeping = Housekeeping(self)
        self.sync = SyncReceiver(self)

    async def _io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def store_of(self, target: int) -> ChunkStore:
        """The store of a local target that has not failed."""
        why = self.health.failed.get(target)
        if why is not None:
            raise Unavailable(f"target {target} failed ({why}); the manager takes it out of its chain")
        return self.stores[target]

    async def tio(self, target: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call of `target` in the I/O pool; a disk error fails the target."""
        self.store_of(target)
        with self.failing_target(target):
            return await self._io(fn, *args, **kwargs)

    @contextlib.contextmanager
    def failing_target(self, target: int) -> Iterator[None]:
        """A disk error inside fails `target` (it reports LOCAL_OFFLINE from now on)."""
        try:
            yield
        except DiskFailure as exc:
            if self.health.fail(target, exc.message):
                log.error("target %d failed: %s; reporting it offline", target, exc.message)
            raise DiskFailure(f"target {target}: {exc.message}; nothing was committed") from None

    # -- routing -------------------------------------------------------------

    async def chain(self, chain_id: int, version: int, *, strict: bool = True) -> Chain:
        """The chain as this server sees it; a request naming a newer version (or an
        unknown chain) refreshes routing first; an older version is refused."""
        view = self.routing.view
        chain = view.chains.get(chain_id)
        if chain is None or (strict and version > chain.chain_version):
            view = await self.routing.refresh()
            chain = view.chains.get(chain_id)
        if chain is None:
            raise NotFound(f"unknown chain {chain_id} (routing version {view.version})")
        if strict and check_chain_version(chain, version) == VersionCheck.NEWER:
            raise StaleChainVersion(
                f"chain {chain_id}: the request names version {version} but this server still "
                f"holds {chain.chain_version} after a routing refresh; retry shortly"
            )
        return chain

    def _my_target(self, chain: Chain, target_id: int) -> int:
        """`target_id` (0: this node's target in the chain) checked to be ours and in chain."""
        if target_id == 0:
            return local_target(chain, self._local, self.node_id)
        if target_id not in self._local:
            raise NotFound(f"target {target_id} is not on node {self.node_id}")
        if chain.state_of(target_id) is None:
            raise FailedPrecondition(f"target {target_id} is not in chain {chain.chain_id}")
        return target_id

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
        self.health.lease.check()
        chain = await self.chain(req.chain_id, req.chain_version)
        with self.inflight.track(chain.chain_id, chain.chain_version):  # resync.py waits on these
            return await self._head_update(req, chunk, kind, chain)

    async def _head_update(self, req: storage_pb2.WriteRequest, chunk: ChunkId, kind: UpdateKind,
                           chain: Chain) -> storage_pb2.WriteResponse:
        target = local_target(chain, self._local, self.node_id)
        require_head(chain, target)
        store = self.store_of(target)
        async with self.locks.hold((target, chunk)):
            meta = await self.tio(target, store.meta, chunk)
            plan = head_plan(meta.commit_version, meta.pending_version)
            if plan.redrive_pending is not None:
                await self._redrive(chain, target, store, chunk, plan.redrive_pending, req.chunk_size)
            u = plan.update_version
            await self.tio(target, store.prepare, chunk, kind, req.offset, req.data, req.length, u,
                           chain.chain_version, req.chunk_size, data_crc32c=req.crc32c)
            await self._forward_on(chain, target, req, u, store)
            self.health.lease.check()  # frozen mid-write: the chain may have moved on
            return _reply(await self.tio(target, store.commit, chunk, u))

    async def _redrive(self, chain: Chain, target: int, store: ChunkStore, chunk: ChunkId,
                       version: int, chunk_size: int) -> None:
        """Finish pending `version` left by a failed forward: send the pending whole
        chunk (or its REMOVE) down the chain at that version, then commit it here."""
        update = await self.whole_chunk_update(chain, target, store, chunk, chunk_size, version=version)
        log.info("target %d chunk %s: re-driving pending version %d (%s)", target, chunk, version,
                 UpdateKind(update.kind).name)
        await self._forward_on(chain, target, update, version, store)
        await self.tio(target, store.commit, chunk, version)

    async def whole_chunk_update(self, chain: Chain, target: int, store: ChunkStore, chunk: ChunkId,
                                 chunk_size: int, *, version: int | None) -> storage_pb2.WriteRequest:
        """A REPLACE carrying the whole chunk at `version` (committed or pending; None:
        the committed one), or a REMOVE when that version has no bytes."""
        data, meta = await self.tio(target, store.read, chunk, 0, MAX_CHUNK_SIZE, version=version)
        kind = UpdateKind.REPLACE if meta.exists else UpdateKind.REMOVE
        return storage_pb2.WriteRequest(
            header=common_pb2.RequestHeader(), chain_id=chain.chain_id, chain_version=chain.chain_version,
            chunk=storage_pb2.ChunkId(inode_id=chunk.inode_id, chunk_index=chunk.chunk_index),
            kind=kind, data=data, crc32c=crc32c.crc32c(data),
            chunk_size=max(chunk_size, _pow2_at_least(len(data))),
        )

    async def _forward_on(self, chain: Chain, target: int, update: storage_pb2.WriteRequest,
                          version: int, store: ChunkStore) -> None:
        """Send the update to `target`'s successor and await its ack (nothing at the tail)."""
        successor = chain.successor(target)
        if successor is None:
            return
        if chain.state_of(successor) == PublicState.SYNCING and update.kind not in (
            UpdateKind.REPLACE, UpdateKind.REMOVE
        ):
            # The syncing successor may lack the bytes a WRITE/TRUNCATE applies to.
            chunk = ChunkId(update.chunk.inode_id, update.chunk.chunk_index)
            update = await self.whole_chunk_update(chain, target, store, chunk, update.chunk_size, version=version)
        await self.forwarder.send_forward(chain, storage_pb2.ForwardRequest(
            update=update, update_version=version, from_target=target, to_target=successor))

    async def forward(self, req: storage_pb2.ForwardRequest) -> storage_pb2.WriteResponse:
        if not req.HasField("update"):
            raise InvalidArgument("forward carries no update")
        update = req.update
        chunk, kind = check_write(update)
        if req.update_version < 1:
            raise InvalidArgument(f"update versions start at 1, not {req.update_version}")
        self.health.lease.check()
        chain = await self.chain(update.chain_id, update.chain_version)
        with self.inflight.track(chain.chain_id, chain.chain_version):  # resync.py waits on these
            return await self._apply_forward(req, update, chunk, kind, chain)

    async def _apply_forward(self, req: storage_pb2.ForwardRequest, update: storage_pb2.WriteRequest,
                             chunk: ChunkId, kind: UpdateKind, chain: Chain) -> storage_pb2.WriteResponse:
        target = req.to_target
        if target not in self._local:
            raise NotFound(f"to_target {target} is not on node {self.node_id}")
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
        sync = syncing
        store = self.store_of(target)
        u = req.update_version
        async with self.locks.hold((target, chunk)):
            meta = await self.tio(target, store.meta, chunk)
            exists = meta.exists or meta.pending_version is not None
            action = decide_update(meta.commit_version, meta.pending_version, u, exists=exists,
                                   remove=kind == UpdateKind.REMOVE, sync=sync)
            if action == UpdateAction.ALREADY_COMMITTED:
                return _reply(meta)
            if action == UpdateAction.MISSING:
                raise FailedPrecondition(
                    f"target {target} chunk {tuple(chunk)} holds version {meta.commit_version} "
                    f"(pending {meta.pending_version}) but update {u} arrived: it missed updates and needs a resync"
                )
            await self.tio(target, store.prepare, chunk, kind, update.offset, update.data, update.length, u,
                           chain.chain_version, update.chunk_size, data_crc32c=update.crc32c)
            await self._forward_on(chain, target, update, u, store)
            return _reply(await self.tio(target, store.commit, chunk, u))

    # -- reads ---------------------------------------------------------------

    async def read(self, req: storage_pb2.ReadRequest) -> storage_pb2.ReadResponse:
        data, crc, meta = await self.read_data(req)
        return storage_pb2.ReadResponse(data=data, crc32c=crc, commit_version=meta.commit_version,
                                        chunk_length=meta.length, exists=meta.exists)

    async def _read_store(self, target: int, store: ChunkStore, chunk: ChunkId, offset: int,
                          length: int) -> tuple[bytes, ChunkMeta]:
        """A small read whose bytes are all in the page cache runs right here: a hop to
        the I/O threads costs more than the read (and queues behind the GIL). Anything
        else, or a miss, goes to the I/O pool."""
        if length <= INLINE_READ_MAX:
            try:
                with self.failing_target(target):
                    return store.read(chunk, offset, length, cached_only=True)
            except WouldBlock:
                pass
        return await self.tio(target, store.read, chunk, offset, length)

    async def read_data(self, req: storage_pb2.ReadRequest, *, region_ok: bool = False
                        ) -> tuple[bytes | ChunkRegion, int, ChunkMeta]:
        """The bytes a read asks for, their CRC32C and the chunk's metadata (both transports).

        region_ok: a read of a whole committed chunk may come back as a ChunkRegion (an
        open file for sendfile) instead of bytes; its CRC32C is the one stored at commit."""
        chunk = check_read(req)
        self.health.lease.check()
        chain = await self.chain(req.chain_id, req.chain_version)
        target = self._my_target(chain, req.target_id)
        if chain.state_of(target) != PublicState.SERVING:
            raise TargetNotServing(f"target {target} is {chain.state_of(target).name} in chain "
                                   f"{chain.chain_id} (version {chain.chain_version}); read another replica")
        store = self.store_of(target)
        is_tail = chain.tail == target
        if region_ok and req.offset == 0:
            region = await self._whole_chunk_region(target, store, chunk, req.length, is_tail)
            if region is not None:
                return region
        for _ in range(READ_ATTEMPTS):
            data, meta = await self._read_store(target, store, chunk, req.offset, req.length)
            if meta.pending_version is not None and not is_tail:
                tail_version = await self._tail_commit_version(chain, chunk)
                how = resolve_dirty_read(meta.commit_version, meta.pending_version, tail_version)
                if how == DirtyRead.RETRY:
                    continue
                if how == DirtyRead.SERVE_PENDING:
                    try:
                        data, meta = await self.tio(target, store.read, chunk, req.offset, req.length,
                                                    version=meta.pending_version)
                    except ChunkNotCommitted:
                        continue  # committed or replaced meanwhile: read again
            self.health.lease.check()  # frozen mid-read: these bytes may be stale now
            # A whole chunk was just checked against its stored CRC: no need to compute it again.
            crc = meta.crc32c if data and len(data) == meta.length else crc32c.crc32c(data)
            return data, crc, meta
        raise Unavailable(f"chunk {tuple(chunk)} kept changing during {READ_ATTEMPTS} read attempts; retry")

    async def _whole_chunk_region(self, target: int, store: ChunkStore, chunk: ChunkId, length: int,
                                  is_tail: bool) -> tuple[ChunkRegion, int, ChunkMeta] | None:
        """The committed chunk as a file region, when the read wants all of it and no
        dirty-read question arises (no pending update, or this is the tail); else None."""
        fd, meta = await self.tio(target, store.open_committed, chunk)
        if fd is None:
            return None
        if length < meta.length or (meta.pending_version is not None and not is_tail):
            os.close(fd)
            return None
        try:
            self.health.lease.check()
        except BaseException:
            os.close(fd)
            raise
        return ChunkRegion(fd, meta.length), meta.crc32c, meta

    async def _tail_commit_version(self, chain: Chain, chunk: ChunkId) -> int:
        tail = chain.tail
        assert tail is not None
        request = storage_pb2.GetCommitVersionRequest(
            chain_id=chain.chain_id, chain_version=chain.chain_version,
            chunk=storage_pb2.ChunkId(inode_id=chunk.inode_id, chunk_index=chunk.chunk_index),
        )
        try:
            address = self.routing.view.address_of(tail)
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
        self.health.lease.check()
        chain = await self.chain(req.chain_id, req.chain_version)
        target = local_target(chain, self._local, self.node_id)
        meta = await self.tio(target, self.store_of(target).meta, ChunkId(req.chunk.inode_id, req.chunk.chunk_index))
        return storage_pb2.GetCommitVersionResponse(commit_version=meta.commit_version, exists=meta.exists)


def _pow2_at_least(n: int) -> int:
    size = 64 * 1024
    while size < n:
        size *= 2
    return size

