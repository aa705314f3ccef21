"""Regression tests: updates of one chunk that are cancelled, fail half way or are
removed under them must leave every replica with the same bytes at the same commit
version, and the chunk writable; after GC nothing of the file is left on any target.

Each test reproduces one defect of the hostile review of issue 15 deterministically
and asserts only what a correct chain must give, whatever the implementation. The
in-process chain they run on is _chain3.py.

    2  a handler cancelled at its caller's deadline frees the chunk lock while its
       disk work runs on
       test_write_cancelled_mid_prepare_leaves_replicas_identical
    3  a REMOVE whose forward failed makes the chunk unwritable
       test_failed_remove_then_a_write_keeps_the_chunk_writable
    6  GC's RemoveChunks takes no chunk lock
       test_gc_during_an_update_leaves_nothing_behind
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest

from emberfs.common.errors import from_rpc_error
from emberfs.common.routing import RoutingView
from emberfs.proto import common_pb2, mgmt_pb2, storage_pb2

from ._chain3 import (
    CHAIN_ID,
    INODE,
    REMOVE,
    REPLACE,
    WRITE,
    WRITE_TIMEOUT_S,
    Chain3,
    Replica,
    assert_identical,
    chain3,
    fill,
    outcome,
    run,
    summary,
)


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
            assert data in (w + b[len(w):], w + a[len(w):]), f"chunk holds {summary(version, data)}"

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
            assert data in (w, w + old[len(w):]), f"chunk holds {summary(version, data)}"
            await c.write_acked(c.update(WRITE, b"3" * 5, offset=1))  # and it stays writable
            _, again = assert_identical(c.replicas)
            assert again == data[:1] + b"3" * 5 + data[6:]

    run(body)


def _with_address(view: RoutingView, replica: Replica, address: str) -> RoutingView:
    proto = mgmt_pb2.RoutingInfo()
    proto.CopyFrom(view.proto)
    for node in proto.nodes:
        if node.node_id == replica.n:
            node.address = address
    return RoutingView(proto)


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
            outcome(inflight)  # acknowledged or not: the file is deleted either way
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
