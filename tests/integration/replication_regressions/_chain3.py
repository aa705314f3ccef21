"""The harness of the issue-15 regression tests beside it (all but defect 1): three
real ChunkStores, each with its CRAQ Operator served by a real grpc.aio server on
127.0.0.1 in this process, forming chain 1 (head, middle, tail), routed by a
StaticRouting the test edits: a chain change is a new view with a higher chain
version, as the manager would publish. Timing is made deterministic by holding one
store call of one replica (`Hold`: the call waits on a threading.Event at its start,
as a slow disk would, or right after it returned), by stopping a replica's server, or
by restarting an Operator over the same store directory. The tests talk to the
servers with raw Storage RPCs, as a client would. Every held call goes on by itself
after HOLD_LIMIT_S, and every test is bounded in time (`run`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import crc32c
import grpc

from emberfs.common.chainstate import Chain, ChainTarget, PublicState, chain_to_proto
from emberfs.common.errors import from_rpc_error
from emberfs.common.routing import RoutingView
from emberfs.common.rpc import channel_options
from emberfs.common.storagepool import StoragePool
from emberfs.proto import common_pb2, mgmt_pb2, storage_pb2, storage_pb2_grpc
from emberfs.storage.chunkstore import ChunkStore
from emberfs.storage.craq import Operator
from emberfs.storage.records import ChunkId
from emberfs.storage.service import StorageServicer, add_storage_servicer

T = TypeVar("T")

K64 = 64 * 1024
INODE = 4242
CHAIN_ID = 1
HOLD_LIMIT_S = 20.0  # a held store call goes on by itself after this: nothing can hang on it
TEST_LIMIT_S = 90.0
WRITE_TIMEOUT_S = 10.0


def run(body: Callable[[], Awaitable[T]], limit: float = TEST_LIMIT_S) -> T:
    return asyncio.run(asyncio.wait_for(body(), limit))


# --- the in-process chain ----------------------------------------------------------


class StaticRouting:
    """A routing source the test sets; a refresh answers the current view."""

    def __init__(self) -> None:
        self.view = RoutingView.empty()

    async def refresh(self) -> RoutingView:
        return self.view


class Replica:
    """One storage node in this process: target n*100+1 (a ChunkStore), its Operator and
    a grpc.aio server on 127.0.0.1. `restart()` is a crash-free restart: a new Operator
    (empty memory) over the same store directory, on a new port."""

    def __init__(self, n: int, root: Path, routing: StaticRouting) -> None:
        self.n, self.target, self.root, self.routing = n, n * 100 + 1, root / f"node-{n}", routing
        self.store: ChunkStore | None = None
        self.address = ""
        self._server: grpc.aio.Server | None = None
        self._peers: StoragePool | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self.store = ChunkStore(self.root)
        self._executor = ThreadPoolExecutor(4, thread_name_prefix=f"node{self.n}-io")
        self._peers = StoragePool()
        operator = Operator(self.n, {self.target: self.store}, self.routing, self._peers, self._executor)
        self._server = grpc.aio.server()
        add_storage_servicer(StorageServicer(operator), self._server)
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        await self._server.start()

    async def stop_serving(self) -> None:
        """Stop serving at once: calls in flight are cancelled, the store stays open."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(0)

    async def stop(self) -> None:
        """Stop serving, wait for the I/O threads still working on the store, close it."""
        await self.stop_serving()
        if self.store is None:
            return
        assert self._peers is not None and self._executor is not None
        await self._peers.close()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        self.store.close()
        self.store = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def held(self, index: int = 0) -> tuple[int, bytes]:
        """(commit version, committed bytes) of chunk `index` of INODE, from the store."""
        assert self.store is not None
        data, meta = self.store.read(ChunkId(INODE, index), 0, K64)
        return meta.commit_version, data


