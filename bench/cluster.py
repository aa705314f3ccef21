"""EmberFS under test: a `LocalCluster` per (chunk size, event loop), and clients on it.

The cluster runs in the run's directory (a metaserver and N storage servers, each its
own process on 127.0.0.1, chains of R replicas); the metaserver's default chunk size,
which every new file takes, is the cluster's `chunk_size`. Data workloads go through
the public `Client` API only:

    seq write   write_file
    seq read    read_into(path, buffer): the whole file into one preallocated bytearray
                (the headline row), and read_file (bytes, chunks joined) beside it
    rand read   read_range(path, offset, length) per read, and `pread` on one open
                `EmberFile` (what a data loader holding the file open does)

Transports: one `Client(address, transport=t)` per transport of the run, so a row says
whether chunk data went over the bulk channel or gRPC.

Event loops: a server's loop is fixed when its process starts, so the cluster's servers
get EMBERFS_EVENT_LOOP in their environment. Its clients run on a loop of the same kind,
a private one on a thread of this process (`ClientLoop`): each phase is one coroutine
run there, so its timing and the client CPU are that loop's. The harness's own loop only
waits meanwhile; client CPU is this process's (every thread), servers' CPU is read for
this cluster's processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from emberfs.client import Client
from emberfs.client._launch import LocalCluster

from .measure import EMBERFS, MIBS, Row, progress, timed
from .workloads import CHECKED_READS, SEQ_READ, SEQ_WRITE, rand_name, size_label, verify

__all__ = ["DATA_PATH", "ClientLoop", "EmberCluster", "loop_unavailable"]

T = TypeVar("T")
_START_TIMEOUT_S = 120.0
_LOOP_STOP_TIMEOUT_S = 10.0
DATA_PATH = "/bench/data.bin"
_EVENT_LOOP_ENV = "EMBERFS_EVENT_LOOP"  # read by emberfs.common.eventloop in every server


def loop_unavailable(name: str) -> str:
    """Why an event loop cannot be measured here ("" when it can)."""
    if name == "uvloop" and importlib.util.find_spec("uvloop") is None:
        return "uvloop not installed (pip install 'emberfs[fast]')"
    return ""


class ClientLoop:
    """An event loop of one kind ("asyncio" or "uvloop") on a daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.name == "uvloop":
            import uvloop

            self._loop = uvloop.new_event_loop()
        else:
            self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"bench-{self.name}", daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run coro on this loop; the caller's loop waits without blocking."""
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"the {self.name} client loop is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run coro on this loop from another thread (never the loop's own), blocking until done."""
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"the {self.name} client loop is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_LOOP_STOP_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()


