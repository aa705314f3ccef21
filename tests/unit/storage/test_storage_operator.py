"""The CRAQ operator over real chunk stores, three in-process gRPC servers forming
one chain: a dead successor leaves the write pending and retryable and the next
write re-drives it; replicas' version rules; dirty reads resolved at the tail; a
newer chain version refreshes routing first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
from emberfs.storage.records import ChunkId, UpdateKind
from emberfs.storage.service import StorageServicer, add_storage_servicer

K64 = 64 * 1024
CID = ChunkId(77, 0)
DEAD = "127.0.0.1:1"  # nothing listens on port 1


class StaticRouting:
    """A routing source the test edits; `refresh` swaps in `next_view` if one is set."""

    def __init__(self, view: RoutingView) -> None:
        self.view = view
        self.next_view: RoutingView | None = None
        self.refreshes = 0

    async def refresh(self) -> RoutingView:
        self.refreshes += 1
        if self.next_view is not None:
            self.view, self.next_view = self.next_view, None
        return self.view


def make_view(addresses: dict[int, str], version: int = 1,
              states: dict[int, PublicState] | None = None) -> RoutingView:
    states = states or {}
    chain = Chain(1, version, tuple(ChainTarget(n * 100 + 1, states.get(n * 100 + 1, PublicState.SERVING))
                                    for n in sorted(addresses)))
    return RoutingView(mgmt_pb2.RoutingInfo(
        routing_version=version, chains=[chain_to_proto(chain)],
        nodes=[mgmt_pb2.NodeInfo(node_id=n, address=a, alive=True) for n, a in addresses.items()],
        targets=[mgmt_pb2.TargetInfo(target_id=n * 100 + 1, node_id=n, chain_id=1) for n in addresses]))


class Node:
    def __init__(self, n: int, root: Path, routing: StaticRouting, executor: ThreadPoolExecutor) -> None:
        self.store = ChunkStore(root / f"n{n}")
        self.peers = StoragePool()
        self.op = Operator(n, {n * 100 + 1: self.store}, routing, self.peers, executor)
        self.server = grpc.aio.server()
        add_storage_servicer(StorageServicer(self.op), self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"


@pytest.fixture
def chain3(tmp_path: Path) -> Callable[[], Any]:
    """An async context manager factory: (nodes, routing) with all three serving."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make() -> AsyncIterator[tuple[list[Node], StaticRouting]]:
        executor = ThreadPoolExecutor(4)
        routing = StaticRouting(RoutingView.empty())
        nodes = [Node(n, tmp_path, routing, executor) for n in (1, 2, 3)]
        routing.view = make_view({i + 1: node.address for i, node in enumerate(nodes)})
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

    return make


def write(data: bytes, *, offset: int = 0, version: int = 1, rid: int = 0,
          kind: int = storage_pb2.WRITE) -> storage_pb2.WriteRequest:
    return storage_pb2.WriteRequest(
        header=common_pb2.RequestHeader(client_id="t", request_id=rid), chain_id=1, chain_version=version,
        chunk=storage_pb2.ChunkId(inode_id=CID.inode_id, chunk_index=CID.chunk_index), kind=kind,
        offset=offset, data=data, crc32c=crc32c.crc32c(data), chunk_size=K64)


def replicas(nodes: list[Node]) -> list[tuple[int, int | None, bytes]]:
    out = []
    for node in nodes:
        meta = node.store.meta(CID)
        out.append((meta.commit_version, meta.pending_version, node.store.read(CID, 0, K64)[0]))
    return out


def test_dead_successor_leaves_the_write_pending_and_the_next_write_redrives_it(chain3: Any) -> None:
    async def body() -> None:
        async with chain3() as (nodes, routing):
            live = {i + 1: n.address for i, n in enumerate(nodes)}
            routing.view = make_view({**live, 3: DEAD})
            with pytest.raises(e.Unavailable, match="unreachable"):
                await nodes[0].op.write(write(b"first"))
            assert [(c, p) for c, p, _ in replicas(nodes)] == [(0, 1), (0, 1), (0, None)]
            routing.view = make_view(live)
            reply = await nodes[0].op.write(write(b"2nd", offset=10))
            assert reply.commit_version == 2
            expect = b"first" + bytes(5) + b"2nd"
            assert replicas(nodes) == [(2, None, expect)] * 3

    asyncio.run(body())


