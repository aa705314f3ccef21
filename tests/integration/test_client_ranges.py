"""Ranged and batched reads, truncate and in-chunk overwrites on a real 3-node,
3-replica cluster with 64 KiB chunks; reads after `kill -9` of two storage servers."""

from __future__ import annotations

import asyncio
import errno
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from emberfs.client import Client
from emberfs.client._launch import LocalCluster
from emberfs.proto import mgmt_pb2

CS = 64 * 1024
SIZES = [0, 1, CS - 1, CS, CS + 1, 7 * CS + 123]


def _client(cluster) -> Client:  # type: ignore[no-untyped-def]
    return Client(cluster.meta_address, uid=0, gid=0, timeout=20.0)


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"{n}B")
def test_byte_exact_reads_at_every_awkward_size(cluster3, arun, size: int) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(size)
    path = f"/ranges-size-{size}"

    async def go() -> None:
        async with _client(cluster3) as fs:
            await fs.write_file(path, data)
            assert await fs.read_file(path) == data
            assert await fs.read_range(path, 0, size) == data
            assert await fs.read_range(path, 0, size + 10) == data  # short at EOF
            assert await fs.read_range(path, size, 10) == b""  # at EOF
            assert await fs.read_range(path, size + CS, 10) == b""  # past EOF
            if size > 2:
                assert await fs.read_range(path, 1, size - 2) == data[1:-1]
            async with fs.open(path, "rb") as f:
                assert await f.read() == data
                assert await f.read() == b""

    arun(go())


