"""The storage server as a real process: flags, the ready line, the node-id pin, and
a 3-node CRAQ chain on a real metaserver driven with raw RPCs (register, InitChains,
head-only writes, identical replicas, stale chain versions, request-id dedupe,
CRC32C refusal, validation, housekeeping RPCs, clean SIGTERM)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crc32c
import grpc
import pytest

from emberfs.client._launch import ServerProcess, metaserver_process
from emberfs.common.errors import ERROR_METADATA_KEY
from emberfs.common.routing import RoutingView
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, mgmt_pb2, mgmt_pb2_grpc, storage_pb2, storage_pb2_grpc

READY = "emberfs-storage listening on "
CHUNK = 64 * 1024


def storage_process(data_dir: Path, meta: str, node_id: int, *extra: str) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "emberfs.storage", "--meta", meta, "--data-dir", str(data_dir),
         "--node-id", str(node_id), "--heartbeat-interval", "0.2", *extra],
        ready_prefix=READY, log_path=data_dir.parent / f"{data_dir.name}.storage.log",
    )


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def code_of(exc: grpc.aio.AioRpcError) -> str | None:
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_METADATA_KEY:
            return value
    return None


# -- without a cluster manager ---------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--node-id", "0"], "--node-id 0"),
    (["--node-id", "1", "--targets", "100"], "--targets 100"),
    (["--node-id", "1", "--listen", "nohost"], "not HOST:PORT"),
    (["--node-id", "1", "--heartbeat-interval", "-1"], "--heartbeat-interval"),
])
def test_bad_flags_exit_1_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    argv = [sys.executable, "-m", "emberfs.storage", "--listen", "127.0.0.1:0", "--meta", "127.0.0.1:9",
            "--data-dir", str(tmp_path / "d"), *args]
    # A later --listen wins in argparse, so the bad one in args is the one used.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert message in done.stderr
    assert done.stdout == ""


def test_ready_line_while_metaserver_is_unreachable_and_clean_sigterm(tmp_path: Path) -> None:
    proc = storage_process(tmp_path / "s1", "127.0.0.1:9", 1, "--targets", "2")
    address = proc.start(timeout=20)
    try:
        assert address.startswith("127.0.0.1:") and not address.endswith(":0")
        assert (tmp_path / "s1" / "NODE_ID").read_text().strip() == "1"
        assert (tmp_path / "s1" / "target-1").is_dir() and (tmp_path / "s1" / "target-2").is_dir()

        async def stats() -> Any:
            async with grpc.aio.insecure_channel(address, options=channel_options()) as ch:
                return await storage_pb2_grpc.StorageStub(ch).TargetStats(
                    storage_pb2.TargetStatsRequest(), timeout=10)

        reply = run(stats())
        assert [t.target_id for t in reply.targets] == [101, 102]
    finally:
        assert proc.stop(grace=10) == 0


def test_data_dir_of_another_node_is_refused(tmp_path: Path) -> None:
    first = storage_process(tmp_path / "s", "127.0.0.1:9", 1)
    first.start(timeout=20)
    assert first.stop(grace=10) == 0
    argv = [sys.executable, "-m", "emberfs.storage", "--listen", "127.0.0.1:0", "--meta", "127.0.0.1:9",
            "--data-dir", str(tmp_path / "s"), "--node-id", "2"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "belongs to node '1', not node 2" in done.stderr


# -- a 3-node chain on a real metaserver --------------------------------------------


class Cluster:
    def __init__(self, meta: ServerProcess, nodes: list[ServerProcess]) -> None:
        self.meta, self.nodes = meta, nodes
        self.client_id = uuid.uuid4().hex
        self.ids = iter(range(1, 1 << 40))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("storage3")
    meta = metaserver_process(root / "meta", extra_args=["--heartbeat-interval", "0.2",
                                                         "--heartbeat-timeout", "15"])
    meta.start(timeout=20)
    nodes: list[ServerProcess] = []
    try:
        for n in (1, 2, 3):
            proc = storage_process(root / f"s{n}", meta.address or "", n)
            proc.start(timeout=20)
            nodes.append(proc)
        run(_init_chains(meta.address or ""))
        yield Cluster(meta, nodes)
    finally:
        for proc in nodes:
            code = proc.stop(grace=10)
            assert code == 0, proc.log_tail()
        meta.stop(grace=10)


async def _init_chains(meta: str) -> None:
    async with grpc.aio.insecure_channel(meta, options=channel_options()) as ch:
        mgmt = mgmt_pb2_grpc.MgmtStub(ch)
        deadline = time.monotonic() + 30
        while True:  # every node registered (and alive) before chains are planned
            reply = await mgmt.GetRouting(mgmt_pb2.GetRoutingRequest(known_version=0), timeout=5)
            if sum(n.alive for n in reply.routing.nodes) == 3:
                break
            assert time.monotonic() < deadline, f"nodes did not register: {reply.routing.nodes}"
            await asyncio.sleep(0.1)
        created = await mgmt.InitChains(mgmt_pb2.InitChainsRequest(replicas=3, chains=1), timeout=10)
        assert len(created.chains) == 1


class Raw:
    """Raw Storage/Mgmt RPCs inside one event loop."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.channels: dict[str, grpc.aio.Channel] = {}

    async def __aenter__(self) -> Raw:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ch in self.channels.values():
            await ch.close()

    def stub(self, address: str) -> storage_pb2_grpc.StorageStub:
        if address not in self.channels:
            self.channels[address] = grpc.aio.insecure_channel(address, options=channel_options())
        return storage_pb2_grpc.StorageStub(self.channels[address])

    async def view(self) -> RoutingView:
        stub = mgmt_pb2_grpc.MgmtStub(self.channels.setdefault(
            self.c.meta.address or "", grpc.aio.insecure_channel(self.c.meta.address or "")))
        reply = await stub.GetRouting(mgmt_pb2.GetRoutingRequest(known_version=0), timeout=5)
        return RoutingView(reply.routing)

    def header(self, request_id: int | None = None) -> common_pb2.RequestHeader:
        return common_pb2.RequestHeader(client_id=self.c.client_id,
                                        request_id=next(self.c.ids) if request_id is None else request_id)

    def write_req(self, chain: Any, inode: int, data: bytes, *, offset: int = 0, kind: int = storage_pb2.WRITE,
                  version: int | None = None, crc: int | None = None, request_id: int | None = None,
                  length: int = 0, chunk_size: int = CHUNK, index: int = 0) -> storage_pb2.WriteRequest:
        return storage_pb2.WriteRequest(
            header=self.header(request_id), chain_id=chain.chain_id,
            chain_version=chain.chain_version if version is None else version,
            chunk=storage_pb2.ChunkId(inode_id=inode, chunk_index=index), kind=kind, offset=offset,
            data=data, crc32c=crc32c.crc32c(data) if crc is None else crc, length=length, chunk_size=chunk_size)

    async def read_all(self, view: RoutingView, chain: Any, inode: int, index: int = 0) -> list[Any]:
        out = []
        for target in chain.serving:
            out.append(await self.stub(view.address_of(target)).Read(storage_pb2.ReadRequest(
                header=self.header(), chain_id=chain.chain_id, chain_version=chain.chain_version,
                chunk=storage_pb2.ChunkId(inode_id=inode, chunk_index=index), offset=0, length=CHUNK,
                target_id=target), timeout=10))
        return out


