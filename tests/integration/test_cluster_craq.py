"""CRAQ on a real three-process cluster: replicas agree, reads see only committed
versions, stale and duplicate requests are refused or answered once, and GC clears
every replica. Each test is bounded by `arun`'s timeout.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from typing import Any

import crc32c
import grpc
import pytest

from emberfs.client import Client
from emberfs.common.errors import from_rpc_error
from emberfs.common.layout import chain_for_chunk
from emberfs.proto import storage_pb2

CHUNK = 64 * 1024


def _path() -> str:
    return f"/craq-{uuid.uuid4().hex[:10]}"


def _write(raw: Any, chain: Any, inode: int, index: int, data: bytes, *,
           kind: int = storage_pb2.WRITE, offset: int = 0, request_id: int | None = None,
           chain_version: int | None = None) -> storage_pb2.WriteRequest:
    return storage_pb2.WriteRequest(
        header=raw.header(request_id),
        chain_id=chain.chain_id,
        chain_version=chain.chain_version if chain_version is None else chain_version,
        chunk=storage_pb2.ChunkId(inode_id=inode, chunk_index=index),
        kind=kind,
        offset=offset,
        data=data,
        crc32c=crc32c.crc32c(data),
        chunk_size=CHUNK,
    )


def _read(raw: Any, chain: Any, inode: int, index: int, target_id: int,
          length: int = CHUNK) -> storage_pb2.ReadRequest:
    return storage_pb2.ReadRequest(
        header=raw.header(), chain_id=chain.chain_id, chain_version=chain.chain_version,
        chunk=storage_pb2.ChunkId(inode_id=inode, chunk_index=index),
        offset=0, length=length, target_id=target_id,
    )


async def _new_file(address: str, data: bytes) -> Any:
    path = _path()
    async with Client(address, uid=0, gid=0, groups=[]) as client:
        await client.write_file(path, data)
        return path, await client.stat(path)


def test_three_replicas_hold_identical_committed_bytes(cluster3: Any, raw_cluster: Any, arun: Any) -> None:
    data = os.urandom(5 * CHUNK + 1234)

    async def body() -> None:
        path, st = await _new_file(cluster3.meta_address, data)
        assert st.st_size == len(data) and st.chunk_size == CHUNK
        async with raw_cluster(cluster3.meta_address) as raw:
            view = await raw.routing()
            for index in range(6):
                chain = view.chain(chain_for_chunk(st.chain_ids, st.stripe, index))
                assert len(chain.serving) == 3
                expected = data[index * CHUNK:(index + 1) * CHUNK]
                replies = []
                for target in chain.serving:
                    stub = raw.storage_at(view.address_of(target))
                    replies.append(await stub.Read(_read(raw, chain, st.st_ino, index, target), timeout=10))
                for reply in replies:
                    assert reply.exists and reply.data == expected
                    assert reply.crc32c == crc32c.crc32c(expected)
                    assert reply.chunk_length == len(expected)
                assert len({r.commit_version for r in replies}) == 1
        async with Client(cluster3.meta_address, uid=0, gid=0, groups=[]) as client:
            assert await client.read_file(path) == data

    arun(body())


def test_non_head_write_refused_and_nothing_written(cluster3: Any, raw_cluster: Any, arun: Any) -> None:
    async def body() -> None:
        _, st = await _new_file(cluster3.meta_address, b"a" * 100)
        async with raw_cluster(cluster3.meta_address) as raw:
            view = await raw.routing()
            chain = view.chain(st.chain_ids[0])
            for target in chain.serving[1:]:
                stub = raw.storage_at(view.address_of(target))
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Write(_write(raw, chain, st.st_ino, 0, b"b" * 100), timeout=10)
                assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert from_rpc_error(info.value).code == "NotChainHead"
            for target in chain.serving:
                stub = raw.storage_at(view.address_of(target))
                reply = await stub.Read(_read(raw, chain, st.st_ino, 0, target), timeout=10)
                assert reply.data == b"a" * 100

    arun(body())


@pytest.mark.parametrize(
    "change, status",
    [
        ({"data_crc": 1}, grpc.StatusCode.DATA_LOSS),
        ({"offset": CHUNK - 10}, grpc.StatusCode.INVALID_ARGUMENT),  # 100 bytes past the chunk end
        ({"chunk_size": 1000}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"chain_id": 999_999}, grpc.StatusCode.NOT_FOUND),
    ],
)
def test_bad_writes_refused_with_nothing_written(
    cluster3: Any, raw_cluster: Any, arun: Any, change: dict[str, int], status: grpc.StatusCode
) -> None:
    async def body() -> None:
        _, st = await _new_file(cluster3.meta_address, b"k" * 300)
        async with raw_cluster(cluster3.meta_address) as raw:
            view = await raw.routing()
            chain = view.chain(st.chain_ids[0])
            head = raw.storage_at(view.address_of(chain.head))
            request = _write(raw, chain, st.st_ino, 0, b"z" * 100, offset=change.get("offset", 0))
            if "data_crc" in change:
                request.crc32c ^= change["data_crc"]
            if "chunk_size" in change:
                request.chunk_size = change["chunk_size"]
            if "chain_id" in change:
                request.chain_id = change["chain_id"]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await head.Write(request, timeout=10)
            assert info.value.code() == status, info.value.details()
            assert info.value.details()  # a message a person can read
            for target in chain.serving:
                stub = raw.storage_at(view.address_of(target))
                reply = await stub.Read(_read(raw, chain, st.st_ino, 0, target), timeout=10)
                assert reply.data == b"k" * 300
        # and the server still serves
        async with Client(cluster3.meta_address, uid=0, gid=0, groups=[]) as client:
            path = _path()
            await client.write_file(path, b"still serving")
            assert await client.read_file(path) == b"still serving"

    arun(body())


def test_duplicate_request_id_applied_once(cluster3: Any, raw_cluster: Any, arun: Any) -> None:
    async def body() -> None:
        _, st = await _new_file(cluster3.meta_address, b"x" * 10)
        async with raw_cluster(cluster3.meta_address) as raw:
            view = await raw.routing()
            chain = view.chain(st.chain_ids[0])
            head = raw.storage_at(view.address_of(chain.head))
            first = await head.Write(_write(raw, chain, st.st_ino, 0, b"y" * 5, offset=10, request_id=777), timeout=10)
            again = await head.Write(_write(raw, chain, st.st_ino, 0, b"y" * 5, offset=10, request_id=777), timeout=10)
            assert again.commit_version == first.commit_version
            assert (again.chunk_length, again.chunk_crc32c) == (first.chunk_length, first.chunk_crc32c) == (
                15, crc32c.crc32c(b"x" * 10 + b"y" * 5))
            # the same request again, concurrently: still one version
            replies = await asyncio.gather(*(
                head.Write(_write(raw, chain, st.st_ino, 0, b"w", offset=15, request_id=778), timeout=10)
                for _ in range(4)))
            assert len({r.commit_version for r in replies}) == 1
            assert replies[0].commit_version == first.commit_version + 1
            for target in chain.serving:
                stub = raw.storage_at(view.address_of(target))
                reply = await stub.Read(_read(raw, chain, st.st_ino, 0, target), timeout=10)
                assert reply.commit_version == first.commit_version + 1
                assert reply.data == b"x" * 10 + b"y" * 5 + b"w"

    arun(body())


def test_partial_write_truncate_extend_and_remove_of_a_chunk(cluster3: Any, raw_cluster: Any, arun: Any) -> None:
    async def body() -> None:
        _, st = await _new_file(cluster3.meta_address, b"0123456789")
        async with raw_cluster(cluster3.meta_address) as raw:
            view = await raw.routing()
            chain = view.chain(st.chain_ids[0])
            head = raw.storage_at(view.address_of(chain.head))
            steps: list[tuple[dict[str, Any], bytes | None]] = [
                ({"data": b"ab", "offset": 3}, b"012ab56789"),
                ({"data": b"", "kind": storage_pb2.TRUNCATE, "length": 4}, b"012a"),
                ({"data": b"", "kind": storage_pb2.TRUNCATE, "length": 8}, b"012a\0\0\0\0"),
                ({"data": b"Q", "offset": CHUNK - 1}, b"012a" + b"\0" * (CHUNK - 5) + b"Q"),
                ({"data": b"whole", "kind": storage_pb2.REPLACE}, b"whole"),
                ({"data": b"", "kind": storage_pb2.REMOVE}, None),
            ]
            for change, expected in steps:
                request = _write(raw, chain, st.st_ino, 0, change["data"], kind=change.get("kind", storage_pb2.WRITE),
                                 offset=change.get("offset", 0))
                request.length = change.get("length", 0)
                await head.Write(request, timeout=10)
                for target in chain.serving:
                    stub = raw.storage_at(view.address_of(target))
                    reply = await stub.Read(_read(raw, chain, st.st_ino, 0, target), timeout=10)
                    if expected is None:
                        assert not reply.exists and reply.data == b""
                    else:
                        assert reply.exists and reply.data == expected, change

    arun(body())


def test_concurrent_writers_and_readers_see_whole_committed_versions(
    cluster3: Any, raw_cluster: Any, arun: Any
) -> None:
    """Writers replace one chunk with uniform patterns while readers read it at every
    replica: each read is exactly one pattern (one committed version), never a mix."""
    patterns = [bytes([i]) * CHUNK for i in range(1, 9)]

    async def body() -> None:
        _, st = await _new_file(cluster3.meta_address, patterns[0])
        async with raw_cluster(cluster3.meta_address) as raw:
            view = await raw.routing()
            chain = view.chain(st.chain_ids[0])
            head = raw.storage_at(view.address_of(chain.head))
            stop = asyncio.Event()
            seen: list[tuple[int, bytes]] = []

            async def writer(seed: int) -> None:
                rand = random.Random(seed)
                for _ in range(12):
                    data = rand.choice(patterns)
                    await head.Write(_write(raw, chain, st.st_ino, 0, data, kind=storage_pb2.REPLACE), timeout=20)

            async def reader(target: int) -> None:
                stub = raw.storage_at(view.address_of(target))
                while not stop.is_set():
                    reply = await stub.Read(_read(raw, chain, st.st_ino, 0, target), timeout=20)
                    seen.append((reply.commit_version, reply.data))
                    assert reply.crc32c == crc32c.crc32c(reply.data)

            readers = [asyncio.create_task(reader(t)) for t in chain.serving for _ in range(2)]
            try:
                await asyncio.gather(*(writer(s) for s in range(3)))
            finally:
                stop.set()
                await asyncio.gather(*readers)
            assert len(seen) >= 6
            for _version, data in seen:
                assert data in patterns, "a read mixed two versions"
            # one version number never names two different contents
            by_version: dict[int, set[bytes]] = {}
            for version, data in seen:
                by_version.setdefault(version, set()).add(data)
            assert all(len(v) == 1 for v in by_version.values())

    arun(body(), timeout=120)


def test_middle_replica_never_serves_a_version_the_tail_has_not_committed(
    cluster3: Any, raw_cluster: Any, arun: Any
) -> None:
    """Freeze the tail (SIGSTOP) so a write is pending at head and middle; a read at the
    middle must then answer the old committed bytes or fail, never the new bytes."""
    old, new = b"o" * 1000, b"n" * 1000

    async def body() -> None:
        _, st = await _new_file(cluster3.meta_address, old)
        async with raw_cluster(cluster3.meta_address) as raw:
            view = await raw.routing()
            chain = view.chain(st.chain_ids[0])
            head_id, middle_id, tail_id = chain.serving
            head = raw.storage_at(view.address_of(head_id))
            middle = raw.storage_at(view.address_of(middle_id))
            tail_proc = cluster3.storage[view.node_of(tail_id) - 1]
            os.kill(tail_proc.pid, signal.SIGSTOP)
            try:
                write = asyncio.ensure_future(
                    head.Write(_write(raw, chain, st.st_ino, 0, new, kind=storage_pb2.REPLACE), timeout=30))
                await asyncio.sleep(0.5)  # the update reaches the middle and waits on the tail
                assert not write.done()
                for _ in range(2):  # short: the tail must not miss its heartbeat timeout
                    try:
                        reply = await middle.Read(_read(raw, chain, st.st_ino, 0, middle_id), timeout=1)
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                              grpc.StatusCode.FAILED_PRECONDITION), exc
                    else:
                        assert reply.data == old
            finally:
                os.kill(tail_proc.pid, signal.SIGCONT)
            await write
            reply = await middle.Read(_read(raw, chain, st.st_ino, 0, middle_id), timeout=10)
            assert reply.data == new

    arun(body(), timeout=90)


def test_chunks_removed_from_every_target_after_delete(cluster3: Any, raw_cluster: Any, arun: Any) -> None:
    async def body() -> None:
        path, st = await _new_file(cluster3.meta_address, os.urandom(4 * CHUNK))
        async with raw_cluster(cluster3.meta_address) as raw:
            view = await raw.routing()

            async def found_anywhere() -> list[tuple[int, int]]:
                found = []
                for chain_id in set(st.chain_ids):
                    chain = view.chain(chain_id)
                    for target in chain.serving:
                        stub = raw.storage_at(view.address_of(target))
                        reply = await stub.QueryLastChunk(storage_pb2.QueryLastChunkRequest(
                            header=raw.header(), chain_id=chain_id, chain_version=chain.chain_version,
                            inode_id=st.st_ino, target_id=target), timeout=10)
                        if reply.found:
                            found.append((chain_id, target))
                return found

            assert len(await found_anywhere()) == 3 * len(set(st.chain_ids))
            async with Client(cluster3.meta_address, uid=0, gid=0, groups=[]) as client:
                await client.remove(path)
            for _ in range(100):  # GC runs every second by default: bounded at ~20 s
                if not await found_anywhere():
                    break
                await asyncio.sleep(0.2)
            assert await found_anywhere() == []

    arun(body(), timeout=60)


def test_stale_chain_version_refused_naming_the_current_one(
    own_cluster3: Any, raw_cluster: Any, arun: Any
) -> None:
    """Take one target out (admin offline): the chain's version moves on, a write with the
    old version is refused with the new one, and a write with the new version lands on
    the two replicas left."""
    from emberfs.proto import mgmt_pb2

    async def body() -> None:
        _, st = await _new_file(own_cluster3.meta_address, b"v1")
        async with raw_cluster(own_cluster3.meta_address) as raw:
            old = (await raw.routing()).chain(st.chain_ids[0])
            await raw.mgmt().SetTargetAdminState(mgmt_pb2.SetTargetAdminStateRequest(
                header=raw.header(), target_id=old.tail, offline=True), timeout=10)
            for _ in range(100):
                view = await raw.routing()
                new = view.chain(old.chain_id)
                if new.chain_version > old.chain_version and len(new.serving) == 2:
                    break
                await asyncio.sleep(0.1)
            assert len(new.serving) == 2 and new.chain_version > old.chain_version
            head = raw.storage_at(view.address_of(new.head))
            for _ in range(50):  # the head learns the new routing within a heartbeat or two
                try:
                    await head.Write(_write(raw, old, st.st_ino, 0, b"v2"), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    stale = exc
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("a write with the old chain version was accepted 50 times")
            assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert from_rpc_error(stale).code == "StaleChainVersion"
            assert str(new.chain_version) in stale.details()
            await head.Write(_write(raw, new, st.st_ino, 0, b"v3"), timeout=10)
            for target in new.serving:
                stub = raw.storage_at(view.address_of(target))
                reply = await stub.Read(_read(raw, new, st.st_ino, 0, target), timeout=10)
                assert reply.data == b"v3"

    arun(body(), timeout=90)
