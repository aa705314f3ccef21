"""Batched reads across files (READVM) on a real cluster: `Client.read_ranges` over many
files on the bulk channel, frames counted by a spy on the client's bulk pool (the calls
still go out), on a 3-node cluster with 2 targets per node (two 3-replica chains, 64 KiB
chunks, files striped over both).

- 64 ranges over 16 files: exact bytes (holes, short chunks, at and past EOF included),
  no single READ, and at most one READVM per target (one per chain);
- a file removed or replaced by another client while this one holds it cached: the
  others keep their bytes and only that file is opened again;
- one file the caller may not read fails the whole call with PermissionError (its path),
  as before batching; the rest is readable on its own;
- kill -9 of the storage servers the READVMs go to, while a reader runs (own cluster;
  the manager still lists them SERVING): every batch stays exact.
The capability side (one capability per inode in a READVM) is in test_auth_datapath.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emberfs.client import Client
from emberfs.client._launch import LocalCluster
from emberfs.common.bulkclient import BulkPool

pytestmark = pytest.mark.timeout(300)

CS = 64 * 1024
GC_WAIT_S = 20.0  # deleted files' chunks are collected every second; bound for the polls


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("readvm"), nodes=3, replicas=3, targets_per_node=2, chunk_size=CS,
                     heartbeat_timeout=15.0)
    c.start(timeout=60.0)
    try:
        yield c
    finally:
        c.stop()


class Sent(Counter[str]):
    """Bulk calls by method ("Read", "ReadV", ...), and the targets of the READVMs."""

    def __init__(self) -> None:
        super().__init__()
        self.readv_targets: Counter[int] = Counter()

    def clear(self) -> None:
        super().clear()
        self.readv_targets.clear()


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> Sent:
    sent = Sent()
    call = BulkPool.call

    async def counted(self: BulkPool, address: str, method: str, request: Any, **kwargs: Any) -> Any:
        sent[method] += 1
        if method == "ReadV":
            sent.readv_targets[request.target_id] += 1
        return await call(self, address, method, request, **kwargs)

    monkeypatch.setattr(BulkPool, "call", counted)
    return sent


def _client(c: LocalCluster, uid: int = 0, **options: Any) -> Client:
    return Client(c.meta_address, uid=uid, gid=uid, groups=[], timeout=30.0, **options)


def run(coro: Any, timeout: float = 120.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _files(rng: random.Random, root: str, n: int) -> dict[str, bytes]:
    return {f"{root}/f{k:02d}": os.urandom(rng.randrange(CS // 2, 6 * CS)) for k in range(n)}


def _batch(rng: random.Random, files: dict[str, bytes], n: int) -> list[tuple[str, int, int]]:
    """n samples of 4-28 KB anywhere in the files, then a range at, across and past each of two files' ends."""
    paths = sorted(files)
    picks = []
    for _ in range(n):
        path = rng.choice(paths)
        picks.append((path, rng.randrange(len(files[path])), rng.randrange(4_000, 28_000)))
    for path in paths[:2]:
        size = len(files[path])
        picks += [(path, size - 10, 100), (path, size, 10), (path, size + CS, 5)]
    return picks


def _expected(files: dict[str, bytes], ranges: list[tuple[str, int, int]]) -> list[bytes]:
    return [files[p][o:o + n] for p, o, n in ranges]


def test_a_batch_over_many_files_costs_one_readvm_per_target(cluster: LocalCluster, frames: Sent) -> None:
    rng = random.Random(64)
    files = _files(rng, "/many", 16)
    sparse = "/many/f00"  # grown by truncate: its chunks past the first do not exist
    files[sparse] = files[sparse][:1000] + bytes(5 * CS)

    async def go() -> tuple[list[list[bytes]], list[Sent], list[int]]:
        async with _client(cluster) as fs:
            await fs.mkdir("/many")
            for path, data in files.items():
                await fs.write_file(path, data if path != sparse else data[:1000])
            await fs.truncate(sparse, len(files[sparse]))
            chains = {c for p in files for c in (await fs._file(p))[1].chain_ids}
            got, counts = [], []
            for seed in range(3):  # the first looks the files up, the others hit the cache
                ranges = _batch(random.Random(seed), files, 64)
                frames.clear()
                got.append(await fs.read_ranges(ranges))
                counts.append(Sent())
                counts[-1].update(frames)
                counts[-1].readv_targets.update(frames.readv_targets)
                assert got[-1] == _expected(files, ranges), seed
            return got, counts, sorted(chains)

    _, counts, chains = run(go())
    assert len(chains) == 2, "the files should stripe over both chains"
    for sent in counts:
        assert sent["Read"] == 0, sent
        assert sent["ReadV"] <= len(chains), sent  # one frame per chain, whatever the files
        assert all(n == 1 for n in sent.readv_targets.values()), sent.readv_targets  # one per target