def _chain(view: RoutingView) -> Any:
    return view.chain(view.chain_ids()[0])


def test_write_at_head_reads_identical_at_every_replica(cluster: Cluster) -> None:
    async def body() -> None:
        async with Raw(cluster) as raw:
            view = await raw.view()
            chain = _chain(view)
            assert len(chain.serving) == 3
            head = raw.stub(view.address_of(chain.head))
            first = await head.Write(raw.write_req(chain, 7, b"a" * 1000), timeout=10)
            assert (first.commit_version, first.chunk_length) == (1, 1000)
            second = await head.Write(raw.write_req(chain, 7, b"b" * 10, offset=5000), timeout=10)
            assert (second.commit_version, second.chunk_length) == (2, 5010)
            expect = b"a" * 1000 + bytes(4000) + b"b" * 10
            for reply in await raw.read_all(view, chain, 7):
                assert reply.exists and reply.data == expect and reply.commit_version == 2
                assert reply.crc32c == crc32c.crc32c(expect)
            # TRUNCATE, REPLACE, REMOVE reach every replica too.
            await head.Write(raw.write_req(chain, 7, b"", kind=storage_pb2.TRUNCATE, length=3), timeout=10)
            assert {r.data for r in await raw.read_all(view, chain, 7)} == {b"aaa"}
            await head.Write(raw.write_req(chain, 7, b"xyz" * 3, kind=storage_pb2.REPLACE), timeout=10)
            assert {r.data for r in await raw.read_all(view, chain, 7)} == {b"xyz" * 3}
            await head.Write(raw.write_req(chain, 7, b"", kind=storage_pb2.REMOVE), timeout=10)
            assert {(r.exists, r.data) for r in await raw.read_all(view, chain, 7)} == {(False, b"")}

    run(body())


def test_non_head_write_and_stale_chain_version_are_refused(cluster: Cluster) -> None:
    async def body() -> None:
        async with Raw(cluster) as raw:
            view = await raw.view()
            chain = _chain(view)
            for target in chain.serving[1:]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await raw.stub(view.address_of(target)).Write(raw.write_req(chain, 8, b"x"), timeout=10)
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert code_of(err.value) == "NotChainHead"
            head = raw.stub(view.address_of(chain.head))
            if chain.chain_version > 1:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await head.Write(raw.write_req(chain, 8, b"x", version=chain.chain_version - 1), timeout=10)
                assert code_of(err.value) == "StaleChainVersion"
            with pytest.raises(grpc.aio.AioRpcError) as err:  # newer than anyone knows
                await head.Write(raw.write_req(chain, 8, b"x", version=chain.chain_version + 5), timeout=10)
            assert code_of(err.value) == "StaleChainVersion"
            assert {r.exists for r in await raw.read_all(view, chain, 8)} == {False}

    run(body())


