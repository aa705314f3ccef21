"""Fixtures that run real EmberFS processes on 127.0.0.1 (no mocks).

    meta_server   a metaserver of its own for one test (kill -9, restart: `.kill()`,
                  `.restart()` on the same data dir and port)
    shared_meta   one metaserver per test module, for tests that only need a namespace
    workdir       a fresh directory on shared_meta for one test, made by root
    arun          run a coroutine to completion under a time bound
    cluster3      metaserver + 3 storage servers, 3-replica chains, per test module
    own_cluster3  the same for one test that changes chain states (short heartbeats)
    raw_cluster   RawCluster: raw Mgmt/Storage RPCs to address one replica or version
    read_replicas an async function: what every replica of a file's chains holds, chunk
                  by chunk (a raw Read naming each target, its CRC checked)
    local_cluster_cli  `emberfs local-cluster` as a subprocess: `.start(*flags)` gives the
                  metaserver address, `.stop()` its stderr after SIGINT; stopped at teardown

Every process is stopped at teardown (SIGTERM, SIGKILL after a bound), whether the
test passed or not; a server that fails to start shows the tail of its log.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from emberfs.client import Client
from emberfs.client._launch import ServerProcess, metaserver_process

T = TypeVar("T")

START_TIMEOUT_S = 20.0
STOP_GRACE_S = 10.0


def _started(data_dir: Path) -> Iterator[ServerProcess]:
    proc = metaserver_process(data_dir)
    proc.start(timeout=START_TIMEOUT_S)
    try:
        yield proc
    finally:
        code = proc.stop(grace=STOP_GRACE_S)
        # A clean SIGTERM exit is part of the server's contract; kill -9 tests restart
        # it, so by teardown it should be a process we can stop cleanly.
        if code not in (0, None):
            print(f"metaserver exited with {code}; log tail:\n{proc.log_tail()}")


@pytest.fixture
def meta_server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from _started(tmp_path / "meta")


@pytest.fixture(scope="module")
def shared_meta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _started(tmp_path_factory.mktemp("shared") / "meta")


def run_async(coro: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture
def arun() -> Callable[..., Any]:
    return run_async


async def _read_replicas(meta: str, stat: Any) -> dict[int, dict[int, Any]]:
    """{chunk index: {target id: ReadResponse}} for every chunk of the file `stat`
    describes, read from every target of its chain on its own, CRC-checked."""
    import crc32c
    import grpc

    from emberfs.client._plan import effective_stripe
    from emberfs.common.layout import chain_for_chunk
    from emberfs.common.routing import RoutingView
    from emberfs.common.rpc import channel_options
    from emberfs.proto import common_pb2, storage_pb2

    async with Client(meta, uid=0, gid=0, groups=[]) as fs:
        view = RoutingView(await fs.routing())
    header = common_pb2.RequestHeader(client_id="replica-check", uid=0, gid=0)
    held: dict[int, dict[int, Any]] = {}
    channels: dict[str, grpc.aio.Channel] = {}
    try:
        for index in range(-(-stat.st_size // stat.chunk_size)):
            ids = list(stat.chain_ids)
            chain = view.chain(chain_for_chunk(ids, effective_stripe(stat.stripe, ids), index))
            for target in chain.targets:
                address = view.address_of(target.target_id)
                channel = channels.setdefault(address, grpc.aio.insecure_channel(address, options=channel_options()))
                reply = await channel.unary_unary(
                    "/emberfs.Storage/Read", request_serializer=storage_pb2.ReadRequest.SerializeToString,
                    response_deserializer=storage_pb2.ReadResponse.FromString,
                )(storage_pb2.ReadRequest(
                    header=header, chain_id=chain.chain_id, chain_version=chain.chain_version,
                    chunk=storage_pb2.ChunkId(inode_id=stat.st_ino, chunk_index=index),
                    length=stat.chunk_size, target_id=target.target_id,
                ), timeout=10)
                assert crc32c.crc32c(reply.data) == reply.crc32c, f"chunk {index} on target {target.target_id}"
                held.setdefault(index, {})[target.target_id] = reply
    finally:
        for channel in channels.values():
            await channel.close()
    return held


@pytest.fixture
def read_replicas() -> Callable[[str, Any], Awaitable[dict[int, dict[int, Any]]]]:
    return _read_replicas


@pytest.fixture
def workdir(shared_meta: ServerProcess) -> str:
    """A fresh world-writable (sticky, like /tmp) directory on the shared server."""
    path = f"/t-{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        async with Client(shared_meta.address, uid=0, gid=0, groups=[]) as root:
            await root.mkdir(path)
            await root.chmod(path, 0o1777)

    run_async(make())
    return path


# --- a real storage cluster -------------------------------------------------------

CLUSTER_CHUNK_SIZE = 64 * 1024  # the smallest the metaserver accepts: many chunks, small files


def _cluster(data_dir: Path, **options: Any) -> Iterator[Any]:
    from emberfs.client._launch import LocalCluster

    cluster = LocalCluster(data_dir, **options)
    cluster.start(timeout=60.0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Metaserver + 3 storage servers, one target each, chains of 3 replicas, 64 KiB chunks;
    shared by a test module (tests must leave every server running)."""
    # A long heartbeat timeout: a test that freezes a server for a second or two must
    # not make the manager take its target out of the shared cluster's chains.
    yield from _cluster(
        tmp_path_factory.mktemp("cluster3"),
        nodes=3,
        replicas=3,
        chunk_size=CLUSTER_CHUNK_SIZE,
        heartbeat_timeout=15.0,
    )