def test_a_file_changed_by_another_client_is_opened_again_alone(cluster: LocalCluster, frames: Sent) -> None:
    """The reader holds 8 files cached (attr_timeout 60 s). The writer replaces one and
    removes another: until their chunks are collected the reader may still read the old
    bytes (as NFS within its timeout); after, the replaced file reads as new, and the
    removed one fails the call with FileNotFoundError naming it. The others are read
    from the cache throughout: only the two changed files are opened again."""
    rng = random.Random(8)
    files = _files(rng, "/changed", 8)
    replaced, removed = "/changed/f03", "/changed/f05"
    new = os.urandom(3 * CS + 17)

    async def go() -> None:
        async with _client(cluster) as writer, _client(cluster, attr_timeout=60.0) as reader:
            await writer.mkdir("/changed")
            for path, data in files.items():
                await writer.write_file(path, data)
            ranges = [(p, 0, 10 * CS) for p in files if p != removed]  # whole files: short at EOF
            assert await reader.read_ranges(ranges) == _expected(files, ranges)
            opens = reader._meta.calls["Open"]
            assert opens == len(files) - 1
            await writer.write_file(f"{replaced}.tmp", new)
            await writer.rename(f"{replaced}.tmp", replaced)
            deadline = time.monotonic() + GC_WAIT_S
            while True:
                got = await reader.read_ranges(ranges)
                index = [p for p, _, _ in ranges].index(replaced)
                assert got[:index] + got[index + 1:] == [files[p] for p, _, _ in ranges if p != replaced]
                if got[index] == new:
                    break
                assert got[index] == files[replaced], "a mix of the old and the new file"
                assert time.monotonic() < deadline, "still the replaced file after its chunks' GC"
                await asyncio.sleep(0.2)
            assert reader._meta.calls["Open"] == opens + 1  # the replaced file only
            files[replaced] = new

            every = [(p, 0, 10 * CS) for p in files]
            assert await reader.read_ranges(every) == _expected(files, every)  # caches the removed one
            opens = reader._meta.calls["Open"]
            await writer.remove(removed)
            deadline = time.monotonic() + GC_WAIT_S
            while True:
                try:
                    assert await reader.read_ranges(every) == _expected(files, every)
                except FileNotFoundError as exc:
                    assert exc.filename == removed
                    break
                assert time.monotonic() < deadline, "the removed file was still read after its chunks' GC"
                await asyncio.sleep(0.2)
            assert reader._meta.calls["Open"] == opens + 1  # the removed file only

    run(go(), timeout=180)


def test_one_unreadable_file_fails_the_whole_call(cluster: LocalCluster, frames: Sent) -> None:
    """read_ranges raises for the whole call when one file fails (as before batching):
    PermissionError naming the file the caller may not read; without it, the same call
    reads the rest."""
    rng = random.Random(6)
    files = _files(rng, "/perm", 6)
    private = "/perm/f02"

    async def go() -> None:
        async with _client(cluster) as root, _client(cluster, uid=1000) as user:
            await root.mkdir("/perm")
            for path, data in files.items():
                await root.write_file(path, data, mode=0o600 if path == private else 0o644)
            ranges = _batch(rng, files, 64)
            with pytest.raises(PermissionError) as refused:
                await user.read_ranges(ranges)
            assert refused.value.filename == private
            readable = [r for r in ranges if r[0] != private]
            assert await user.read_ranges(readable) == _expected(files, readable)

    run(go())


# -- dead servers -----------------------------------------------------------------------------


@pytest.fixture
def slow_failover(tmp_path: Path) -> Iterator[LocalCluster]:
    """The manager waits a minute before it calls a server dead: routing keeps listing the
    killed servers' targets as SERVING for the whole test."""
    c = LocalCluster(tmp_path / "cluster", nodes=3, replicas=3, chunk_size=CS, heartbeat_timeout=60.0)
    c.start(timeout=60.0)
    try:
        yield c
    finally:
        c.stop()


def test_batches_stay_exact_while_the_servers_they_go_to_are_killed(slow_failover: LocalCluster,
                                                                     frames: Sent) -> None:
    """One chain: every READVM goes to its affine replica. That server is killed while
    READVMs are in flight, then the one they moved to; every batch stays exact."""
    c = slow_failover
    rng = random.Random(5)
    files = _files(rng, "/victims", 8)

    async def go() -> int:
        async with _client(c) as fs:
            await fs.mkdir("/victims")
            for path, data in files.items():
                await fs.write_file(path, data)
            routing = await fs.routing()
            node_of = {t.target_id: t.node_id for t in routing.targets}
            address_of = {n.node_id: n.address for n in routing.nodes}
            batches = 0

            async def reader(stop: asyncio.Event) -> None:
                nonlocal batches
                while not stop.is_set() or batches < 30:
                    ranges = _batch(rng, files, 40)
                    assert await fs.read_ranges(ranges) == _expected(files, ranges)
                    batches += 1
                    assert batches < 10_000

            def kill_busiest() -> None:
                target, _ = frames.readv_targets.most_common(1)[0]
                (server,) = [s for s in c.storage if s.address == address_of[node_of[target]]]
                server.kill()
                frames.readv_targets.clear()

            frames.clear()
            stop = asyncio.Event()
            task = asyncio.create_task(reader(stop))
            for _ in range(2):  # the affine replica, then the one the READVMs moved to
                seen = batches
                while batches < seen + 10:
                    await asyncio.sleep(0.01)
                kill_busiest()
            stop.set()
            await task
            return batches

    assert run(go(), timeout=240) >= 30
    assert frames["ReadV"] >= 1 and frames["Read"] >= 1, frames  # some pieces were re-read alone
    assert sum(1 for s in c.storage if s.running) == 1
