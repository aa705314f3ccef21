"""Resync and failure handling of the CRAQ operator, in process: three operators
behind real gRPC servers on 127.0.0.1, real chunk stores, routing the test sets.

Covers: a forward to a SYNCING successor carries the whole chunk whatever the
client's update; one resync job (SyncDump, diff, sends and removes, SyncDone)
makes a stale successor equal to its predecessor; sync RPCs refuse a target that is
not SYNCING and a server whose lease expired; a disk error fails the target cleanly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import crc32c
import grpc
import pytest

from emberfs.common import errors as e
from emberfs.common.chainstate import Chain, ChainTarget, PublicState, chain_to_proto
from emberfs.common.routing import RoutingView
from emberfs.common.storagepool import StoragePool
from emberfs.proto import common_pb2, mgmt_pb2, storage_pb2
from emberfs.storage.chunkstore import ChunkStore
from emberfs.storage.craq import Operator
from emberfs.storage.lease import Lease
from emberfs.storage.localstate import NodeHealth, local_states
from emberfs.storage.records import ChunkId, UpdateKind
from emberfs.storage.resync import ResyncWorker
from emberfs.storage.service import StorageServicer, add_storage_servicer

K64 = 64 * 1024
S, Y, OFF = PublicState.SERVING, PublicState.SYNCING, PublicState.OFFLINE


class Routing:
    def __init__(self) -> None:
        self.view = RoutingView.empty()

    async def refresh(self) -> RoutingView:
        return self.view


def view(addresses: dict[int, str], version: int, states: dict[int, PublicState]) -> RoutingView:
    chain = Chain(1, version, tuple(ChainTarget(t, s) for t, s in states.items()))
    return RoutingView(mgmt_pb2.RoutingInfo(
        routing_version=version, chains=[chain_to_proto(chain)],
        nodes=[mgmt_pb2.NodeInfo(node_id=n, address=a, alive=True) for n, a in addresses.items()],
        targets=[mgmt_pb2.TargetInfo(target_id=n * 100 + 1, node_id=n, chain_id=1) for n in addresses]))


class Node:
    def __init__(self, n: int, root: Path, routing: Routing, executor: ThreadPoolExecutor) -> None:
        self.target = n * 100 + 1
        self.store = ChunkStore(root / f"n{n}")
        self.peers = StoragePool()
        self.health = NodeHealth()
        self.op = Operator(n, {self.target: self.store}, routing, self.peers, executor, health=self.health)
        self.server = grpc.aio.server()
        add_storage_servicer(StorageServicer(self.op), self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"


@asynccontextmanager
async def cluster(root: Path) -> AsyncIterator[tuple[list[Node], Routing]]:
    executor = ThreadPoolExecutor(4)
    routing = Routing()
    nodes = [Node(n, root, routing, executor) for n in (1, 2, 3)]
    for node in nodes:
        await node.server.start()
    try:
        yield nodes, routing
    finally:
        for node in nodes:
            await node.server.stop(0)
            await node.peers.close()
            node.store.close()
        executor.shutdown()


def addresses(nodes: list[Node]) -> dict[int, str]:
    return {i + 1: node.address for i, node in enumerate(nodes)}


def write(chunk: ChunkId, data: bytes, *, version: int, offset: int = 0, kind: int = storage_pb2.WRITE,
          length: int = 0) -> storage_pb2.WriteRequest:
    return storage_pb2.WriteRequest(
        header=common_pb2.RequestHeader(), chain_id=1, chain_version=version,
        chunk=storage_pb2.ChunkId(inode_id=chunk.inode_id, chunk_index=chunk.chunk_index), kind=kind,
        offset=offset, data=data, crc32c=crc32c.crc32c(data), chunk_size=K64, length=length)


def put(store: ChunkStore, chunk: ChunkId, data: bytes, version: int) -> None:
    """Commit `data` as `version` directly in a store (stale or divergent state)."""
    store.prepare(chunk, UpdateKind.REPLACE, 0, data, 0, version, 1, K64)
    store.commit(chunk, version)


def contents(store: ChunkStore) -> dict[ChunkId, tuple[int, bytes]]:
    return {m.chunk_id: (m.commit_version, store.read(m.chunk_id, 0, K64)[0]) for m in store.list_chunks()}


def test_forwards_to_a_syncing_successor_carry_the_whole_chunk(tmp_path: Path) -> None:
    chunk = ChunkId(5, 0)

    async def body() -> None:
        async with cluster(tmp_path) as (nodes, routing):
            routing.view = view(addresses(nodes), 1, {101: S, 201: S, 301: OFF})
            await nodes[0].op.write(write(chunk, b"hello world", version=1))
            assert not nodes[2].store.meta(chunk).exists
            routing.view = view(addresses(nodes), 2, {101: S, 201: S, 301: Y})
            # A WRITE in the middle of a chunk 301 never had: it gets the whole chunk.
            await nodes[0].op.write(write(chunk, b"XY", offset=3, version=2))
            assert contents(nodes[2].store) == {chunk: (2, b"helXY world")}
            await nodes[0].op.write(write(chunk, b"", version=2, kind=storage_pb2.TRUNCATE, length=4))
            assert contents(nodes[2].store) == {chunk: (3, b"helX")}
            await nodes[0].op.write(write(chunk, b"", version=2, kind=storage_pb2.REMOVE))
            assert contents(nodes[2].store) == {}
            assert contents(nodes[0].store) == contents(nodes[1].store) == {}

    asyncio.run(body())


def test_one_resync_job_makes_a_stale_successor_equal(tmp_path: Path) -> None:
    same, stale, extra, missing, diverged = (ChunkId(1, i) for i in range(5))

    async def body() -> None:
        async with cluster(tmp_path) as (nodes, routing):
            routing.view = view(addresses(nodes), 1, {101: S, 201: S, 301: OFF})
            for chunk in (same, stale, missing, diverged):
                await nodes[0].op.write(write(chunk, b"v1-" + bytes([chunk.chunk_index]), version=1))
            await nodes[0].op.write(write(stale, b"v2", version=1, offset=1))
            behind = nodes[2].store
            put(behind, same, b"v1-" + bytes([0]), 1)
            put(behind, stale, b"v1-" + bytes([1]), 1)           # missed the second write
            put(behind, extra, b"removed while I was down", 3)
            put(behind, diverged, b"same version, other bytes", 1)
            routing.view = view(addresses(nodes), 2, {101: S, 201: S, 301: Y})
            chain = routing.view.chains[1]
            tally = await ResyncWorker(nodes[1].op).sync_once(chain, 201, 301)
            assert (tally.sent, tally.removed) == (3, 1)
            assert contents(behind) == contents(nodes[1].store) == contents(nodes[0].store)
            assert nodes[2].health.synced == {301: 2}
            assert local_states(routing.view, [301], synced=nodes[2].health.synced) == {301: mgmt_pb2.LOCAL_UPTODATE}
            again = await ResyncWorker(nodes[1].op).sync_once(chain, 201, 301)
            assert (again.sent, again.removed) == (0, 0)

    asyncio.run(body())


def test_sync_requests_refuse_a_target_that_is_not_syncing_or_out_of_lease(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path) as (nodes, routing):
            routing.view = view(addresses(nodes), 1, {101: S, 201: S, 301: S})
            dump = storage_pb2.SyncDumpRequest(chain_id=1, chain_version=1, target_id=301)
            with pytest.raises(e.FailedPrecondition, match="SERVING in chain 1 .*not SYNCING"):
                await nodes[2].op.sync.sync_dump(dump)
            with pytest.raises(e.FailedPrecondition, match="not SYNCING"):
                await nodes[2].op.sync.sync_done(
                    storage_pb2.SyncDoneRequest(chain_id=1, chain_version=1, target_id=301))
            with pytest.raises(e.InvalidArgument, match="target_id"):
                await nodes[2].op.sync.sync_dump(storage_pb2.SyncDumpRequest(chain_id=1, chain_version=1))
            assert nodes[2].health.synced == {}
            routing.view = view(addresses(nodes), 2, {101: S, 201: S, 301: Y})
            with pytest.raises(e.StaleChainVersion):
                await nodes[2].op.sync.sync_dump(dump)  # names version 1; the chain is at 2
            clock = [100.0]
            nodes[2].health.lease = Lease(clock=lambda: clock[0])
            nodes[2].health.lease.renew(99.5, 1.0)
            dump2 = storage_pb2.SyncDumpRequest(chain_id=1, chain_version=2, target_id=301)
            assert (await nodes[2].op.sync.sync_dump(dump2)).chunks == []
            clock[0] = 101.0
            with pytest.raises(e.TargetNotServing, match="lease expired: no heartbeat for 1.5 s"):
                await nodes[2].op.sync.sync_dump(dump2)
            with pytest.raises(e.TargetNotServing, match="lease expired"):
                await nodes[2].op.read(storage_pb2.ReadRequest(
                    chain_id=1, chain_version=2, chunk=storage_pb2.ChunkId(inode_id=1), length=10, target_id=301))

    asyncio.run(body())


def test_a_disk_error_fails_the_target_and_commits_nothing(tmp_path: Path) -> None:
    chunk, fresh = ChunkId(9, 0), ChunkId(9, 1)

    async def body() -> None:
        async with cluster(tmp_path) as (nodes, routing):
            routing.view = view(addresses(nodes), 1, {101: S, 201: S, 301: S})
            await nodes[0].op.write(write(chunk, b"kept", version=1))
            # A real failure: the middle target's chunk directory becomes a file.
            chunks_dir = nodes[1].store.paths.root
            shutil.move(chunks_dir, chunks_dir + ".moved")
            Path(chunks_dir).write_bytes(b"not a directory")
            with pytest.raises(e.Unavailable, match="target 201.*disk error"):
                await nodes[0].op.write(write(fresh, b"lost", version=1))
            assert set(nodes[1].health.failed) == {201}
            assert local_states(routing.view, [201], failed=nodes[1].health.failed) == {201: mgmt_pb2.LOCAL_OFFLINE}
            assert nodes[1].health.changed.is_set()  # the agent beats at once
            # Nothing committed anywhere; the head keeps a pending version to re-drive.
            assert [n.store.meta(fresh).commit_version for n in nodes] == [0, 0, 0]
            with pytest.raises(e.Unavailable, match="target 201 failed"):
                await nodes[1].op.read(storage_pb2.ReadRequest(
                    chain_id=1, chain_version=1, chunk=storage_pb2.ChunkId(inode_id=9), length=10, target_id=201))
            # The chain without 201 goes on; the committed bytes were never touched.
            routing.view = view(addresses(nodes), 2, {101: S, 301: S, 201: OFF})
            await nodes[0].op.write(write(fresh, b"written", version=2))
            assert [n.store.read(fresh, 0, 99)[0] for n in (nodes[0], nodes[2])] == [b"written"] * 2
            os.unlink(chunks_dir)
            shutil.move(chunks_dir + ".moved", chunks_dir)
            assert nodes[1].store.read(chunk, 0, 99)[0] == b"kept" and nodes[1].store.verify(chunk)

    asyncio.run(body())


def test_a_resync_waits_for_updates_admitted_under_the_older_chain(tmp_path: Path) -> None:
    """An update admitted under the chain without the syncing target forwards along
    that chain; the resync must list the sender's chunks only after it ended, or a
    chunk it commits would reach neither the listing nor the syncing target."""
    chunk = ChunkId(3, 0)

    async def body() -> None:
        async with cluster(tmp_path) as (nodes, routing):
            routing.view = view(addresses(nodes), 1, {101: S, 201: S, 301: OFF})
            sender = nodes[1].op
            old_update = sender.inflight.track(1, 1)
            old_update.__enter__()
            routing.view = view(addresses(nodes), 2, {101: S, 201: S, 301: Y})
            job = asyncio.ensure_future(ResyncWorker(sender).sync_once(routing.view.chains[1], 201, 301))
            await asyncio.sleep(0.3)
            assert not job.done()
            put(nodes[1].store, chunk, b"committed by the old update", 1)  # what that update did
            old_update.__exit__(None, None, None)
            tally = await asyncio.wait_for(job, 10)
            assert tally.sent == 1 and contents(nodes[2].store) == {chunk: (1, b"committed by the old update")}

    asyncio.run(body())


def test_a_syncing_target_refuses_partial_updates(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path) as (nodes, routing):
            routing.view = view(addresses(nodes), 2, {101: S, 201: S, 301: Y})
            put(nodes[2].store, ChunkId(4, 0), b"stale bytes", 1)
            partial = storage_pb2.ForwardRequest(update=write(ChunkId(4, 0), b"XX", version=2, offset=2),
                                                 update_version=2, from_target=201, to_target=301)
            with pytest.raises(e.FailedPrecondition, match="whole-chunk updates only, not WRITE"):
                await nodes[2].op.forward(partial)
            assert contents(nodes[2].store) == {ChunkId(4, 0): (1, b"stale bytes")}

    asyncio.run(body())
