"""Client.write_file / read_file on a real 3-node, 3-replica cluster (LocalCluster),
with 64 KiB chunks so small files span many chunks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from emberfs.client import Client
from emberfs.client._launch import LocalCluster

CS = 64 * 1024


@pytest.fixture(scope="module")
def data_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("data-cluster"), nodes=3, replicas=3, chunk_size=CS)
    cluster.start(timeout=60.0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    "length", [0, 1, CS - 1, CS, CS + 1, 3 * CS, 1024 * 1024 + 17], ids=lambda n: f"{n}B"
)
def test_write_then_read_back(data_cluster: LocalCluster, arun, length: int) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(length)

    async def go() -> None:
        async with Client(data_cluster.meta_address, uid=0, gid=0) as fs:
            await fs.write_file(f"/len-{length}", data)
            assert (await fs.stat(f"/len-{length}")).st_size == length
            assert await fs.read_file(f"/len-{length}") == data

    arun(go())


def test_overwrite_shorter_then_longer(data_cluster: LocalCluster, arun) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with Client(data_cluster.meta_address, uid=0, gid=0) as fs:
            await fs.write_file("/over", os.urandom(5 * CS + 3))
            short = os.urandom(CS + 1)
            await fs.write_file("/over", short)
            assert await fs.read_file("/over") == short
            # Growing again must not bring back bytes of the first, longer version.
            await fs.truncate("/over", 4 * CS)
            assert await fs.read_file("/over") == short + bytes(4 * CS - len(short))
            await fs.write_file("/over", b"")
            assert await fs.read_file("/over") == b""

    arun(go())


def test_every_replica_holds_the_chunks(data_cluster: LocalCluster, arun) -> None:  # type: ignore[no-untyped-def]
    """Reads are spread over replicas; each replica alone returns the same bytes."""
    data = os.urandom(4 * CS)

    async def go() -> None:
        async with Client(data_cluster.meta_address, uid=0, gid=0) as fs:
            await fs.write_file("/spread", data)
            for _ in range(3):
                assert await fs.read_file("/spread") == data
            targets = {t.target_id for t in (await fs.routing()).targets}
            assert len(targets) == 3
            for target in sorted(targets):
                # Force one replica by avoiding the others.
                others = targets - {target}
                fs._datapath._outstanding.update({t: 1000 for t in others})
                assert await fs.read_file("/spread") == data
                fs._datapath._outstanding.subtract({t: 1000 for t in others})

    arun(go())


def test_errors_carry_the_path(data_cluster: LocalCluster, arun) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with Client(data_cluster.meta_address, uid=0, gid=0) as fs:
            with pytest.raises(FileNotFoundError) as missing:
                await fs.read_file("/no-such-file")
            assert missing.value.filename == "/no-such-file"
            await fs.mkdir("/a-dir")
            with pytest.raises(IsADirectoryError):
                await fs.read_file("/a-dir")

    arun(go())


def test_restart_on_same_data_dir_keeps_data(tmp_path: Path, arun) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(2 * CS + 5)
    with LocalCluster(tmp_path / "c", nodes=3, replicas=3, chunk_size=CS) as cluster:
        first = cluster.meta_address
        ports = [p.address for p in cluster.storage]

        async def write() -> None:
            async with Client(first, uid=0, gid=0) as fs:
                await fs.write_file("/kept", data)

        arun(write())
    with LocalCluster(tmp_path / "c", nodes=3, replicas=3, chunk_size=CS) as again:
        assert again.meta_address == first
        assert [p.address for p in again.storage] == ports

        async def read() -> bytes:
            async with Client(again.meta_address, uid=0, gid=0) as fs:
                return await fs.read_file("/kept")

        assert arun(read()) == data


def test_read_survives_a_killed_replica(tmp_path: Path, arun) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(6 * CS)
    with LocalCluster(tmp_path / "k", nodes=3, replicas=3, chunk_size=CS) as cluster:

        async def go() -> None:
            async with Client(cluster.meta_address, uid=0, gid=0) as fs:
                await fs.write_file("/k", data)
                cluster.storage[1].kill()
                # Reads that pick the dead replica move to another one.
                for _ in range(3):
                    assert await fs.read_file("/k") == data

        arun(go())


def test_write_without_chains_says_to_init_them(tmp_path: Path, arun) -> None:  # type: ignore[no-untyped-def]
    from emberfs.client._launch import metaserver_process

    with metaserver_process(tmp_path / "meta") as meta:

        async def go() -> None:
            async with Client(meta.address, uid=0, gid=0) as fs:
                await fs.write_file("/empty-ok", b"")  # no chunk to write: fine without chains
                assert await fs.read_file("/empty-ok") == b""
                with pytest.raises(OSError) as failed:
                    await fs.write_file("/needs-chains", b"x")
                assert "emberfs admin init-chains" in str(failed.value)
                assert failed.value.filename == "/needs-chains"

        arun(go())