def test_replica_version_rules_and_predecessor_check(chain3: Any) -> None:
    async def body() -> None:
        async with chain3() as (nodes, routing):
            await nodes[0].op.write(write(b"abc"))
            tail = nodes[2].op
            base = dict(update=write(b"zzz"), from_target=201, to_target=301)
            # Already committed: answered with the current state, nothing applied.
            again = await tail.forward(storage_pb2.ForwardRequest(update_version=1, **base))
            assert again.commit_version == 1 and nodes[2].store.read(CID, 0, 3)[0] == b"abc"
            with pytest.raises(e.FailedPrecondition, match="needs a resync"):
                await tail.forward(storage_pb2.ForwardRequest(update_version=5, **base))
            with pytest.raises(e.FailedPrecondition, match="not the predecessor"):
                await tail.forward(storage_pb2.ForwardRequest(update_version=2, update=write(b"q"),
                                                              from_target=101, to_target=301))
            with pytest.raises(e.NotFound, match="not on node 3"):
                await tail.forward(storage_pb2.ForwardRequest(update_version=2, update=write(b"q"),
                                                              from_target=101, to_target=201))
            bad = write(b"abc")
            bad.crc32c ^= 1
            with pytest.raises(e.ChecksumMismatch):
                await tail.forward(storage_pb2.ForwardRequest(update_version=2, update=bad,
                                                              from_target=201, to_target=301))
            assert replicas(nodes) == [(1, None, b"abc")] * 3

    asyncio.run(body())


def test_dirty_read_at_a_middle_replica_asks_the_tail(chain3: Any) -> None:
    async def body() -> None:
        async with chain3() as (nodes, routing):
            await nodes[0].op.write(write(b"old"))
            middle, tail = nodes[1], nodes[2]
            middle.store.prepare(CID, UpdateKind.WRITE, 0, b"new", 0, 2, 1, K64)
            read = storage_pb2.ReadRequest(chain_id=1, chain_version=1, offset=0, length=10, target_id=201,
                                           chunk=storage_pb2.ChunkId(inode_id=CID.inode_id))
            reply = await middle.op.read(read)  # the tail has not got 2: serve committed
            assert (reply.data, reply.commit_version) == (b"old", 1)
            tail.store.prepare(CID, UpdateKind.WRITE, 0, b"new", 0, 2, 1, K64)
            tail.store.commit(CID, 2)
            reply = await middle.op.read(read)  # the tail committed 2: serve the pending bytes
            assert (reply.data, reply.commit_version, reply.crc32c) == (b"new", 2, crc32c.crc32c(b"new"))

    asyncio.run(body())


def test_the_tail_takes_over_a_pending_version_no_update_owns(chain3: Any) -> None:
    # A middle replica that becomes the tail may hold a version its former successor
    # committed and served: it commits it before answering, so reads never go back.
    async def body() -> None:
        async with chain3() as (nodes, routing):
            await nodes[0].op.write(write(b"old"))
            middle, tail = nodes[1], nodes[2]
            for node in (middle, tail):
                node.store.prepare(CID, UpdateKind.WRITE, 0, b"new", 0, 2, 1, K64)
            read = storage_pb2.ReadRequest(chain_id=1, chain_version=1, offset=0, length=10, target_id=201,
                                           chunk=storage_pb2.ChunkId(inode_id=CID.inode_id))
            reply = await middle.op.read(read)  # asks the tail, which takes version 2 over
            assert (reply.data, reply.commit_version) == (b"new", 2)
            assert tail.store.meta(CID).pending_version is None and tail.store.meta(CID).commit_version == 2
            read.target_id = 301
            reply = await tail.op.read(read)
            assert (reply.data, reply.commit_version) == (b"new", 2)

    asyncio.run(body())


