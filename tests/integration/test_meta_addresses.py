"""Several metaserver addresses, with real processes on 127.0.0.1.

Two LMDB metaservers do not share a namespace (the etcd engine's failover is tested with
the etcd suite), so each test pairs one real metaserver (LIVE) with an address that is
away: DEAD (a port nothing listens on, or a metaserver killed -9) or STANDBY, a tiny real
gRPC server made here that answers every Mgmt call as a standby metaserver does (status
UNAVAILABLE, `emberfs-error: NotPrimary`): a stand-in for a peer, for the rotation rule,
not a mock of our own service. Every namespace call, every data read and write, a storage
server's registration and heartbeats, and the CLI must work through the list.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from emberfs.client import Client
from emberfs.client._launch import ServerProcess, metaserver_process, storage_process
from emberfs.common.errors import ERROR_METADATA_KEY
from emberfs.proto import mgmt_pb2

from .conftest import run_async

pytestmark = pytest.mark.timeout(120)

CS = 64 * 1024
FAST_META = ["--heartbeat-interval", "0.2", "--heartbeat-timeout", "3", "--default-chunk-size", str(CS)]


def _dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


class StandbyPeer:
    """A real gRPC server on its own loop thread that refuses every Mgmt call with
    NotPrimary, naming `primary`, and counts them by method."""

    def __init__(self, primary: str) -> None:
        self.primary = primary
        self.calls: dict[str, int] = {}
        self.address = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="standby-peer", daemon=True)
        self._server: grpc.aio.Server | None = None

    def _handler(self) -> grpc.GenericRpcHandler:
        peer = self

        def refusal(method: str) -> grpc.RpcMethodHandler:
            async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                peer.calls[method] = peer.calls.get(method, 0) + 1
                context.set_trailing_metadata(((ERROR_METADATA_KEY, "NotPrimary"),))
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"not the cluster manager primary; the primary is at {peer.primary}")
                return b""

            return grpc.unary_unary_rpc_method_handler(refuse)

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
                service, _, method = details.method.lstrip("/").partition("/")
                # Namespace calls are not this double's business (UNIMPLEMENTED).
                return refusal(method) if service == "emberfs.Mgmt" else None

        return Handler()

    def __enter__(self) -> StandbyPeer:
        self._thread.start()

        async def start() -> None:
            self._server = grpc.aio.server()
            self._server.add_generic_rpc_handlers((self._handler(),))
            self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
            await self._server.start()

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(None), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = metaserver_process(tmp_path / "meta", extra_args=FAST_META)
    proc.start(timeout=20)
    try:
        yield proc
    finally:
        proc.stop(grace=10)


def _storage(tmp_path: Path, meta: str) -> ServerProcess:
    proc = storage_process(tmp_path / "node-1", meta=meta, node_id=1, heartbeat_interval=0.2)
    proc.start(timeout=20)
    return proc


def _client_starting_at(addresses: str, first: str) -> Client:
    """A Client whose namespace calls start at `first` (the start comes from the random
    client id, so clients are made until one does)."""
    for _ in range(200):
        client = Client(addresses, timeout=20)
        if client._meta.answering[0] == first:
            return client
    raise AssertionError(f"no client started at {first}")


async def _chains_serving(fs: Client, timeout: float = 20.0) -> None:
    """Once the storage node is registered: one chain of one replica, serving."""
    end = time.monotonic() + timeout
    while not any(n.alive for n in (await fs.routing()).nodes) and time.monotonic() < end:
        await asyncio.sleep(0.1)
    await fs.init_chains(replicas=1)
    while time.monotonic() < end:
        routing = await fs.routing()
        if routing.chains and all(t.public_state == mgmt_pb2.SERVING for c in routing.chains for t in c.targets):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"chains not serving: {routing}")


async def _every_namespace_call_and_data(fs: Client) -> None:
    data = bytes(range(256)) * (3 * CS // 256 + 7)  # a few chunks and a tail
    await fs.mkdir("/d")
    await fs.write_file("/d/f", data)
    assert await fs.read_file("/d/f") == data
    assert (await fs.stat("/d/f")).st_size == len(data)
    await fs.rename("/d/f", "/d/g")
    await fs.symlink("/d/g", "/d/s")
    assert await fs.readlink("/d/s") == "/d/g"
    await fs.link("/d/g", "/d/h")
    await fs.chmod("/d/g", 0o600)
    await fs.truncate("/d/g", CS + 5)
    assert await fs.read_file("/d/h") == data[: CS + 5]
    await fs.touch("/d/t")
    assert sorted(await fs.listdir("/d")) == ["g", "h", "s", "t"]
    assert (await fs.statfs()).files == 2  # g and h are one inode
    for name in ("g", "h", "s", "t"):
        await fs.remove(f"/d/{name}")
    await fs.rmdir("/d")
    assert await fs.listdir("/") == []


def test_dead_first_client_and_storage_server_work(tmp_path: Path, live: ServerProcess) -> None:
    dead = _dead_address()
    addresses = f"{dead},{live.address}"
    storage = _storage(tmp_path, addresses)
    try:
        async def body() -> None:
            fs = _client_starting_at(addresses, dead)
            async with fs:
                # Manager calls start at the first address too: routing and
                # init-chains reach the live manager through the dead one.
                await _chains_serving(fs)
                await _every_namespace_call_and_data(fs)
                assert fs._meta.answering == (live.address, live.address)

        run_async(body(), timeout=90)
        storage_log = storage.log_path.read_text()
        assert f"registered node 1 at {storage.address} with the manager at {live.address}" in storage_log
        assert f"cluster manager at {live.address} (was {dead})" in storage_log
        assert storage.running
    finally:
        storage.stop(grace=10)


def test_a_standby_first_hands_manager_calls_to_the_primary(tmp_path: Path, live: ServerProcess) -> None:
    assert live.address is not None
    with StandbyPeer(primary=live.address) as standby:
        addresses = f"{standby.address},{live.address}"
        storage = _storage(tmp_path, addresses)
        try:
            async def body() -> None:
                async with Client(live.address, timeout=20) as fs:  # namespace: the standby has none
                    await _chains_serving(fs)  # the storage server registered through the standby
                    await fs.write_file("/x", b"through the standby")
                    assert await fs.read_file("/x") == b"through the standby"

            run_async(body(), timeout=90)
            assert standby.calls.get("RegisterNode", 0) >= 1
            beats = standby.calls.get("Heartbeat", 0)
            time.sleep(1.0)  # five beats: all to the primary now
            assert standby.calls.get("Heartbeat", 0) == beats
            assert f"cluster manager at {live.address} (was {standby.address})" in storage.log_path.read_text()

            # The CLI's manager calls take the same way.
            r = _emberfs(addresses, "cluster", "--json")
            assert r.returncode == 0, r.stderr
            assert standby.calls.get("GetRouting", 0) >= 1
            r = _emberfs(addresses, "admin", "init-chains", "--replicas", "1")
            assert r.returncode == 0, r.stderr
            # Given the standby alone, the CLI says what answered, not "cannot reach".
            r = _emberfs(standby.address, "cluster")
            assert r.returncode != 0 and "not the cluster manager primary" in r.stderr, r.stderr
            assert "cannot reach" not in r.stderr
        finally:
            storage.stop(grace=10)


def _emberfs(meta: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emberfs.client.cli", "--meta", meta, "--timeout", "10", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_cli_with_a_dead_address_works_and_health_shows_each(live: ServerProcess) -> None:
    dead = _dead_address()
    addresses = f"{dead},{live.address}"
    for args in (["mkdir", "/cli"], ["ls", "/"], ["df"], ["cluster"]):
        r = _emberfs(addresses, *args)
        assert r.returncode == 0, (args, r.stderr)
    r = _emberfs(addresses, "--timeout", "2", "health")
    assert r.returncode == 1
    assert r.stdout == f"{live.address}: SERVING\n"
    assert r.stderr.startswith(f"emberfs: health: {dead}: UNAVAILABLE")
    r = _emberfs(addresses, "health", live.address)
    assert (r.returncode, r.stdout) == (0, f"{live.address}: SERVING\n")
    r = _emberfs(f"{dead},{_dead_address()}", "--timeout", "2", "ls", "/")
    assert r.returncode == 2 and "cannot reach any of the metaservers at" in r.stderr


def test_client_keeps_working_after_the_first_metaserver_is_killed(live: ServerProcess) -> None:
    assert live.address is not None
    addresses = f"{live.address},{_dead_address()}"

    async def body() -> Any:
        async with Client(addresses, timeout=20) as fs:
            await fs.mkdir("/before")
            live.kill()
            # Every address is away now: the call goes round them, backing off, with
            # the same request id, until the metaserver is back on its port.
            pending = asyncio.ensure_future(fs.mkdir("/during"))
            await asyncio.sleep(1.0)
            assert not pending.done()
            await asyncio.to_thread(live.restart, 20)
            await pending
            await fs.touch("/after")
            return sorted(await fs.listdir("/")), fs._meta.calls["Mkdir"]

    names, mkdirs = run_async(body(), timeout=60)
    assert names == ["after", "before", "during"]
    assert mkdirs > 3  # the dead address was tried too, round after round
