"""A truncate against writers that opened the file earlier, and against a file that
grows while a truncate runs, on a real 3-node, 3-replica cluster with 64 KiB chunks.

(a) A writer's Close/Sync carries the truncate version its length is based on; a stale
    report must not undo a truncate another client made after the writer opened the
    file, yet a write past the new end still extends the file (zeros in the hole).
(b) A truncate (or an open "wb") removes chunks up to the larger of the length the
    metaserver had when it changed it and what storage holds, so chunks written while
    it ran never come back: a later growth reads zeros.

Each race is forced at a fixed point (a hook that runs the other client's work just
before the truncating RPC is sent), so every test is deterministic.
"""

from __future__ import annotations

import io
import os
from collections.abc import Awaitable, Callable
from typing import Any

from emberfs.client import Client, SyncClient
from emberfs.proto import storage_pb2

CS = 64 * 1024


def _client(cluster: Any) -> Client:
    return Client(cluster.meta_address, uid=0, gid=0, timeout=20.0)


def _before(fs: Client, method: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` once, right before `fs` sends its next `method` call to the metaserver."""
    real = fs._call
    fired = False

    async def hooked(name: str, build: Any, **kw: Any) -> Any:
        nonlocal fired
        if name == method and not fired:
            fired = True
            await work()
        return await real(name, build, **kw)

    fs._call = hooked  # type: ignore[method-assign]


async def _last_chunks(cluster: Any, raw_cluster: Any, fs: Client, path: str) -> set[tuple[bool, int, int]]:
    """(found, chunk_index, chunk_length) of the file's last chunk on every target of its chain."""
    st = await fs.stat(path)
    async with raw_cluster(cluster.meta_address) as raw:
        view = await raw.routing()
        seen = set()
        for chain_id in set(st.chain_ids):
            chain = view.chain(chain_id)
            for target in chain.serving:
                stub = raw.storage_at(view.address_of(target))
                last = await stub.QueryLastChunk(storage_pb2.QueryLastChunkRequest(
                    header=raw.header(), chain_id=chain_id, chain_version=chain.chain_version,
                    inode_id=st.st_ino, target_id=target), timeout=10)
                seen.add((last.found, last.chunk_index, last.chunk_length))
        return seen


# -- (a) a stale writer's report ----------------------------------------------------------


def test_close_of_an_earlier_writer_keeps_the_truncate(cluster3: Any, raw_cluster: Any, arun: Any) -> None:
    data = os.urandom(8 * CS + 10)

    async def go() -> None:
        async with _client(cluster3) as writer, _client(cluster3) as other:
            await other.write_file("/ts-close", data)
            f = await writer.open("/ts-close", "r+b")
            await f.write(b"HEAD")  # inside what survives the truncate
            await other.truncate("/ts-close", CS + 100)
            # Storage was cut at the new end: chunk 1 holds 100 bytes, nothing lies past it.
            assert await _last_chunks(cluster3, raw_cluster, other, "/ts-close") == {(True, 1, 100)}
            await f.close()
            assert (await other.stat("/ts-close")).st_size == CS + 100
            assert await other.read_file("/ts-close") == b"HEAD" + data[4 : CS + 100]

    arun(go())


def test_flush_of_an_earlier_writer_keeps_the_truncate_and_learns_the_length(cluster3: Any, arun: Any) -> None:
    data = os.urandom(5 * CS)

    async def go() -> None:
        async with _client(cluster3) as writer, _client(cluster3) as other:
            await other.write_file("/ts-flush", data)
            async with writer.open("/ts-flush", "r+b") as f:
                await f.write(b"A")
                await f.flush()  # a report at the current truncate version
                await other.truncate("/ts-flush", 100)
                await f.seek(1)
                await f.write(b"B")
                await f.flush()  # stale: must not put the old length back
                assert (await other.stat("/ts-flush")).st_size == 100
                assert await f.seek(0, io.SEEK_END) == 100  # the handle learnt the new length
            assert await other.read_file("/ts-flush") == b"AB" + data[2:100]

    arun(go())


def test_appender_that_flushed_before_the_truncate_does_not_undo_it(cluster3: Any, arun: Any) -> None:
    data = os.urandom(3 * CS + 5)

    async def go() -> None:
        async with _client(cluster3) as writer, _client(cluster3) as other:
            await other.write_file("/ts-append", data)
            f = await writer.open("/ts-append", "ab")
            await f.write(b"tail")
            await f.flush()
            assert (await other.stat("/ts-append")).st_size == len(data) + 4
            await other.truncate("/ts-append", CS)
            await f.close()  # nothing written since: the truncate stands
            assert await other.read_file("/ts-append") == data[:CS]

    arun(go())


def test_writing_past_the_truncated_end_extends_with_zeros(cluster3: Any, arun: Any) -> None:
    data = os.urandom(8 * CS + 10)

    async def go() -> None:
        async with _client(cluster3) as writer, _client(cluster3) as other:
            await other.write_file("/ts-extend", data)
            f = await writer.open("/ts-extend", "r+b")
            await other.truncate("/ts-extend", CS + 100)
            await f.seek(3 * CS)
            await f.write(b"XYZ")  # after the truncate, past the new end: POSIX extends
            await f.close()
            assert (await other.stat("/ts-extend")).st_size == 3 * CS + 3
            assert await other.read_file("/ts-extend") == data[: CS + 100] + bytes(2 * CS - 100) + b"XYZ"

    arun(go())


def test_sync_client_writer_keeps_the_truncate(cluster3: Any) -> None:
    data = os.urandom(4 * CS)
    with SyncClient(cluster3.meta_address, uid=0, gid=0) as writer, SyncClient(
        cluster3.meta_address, uid=0, gid=0
    ) as other:
        other.write_file("/ts-sync", data)
        with writer.open("/ts-sync", "r+b") as f:
            f.write(b"s")
            other.truncate("/ts-sync", 10)
            f.flush()
            assert other.stat("/ts-sync").st_size == 10
        assert other.read_file("/ts-sync") == b"s" + data[1:10]


# -- (b) a file that grows while a truncate runs ----------------------------------------


def test_truncate_removes_chunks_of_a_growth_it_did_not_see(cluster3: Any, raw_cluster: Any, arun: Any) -> None:
    data = os.urandom(2 * CS + 10)
    more = os.urandom(4 * CS)

    async def go() -> None:
        async with _client(cluster3) as cutter, _client(cluster3) as grower:
            await cutter.write_file("/ts-grow", data)

            async def grow() -> None:
                async with grower.open("/ts-grow", "ab") as f:
                    await f.write(more)  # reported on close: the metaserver knows the new length

            _before(cutter, "Truncate", grow)
            await cutter.truncate("/ts-grow", CS)
            assert await _last_chunks(cluster3, raw_cluster, cutter, "/ts-grow") == {(True, 0, CS)}
            await cutter.truncate("/ts-grow", 6 * CS)  # grow again: zeros, never `more`
            assert await cutter.read_file("/ts-grow") == data[:CS] + bytes(5 * CS)

    arun(go())


def test_truncate_removes_chunks_of_an_unreported_writer(cluster3: Any, raw_cluster: Any, arun: Any) -> None:
    data = os.urandom(2 * CS + 10)

    async def go() -> None:
        async with _client(cluster3) as cutter, _client(cluster3) as writer:
            await cutter.write_file("/ts-unreported", data)
            f = await writer.open("/ts-unreported", "r+b")
            await f.seek(5 * CS)
            await f.write(os.urandom(CS))  # a whole chunk: sent at once
            await f.pread(0, 1)  # waits for the send; the length is not reported yet
            assert (await cutter.stat("/ts-unreported")).st_size == len(data)
            await cutter.truncate("/ts-unreported", CS)
            await f.close()  # its bytes went before the truncate: the truncate wins
            assert (await cutter.stat("/ts-unreported")).st_size == CS
            assert await _last_chunks(cluster3, raw_cluster, cutter, "/ts-unreported") == {(True, 0, CS)}
            await cutter.truncate("/ts-unreported", 6 * CS)
            assert await cutter.read_file("/ts-unreported") == data[:CS] + bytes(5 * CS)

    arun(go())


def test_open_wb_removes_chunks_of_a_growth_it_did_not_see(cluster3: Any, raw_cluster: Any, arun: Any) -> None:
    data = os.urandom(2 * CS + 10)
    more = os.urandom(4 * CS)

    async def go() -> None:
        async with _client(cluster3) as opener, _client(cluster3) as grower:
            await opener.write_file("/ts-wb", data)

            async def grow() -> None:
                async with grower.open("/ts-wb", "ab") as f:
                    await f.write(more)

            _before(opener, "Create", grow)
            async with opener.open("/ts-wb", "wb") as f:
                await f.write(b"xy")
            assert await _last_chunks(cluster3, raw_cluster, opener, "/ts-wb") == {(True, 0, 2)}
            await opener.truncate("/ts-wb", 6 * CS)
            assert await opener.read_file("/ts-wb") == b"xy" + bytes(6 * CS - 2)

    arun(go())