def test_newer_chain_version_refreshes_routing_and_non_serving_reads_are_refused(chain3: Any) -> None:
    async def body() -> None:
        async with chain3() as (nodes, routing):
            live = {i + 1: n.address for i, n in enumerate(nodes)}
            routing.next_view = make_view(live, version=2, states={301: PublicState.SYNCING})
            reply = await nodes[0].op.write(write(b"v2", version=2))
            assert reply.commit_version == 1 and routing.refreshes == 1
            with pytest.raises(e.StaleChainVersion, match="at version 2"):
                await nodes[0].op.write(write(b"v1", version=1))
            read = storage_pb2.ReadRequest(chain_id=1, chain_version=2, length=10, target_id=301,
                                           chunk=storage_pb2.ChunkId(inode_id=CID.inode_id))
            with pytest.raises(e.TargetNotServing, match="SYNCING"):
                await nodes[2].op.read(read)
            read.target_id = 0
            read.chain_version = 2
            assert (await nodes[1].op.read(read)).data == b"v2"  # the middle is now the tail

    asyncio.run(body())


def test_duplicate_in_flight_request_waits_for_the_first(chain3: Any) -> None:
    async def body() -> None:
        async with chain3() as (nodes, routing):
            req = write(b"dup", rid=99)
            replies = await asyncio.gather(*(nodes[0].op.write(req) for _ in range(5)))
            assert {r.commit_version for r in replies} == {1}
            assert replicas(nodes) == [(1, None, b"dup")] * 3
            assert len(nodes[0].op.targets.locks) == 0

    asyncio.run(body())


def test_a_batch_answers_each_read_as_a_read_of_its_own(chain3: Any) -> None:
    # read_batch (READV/READVM pieces) against op.read of each piece alone, at the middle
    # replica: clean chunks, a chunk dirty at the middle whose version the tail has not
    # committed (the old bytes) and one it has (the pending bytes), a missing chunk, a
    # range past the largest chunk (that piece alone fails); then a refused batch.
    async def body() -> None:
        async with chain3() as (nodes, routing):
            clean, behind, ahead = CID, ChunkId(CID.inode_id, 1), ChunkId(CID.inode_id, 2)
            for chunk, data in ((clean, b"clean bytes"), (behind, b"old"), (ahead, b"old")):
                request = write(data)
                request.chunk.chunk_index = chunk.chunk_index
                await nodes[0].op.write(request)
            middle, tail = nodes[1], nodes[2]
            for chunk in (behind, ahead):
                middle.store.prepare(chunk, UpdateKind.WRITE, 0, b"new", 0, 2, 1, K64)
            tail.store.prepare(ahead, UpdateKind.WRITE, 0, b"new", 0, 2, 1, K64)
            tail.store.commit(ahead, 2)
            reads = [(clean, 0, K64), (clean, 6, 3), (behind, 0, 10), (ahead, 0, 10), (ChunkId(5, 5), 0, 4),
                     (clean, 2**31, 1), (ahead, 1, 2)]
            got = await middle.op.read_batch(1, 1, 201, reads)
            for (chunk, offset, length), result in zip(reads, got, strict=True):
                read = storage_pb2.ReadRequest(chain_id=1, chain_version=1, offset=offset, length=length,
                                               target_id=201, chunk=storage_pb2.ChunkId(
                                                   inode_id=chunk.inode_id, chunk_index=chunk.chunk_index))
                try:
                    reply = await middle.op.read(read)
                except e.EmberError as exc:
                    assert type(result) is type(exc)
                    continue
                assert not isinstance(result, BaseException)
                data, crc, meta = result
                assert (data, crc, meta.commit_version, meta.length, meta.exists) == (
                    reply.data, reply.crc32c, reply.commit_version, reply.chunk_length, reply.exists)
            assert [r[0] for r in got if not isinstance(r, BaseException)] == [
                b"clean bytes", b"byt", b"old", b"new", b"", b"ew"]
            with pytest.raises(e.StaleChainVersion):
                await middle.op.read_batch(1, 0, 201, reads)
            routing.view = make_view({i + 1: n.address for i, n in enumerate(nodes)}, states={201: PublicState.SYNCING})
            with pytest.raises(e.TargetNotServing):
                await middle.op.read_batch(1, 1, 201, reads)

    asyncio.run(body())
