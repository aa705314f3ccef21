"""Chunk GC: remove a deleted file's chunks from every replica, then forget it.

Deleting a file's last link leaves a record in the `gc` database (its layout and
length, metaserver/ops/nodes.py). Every `gc_interval_s` the collector reads a bounded
batch of records and, for each, calls Storage.RemoveChunks on EVERY target of EVERY
chain of the file's layout, at that target's node address from the chain table (a
target down now is cleared when it is back: 3FS's rule that nothing leaks).

Invariants:
- a record is deleted only after every one of its removals answered OK; anything
  else (a node down, a deadline, a refusal) leaves it for the next round;
- a chain of the layout that no longer exists counts as done (nothing to clear);
- calls run concurrently under one bound, each with a deadline, so a dead node
  costs at most one deadline per round and never stalls the metaserver.

The storage calls go through `ChunkRemover`, so the unit tests can count calls
without a storage server; `GrpcChunkRemover` is the real one (one pooled channel per
address, closed when the collector stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from emberfs.common.errors import EmberError
from emberfs.common.storagepool import StoragePool
from emberfs.proto import common_pb2, meta_pb2, storage_pb2

from ..engine import Store
from ..txn import MetaTxn
from .state import ClusterState

__all__ = [
    "BATCH",
    "CALL_DEADLINE_S",
    "MAX_CONCURRENT_CALLS",
    "ChunkCollector",
    "ChunkRemover",
    "GrpcChunkRemover",
    "Removal",
    "plan_removals",
]

log = logging.getLogger("emberfs.metaserver.gc")

BATCH = 256                # records per round
MAX_CONCURRENT_CALLS = 32  # RemoveChunks calls in flight at once
CALL_DEADLINE_S = 5.0


@dataclass(frozen=True, slots=True)
class Removal:
    """One RemoveChunks call: clear `inode_id` from one target."""

    address: str
    chain_id: int
    chain_version: int
    inode_id: int
    target_id: int


class ChunkRemover(Protocol):
    async def remove_chunks(self, removal: Removal) -> int:
        """Remove the chunks; the count removed. Raises on any failure."""
        ...

    async def close(self) -> None: ...


def plan_removals(record: meta_pb2.Inode, cluster: ClusterState) -> list[Removal] | None:
    """Every call the record needs, or None when one cannot be addressed now (a
    target whose node is unknown: the record waits). Pure."""
    removals = []
    for chain_id in sorted(set(record.layout.chain_ids)):
        chain = cluster.chains.get(chain_id)
        if chain is None:
            continue  # the chain is gone, and its chunks with it
        for member in chain.targets:
            target = cluster.targets.get(member.target_id)
            node = cluster.nodes.get(target.node_id) if target is not None else None
            if node is None:
                return None
            removals.append(
                Removal(node.address, chain_id, chain.chain_version, record.inode_id, member.target_id)
            )
    return removals


class GrpcChunkRemover:
    """Storage.RemoveChunks over gRPC, one channel per storage address."""

    def __init__(self, deadline_s: float = CALL_DEADLINE_S, *, token: str | None = None,
                 tls_ca: str | None = None) -> None:
        self.deadline_s = deadline_s
        self._pool = StoragePool(token=token, tls_ca=tls_ca)  # token: a server token (RemoveChunks is server-only)
        self._client_id = f"emberfs-gc-{uuid.uuid4().hex[:12]}"
        self._request_ids = itertools.count(1)

    async def remove_chunks(self, removal: Removal) -> int:
        request = storage_pb2.RemoveChunksRequest(
            header=common_pb2.RequestHeader(client_id=self._client_id, request_id=next(self._request_ids)),
            chain_id=removal.chain_id,
            chain_version=removal.chain_version,
            inode_id=removal.inode_id,
            target_id=removal.target_id,
        )
        reply = await self._pool.call(removal.address, "RemoveChunks", request, timeout=self.deadline_s)
        return reply.removed

    async def close(self) -> None:
        await self._pool.close()


class ChunkCollector:
    """The background GC task of the metaserver."""

    def __init__(
        self,
        store: Store,
        cluster: Callable[[], ClusterState],
        remover: ChunkRemover,
        *,
        interval_s: float,
        batch: int = BATCH,
        max_concurrent: int = MAX_CONCURRENT_CALLS,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._active = active  # only the manager primary collects (several metaservers)
        self._cluster = cluster
        self._remover = remover
        self.interval_s = interval_s
        self._batch = batch
        self._slots = asyncio.Semaphore(max_concurrent)
        self._after = 0  # resume point, so failing records never starve the rest
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="chunk-gc")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._remover.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if not self._active():
                continue
            try:
                await self.collect_once()
            except Exception:  # e.g. the store closing: try again next round
                log.exception("chunk GC round failed")

    async def _next_batch(self) -> list[meta_pb2.Inode]:
        after, batch = self._after, self._batch

        def read(tx: MetaTxn) -> list[meta_pb2.Inode]:
            pending = (r for r in tx.gc_records() if r.inode_id > after)
            return list(itertools.islice(pending, batch))

        records = await self._store.aread(read)
        if not records and after:
            self._after = 0  # wrapped around: start from the lowest inode again
            return await self._next_batch()
        self._after = records[-1].inode_id if len(records) == batch else 0
        return records

    async def collect_once(self) -> list[int]:
        """One round; the inode ids whose records were dropped."""
        records = await self._next_batch()
        if not records:
            return []
        cluster = self._cluster()
        outcomes = await asyncio.gather(*(self._collect(record, cluster) for record in records))
        done = [record.inode_id for record, ok in zip(records, outcomes, strict=True) if ok]
        if done:
            await self._store.write(lambda tx: [tx.delete_gc(inode_id) for inode_id in done])
        return done

    async def _collect(self, record: meta_pb2.Inode, cluster: ClusterState) -> bool:
        removals = plan_removals(record, cluster)
        if removals is None:
            log.debug("gc inode %d: a target of its chains has no known node; retrying later", record.inode_id)
            return False
        results = await asyncio.gather(*(self._remove(r) for r in removals))
        if not all(ok for ok, _ in results):
            return False
        log.info(
            "gc inode %d: chunks removed from %d targets (%d chunks)",
            record.inode_id, len(removals), sum(n for _, n in results),
        )
        return True

    async def _remove(self, removal: Removal) -> tuple[bool, int]:
        async with self._slots:
            try:
                return True, await self._remover.remove_chunks(removal)
            except (EmberError, grpc.RpcError, OSError) as exc:
                log.debug(
                    "gc inode %d: RemoveChunks on target %d (chain %d) at %s failed: %s; retrying later",
                    removal.inode_id, removal.target_id, removal.chain_id, removal.address, exc,
                )
                return False, 0
            except Exception:
                log.exception("gc inode %d: RemoveChunks on target %d failed unexpectedly",
                              removal.inode_id, removal.target_id)
                return False, 0

