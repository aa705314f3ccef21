"""SIGSTOP a server past the heartbeat timeout under continuous writes, then SIGCONT:
the chain goes on without it; woken, it never serves the bytes it held when it froze
(its lease lapsed and its routing is stale), and it rejoins through a resync."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import grpc

from emberfs.client import SyncClient
from emberfs.common.chainstate import PublicState
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, storage_pb2, storage_pb2_grpc

CHUNK = 64 * 1024


def test_sigstop_past_the_timeout_then_sigcont(fault_cluster: Any, workload: Any, timeline: Any) -> None:
    old_bytes, new_bytes = b"A" * CHUNK, b"B" * CHUNK
    with SyncClient(fault_cluster.meta, uid=0, gid=0, groups=[]) as fs:
        fs.write_file("/frozen", old_bytes)
        st = fs.stat("/frozen")
    load = workload()
    load.wait_acks(20)
    victim = fault_cluster.role("tail")
    server = fault_cluster.server_of(victim)
    chain_before = fault_cluster.view().chain(st.chain_ids[0])
    timeline.mark("stop")
    os.kill(server.pid, signal.SIGSTOP)
    try:
        fault_cluster.wait_state(victim, PublicState.OFFLINE, timeout=10.0)
        with SyncClient(fault_cluster.meta, uid=0, gid=0, groups=[]) as fs:
            fs.write_file("/frozen", new_bytes)  # acknowledged by the two left
        load.wait_acks(20, timeout=30.0)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    timeline.mark("cont")
    answers = _reads_right_after_waking(server.address, chain_before, st.st_ino, victim, seconds=2.0)
    stale = [a for a in answers if a == old_bytes]
    assert not stale, f"the woken server served its stale bytes {len(stale)} times of {len(answers)}"
    fault_cluster.wait_all_serving()
    load.wait_acks(20, timeout=30.0)
    report = load.stop()
    fault_cluster.assert_intact(report)
    assert load.longest_stall(timeline.marks["stop"], timeline.marks["cont"]) < 15.0, report.summary()
    fault_cluster.assert_alone_serves(server, {**report.files, "/frozen": new_bytes})


def _reads_right_after_waking(address: str, chain: Any, inode_id: int, target_id: int, seconds: float) -> list[Any]:
    """Read chunk 0 from the woken server, as a client whose routing predates the freeze
    would, again and again: each answer is the bytes or the error it got."""
    answers: list[Any] = []
    client_id = uuid.uuid4().hex
    with grpc.insecure_channel(address, options=channel_options()) as channel:
        stub = storage_pb2_grpc.StorageStub(channel)
        deadline = time.monotonic() + seconds
        request_id = 0
        while time.monotonic() < deadline:
            request_id += 1
            request = storage_pb2.ReadRequest(
                header=common_pb2.RequestHeader(client_id=client_id, request_id=request_id),
                chain_id=chain.chain_id, chain_version=chain.chain_version,
                chunk=storage_pb2.ChunkId(inode_id=inode_id, chunk_index=0),
                offset=0, length=CHUNK, target_id=target_id,
            )
            try:
                answers.append(stub.Read(request, timeout=2.0).data)
            except grpc.RpcError as exc:
                answers.append(exc.code())
            time.sleep(0.01)
    return answers
