"""Storage failures on real processes: a server frozen past the heartbeat timeout
(SIGSTOP, then SIGCONT) never serves stale bytes; a target whose chunk directory
turns into a file fails cleanly and goes OFFLINE while the chain goes on; chunk GC
of a file removed while a node was down completes when it returns; a metaserver
killed with kill -9 mid-write comes back with its chain table and states.

Each test runs its own LocalCluster (heartbeat 0.2 s, timeout 1.0 s, one chain of 3)
and stops it in a `finally`; every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from emberfs.client import Client
from emberfs.client._launch import LocalCluster
from emberfs.common.errors import from_rpc_error
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, mgmt_pb2, mgmt_pb2_grpc, storage_pb2, storage_pb2_grpc

CS = 64 * 1024
pytestmark = pytest.mark.faults


def new_cluster(path: Path) -> LocalCluster:
    cluster = LocalCluster(path, nodes=3, replicas=3, chunk_size=CS, heartbeat_interval=0.2, heartbeat_timeout=1.0)
    cluster.start(timeout=60)
    return cluster


def run(cluster: LocalCluster, scenario: Callable[[], Awaitable[None]], timeout: float = 120) -> None:
    try:
        asyncio.run(asyncio.wait_for(scenario(), timeout))
    finally:
        cluster.stop()


async def routing(meta: str) -> mgmt_pb2.RoutingInfo:
    async with grpc.aio.insecure_channel(meta, options=channel_options()) as channel:
        reply = await mgmt_pb2_grpc.MgmtStub(channel).GetRouting(
            mgmt_pb2.GetRoutingRequest(header=common_pb2.RequestHeader()), timeout=5, wait_for_ready=True)
    return reply.routing


def states_of(info: mgmt_pb2.RoutingInfo) -> dict[int, str]:
    return {t.target_id: mgmt_pb2.PublicTargetState.Name(t.public_state) for c in info.chains for t in c.targets}


async def wait_states(meta: str, want: Callable[[dict[int, str]], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[int, str] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.aio.AioRpcError):
            seen = states_of(await routing(meta))
        if want(seen):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {what} within {timeout} s; targets: {seen}")


async def verify(meta: str, files: dict[str, bytes]) -> None:
    async with Client(meta, uid=0, gid=0, timeout=30) as fs:
        for path, data in sorted(files.items()):
            assert await fs.read_file(path) == data, path


async def target_chunks(address: str) -> int:
    async with grpc.aio.insecure_channel(address, options=channel_options()) as channel:
        reply = await storage_pb2_grpc.StorageStub(channel).TargetStats(
            storage_pb2.TargetStatsRequest(header=common_pb2.RequestHeader()), timeout=5)
    return sum(t.chunks for t in reply.targets)


def test_sigstop_past_the_timeout_then_sigcont_never_serves_stale_bytes(tmp_path: Path) -> None:
    cluster = new_cluster(tmp_path / "c")
    meta = cluster.meta_address
    frozen = cluster.storage[2]
    old, new = os.urandom(CS), os.urandom(CS)

    async def scenario() -> None:
        async with Client(meta, uid=0, gid=0, timeout=30) as fs:
            await fs.write_file("/f", old)
            inode = (await fs.stat("/f")).st_ino
            stale_version = (await routing(meta)).chains[0].chain_version
            assert frozen.pid is not None
            os.kill(frozen.pid, signal.SIGSTOP)
            try:
                await wait_states(meta, lambda s: s.get(301) == "OFFLINE", "301 OFFLINE", 15)
                await fs.write_file("/f", new)  # acknowledged by 101 and 201 only
            finally:
                os.kill(frozen.pid, signal.SIGCONT)
        # A reader with the routing from before the freeze asks the woken server at
        # once, and keeps asking: it may be refused, it must never get the old bytes.
        answers: dict[str, int] = {}
        request = storage_pb2.ReadRequest(
            header=common_pb2.RequestHeader(), chain_id=1, chain_version=stale_version,
            chunk=storage_pb2.ChunkId(inode_id=inode, chunk_index=0), length=CS, target_id=301)
        async with grpc.aio.insecure_channel(frozen.address, options=channel_options()) as channel:
            stub = storage_pb2_grpc.StorageStub(channel)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                for version in (stale_version, stale_version + 1, stale_version + 2):
                    request.chain_version = version
                    try:
                        reply = await stub.Read(request, timeout=5)
                    except grpc.aio.AioRpcError as exc:
                        error = from_rpc_error(exc)
                        answers[error.code] = answers.get(error.code, 0) + 1
                        continue
                    assert reply.data != old, f"stale bytes served at chain version {version}"
                    answers["new bytes"] = answers.get("new bytes", 0) + 1
                await asyncio.sleep(0.01)
        print("answers after SIGCONT:", answers)
        assert answers.get("TargetNotServing", 0) > 0
        await wait_states(meta, lambda s: set(s.values()) == {"SERVING"}, "all SERVING again", 60)
        cluster.storage[0].kill()
        cluster.storage[1].kill()
        await wait_states(meta, lambda s: s.get(301) == "SERVING" and s.get(101) != "SERVING"
                          and s.get(201) != "SERVING", "301 the only serving target", 15)
        await verify(meta, {"/f": new})

    run(cluster, scenario)


def test_unwritable_target_goes_offline_and_the_chain_goes_on(tmp_path: Path) -> None:
    cluster = new_cluster(tmp_path / "c")
    meta = cluster.meta_address
    chunks_dir = cluster.data_dir / "node-2" / "target-1" / "chunks"
    files = {f"/before{i}": os.urandom(3 * CS + i) for i in range(4)}

    async def scenario() -> None:
        async with Client(meta, uid=0, gid=0, timeout=30) as fs:
            for path, data in files.items():
                await fs.write_file(path, data)
            # A real disk failure: the target's chunk directory becomes a file (ENOTDIR).
            shutil.move(chunks_dir, chunks_dir.with_name("chunks.moved"))
            chunks_dir.write_bytes(b"not a directory")
            started = time.monotonic()
            for i in range(4):
                data = os.urandom(2 * CS + 7 * i)
                await fs.write_file(f"/after{i}", data)  # retried onto the shortened chain
                files[f"/after{i}"] = data
            print(f"writes across the disk failure took {time.monotonic() - started:.2f} s")
        await wait_states(meta, lambda s: s.get(201) == "OFFLINE" and s.get(101) == s.get(301) == "SERVING",
                          "201 OFFLINE, the others SERVING", 15)
        log = (cluster.data_dir / "node-2.log").read_text(errors="replace")
        assert "target 201 failed" in log and "Traceback" not in log
        assert cluster.storage[1].running  # the server lives on; only its target is out
        await verify(meta, files)
        # Repair the disk, restart: the target resyncs, then serves every file alone.
        cluster.storage[1].stop(grace=10)
        chunks_dir.unlink()
        shutil.move(chunks_dir.with_name("chunks.moved"), chunks_dir)
        await asyncio.to_thread(cluster.storage[1].restart, 20)
        await wait_states(meta, lambda s: set(s.values()) == {"SERVING"}, "all SERVING again", 60)
        cluster.storage[0].kill()
        cluster.storage[2].kill()
        await wait_states(meta, lambda s: s.get(201) == "SERVING" and s.get(101) != "SERVING"
                          and s.get(301) != "SERVING", "201 the only serving target", 15)
        await verify(meta, files)

    run(cluster, scenario)


def test_gc_of_a_file_removed_while_a_node_was_down_completes_when_it_returns(tmp_path: Path) -> None:
    cluster = new_cluster(tmp_path / "c")
    meta = cluster.meta_address

    async def scenario() -> None:
        async with Client(meta, uid=0, gid=0, timeout=30) as fs:
            await fs.write_file("/doomed", os.urandom(5 * CS))
            inode = (await fs.stat("/doomed")).st_ino
            cluster.storage[2].kill()
            await wait_states(meta, lambda s: s.get(301) == "OFFLINE", "301 OFFLINE", 15)
            await fs.remove("/doomed")
            await asyncio.sleep(2.5)  # GC rounds run (every 1 s) and cannot finish
            assert f"gc inode {inode}: chunks removed" not in (cluster.data_dir / "meta.log").read_text()
            assert [await target_chunks(p.address) for p in cluster.storage[:2]] == [0, 0]
        await asyncio.to_thread(cluster.storage[2].restart, 20)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if f"gc inode {inode}: chunks removed from 3 targets" in (cluster.data_dir / "meta.log").read_text():
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"GC of inode {inode} did not complete within 30 s of the node's return")
        assert [await target_chunks(p.address) for p in cluster.storage] == [0, 0, 0]

    run(cluster, scenario)


def test_metaserver_killed_mid_write_keeps_chains_and_states(tmp_path: Path) -> None:
    cluster = new_cluster(tmp_path / "c")
    meta = cluster.meta_address

    async def scenario() -> None:
        async with Client(meta, uid=0, gid=0, timeout=30) as fs:
            # One replica out first, so the table holds a state other than SERVING.
            cluster.storage[2].kill()
            await wait_states(meta, lambda s: s.get(301) == "OFFLINE", "301 OFFLINE", 15)
            before = await routing(meta)
            files: dict[str, bytes] = {}

            async def writer() -> None:
                for i in range(40):
                    data = os.urandom(CS + i)
                    for _ in range(100):  # the client does not retry metadata calls across a restart
                        try:
                            await fs.write_file(f"/m{i}", data)
                            break
                        except ConnectionError:
                            await asyncio.sleep(0.1)
                    else:
                        raise AssertionError(f"/m{i}: no write went through in 100 attempts")
                    files[f"/m{i}"] = data

            task = asyncio.create_task(writer())
            await asyncio.sleep(0.3)
            cluster.meta.kill()  # kill -9 mid-write
            await asyncio.sleep(0.5)
            await asyncio.to_thread(cluster.meta.restart, 20)
            after = await routing(meta)
            assert states_of(after) == states_of(before)
            assert after.chains[0].chain_version >= before.chains[0].chain_version
            await asyncio.wait_for(task, 60)
        await asyncio.to_thread(cluster.storage[2].restart, 20)
        await wait_states(meta, lambda s: set(s.values()) == {"SERVING"}, "all SERVING again", 60)
        await verify(meta, files)

    run(cluster, scenario)