@pytest.fixture
def own_cluster3(tmp_path: Path) -> Iterator[Any]:
    """Like cluster3 but for one test that changes chain states: short heartbeats."""
    yield from _cluster(
        tmp_path / "cluster",
        nodes=3,
        replicas=3,
        chunk_size=CLUSTER_CHUNK_SIZE,
        heartbeat_interval=0.2,
        heartbeat_timeout=1.0,
    )


class RawCluster:
    """Raw gRPC access to a running cluster's Mgmt and Storage services, so a test can
    address one replica, one chain version or one request id exactly. Create it inside
    the event loop that uses it (`async with RawCluster(address) as raw`)."""

    def __init__(self, meta_address: str) -> None:
        self.meta_address = meta_address
        self.client_id = uuid.uuid4().hex
        self._request_ids = iter(range(1, 1 << 62))
        self._channels: dict[str, Any] = {}

    async def __aenter__(self) -> RawCluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for channel in self._channels.values():
            await channel.close()

    def _channel(self, address: str) -> Any:
        import grpc

        from emberfs.common.rpc import channel_options

        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(address, options=channel_options())
        return self._channels[address]

    def header(self, request_id: int | None = None) -> Any:
        from emberfs.proto import common_pb2

        rid = next(self._request_ids) if request_id is None else request_id
        return common_pb2.RequestHeader(client_id=self.client_id, request_id=rid, uid=0, gid=0)

    def mgmt(self) -> Any:
        from emberfs.proto import mgmt_pb2_grpc

        return mgmt_pb2_grpc.MgmtStub(self._channel(self.meta_address))

    def storage_at(self, address: str) -> Any:
        from emberfs.proto import storage_pb2_grpc

        return storage_pb2_grpc.StorageStub(self._channel(address))

    async def routing(self) -> Any:
        from emberfs.common.routing import RoutingView
        from emberfs.proto import mgmt_pb2

        reply = await self.mgmt().GetRouting(
            mgmt_pb2.GetRoutingRequest(header=self.header(), known_version=0), timeout=10
        )
        return RoutingView(reply.routing)

    async def storage_of(self, target_id: int) -> Any:
        view = await self.routing()
        return self.storage_at(view.address_of(target_id))


@pytest.fixture
def raw_cluster() -> type[RawCluster]:
    return RawCluster


class LocalClusterCli:
    """`emberfs local-cluster --data-dir DIR --nodes 1 --replicas 1 FLAGS` in a subprocess."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[str] | None = None

    def start(self, *flags: str) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emberfs.client.cli", "local-cluster", "--data-dir", str(self.data_dir),
             "--nodes", "1", "--replicas", "1", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("emberfs local-cluster ready: meta at "), line
        return line.split(" at ", 1)[1].strip()

    def stop(self) -> str:
        """SIGINT (every server stops), then the exit status must be 0: its stderr."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return err

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:  # a failed test: let it stop its servers
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def local_cluster_cli(tmp_path: Path) -> Iterator[LocalClusterCli]:
    cli = LocalClusterCli(tmp_path / "lc")
    try:
        yield cli
    finally:
        cli.close()
