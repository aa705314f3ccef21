"""Resync on real processes: a storage server killed with kill -9 while writes go on
comes back SYNCING, receives every chunk written, overwritten, truncated or removed
while it was down (and the writes made during its sync, as whole chunks), becomes
SERVING, and then serves every file byte-exact alone, the other two killed.

Each test runs its own LocalCluster (heartbeat 0.2 s, timeout 1.0 s) and stops it in
a `finally`; every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from emberfs.client import Client
from emberfs.client._launch import LocalCluster
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, mgmt_pb2, mgmt_pb2_grpc

CS = 64 * 1024
pytestmark = pytest.mark.faults


def states(meta: str) -> dict[int, str]:
    """target id -> public state name, from the manager."""
    with grpc.insecure_channel(meta, options=channel_options()) as channel:
        reply = mgmt_pb2_grpc.MgmtStub(channel).GetRouting(
            mgmt_pb2.GetRoutingRequest(header=common_pb2.RequestHeader()), timeout=5)
    return {t.target_id: mgmt_pb2.PublicTargetState.Name(t.public_state)
            for c in reply.routing.chains for t in c.targets}


async def wait_states(meta: str, want: Callable[[dict[int, str]], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[int, str] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.RpcError):
            seen = await asyncio.to_thread(states, meta)
        if want(seen):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {what} within {timeout} s; targets: {seen}")


@dataclass
class Workload:
    """Acknowledged file contents: new files, whole overwrites (longer and shorter),
    in-chunk overwrites, truncates and removals, each recorded only once acknowledged."""

    fs: Client
    rng: random.Random
    files: dict[str, bytes] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    done: int = 0
    serial: int = 0

    async def step(self) -> None:
        names = sorted(self.files)
        roll = self.rng.random()
        if roll < 0.3 or len(names) < 4:
            self.serial += 1
            path = f"/w{self.serial}"
            data = os.urandom(self.rng.randrange(1, 5 * CS))
            await self.fs.write_file(path, data)
            self.files[path] = data
        elif roll < 0.5:
            path = self.rng.choice(names)
            data = os.urandom(self.rng.randrange(0, 5 * CS))
            await self.fs.write_file(path, data)
            self.files[path] = data
        elif roll < 0.75:
            path = self.rng.choice(names)
            old = self.files[path]
            offset = self.rng.randrange(0, len(old) + 1)
            patch = os.urandom(self.rng.randrange(1, CS // 2))
            async with self.fs.open(path, "r+b") as f:
                await f.seek(offset)
                await f.write(patch)
            self.files[path] = old[:offset] + patch + old[offset + len(patch):]
        elif roll < 0.88:
            path = self.rng.choice(names)
            size = self.rng.randrange(0, len(self.files[path]) + CS)
            await self.fs.truncate(path, size)
            old = self.files[path]
            self.files[path] = old[:size] + bytes(max(0, size - len(old)))
        else:
            path = self.rng.choice(names)
            await self.fs.remove(path)
            del self.files[path]
            self.removed.add(path)
        self.done += 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()


async def verify(meta: str, files: dict[str, bytes], removed: set[str]) -> None:
    async with Client(meta, uid=0, gid=0, timeout=30) as fs:
        for path, data in sorted(files.items()):
            got = await fs.read_file(path)
            assert got == data, f"{path}: {len(got)} bytes read, {len(data)} acknowledged"
        for path in sorted(removed - set(files)):
            assert not await fs.exists(path)


RESYNC_DONE = re.compile(r"resync chain \d+ v\d+: target \d+ -> (\d+) done: (\d+) chunks sent \(([\d.]+) MiB\), "
                         r"(\d+) removed.* in ([\d.]+) s \(([\d.]+) MiB/s\)")


def resync_lines(cluster: LocalCluster, target: int) -> list[re.Match[str]]:
    out = []
    for i in range(cluster.nodes):
        text = (cluster.data_dir / f"node-{i + 1}.log").read_text(errors="replace")
        out += [m for m in RESYNC_DONE.finditer(text) if int(m.group(1)) == target]
    return out


def test_killed_server_resyncs_then_serves_every_file_alone(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c", nodes=3, replicas=3, chunk_size=CS,
                           heartbeat_interval=0.2, heartbeat_timeout=1.0)
    cluster.start(timeout=60)
    meta = cluster.meta_address

    async def scenario() -> None:
        async with Client(meta, uid=0, gid=0, timeout=30) as fs:
            work = Workload(fs, random.Random(5))
            bulk: dict[str, bytes] = {}
            for _ in range(12):
                await work.step()
            stop = asyncio.Event()
            writer = asyncio.create_task(work.run(stop))
            try:
                await asyncio.sleep(0.5)
                cluster.storage[2].kill()  # kill -9 mid-write
                killed_at = work.done
                await wait_states(meta, lambda s: s.get(301) == "OFFLINE", "301 OFFLINE", 15)
                # Bulk data while it is down (kept out of the workload's reach), so the
                # resync has megabytes to send.
                for i in range(12):
                    data = os.urandom(16 * CS)
                    await fs.write_file(f"/bulk{i}", data)
                    bulk[f"/bulk{i}"] = data
                deadline = time.monotonic() + 20
                while work.done < killed_at + 20 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert work.done >= killed_at + 20, "the workload stalled while a replica was down"
                restarted = time.monotonic()
                await asyncio.to_thread(cluster.storage[2].restart, 20)
                await wait_states(meta, lambda s: s.get(301) == "SERVING", "301 SERVING again", 60)
                print(f"restart -> SERVING in {time.monotonic() - restarted:.2f} s")
                await asyncio.sleep(0.5)  # writes on the full chain again
            finally:
                stop.set()
                await asyncio.wait_for(writer, 60)
        meta_log = (cluster.data_dir / "meta.log").read_text(errors="replace")
        assert re.search(r"target 301 \w+ -> SYNCING", meta_log) and "target 301 SYNCING -> SERVING" in meta_log
        done = resync_lines(cluster, 301)
        assert done, "no resync of target 301 finished"
        last = done[-1]
        print(f"resync to 301: {last.group(2)} chunks, {last.group(3)} MiB, {last.group(4)} removed, "
              f"{last.group(5)} s, {last.group(6)} MiB/s")
        assert int(last.group(2)) >= 12 * 16  # at least the bulk files' chunks
        # Alone: the other two die; 301 must serve every acknowledged byte.
        cluster.storage[0].kill()
        cluster.storage[1].kill()
        await wait_states(meta, lambda s: s.get(301) == "SERVING" and s.get(101) != "SERVING"
                          and s.get(201) != "SERVING", "301 the only serving target", 15)
        await verify(meta, {**work.files, **bulk}, work.removed)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 180))
    finally:
        cluster.stop()