def test_duplicate_request_id_is_applied_once(cluster: Cluster) -> None:
    async def body() -> None:
        async with Raw(cluster) as raw:
            view = await raw.view()
            chain = _chain(view)
            head = raw.stub(view.address_of(chain.head))
            req = raw.write_req(chain, 9, b"once", request_id=424242)
            replies = await asyncio.gather(*(head.Write(req, timeout=10) for _ in range(4)))
            again = await head.Write(req, timeout=10)
            assert {r.commit_version for r in [*replies, again]} == {1}
            assert {r.commit_version for r in await raw.read_all(view, chain, 9)} == {1}

    run(body())


def test_bad_writes_are_refused_and_nothing_is_written(cluster: Cluster) -> None:
    async def body() -> None:
        async with Raw(cluster) as raw:
            view = await raw.view()
            chain = _chain(view)
            head = raw.stub(view.address_of(chain.head))
            bad = [
                (raw.write_req(chain, 10, b"data", crc=123), grpc.StatusCode.DATA_LOSS),
                (raw.write_req(chain, 10, b"x" * 10, offset=CHUNK - 5), grpc.StatusCode.INVALID_ARGUMENT),
                (raw.write_req(chain, 10, b"x", chunk_size=CHUNK + 1), grpc.StatusCode.INVALID_ARGUMENT),
                (raw.write_req(chain, 10, b"x", chunk_size=32 * 1024), grpc.StatusCode.INVALID_ARGUMENT),
                (raw.write_req(chain, 10, b"", kind=storage_pb2.TRUNCATE, length=CHUNK + 1),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (raw.write_req(chain, 10, b"x", kind=99), grpc.StatusCode.INVALID_ARGUMENT),
            ]
            unknown = raw.write_req(chain, 10, b"x")
            unknown.chain_id = 999
            bad.append((unknown, grpc.StatusCode.NOT_FOUND))
            for req, status in bad:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await head.Write(req, timeout=10)
                assert err.value.code() == status, (req, err.value.details())
                assert err.value.details()
            assert {r.exists for r in await raw.read_all(view, chain, 10)} == {False}
            # A Forward from a target that is not the predecessor is refused too.
            tail = chain.tail
            fwd = storage_pb2.ForwardRequest(update=raw.write_req(chain, 10, b"x"), update_version=1,
                                             from_target=tail, to_target=tail)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw.stub(view.address_of(tail)).Forward(fwd, timeout=10)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            # ... and the server keeps serving.
            ok = await head.Write(raw.write_req(chain, 10, b"fine"), timeout=10)
            assert ok.commit_version == 1

    run(body())


def test_query_last_chunk_remove_chunks_and_stats(cluster: Cluster) -> None:
    async def body() -> None:
        async with Raw(cluster) as raw:
            view = await raw.view()
            chain = _chain(view)
            head = raw.stub(view.address_of(chain.head))
            for index in (0, 3):
                await head.Write(raw.write_req(chain, 11, b"z" * (index + 1), index=index), timeout=10)
            for target in chain.serving:
                stub = raw.stub(view.address_of(target))
                last = await stub.QueryLastChunk(storage_pb2.QueryLastChunkRequest(
                    chain_id=chain.chain_id, chain_version=chain.chain_version, inode_id=11,
                    target_id=target), timeout=10)
                assert (last.found, last.chunk_index, last.chunk_length) == (True, 3, 4)
                stats = await stub.TargetStats(storage_pb2.TargetStatsRequest(), timeout=10)
                assert stats.targets[0].chain_id == chain.chain_id and stats.targets[0].chunks >= 2
                removed = await stub.RemoveChunks(storage_pb2.RemoveChunksRequest(
                    chain_id=chain.chain_id, chain_version=0, inode_id=11, target_id=target), timeout=10)
                assert removed.removed == 2
                again = await stub.RemoveChunks(storage_pb2.RemoveChunksRequest(
                    chain_id=chain.chain_id, inode_id=11, target_id=target), timeout=10)
                assert again.removed == 0
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw.stub(view.address_of(chain.head)).RemoveChunks(storage_pb2.RemoveChunksRequest(
                    chain_id=chain.chain_id, inode_id=11, target_id=chain.tail), timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

    run(body())


def test_nodes_report_uptodate_once_serving(cluster: Cluster) -> None:
    async def body() -> None:
        async with Raw(cluster) as raw:
            deadline = time.monotonic() + 10
            while True:
                view = await raw.view()
                states = {t.target_id: t.local_state for t in view.proto.targets}
                if set(states.values()) == {mgmt_pb2.LOCAL_UPTODATE}:
                    break
                assert time.monotonic() < deadline, states
                await asyncio.sleep(0.1)

    run(body())
