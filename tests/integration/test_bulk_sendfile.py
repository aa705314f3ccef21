"""Whole-chunk reads that the storage server sends with sendfile(2) (1 MiB chunks, the
sendfile threshold): byte-exact over the bulk channel, equal to what gRPC returns, and
never a mix of two versions while the chunks are being replaced."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from emberfs.client import Client
from emberfs.client._launch import LocalCluster
from emberfs.storage.bulkserver import SENDFILE_MIN

CHUNK = 1 << 20
assert CHUNK >= SENDFILE_MIN  # otherwise this file tests the other path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    c = LocalCluster(tmp_path_factory.mktemp("sendfile"), nodes=3, replicas=3, chunk_size=CHUNK)
    c.start(timeout=60.0)
    try:
        yield c
    finally:
        c.stop()


def test_whole_chunks_by_sendfile_are_byte_exact(cluster: Any, arun: Any) -> None:
    data = os.urandom(5 * CHUNK + 12345)

    async def go() -> None:
        async with Client(cluster.meta_address, timeout=30.0) as fs, \
                Client(cluster.meta_address, timeout=30.0, transport="grpc") as slow:
            await _mkdir(fs)
            await fs.write_file("/sf/a", data)
            buffer = bytearray(len(data))
            for _ in range(3):  # every replica gets picked at least once
                assert await fs.read_into("/sf/a", buffer) == len(data) and buffer == data
            assert await fs.read_file("/sf/a") == data == await slow.read_file("/sf/a")
            assert await fs.read_range("/sf/a", CHUNK - 10, 20) == data[CHUNK - 10:CHUNK + 10]  # not whole

    arun(go())


def test_reads_during_whole_chunk_replacements_see_one_version(cluster: Any, arun: Any) -> None:
    versions = [bytes([v]) * (2 * CHUNK) for v in range(1, 7)]

    async def go() -> None:
        async with Client(cluster.meta_address, timeout=30.0) as fs:
            await _mkdir(fs)
            await fs.write_file("/sf/b", versions[0])
            done = asyncio.Event()
            seen: set[bytes] = set()

            async def reader() -> None:
                buffer = bytearray(CHUNK)
                while not done.is_set():
                    async with fs.open("/sf/b", "rb") as f:
                        for index in range(2):
                            assert await f.pread_into(buffer, index * CHUNK) == CHUNK
                            assert buffer.count(buffer[0]) == CHUNK, "a chunk mixed two versions"
                            seen.add(bytes(buffer[:1]))

            readers = [asyncio.ensure_future(reader()) for _ in range(3)]
            for version in versions[1:]:
                async with fs.open("/sf/b", "r+b") as f:
                    await f.write(version)
                await asyncio.sleep(0.05)
            done.set()
            await asyncio.gather(*readers)
            assert len(seen) >= 2  # the readers did see the chunks change

    arun(go(), timeout=120.0)


async def _mkdir(fs: Client) -> bool:
    await fs.makedirs("/sf", exist_ok=True)
    return True