def chain_view(replicas: list[Replica], chain_version: int, *, states: dict[int, PublicState] | None = None,
               routing_version: int | None = None) -> RoutingView:
    """Chain 1 over `replicas` in the order given (SERVING ones first: head..tail), every
    target SERVING unless `states` says otherwise."""
    states = states or {}
    chain = Chain(CHAIN_ID, chain_version, tuple(ChainTarget(r.target, states.get(r.target, PublicState.SERVING))
                                                 for r in replicas))
    return RoutingView(mgmt_pb2.RoutingInfo(
        routing_version=routing_version or chain_version, chains=[chain_to_proto(chain)],
        nodes=[mgmt_pb2.NodeInfo(node_id=r.n, address=r.address, alive=True) for r in replicas],
        targets=[mgmt_pb2.TargetInfo(target_id=r.target, node_id=r.n, chain_id=CHAIN_ID) for r in replicas]))


class HeldCall:
    """One store call held mid-operation: `entered` is set once a call is held,
    `finished` once the held call has returned or raised; the held thread waits for
    `release()` at most HOLD_LIMIT_S. `remove()` releases it and undoes the patch."""

    def __init__(self) -> None:
        self.entered, self.finished, self._released = threading.Event(), threading.Event(), threading.Event()

    def hold_here(self) -> None:
        """Called on the held thread."""
        self.entered.set()
        self._released.wait(HOLD_LIMIT_S)

    def release(self) -> None:
        self._released.set()

    def remove(self) -> None:
        self.release()

    async def wait_entered(self, timeout: float = 10.0) -> None:
        await _wait_event(self.entered, timeout, f"no store call was held within {timeout:g} s")

    async def wait_finished(self, timeout: float = HOLD_LIMIT_S + 5.0) -> None:
        await _wait_event(self.finished, timeout, f"the held store call did not end within {timeout:g} s")


class Hold(HeldCall):
    """Hold the first call of one store method of one replica: at its start
    (`at="before"`: nothing done yet, as a slow disk would) or right after it returned
    (`at="after"`: done on disk, its caller not yet told). Later calls run freely."""

    def __init__(self, store: ChunkStore, method: str, *, at: str = "before") -> None:
        super().__init__()
        assert at in ("before", "after")
        self.store, self.method = store, method
        taken = threading.Lock()
        used = False
        original = getattr(store, method)

        def held_call(*args: Any, **kwargs: Any) -> Any:
            nonlocal used
            with taken:
                mine, used = not used, True
            if not mine:
                return original(*args, **kwargs)
            try:
                if at == "before":
                    self.hold_here()
                result = original(*args, **kwargs)
                if at == "after":
                    self.hold_here()
                return result
            finally:
                self.finished.set()

        setattr(store, method, held_call)

    def remove(self) -> None:
        self.release()
        self.store.__dict__.pop(self.method, None)


