"""Regression tests: what a restart forgets must not change what the chain holds. A
retried write is applied once, across a head restart or a new head; a target
restarted inside the heartbeat timeout leaves every replica with the same bytes at
the same commit version.

Each test reproduces one defect of the hostile review of issue 15 deterministically
and asserts only what a correct chain must give, whatever the implementation. The
in-process chain they run on is _chain3.py. Defect 1 needs the cluster manager
(registration, heartbeats, its timeout), so it runs on real processes (LocalCluster).

    1  a target restarted inside the heartbeat timeout serves without a resync
       test_restart_inside_the_heartbeat_timeout_keeps_replicas_identical
    8  write dedupe lives in memory
       test_retried_write_is_applied_once[head_restarts, retry_reaches_a_new_head]
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import crc32c
import grpc
import pytest

from emberfs.common.chainstate import PublicState
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, storage_pb2, storage_pb2_grpc
from emberfs.storage.chunkstore import ChunkStore
from emberfs.storage.records import ChunkId

from ._chain3 import K64, REPLACE, WRITE, assert_identical, chain3, chain_view, fill, run, summary


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
                f"X's write A, read back before B was written, was applied again over B: {summary(version, data)}")

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
        shown = "; ".join(f"target {t}: {summary(*s)}" for t, s in states.items())
        assert len(set(states.values())) == 1, f"the replicas of /f chunk 0 differ: {shown}\n{faults.describe()}"
        data = next(iter(states.values()))[1]
        assert data in (w + v1[len(w):], w + v2[len(w):]), f"/f holds {shown}"
    finally:
        faults.close()
