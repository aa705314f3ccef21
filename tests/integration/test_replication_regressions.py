"""Regression tests for issue 15: timings in which the replicas of one chunk came to
hold different bytes under one version, a chunk could never be written again, a read
went backwards, a deleted file's chunk outlived its GC, a commit stalled a server's
event loop, or a retried write put older bytes back over a newer one.

Each test reproduces one defect of the hostile review deterministically and asserts
only what a correct chain must give, whatever the implementation: every replica holds
the same bytes at the same commit version; an acknowledged write reads back; the chunk
stays writable; a read never returns a version older than one already returned; after
GC nothing of the file is left on any target; a commit in progress does not stop the
server's event loop; a write is applied once.

    1  a target restarted inside the heartbeat timeout serves without a resync
       test_restart_inside_the_heartbeat_timeout_keeps_replicas_identical
    2  a handler cancelled at its caller's deadline frees the chunk lock while its
       disk work runs on
       test_write_cancelled_mid_prepare_leaves_replicas_identical
    3  a REMOVE whose forward failed makes the chunk unwritable
       test_failed_remove_then_a_write_keeps_the_chunk_writable
    4  reads go backwards when the tail fails
       test_read_never_goes_back_when_the_tail_fails
    6  GC's RemoveChunks takes no chunk lock
       test_gc_during_an_update_leaves_nothing_behind
    7  a small cached read waits on the event loop for a commit
       test_commit_in_progress_does_not_stall_the_event_loop
    8  write dedupe lives in memory
       test_retried_write_is_applied_once[head_restarts, retry_reaches_a_new_head]

Harness (all but defect 1): three real ChunkStores, each with its CRAQ Operator served
by a real grpc.aio server on 127.0.0.1 in this process, forming chain 1 (head, middle,
tail), routed by a StaticRouting the test edits: a chain change is a new view with a
higher chain version, as the manager would publish. Timing is made deterministic by
holding one store call of one replica (`Hold`: the call waits on a threading.Event at
its start, as a slow disk would, or right after it returned), by stopping a replica's
server, or by restarting an Operator over the same store directory. The test talks to
the servers with raw Storage RPCs, as a client would. Defect 1 needs the cluster
manager (registration, heartbeats, its timeout), so it runs on real processes
(LocalCluster). Every held call goes on by itself after HOLD_LIMIT_S, and every test
is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import crc32c
import grpc
import pytest

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


def _summary(version: int, data: bytes) -> str:
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
    shown = "; ".join(f"target {t}: {_summary(*s)}" for t, s in states.items())
    if len(set(states.values())) != 1:
        raise AssertionError(f"the replicas of chunk {index} differ: {shown}")
    return next(iter(states.values()))


def fill(byte: bytes, n: int = K64) -> bytes:
    return byte * n


WRITE, REPLACE, TRUNCATE, REMOVE = storage_pb2.WRITE, storage_pb2.REPLACE, storage_pb2.TRUNCATE, storage_pb2.REMOVE


# --- defect 2: a cancelled handler frees the chunk lock while its disk work runs ------


def test_write_cancelled_mid_prepare_leaves_replicas_identical(tmp_path: Path) -> None:
    """Write A reaches the head, whose prepare is held at its start (a slow disk); A's
    caller gives up at its deadline, so grpc.aio cancels A's handler. Write B of the
    same chunk then arrives and is acknowledged. When A's prepare goes on, it must not
    bring A's bytes back at a version that B's bytes hold on the successors: after a
    partial write C, every replica must hold the same bytes at the same version, and
    they must be C over B or C over A (A was never acknowledged: either outcome is
    allowed, a mix of the two is not).

    Before the fix (issue 15): the lock is freed when A's handler is cancelled, B
    commits v2 everywhere, then A's prepare records v2 with A's bytes at the head; C
    re-drives that "pending" v2 (the successors answer "already committed" without
    comparing), the head commits A's bytes as v2, and C lands on A at the head and on B
    at the successors."""

    async def body() -> None:
        async with chain3(tmp_path) as c:
            await c.write_acked(c.update(REPLACE, fill(b"0")))
            hold = c.hold(c.head, "prepare", at="before")
            a, b, w = fill(b"A"), fill(b"B"), b"C" * 100
            with pytest.raises(grpc.aio.AioRpcError) as cancelled:
                await c.write(c.update(REPLACE, a), timeout=0.5)
            assert cancelled.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert hold.entered.is_set(), "write A never reached the head's prepare"
            second = asyncio.ensure_future(c.write_acked(c.update(REPLACE, b)))
            await asyncio.wait([second], timeout=1.5)  # a chain that waits for A's prepare is fine too
            hold.release()
            await second  # B is acknowledged
            await hold.wait_finished()
            await c.write_acked(c.update(WRITE, w))
            version, data = assert_identical(c.replicas)
            assert data in (w + b[len(w):], w + a[len(w):]), f"chunk holds {_summary(version, data)}"

    run(body)


# --- defect 3: a REMOVE whose forward failed, then a write ---------------------------


def test_failed_remove_then_a_write_keeps_the_chunk_writable(tmp_path: Path) -> None:
    """A REMOVE of a written chunk (what an interrupted `wb` overwrite or truncate
    sends) fails because the tail cannot be reached; the client gives up. The tail
    comes back and a new write of that chunk is sent: it must be acknowledged (retrying
    retryable errors as a client does), and every replica must then hold the same bytes:
    the write over the removed chunk, or over the old bytes (the REMOVE was never
    acknowledged).

    Before the fix (issue 15): the head re-drives the pending REMOVE (every replica
    drops the chunk's record, back to version 0), but the new write was given version
    c + 2, so the successors refuse it for good ("missed updates", FailedPrecondition)."""

    async def body() -> None:
        async with chain3(tmp_path) as c:
            old, w = fill(b"1"), b"2" * 10
            await c.write_acked(c.update(REPLACE, old))
            live = c.routing.view
            c.routing.view = _with_address(live, c.tail, "127.0.0.1:1")  # nothing listens there
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await c.write(c.update(REMOVE))
            assert from_rpc_error(failed.value).retryable, failed.value.details()
            c.routing.view = live
            await c.write_acked(c.update(WRITE, w))
            version, data = assert_identical(c.replicas)
            assert data in (w, w + old[len(w):]), f"chunk holds {_summary(version, data)}"
            await c.write_acked(c.update(WRITE, b"3" * 5, offset=1))  # and it stays writable
            _, again = assert_identical(c.replicas)
            assert again == data[:1] + b"3" * 5 + data[6:]

    run(body)


def _outcome(task: asyncio.Future[Any]) -> str:
    """What an unawaited write ended with (retrieved, so asyncio does not complain)."""
    if not task.done():
        task.cancel()
        return "still running"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return "acknowledged" if error is None else repr(error)


def _with_address(view: RoutingView, replica: Replica, address: str) -> RoutingView:
    proto = mgmt_pb2.RoutingInfo()
    proto.CopyFrom(view.proto)
    for node in proto.nodes:
        if node.node_id == replica.n:
            node.address = address
    return RoutingView(proto)


# --- defect 4: reads go backwards when the tail fails --------------------------------


def test_read_never_goes_back_when_the_tail_fails(tmp_path: Path) -> None:
    """Write v2 reaches the tail, which commits it and serves it to a reader; the tail
    then fails before the middle hears its ack (the tail's commit is held right after
    it returned, then its server stops). The manager's new chain is head, middle (the
    middle is the tail now). A read at the middle must not return v1 after the old tail
    returned v2: it may fail retryably for a while, but whatever it returns is v2 or
    newer. A later write must then land on v2's bytes.

    Before the fix (issue 15): the new tail serves its committed v1 while it still holds
    v2 pending."""

    async def body() -> None:
        async with chain3(tmp_path) as c:
            v1, v2 = fill(b"1"), fill(b"2")
            await c.write_acked(c.update(REPLACE, v1))
            hold = c.hold(c.tail, "commit", at="after")
            inflight = asyncio.ensure_future(c.write(c.update(REPLACE, v2)))
            await hold.wait_entered()
            seen = await c.read(c.tail)
            assert (seen.commit_version, seen.data) == (2, v2), "the old tail did not serve v2"
            await c.tail.stop_serving()  # the tail fails: its ack never reaches the middle
            hold.release()
            await asyncio.wait([inflight], timeout=10.0)
            _outcome(inflight)  # the write fails with its tail, or is acknowledged by a chain that took over
            c.routing.view = chain_view([c.head, c.middle, c.tail], 2, states={c.tail.target: PublicState.OFFLINE})
            answers = []
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                try:
                    reply = await c.read(c.middle)
                except grpc.aio.AioRpcError as exc:
                    error = from_rpc_error(exc)
                    assert error.retryable, f"the new tail refused a read: {error!r}"
                    answers.append(type(error).__name__)
                    await asyncio.sleep(0.05)
                    continue
                answers.append(_summary(reply.commit_version, reply.data))
                assert reply.commit_version >= 2 and reply.data == v2, (
                    f"the old tail served v2, then the new tail served {answers[-1]} (answers: {answers})")
                break
            await c.write_acked(c.update(WRITE, b"3" * 10), attempts=30)
            reply = await c.read(c.middle)
            assert reply.data == b"3" * 10 + v2[10:], f"the new tail holds {_summary(reply.commit_version, reply.data)}"
            assert_identical([c.head, c.middle])

    run(body)


# --- defect 6: GC's RemoveChunks takes no chunk lock ---------------------------------


def test_gc_during_an_update_leaves_nothing_behind(tmp_path: Path) -> None:
    """A write of chunk 0 is in flight (the tail's prepare is held at its start) when the
    file is deleted and the collector sends RemoveChunks to every target. Once GC has
    answered everywhere and the write has ended (either way), nothing of the inode may
    be left on any target: no chunk record (committed, pending or otherwise) and no file
    outside the store's metadata, and no replica may serve the chunk.

    Before the fix (issue 15): RemoveChunks runs past the update's chunk lock; the
    tail's held prepare then re-creates the chunk and commits it after its removal: an
    orphan forever."""

    async def body() -> None:
        async with chain3(tmp_path) as c:
            await c.write_acked(c.update(REPLACE, fill(b"1")))
            await c.write_acked(c.update(REPLACE, fill(b"x"), index=1))
            hold = c.hold(c.tail, "prepare", at="before")
            inflight = asyncio.ensure_future(c.write(c.update(WRITE, b"2" * 100)))
            await hold.wait_entered()
            gc = [asyncio.ensure_future(_remove_chunks(c, r)) for r in c.replicas]
            await asyncio.wait(gc, timeout=1.5)  # a GC that waits for the update is fine too
            hold.release()
            await asyncio.wait([inflight], timeout=WRITE_TIMEOUT_S + 5)
            _outcome(inflight)  # acknowledged or not: the file is deleted either way
            for job in gc:
                await job  # GC must be answered (the collector retries until it is)
            await hold.wait_finished()
            left = {r.target: found for r in c.replicas if (found := _leftovers(r))}
            assert not left, f"after GC, what remains of inode {INODE}: {left}"
            for replica in c.replicas:
                reply = await c.read(replica)
                assert not reply.exists and not reply.data, f"target {replica.target} still serves chunk 0"

    run(body)


async def _remove_chunks(c: Chain3, replica: Replica, attempts: int = 5) -> None:
    """The collector's RemoveChunks to one target, retried while it fails retryably."""
    request = storage_pb2.RemoveChunksRequest(
        header=common_pb2.RequestHeader(client_id="gc"), chain_id=CHAIN_ID, chain_version=c.chain_version(),
        inode_id=INODE, target_id=replica.target)
    for attempt in range(1, attempts + 1):
        try:
            await c.stub(replica).RemoveChunks(request, timeout=30.0)
            return
        except grpc.aio.AioRpcError as exc:
            if not from_rpc_error(exc).retryable or attempt == attempts:
                raise from_rpc_error(exc) from None
        await asyncio.sleep(0.2)


def _leftovers(replica: Replica) -> list[str]:
    assert replica.store is not None
    found = [f"record {tuple(m.chunk_id)} v{m.commit_version} pending {m.pending_version}"
             for m in replica.store.list_chunks(INODE, include_pending=True)]
    for folder, dirs, names in os.walk(replica.root):
        if Path(folder) == replica.root:
            dirs[:] = [d for d in dirs if d != "meta"]  # the target's LMDB
        found += [f"file {Path(folder, n).relative_to(replica.root)}" for n in names
                  if not (Path(folder) == replica.root and n == "LOCK")]
    return found


# --- defect 7: a cached read waits for a commit on the event loop ---------------------


def test_commit_in_progress_does_not_stall_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head's commit of a write is held right after it renamed the new chunk file
    into place (a slow rename and directory fsync, as on a loaded disk), for 2 s. A small
    read of the same chunk at the head meanwhile (its bytes are in the page cache) must
    not stop the server's event loop: the loop keeps turning (every gap under 0.75 s, a
    bound a loaded CI machine keeps, far below the hold) while the commit is held.

    Before the fix (issue 15): the cached read runs on the event loop and waits there on
    the commit gate the held commit keeps closed, so the whole server stops for the
    hold."""

    async def body() -> None:
        async with chain3(tmp_path) as c:
            await c.write_acked(c.update(REPLACE, fill(b"1")))
            hold = _hold_inside_commit(c.head, monkeypatch)
            c.holds.append(hold)
            inflight = asyncio.ensure_future(c.write(c.update(WRITE, b"2" * 100)))
            await hold.wait_entered()
            timer = threading.Timer(2.0, hold.release)  # from a thread: the loop may be stuck
            timer.start()
            try:
                gaps = asyncio.ensure_future(_longest_loop_gap(2.5))
                await asyncio.sleep(0.05)
                reader = asyncio.ensure_future(c.read(c.head, length=4096))
                longest = await gaps
                reply = await reader
                await inflight
            finally:
                timer.cancel()
                hold.release()
            assert reply.data in (b"1" * 4096, b"2" * 100 + b"1" * 3996)
            assert longest < 0.75, f"the server's event loop stood still for {longest:.3f} s during a commit"

    run(body)


def _hold_inside_commit(replica: Replica, monkeypatch: pytest.MonkeyPatch) -> HeldCall:
    """Hold the replica's next commit inside it: right after the commit renamed the new
    chunk file into place (any copy-on-write commit renames one)."""
    store = replica.store
    assert store is not None
    held = HeldCall()
    inside = threading.local()
    original_commit, real_replace = store.commit, os.replace

    def commit(*args: Any, **kwargs: Any) -> Any:
        inside.active = True
        try:
            return original_commit(*args, **kwargs)
        finally:
            inside.active = False
            if held.entered.is_set():
                held.finished.set()

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real_replace(src, dst, *args, **kwargs)
        if getattr(inside, "active", False) and not held.entered.is_set():
            held.hold_here()

    store.commit = commit  # type: ignore[method-assign]
    monkeypatch.setattr(os, "replace", replace)
    return held


async def _longest_loop_gap(seconds: float, step: float = 0.005) -> float:
    last = time.monotonic()
    end, longest = last + seconds, 0.0
    while last < end:
        await asyncio.sleep(step)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


# --- defect 8: write dedupe lives in memory --------------------------------------------


@pytest.mark.parametrize("how", ["head_restarts", "retry_reaches_a_new_head"])
def test_retried_write_is_applied_once(tmp_path: Path, how: str) -> None:
    """Client X's write A commits and is read back, but X never hears the ack. Client
    Y then writes B over the same bytes and is acknowledged. Then the head restarts
    (a new process over the same disk), or the head leaves the chain and the middle is
    the new head; X retries A with the same client id and request id. A was applied
    once already (a reader saw it before B), so the retry must not apply it again: the
    chunk must still hold B, on every replica.

    Before the fix (issue 15): the dedupe cache is in the old head's memory; the retry
    is applied as a new write and puts A's older bytes back over B."""

    async def body() -> None:
        async with chain3(tmp_path) as c:
            base, a, b = fill(b"0"), b"A" * 100, b"B" * 100
            await c.write_acked(c.update(REPLACE, base))
            retried = c.update(WRITE, a, client_id="client-x", request_id=7)
            await c.write_acked(retried)  # committed; X's ack is lost
            seen = await c.read(c.tail)
            assert seen.data[:100] == a
            await c.write_acked(c.update(WRITE, b, client_id="client-y", request_id=1))
            if how == "head_restarts":
                await c.head.restart()
                c.routing.view = chain_view(c.replicas, 1, routing_version=2)
                to = c.head
                readers = c.replicas
            else:
                c.routing.view = chain_view([c.middle, c.tail, c.head], 2, states={c.head.target: PublicState.OFFLINE})
                to = c.middle
                readers = [c.middle, c.tail]
            await c.write_acked(retried, to=to)
            version, data = assert_identical(readers)
            assert data == b + base[100:], (
                f"X's write A, read back before B was written, was applied again over B: {_summary(version, data)}")

    run(body)


