"""The cluster manager in a real metaserver process, driven by raw Mgmt RPCs from
stand-in storage nodes (registered addresses where nothing serves: the storage
server is not needed to test what the manager decides and keeps).

Each test starts its own metaserver with short heartbeat and GC intervals and stops
it in a `finally`; every wait is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from emberfs.client._launch import ServerProcess, metaserver_process
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, meta_pb2, meta_pb2_grpc, mgmt_pb2, mgmt_pb2_grpc

FLAGS = ["--heartbeat-interval", "0.1", "--heartbeat-timeout", "1.0", "--gc-interval", "0.1",
         "--log-level", "DEBUG"]


@contextlib.contextmanager
def _metaserver(data_dir: Path) -> Iterator[ServerProcess]:
    proc = metaserver_process(data_dir, extra_args=FLAGS)
    proc.start(timeout=20)
    try:
        yield proc
    finally:
        proc.stop(grace=10)


@contextlib.contextmanager
def _dead_ports(count: int) -> Iterator[list[int]]:
    """Ports bound but never listening: a call to them is refused at once."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        yield [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class FakeNodes:
    """Stand-in storage nodes that register and heartbeat by raw RPC over one channel,
    which reconnects by itself when the metaserver restarts on the same address."""

    def __init__(self, proc: ServerProcess, ports: list[int], targets_per_node: int = 1) -> None:
        self.proc = proc
        self.ports = ports
        self.k = targets_per_node
        self.silent: set[int] = set()
        self._channel: grpc.aio.Channel | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def stub(self) -> mgmt_pb2_grpc.MgmtStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.proc.address, options=channel_options())
        return mgmt_pb2_grpc.MgmtStub(self._channel)

    async def close(self) -> None:
        # Only once the heartbeat task is gone: closing a channel cancels its calls.
        if self._channel is not None:
            await self._channel.close()
        self._channel = None

    def reports(self, node_id: int) -> list[mgmt_pb2.TargetReport]:
        return [mgmt_pb2.TargetReport(target_id=node_id * 100 + i, local_state=mgmt_pb2.LOCAL_ONLINE,
                                      capacity_bytes=1 << 30) for i in range(1, self.k + 1)]

    async def register_all(self) -> None:
        for node_id, port in enumerate(self.ports, start=1):
            await self.stub.RegisterNode(mgmt_pb2.RegisterNodeRequest(
                node_id=node_id, address=f"127.0.0.1:{port}", targets=self.reports(node_id)), timeout=5)

    async def _beat(self) -> None:
        while True:
            for node_id in range(1, len(self.ports) + 1):
                if node_id in self.silent:
                    continue
                # The metaserver may be restarting, or the channel being replaced.
                with contextlib.suppress(grpc.aio.AioRpcError):  # the metaserver may be restarting
                    await self.stub.Heartbeat(mgmt_pb2.HeartbeatRequest(
                        node_id=node_id, targets=self.reports(node_id)), timeout=2)
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> FakeNodes:
        await self.register_all()
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.close()

    async def routing(self) -> mgmt_pb2.RoutingInfo:
        request = mgmt_pb2.GetRoutingRequest()
        return (await self.stub.GetRouting(request, timeout=5, wait_for_ready=True)).routing


def _states(chain: mgmt_pb2.ChainInfo) -> dict[int, int]:
    return {t.target_id: t.public_state for t in chain.targets}


