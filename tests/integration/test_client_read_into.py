"""Zero-copy reads (`Client.read_into`, `EmberFile.pread_into`) on a real 3-node,
3-replica cluster with 64 KiB chunks, over both transports: byte-exact at awkward
offsets and sizes, short at EOF, holes as zeros, the caller's buffer filled in place."""

from __future__ import annotations

import os
import random

import pytest

from emberfs.client import Client

CS = 64 * 1024


def _client(cluster, transport: str) -> Client:  # type: ignore[no-untyped-def]
    return Client(cluster.meta_address, uid=0, gid=0, timeout=20.0, transport=transport)


@pytest.mark.parametrize("transport", ["bulk", "grpc"])
def test_read_into_fills_the_buffer_exactly(cluster3, arun, transport: str) -> None:  # type: ignore[no-untyped-def]
    size = 7 * CS + 123
    data = os.urandom(size)
    path = f"/read-into-{transport}"
    rng = random.Random(7)
    cases = [(0, size), (0, size + 50), (1, CS), (CS - 1, 2), (CS, CS), (size - 5, 10), (size, 10), (size + CS, 4)]
    cases += [(rng.randrange(size), rng.randrange(1, 3 * CS)) for _ in range(40)]

    async def go() -> None:
        async with _client(cluster3, transport) as fs:
            await fs.write_file(path, data)
            async with fs.open(path, "rb") as f:
                for offset, length in cases:
                    expected = data[offset:offset + length]
                    buffer = bytearray(b"\xee" * (length + 8))  # a guard tail stays untouched
                    n = await fs.read_into(path, memoryview(buffer)[:length], offset)
                    assert n == len(expected) and buffer[:n] == expected, (offset, length)
                    assert buffer[length:] == b"\xee" * 8
                    again = bytearray(length)
                    assert await f.pread_into(again, offset) == n and again[:n] == expected
            whole = bytearray(size)
            assert await fs.read_into(path, whole) == size and whole == data

    arun(go())


def test_holes_read_as_zeros_into_a_dirty_buffer(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with _client(cluster3, "bulk") as fs:
            async with fs.open("/read-into-holes", "wb") as f:
                await f.seek(3 * CS + 10)
                await f.write(b"end")
            buffer = bytearray(b"\xff" * (3 * CS + 13))
            assert await fs.read_into("/read-into-holes", buffer) == len(buffer)
            assert buffer == bytes(3 * CS + 10) + b"end"

    arun(go())


def test_read_into_refuses_what_it_cannot_fill(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with _client(cluster3, "bulk") as fs:
            await fs.write_file("/read-into-bad", b"abc")
            with pytest.raises(TypeError):
                await fs.read_into("/read-into-bad", b"immutable")
            with pytest.raises(FileNotFoundError):
                await fs.read_into("/read-into-missing", bytearray(4))
            with pytest.raises(OSError):
                await fs.read_into("/read-into-bad", bytearray(4), -1)

    arun(go())