async def _wait_event(event: threading.Event, timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            raise AssertionError(why)
        await asyncio.sleep(0.005)


class Chain3:
    """Three replicas serving chain 1 (head, middle, tail at version 1), the test's
    Storage stubs, and the holds to release at the end."""

    def __init__(self, replicas: list[Replica], routing: StaticRouting) -> None:
        self.replicas, self.routing = replicas, routing
        self.holds: list[HeldCall] = []
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._ids = iter(range(1, 1 << 40))

    @property
    def head(self) -> Replica:
        return self.replicas[0]

    @property
    def middle(self) -> Replica:
        return self.replicas[1]

    @property
    def tail(self) -> Replica:
        return self.replicas[2]

    def hold(self, replica: Replica, method: str, *, at: str = "before") -> Hold:
        assert replica.store is not None
        hold = Hold(replica.store, method, at=at)
        self.holds.append(hold)
        return hold

    def stub(self, replica: Replica) -> storage_pb2_grpc.StorageStub:
        channel = self._channels.get(replica.address)
        if channel is None:
            channel = self._channels[replica.address] = grpc.aio.insecure_channel(
                replica.address, options=channel_options())
        return storage_pb2_grpc.StorageStub(channel)

    def chain_version(self) -> int:
        return self.routing.view.chain(CHAIN_ID).chain_version

    def update(self, kind: int, data: bytes = b"", *, offset: int = 0, length: int = 0, index: int = 0,
               client_id: str = "regression", request_id: int | None = None) -> storage_pb2.WriteRequest:
        return storage_pb2.WriteRequest(
            header=common_pb2.RequestHeader(client_id=client_id,
                                            request_id=next(self._ids) if request_id is None else request_id),
            chain_id=CHAIN_ID, chain_version=self.chain_version(),
            chunk=storage_pb2.ChunkId(inode_id=INODE, chunk_index=index), kind=kind, offset=offset, data=data,
            crc32c=crc32c.crc32c(data), length=length, chunk_size=K64)

    async def write(self, request: storage_pb2.WriteRequest, *, to: Replica | None = None,
                    timeout: float = WRITE_TIMEOUT_S) -> storage_pb2.WriteResponse:
        """One Write call at the head (or `to`), under the routing's chain version."""
        request.chain_version = self.chain_version()
        return await self.stub(to or self.head).Write(request, timeout=timeout)

    async def write_acked(self, request: storage_pb2.WriteRequest, *, to: Replica | None = None,
                          attempts: int = 10) -> storage_pb2.WriteResponse:
        """What a client does: retry a retryable failure with the same request id, give
        up on anything else (raised as the EmberError the server answered)."""
        for attempt in range(1, attempts + 1):
            try:
                return await self.write(request, to=to)
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                if not error.retryable or attempt == attempts:
                    raise error from None
            await asyncio.sleep(0.1)
        raise AssertionError("unreachable")

    async def read(self, replica: Replica, *, length: int = K64, index: int = 0,
                   timeout: float = 10.0) -> storage_pb2.ReadResponse:
        request = storage_pb2.ReadRequest(
            header=common_pb2.RequestHeader(client_id="regression-reader"), chain_id=CHAIN_ID,
            chain_version=self.chain_version(), chunk=storage_pb2.ChunkId(inode_id=INODE, chunk_index=index),
            offset=0, length=length, target_id=replica.target)
        return await self.stub(replica).Read(request, timeout=timeout)

    async def close(self) -> None:
        for hold in self.holds:
            hold.remove()
        for channel in self._channels.values():
            await channel.close()
        for replica in self.replicas:
            await replica.stop()


@asynccontextmanager
async def chain3(root: Path) -> AsyncIterator[Chain3]:
    routing = StaticRouting()
    replicas = [Replica(n, root, routing) for n in (1, 2, 3)]
    cluster = Chain3(replicas, routing)
    try:
        for replica in replicas:
            await replica.start()
        routing.view = chain_view(replicas, 1)
        yield cluster
    finally:
        await cluster.close()


def summary(version: int, data: bytes) -> str:
    runs, at = [], 0
    while at < len(data) and len(runs) < 4:  # the first few runs of equal bytes
        end = at
        while end < len(data) and data[end] == data[at]:
            end += 1
        runs.append(f"{data[at:at + 1]!r}x{end - at}")
        at = end
    more = ", ..." if at < len(data) else ""
    return f"v{version} {len(data)} bytes [{', '.join(runs)}{more}]"


def assert_identical(replicas: list[Replica], index: int = 0) -> tuple[int, bytes]:
    """Every replica holds the same committed bytes at the same commit version."""
    states = {r.target: r.held(index) for r in replicas}
    shown = "; ".join(f"target {t}: {summary(*s)}" for t, s in states.items())
    if len(set(states.values())) != 1:
        raise AssertionError(f"the replicas of chunk {index} differ: {shown}")
    return next(iter(states.values()))


def fill(byte: bytes, n: int = K64) -> bytes:
    return byte * n


WRITE, REPLACE, TRUNCATE, REMOVE = storage_pb2.WRITE, storage_pb2.REPLACE, storage_pb2.TRUNCATE, storage_pb2.REMOVE


def outcome(task: asyncio.Future[Any]) -> str:
    """What an unawaited write ended with (retrieved, so asyncio does not complain)."""
    if not task.done():
        task.cancel()
        return "still running"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return "acknowledged" if error is None else repr(error)
