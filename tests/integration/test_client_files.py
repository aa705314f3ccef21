"""File objects (`Client.open`) on a real 3-node, 3-replica cluster with 64 KiB chunks:
every mode, odd-sized reads and writes across chunk boundaries, seek/tell, readahead,
the length reaching the metaserver on flush/close, and Python's errors for misuse."""

from __future__ import annotations

import asyncio
import errno
import io
import os

import pytest

from emberfs.client import Client

CS = 64 * 1024
PIECES = [1, CS - 1, 3, 2 * CS + 5, 17, CS, 100]


def _client(cluster, **options) -> Client:  # type: ignore[no-untyped-def]
    return Client(cluster.meta_address, uid=0, gid=0, timeout=20.0, **options)


def test_write_in_odd_pieces_then_read_in_other_pieces(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(sum(PIECES))

    async def go() -> None:
        async with _client(cluster3) as fs:
            f = await fs.open("/files-odd", "wb")
            at = 0
            for n in PIECES:
                assert await f.write(data[at : at + n]) == n
                at += n
                assert f.tell() == at
            await f.close()
            await f.close()  # idempotent
            assert (await fs.stat("/files-odd")).st_size == len(data)
            async with fs.open("/files-odd", "rb") as r:
                got = bytearray()
                for n in reversed(PIECES):
                    got += await r.read(n)
                assert bytes(got) == data
                assert await r.read(10) == b""
                await r.seek(CS - 2)
                buffer = bytearray(5)
                assert await r.readinto(buffer) == 5 and bytes(buffer) == data[CS - 2 : CS + 3]
                assert await r.seek(-4, io.SEEK_END) == len(data) - 4
                assert await r.read() == data[-4:]
                assert await r.seek(-2, io.SEEK_CUR) == len(data) - 2
                await r.seek(len(data) + 100)  # past EOF is allowed; reads return b""
                assert await r.read(5) == b""
                # pread: many at once, position untouched, short at EOF
                got_ranges = await asyncio.gather(*(r.pread(o, CS + 1) for o in range(0, len(data) + CS, CS // 2)))
                assert got_ranges == [data[o : o + CS + 1] for o in range(0, len(data) + CS, CS // 2)]
                assert r.tell() == len(data) + 100
                with pytest.raises(OSError):
                    await r.pread(-1, 1)

    arun(go())


def test_exclusive_append_and_read_write_modes(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with _client(cluster3) as fs:
            async with fs.open("/files-x", "xb") as f:
                await f.write(b"hello ")
            with pytest.raises(FileExistsError):
                await fs.open("/files-x", "xb")
            async with fs.open("/files-x", "ab") as f:
                assert f.tell() == 6
                await f.seek(0)  # appends go to the end wherever the position is
                await f.write(b"world")
            assert await fs.read_file("/files-x") == b"hello world"
            with pytest.raises(FileNotFoundError):
                await fs.open("/files-none", "r+b")
            big = os.urandom(3 * CS)
            await fs.write_file("/files-rw", big)
            async with fs.open("/files-rw", "r+b") as f:
                await f.seek(CS - 3)
                await f.write(b"ABCDEF")  # crosses the chunk 0/1 boundary
                await f.seek(CS - 5)
                assert await f.read(10) == big[CS - 5 : CS - 3] + b"ABCDEF" + big[CS + 3 : CS + 5]
                await f.seek(0, io.SEEK_END)
                await f.write(b"++")
            expected = big[: CS - 3] + b"ABCDEF" + big[CS + 3 :] + b"++"
            assert await fs.read_file("/files-rw") == expected

    arun(go())


def test_wb_empties_an_existing_file(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with _client(cluster3) as fs:
            await fs.write_file("/files-wb", os.urandom(3 * CS))
            async with fs.open("/files-wb", "wb") as f:
                await f.write(b"xy")
            assert await fs.read_file("/files-wb") == b"xy"
            await fs.truncate("/files-wb", 2 * CS)  # the old bytes must not come back
            assert await fs.read_file("/files-wb") == b"xy" + bytes(2 * CS - 2)

    arun(go())


def test_length_reaches_the_metaserver_on_flush_and_close(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with _client(cluster3) as writer, _client(cluster3) as other:
            f = await writer.open("/files-len", "wb")
            await f.write(os.urandom(CS + 7))
            assert (await other.stat("/files-len")).st_size == 0  # buffered, not reported
            await f.flush()
            assert (await other.stat("/files-len")).st_size == CS + 7
            await f.write(b"more")
            await f.close()
            assert (await other.stat("/files-len")).st_size == CS + 11

    arun(go())


def test_sequential_reads_prefetch_and_random_reads_do_not(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(10 * CS)

    async def go() -> None:
        async with _client(cluster3, readahead=4 * CS) as fs:
            await fs.write_file("/files-ahead", data)
            async with fs.open("/files-ahead", "rb") as f:
                assert await f.read(100) == data[:100]
                assert await f.read(CS) == data[100 : CS + 100]
                assert len(f._ahead) >= 3  # chunks beyond what was asked are on their way
                await f.seek(7 * CS)
                assert await f.read(10) == data[7 * CS : 7 * CS + 10]
                assert f._ahead == {}  # a jump drops the window
                assert await f.read(3 * CS) == data[7 * CS + 10 : 10 * CS]

    arun(go())


def test_misuse_raises_python_errors(cluster3, arun) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with _client(cluster3) as fs:
            await fs.write_file("/files-misuse", b"abc")
            for mode in ("r", "w", "rt", "w+b", "rw", ""):
                with pytest.raises(ValueError, match="invalid mode"):
                    fs.open("/files-misuse", mode)
            async with fs.open("/files-misuse", "rb") as f:
                with pytest.raises(io.UnsupportedOperation):
                    await f.write(b"x")
                with pytest.raises(ValueError):
                    await f.read(-2)
                with pytest.raises(OSError) as caught:
                    await f.seek(-1)
                assert caught.value.errno == errno.EINVAL
                with pytest.raises(ValueError):
                    await f.seek(0, 7)
                assert f.readable() and not f.writable() and f.seekable()
            assert f.closed
            with pytest.raises(ValueError, match="closed file"):
                await f.read()
            with pytest.raises(ValueError, match="closed file"):
                f.tell()
            for mode in ("wb", "ab", "xb"):
                async with fs.open(f"/files-misuse-{mode}", mode) as w:
                    with pytest.raises(io.UnsupportedOperation):
                        await w.read()
            with pytest.raises(IsADirectoryError):
                await fs.open("/", "rb")
            assert await fs.read_file("/files-misuse") == b"abc"  # nothing was written

    arun(go())