# --- defect 1: a target restarted inside the heartbeat timeout (real processes) --------

RESTART_HEARTBEAT_TIMEOUT_S = 8.0  # long enough that a restart fits inside it, even loaded


def test_restart_inside_the_heartbeat_timeout_keeps_replicas_identical(tmp_path: Path, read_replicas: Any) -> None:
    """A chain of three real storage processes under a real manager (heartbeat timeout
    8 s). File /f holds v1 (64 KiB of "1"). Reproduced step by step, as the crash would
    leave it: the head is killed (-9) after preparing v2 (a whole chunk of "2"; the
    test records that pending version in the head's store while the process is down)
    and after forwarding it, so the middle and tail commit v2 (the test sends that very
    Forward, from the head's target to the middle, naming the same chain version). The
    head restarts well inside the heartbeat timeout; its recovery discards its pending
    v2. A client then overwrites 100 bytes at offset 0 ("3") and is acknowledged.

    Outcome: once every target serves again, every replica holds the same bytes at the
    same version, and they are the acknowledged write over v1 or over v2 (v2 was never
    acknowledged to anyone: either is allowed, a mix is not).

    Before the fix (issue 15): the restarted head re-registers and serves at once with
    the chain unchanged; the write gets version 2 at the head (over "1"), the successors
    answer "already committed", and the replicas hold different bytes under version 2."""
    from emberfs.bench.failover_cluster import FaultCluster
    from emberfs.client import SyncClient
    from emberfs.client._launch import LocalCluster
    from emberfs.storage.records import UpdateKind

    cluster = LocalCluster(tmp_path / "cluster", nodes=3, replicas=3, chunk_size=K64, heartbeat_interval=0.2,
                           heartbeat_timeout=RESTART_HEARTBEAT_TIMEOUT_S)
    cluster.start(timeout=60.0)
    faults = FaultCluster(cluster)
    try:
        v1, v2, w = fill(b"1"), fill(b"2"), b"3" * 100
        with SyncClient(faults.meta, uid=0, gid=0, groups=[], timeout=30.0) as fs:
            fs.write_file("/f", v1)
            st = fs.stat("/f")
        view = faults.view()
        chain = view.chain(st.chain_ids[0])
        head, middle = chain.serving[0], chain.serving[1]
        head_node = view.node_of(head)
        server = cluster.storage[head_node - 1]
        began = time.monotonic()
        server.kill()
        with ChunkStore(cluster.data_dir / f"node-{head_node}" / f"target-{head % 100}") as store:
            store.prepare(ChunkId(st.st_ino, 0), UpdateKind.REPLACE, 0, v2, 0, 2, chain.chain_version, K64,
                          data_crc32c=crc32c.crc32c(v2))
        forward = storage_pb2.ForwardRequest(
            update=storage_pb2.WriteRequest(
                header=common_pb2.RequestHeader(client_id=uuid.uuid4().hex, request_id=1), chain_id=chain.chain_id,
                chain_version=chain.chain_version, chunk=storage_pb2.ChunkId(inode_id=st.st_ino, chunk_index=0),
                kind=storage_pb2.REPLACE, data=v2, crc32c=crc32c.crc32c(v2), chunk_size=K64),
            update_version=2, from_target=head, to_target=middle)
        with grpc.insecure_channel(view.address_of(middle), options=channel_options()) as channel:
            ack = storage_pb2_grpc.StorageStub(channel).Forward(forward, timeout=10.0)
        assert ack.commit_version == 2, f"the successors did not commit v2: {ack}"
        server.restart()
        took = time.monotonic() - began
        assert took < RESTART_HEARTBEAT_TIMEOUT_S - 1.0, (
            f"the head took {took:.1f} s to come back: not inside the heartbeat timeout, so not this defect")
        faults.wait_all_serving(timeout=60.0)
        with SyncClient(faults.meta, uid=0, gid=0, groups=[], timeout=60.0) as fs, fs.open("/f", "r+b") as f:
            f.write(w)
        faults.wait_all_serving(timeout=60.0)
        held = asyncio.run(asyncio.wait_for(read_replicas(faults.meta, st), 60.0))[0]
        states = {t: (r.commit_version, r.data) for t, r in held.items()}
        shown = "; ".join(f"target {t}: {_summary(*s)}" for t, s in states.items())
        assert len(set(states.values())) == 1, f"the replicas of /f chunk 0 differ: {shown}\n{faults.describe()}"
        data = next(iter(states.values()))[1]
        assert data in (w + v1[len(w):], w + v2[len(w):]), f"/f holds {shown}"
    finally:
        faults.close()