def test_chains_liveness_and_restart(tmp_path: Path, arun: Any) -> None:
    async def body(proc: ServerProcess, ports: list[int]) -> None:
        async with FakeNodes(proc, ports) as nodes:
            made = await nodes.stub.InitChains(mgmt_pb2.InitChainsRequest(replicas=3), timeout=5)
            assert made.created and len(made.chains) == 1
            chain = made.chains[0]
            assert sorted(t.target_id // 100 for t in chain.targets) == [1, 2, 3]
            assert set(_states(chain).values()) == {mgmt_pb2.SERVING}
            again = await nodes.stub.InitChains(mgmt_pb2.InitChainsRequest(replicas=3), timeout=5)
            assert not again.created and list(again.chains) == list(made.chains)

            before = await nodes.routing()
            assert all(n.alive for n in before.nodes)
            nodes.silent.add(3)
            for _ in range(60):  # the timeout is 1 s: well within 6 s
                after = await nodes.routing()
                if _states(after.chains[0])[301] != mgmt_pb2.SERVING:
                    break
                await asyncio.sleep(0.1)
            assert _states(after.chains[0])[301] == mgmt_pb2.OFFLINE
            assert _states(after.chains[0])[101] == _states(after.chains[0])[201] == mgmt_pb2.SERVING
            assert after.routing_version > before.routing_version
            assert after.chains[0].chain_version > chain.chain_version
            assert [n.alive for n in after.nodes] == [True, True, False]

            proc.kill()  # kill -9: nothing is flushed by shutdown code; the channel reconnects
            await asyncio.to_thread(proc.restart, 20)
            restarted = await nodes.routing()
            assert restarted.routing_version >= after.routing_version
            assert list(restarted.chains) == list(after.chains)  # ids, versions, states survive
            # Node 3 was dead before the restart: the grace period does not revive it.
            assert _states(restarted.chains[0])[301] == mgmt_pb2.OFFLINE
            unchanged = await nodes.stub.GetRouting(
                mgmt_pb2.GetRoutingRequest(known_version=restarted.routing_version), timeout=5)
            assert unchanged.unchanged

            nodes.silent.clear()  # node 3 returns: it syncs before it serves
            for _ in range(60):
                back = await nodes.routing()
                if _states(back.chains[0])[301] != mgmt_pb2.OFFLINE:
                    break
                await asyncio.sleep(0.1)
            assert _states(back.chains[0])[301] == mgmt_pb2.SYNCING

    with _dead_ports(3) as ports, _metaserver(tmp_path / "meta") as proc:
        arun(body(proc, ports), timeout=60)


def test_new_files_get_table_chains_and_gc_retries_until_storage_answers(tmp_path: Path, arun: Any) -> None:
    header = common_pb2.RequestHeader(client_id="mgmt-test", uid=0, gid=0)

    async def create(meta: Any, path: str, request_id: int) -> meta_pb2.Inode:
        request = meta_pb2.CreateRequest(path=path, mode=0o644, exclusive=True)
        request.header.CopyFrom(header)
        request.header.request_id = request_id
        return (await meta.Create(request, timeout=5)).inode

    async def body(proc: ServerProcess, ports: list[int]) -> None:
        async with FakeNodes(proc, ports, targets_per_node=2) as nodes, \
                grpc.aio.insecure_channel(proc.address) as channel:
            meta = meta_pb2_grpc.MetaStub(channel)
            early = await create(meta, "/before-chains", 1)
            assert list(early.layout.chain_ids) == []
            made = await nodes.stub.InitChains(mgmt_pb2.InitChainsRequest(replicas=3), timeout=5)
            table = {c.chain_id for c in made.chains}
            assert table == {1, 2}
            firsts = set()
            for i in range(4):
                inode = await create(meta, f"/f{i}", 10 + i)
                ids = list(inode.layout.chain_ids)
                # the default stripe (4) is capped at the 2 chains there are
                assert set(ids) <= table and len(ids) == inode.layout.stripe == len(table)
                firsts.add(ids[0])
            assert firsts == table  # consecutive files start on different chains

            doomed = await create(meta, "/doomed", 20)
            request = meta_pb2.RemoveRequest(path="/doomed", kind=meta_pb2.NON_DIRECTORY)
            request.header.CopyFrom(header)
            request.header.request_id = 21
            await meta.Remove(request, timeout=5)
            marker = f"gc inode {doomed.inode_id}: RemoveChunks on target"
            for _ in range(100):  # GC every 0.1 s: several rounds within a few seconds
                if proc.log_tail(400).count(marker) >= 12:  # 6 targets, at least two rounds
                    break
                await asyncio.sleep(0.1)
            assert proc.log_tail(400).count(marker) >= 12, proc.log_tail()
            assert f"gc inode {doomed.inode_id}: chunks removed" not in proc.log_tail(400)

            # The record is durable: after kill -9 the restarted collector retries it.
            proc.kill()
            seen = proc.log_path.read_text().count(marker)
            await asyncio.to_thread(proc.restart, 20)
            for _ in range(100):
                if proc.log_path.read_text().count(marker) > seen:
                    break
                await asyncio.sleep(0.1)
            assert proc.log_path.read_text().count(marker) > seen

    with _dead_ports(3) as ports, _metaserver(tmp_path / "meta") as proc:
        arun(body(proc, ports), timeout=60)