def test_ranges_crossing_chunk_boundaries_and_eof(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(4)
    size = 5 * CS + 77
    data = rng.randbytes(size)
    edges = [0, 1, CS - 1, CS, CS + 1, 2 * CS, 5 * CS, size - 1, size, size + 5]
    ranges = [(o, n) for o in edges for n in (0, 1, 2, CS - 1, CS, CS + 2, 3 * CS)]
    ranges += [(rng.randrange(size + CS), rng.randrange(3 * CS)) for _ in range(100)]

    async def go() -> None:
        async with _client(cluster3) as fs:
            await fs.write_file("/ranges-edges", data)
            for offset, length in ranges[:40]:
                assert await fs.read_range("/ranges-edges", offset, length) == data[offset : offset + length]
            batch = await fs.read_ranges([("/ranges-edges", o, n) for o, n in ranges])
            assert batch == [data[o : o + n] for o, n in ranges]

    arun(go())


def test_read_ranges_mixes_files_and_keeps_request_order(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    a, b = os.urandom(3 * CS), os.urandom(CS // 2)
    requests = [("/mix-b", 10, 100), ("/mix-a", CS - 5, 10), ("/mix-b", 0, CS), ("/mix-a", 0, 3 * CS), ("/mix-a", 7, 0)]
    contents = {"/mix-a": a, "/mix-b": b}

    async def go() -> None:
        async with _client(cluster3) as fs:
            await fs.write_file("/mix-a", a)
            await fs.write_file("/mix-b", b)
            got = await fs.read_ranges(requests)
            assert got == [contents[p][o : o + n] for p, o, n in requests]
            assert await fs.read_ranges([]) == []

    arun(go())


def test_bad_read_arguments_raise_python_errors(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with _client(cluster3) as fs:
            await fs.write_file("/bad-args", b"abc")
            await fs.makedirs("/bad-args-dir", exist_ok=True)
            for offset, length in [(-1, 1), (0, -1)]:
                with pytest.raises(OSError) as caught:
                    await fs.read_range("/bad-args", offset, length)
                assert caught.value.errno == errno.EINVAL and caught.value.filename == "/bad-args"
            with pytest.raises(OSError) as caught:
                await fs.read_ranges([("/bad-args", 0, 1), ("/bad-args", -5, 1)])
            assert caught.value.errno == errno.EINVAL
            with pytest.raises(FileNotFoundError):
                await fs.read_range("/no-such-file", 0, 1)
            with pytest.raises(FileNotFoundError):
                await fs.read_ranges([("/bad-args", 0, 1), ("/no-such-file", 0, 1)])
            with pytest.raises(IsADirectoryError):
                await fs.read_range("/bad-args-dir", 0, 1)
            with pytest.raises(OSError) as caught:
                await fs.truncate("/bad-args", -1)
            assert caught.value.errno == errno.EINVAL

    arun(go())


def test_truncate_trims_storage_so_growth_reads_zeros(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(4 * CS + 10)

    async def go() -> None:
        async with _client(cluster3) as fs:
            await fs.write_file("/trunc", data)
            await fs.truncate("/trunc", CS + 100)
            assert await fs.read_file("/trunc") == data[: CS + 100]
            await fs.truncate("/trunc", 3 * CS)  # grow: the cut bytes must not come back
            assert await fs.read_file("/trunc") == data[: CS + 100] + bytes(3 * CS - CS - 100)
            async with fs.open("/trunc", "ab") as f:  # extend by writing past the end
                await f.write(b"tail")
            assert await fs.read_range("/trunc", 3 * CS - 2, 10) == b"\0\0tail"
            await fs.truncate("/trunc", 0)
            assert await fs.read_file("/trunc") == b""

    arun(go())


def test_concurrent_overwrites_inside_a_chunk_are_atomic_for_readers(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    """Writers overwrite one region inside a chunk with a uniform byte each time; readers
    must only ever see one writer's byte across the whole region (CRAQ copy-on-write)."""
    start, length = 1000, 40_000  # inside chunk 0 of 64 KiB
    writes_per_writer = 15

    async def go() -> None:
        async with _client(cluster3) as setup:
            await setup.write_file("/atomic", bytes(2 * CS))
        done = asyncio.Event()
        seen: set[int] = set()

        async def writer(fs: Client, base: int) -> None:
            async with fs.open("/atomic", "r+b") as f:
                for i in range(writes_per_writer):
                    await f.seek(start)
                    await f.write(bytes([base + i]) * length)
                    await f.flush()

        async def reader(fs: Client) -> int:
            reads = 0
            while not done.is_set() and reads < 500:
                region = await fs.read_range("/atomic", start, length)
                assert len(set(region)) == 1, f"torn read: {sorted(set(region))[:5]}"
                seen.add(region[0])
                reads += 1
            return reads

        async with _client(cluster3) as writers, _client(cluster3) as readers:
            readers_task = asyncio.gather(reader(readers), reader(readers), reader(readers))
            await asyncio.gather(writer(writers, 1), writer(writers, 101))
            done.set()
            counts = await readers_task
        assert sum(counts) > 0
        assert len(seen) > 1  # readers did see the region change
        async with _client(cluster3) as fs:
            final = await fs.read_file("/atomic")
        assert final[:start] == bytes(start) and final[start + length :] == bytes(2 * CS - start - length)
        assert len(set(final[start : start + length])) == 1

    arun(go(), timeout=120)


@pytest.fixture
def slow_failover_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster whose manager waits a minute before it calls a server dead, so a test
    sees the client cope with dead servers that routing still lists as SERVING."""
    cluster = LocalCluster(tmp_path / "cluster", nodes=3, replicas=3, chunk_size=CS, heartbeat_timeout=60.0)
    cluster.start(timeout=60.0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.faults
def test_reads_survive_kill_9_of_two_storage_servers_before_failover(slow_failover_cluster, arun) -> None:  # type: ignore[no-untyped-def]
    cluster = slow_failover_cluster
    files = {f"/k9-{i}": os.urandom(size) for i, size in enumerate([1, CS, 3 * CS + 5, 9 * CS])}

    async def write() -> None:
        async with _client(cluster) as fs:
            for path, data in files.items():
                await fs.write_file(path, data)

    async def read_all(fs: Client) -> None:
        for path, data in files.items():
            assert await fs.read_file(path) == data
            assert await fs.read_range(path, 3, CS) == data[3 : 3 + CS]
        batch = [(p, 0, len(d)) for p, d in files.items()]
        assert await fs.read_ranges(batch) == list(files.values())
        async with fs.open("/k9-3", "rb") as f:
            assert await f.read() == files["/k9-3"]

    async def check() -> None:
        # One client warmed up before the kill (its routing lists the dead servers as
        # SERVING), and a fresh one after.
        async with _client(cluster) as warm:
            await read_all(warm)
            cluster.storage[0].kill()
            cluster.storage[2].kill()
            await read_all(warm)
            await read_all(warm)
        async with _client(cluster) as fresh:
            routing = await fresh.routing()
            # No failover yet: the manager still lists every target as serving.
            assert {t.public_state for t in routing.targets} == {mgmt_pb2.SERVING}
            await read_all(fresh)

    arun(write())
    arun(check(), timeout=120)