class EmberCluster:
    """One cluster under test; `transports[0]` is the run's main transport."""

    role = EMBERFS

    def __init__(self, directory: Path, chunk_size: int, *, nodes: int, replicas: int, event_loop: str,
                 transports: tuple[str, ...], label_loop: bool, auth: bool = False,
                 etcd: Any = None, metaservers: int = 1) -> None:
        self.chunk_size = chunk_size
        self.event_loop = event_loop
        self.transports = transports
        self.system = (f"emberfs {size_label(chunk_size)} chunks" + (", tokens" if auth else "")
                       + (f", etcd x{len(etcd.members)}" if etcd is not None else "")
                       + (f", {metaservers} metaservers" if metaservers > 1 else ""))
        self._loop_label = f", {event_loop}" if label_loop else ""
        self.nodes, self.replicas = nodes, replicas
        self.unavailable = loop_unavailable(event_loop)  # rows then say why instead of a figure
        # etcd: an EtcdCluster (metaserver/etcdkv/launch.py) holding the namespace instead of LMDB
        self.cluster = LocalCluster(directory, nodes=nodes, replicas=replicas, chunk_size=chunk_size,
                                    env={_EVENT_LOOP_ENV: event_loop}, auth=auth,
                                    etcd_endpoints=etcd.endpoints if etcd is not None else (),
                                    etcd_max_txn_ops=etcd.max_txn_ops if etcd is not None else None,
                                    metaservers=metaservers)
        self.loop = ClientLoop(event_loop)
        self._clients: dict[str, Client] = {}
        self._stack = contextlib.AsyncExitStack()  # the clients (and pread handles), on self.loop
        self._handles: dict[str, Any] = {}  # transport -> an EmberFile open on DATA_PATH, for pread
        self.stripe: int | None = None

    def system_for(self, transport: str, api: str = "") -> str:
        """The row label: "emberfs 4 MiB chunks, bulk[, uvloop][, read_file]"."""
        return f"{self.system}, {transport}{self._loop_label}{f', {api}' if api else ''}"

    def client(self, transport: str | None = None) -> Client:
        """The client of a transport (the main one by default); use it on `self.loop` only."""
        fs = self._clients.get(transport or self.transports[0])
        if fs is None:
            raise RuntimeError("the cluster has not been started")
        return fs

    async def meta_clients(self) -> list[Client]:
        """One client per metaserver (each given that address alone), for the metadata
        workload spread over them; the main client when there is one metaserver. On the
        cluster's loop: call through `run`."""
        addresses = [str(m.address) for m in self.cluster.metas]
        if len(addresses) == 1:
            return [self.client()]
        admin = self.cluster.admin_token
        return [await self._stack.enter_async_context(
            Client(address) if admin is None else Client(address, token=admin, uid=0, gid=0, groups=[]))
            for address in addresses]

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run coro (which uses this cluster's clients) on the cluster's client loop."""
        return await self.loop.run(coro)

    async def start(self) -> None:
        if self.unavailable:
            progress(f"{self.system} on {self.event_loop}: not started, {self.unavailable}")
            return

        def say(text: str) -> None:
            progress(f"{self.system} ({self.event_loop}): {text}")

        address = await asyncio.to_thread(self.cluster.start, _START_TIMEOUT_S, progress=say)
        self.loop.start()

        async def connect() -> None:
            for transport in self.transports:
                # With tokens: the admin token, acting as root (uid 0), as the bench did without them.
                admin = self.cluster.admin_token
                fs = await self._stack.enter_async_context(
                    Client(address, transport=transport, token=admin) if admin is None else
                    Client(address, transport=transport, token=admin, uid=0, gid=0, groups=[]))
                self._clients[transport] = fs
                await self._warm_up(fs, transport)

        await self.run(connect())

    async def _warm_up(self, fs: Client, transport: str) -> None:
        """One chunk per node written and read back, untimed: the first phase then finds
        the routing cached and the connections to every node open, as the others do."""
        path = f"/bench/warm-up-{transport}.bin"
        payload = bytes(self.chunk_size * self.nodes)
        await fs.makedirs("/bench", exist_ok=True)
        await fs.write_file(path, payload)
        if await fs.read_into(path, bytearray(len(payload))) != len(payload):
            raise RuntimeError(f"{self.system_for(transport)}: the warm-up file came back short")

    async def aclose(self) -> None:
        try:
            if self._clients:
                await self.run(self._stack.aclose())
        finally:
            self._clients.clear()
            self.loop.stop()
            self.cluster.stop()

    def server_pids(self) -> list[int]:
        return [p.pid for _, p in self.cluster.processes() if p.running and p.pid is not None]

    def _missing(self, workload: str, depth: int, transport: str, api: str, label: str = "") -> Row | None:
        if not self.unavailable:
            return None
        return Row.missing(workload, depth, self.system_for(transport, label), EMBERFS, MIBS, self.unavailable,
                           transport=transport, event_loop=self.event_loop, api=api)

    def _row(self, workload: str, depth: int, system: str, sample: Any, detail: str, transport: str,
             api: str) -> Row:
        row = Row.of(workload, depth, system, EMBERFS, MIBS, sample, detail=detail, transport=transport,
                     event_loop=self.event_loop, api=api)
        progress(row.describe())
        return row

    async def seq_write(self, data: bytes, transport: str) -> Row:
        """write_file of the whole file; the main transport writes DATA_PATH, which every
        read phase reads, the others a file of their own beside it (same size and layout)."""
        missing = self._missing(SEQ_WRITE, 0, transport, "write_file")
        if missing is not None:
            return missing
        path = DATA_PATH if transport == self.transports[0] else f"/bench/data-{transport}.bin"
        return await self.run(self._seq_write(data, transport, path))

    async def _seq_write(self, data: bytes, transport: str, path: str) -> Row:
        fs = self.client(transport)
        await fs.makedirs("/bench", exist_ok=True)

        async def op(i: int) -> int:
            await fs.write_file(path, data)
            return len(data)

        sample = await timed(op, in_flight=1, max_ops=1, max_seconds=float("inf"), server_pids=self.server_pids)
        st = await fs.stat(path)
        if st.st_size != len(data) or st.chunk_size != self.chunk_size:
            raise RuntimeError(f"{self.system}: wrote a file of {st.st_size} bytes in {st.chunk_size}-byte chunks")
        self.stripe = st.stripe
        return self._row(SEQ_WRITE, 0, self.system_for(transport), sample,
                         f"write_file, {self.replicas} replicas, stripe {st.stripe}", transport, "write_file")

    async def seq_read(self, data: bytes, transport: str, api: str = "read_into") -> Row:
        """The whole file in one call: api "read_into" fills one preallocated bytearray
        (the headline row, labelled without the api); "read_file" returns joined bytes.
        The bytes are compared with the file after the timed part."""
        label = "" if api == "read_into" else api
        missing = self._missing(SEQ_READ, 0, transport, api, label)
        if missing is not None:
            return missing
        return await self.run(self._seq_read(data, transport, api, label))

    async def _seq_read(self, data: bytes, transport: str, api: str, label: str) -> Row:
        fs = self.client(transport)
        system = self.system_for(transport, label)
        # Allocated as the baselines' buffer is: before the clock starts.
        buffer = bytearray(len(data)) if api == "read_into" else None
        back: list[bytes] = []

        async def op(i: int) -> int:
            if buffer is not None:
                return await fs.read_into(DATA_PATH, buffer)
            back.append(await fs.read_file(DATA_PATH))
            return len(back[-1])

        sample = await timed(op, in_flight=1, max_ops=1, max_seconds=float("inf"), server_pids=self.server_pids)
        if (buffer if buffer is not None else back[0]) != data:
            raise RuntimeError(f"{system}: {api} returned different bytes than were written")
        detail = f"read_into one {size_label(len(data))} bytearray" if api == "read_into" else "read_file"
        return self._row(SEQ_READ, 0, system, sample, detail, transport, api)

    async def random_read(self, data: bytes, read_size: int, depth: int, offsets: list[int],
                          max_seconds: float, transport: str, api: str = "read_range") -> Row:
        """api "read_range": `Client.read_range(path, ...)` per read (the path's lookup
        reused for the client's attr_timeout); "pread": `EmberFile.pread` on one open
        handle (no lookup)."""
        label = "" if api == "read_range" else api
        missing = self._missing(rand_name(read_size), depth, transport, api, label)
        if missing is not None:
            return missing
        return await self.run(self._random_read(data, read_size, depth, offsets, max_seconds, transport, api,
                                                self.system_for(transport, label)))

    async def _random_read(self, data: bytes, read_size: int, depth: int, offsets: list[int],
                           max_seconds: float, transport: str, api: str, system: str) -> Row:
        fs = self.client(transport)
        name = rand_name(read_size)
        if api == "read_range":
            async def read(offset: int) -> bytes:
                return await fs.read_range(DATA_PATH, offset, read_size)
        else:
            if transport not in self._handles:
                self._handles[transport] = await self._stack.enter_async_context(fs.open(DATA_PATH, "rb"))
            handle = self._handles[transport]

            async def read(offset: int) -> bytes:
                return await handle.pread(offset, read_size)  # type: ignore[no-any-return]

        checks = [(o, await read(o)) for o in offsets[:CHECKED_READS]]
        verify(system, data, checks, read_size)

        async def op(i: int) -> int:
            return len(await read(offsets[i]))

        sample = await timed(op, in_flight=depth, max_ops=len(offsets), max_seconds=max_seconds,
                             server_pids=self.server_pids)
        return self._row(name, depth, system, sample, api, transport, api)
