"""Batched reads (READV) on a real cluster: `Client.read_ranges` over the bulk channel
against the file's bytes, frames counted by a spy on the client's bulk pool (the calls
still go out), on a 3-node cluster with 2 targets per node (two 3-replica chains,
64 KiB chunks).

- many ranges across chunks and chains: exact bytes, one READV per chain, no single READ;
- holes and short chunks read as zeros; ranges at, across and past EOF are short or empty;
- a chunk file corrupted on one replica: its piece fails there (the stored CRC32C) and
  is read again from a good replica;
- raw READV frames: per-piece answers with their CRC32C, a stale chain version as each
  piece's error, malformed or over-limit piece tables refused with the connection going on;
- raw READVM frames (many inodes): each piece answered from its own inode; malformed
  file tables refused with the connection going on;
- gRPC transport: the old per-chunk path, same bytes.
A client sends READVM only (op 4 is served for older clients). Batches over many files,
stale cached files and killed servers are in test_readv_files.py; the capability side
(one per inode) in test_auth_datapath.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crc32c
import pytest

from emberfs.client import Client
from emberfs.client._launch import LocalCluster
from emberfs.common import bulkwire as w
from emberfs.common.bulkclient import BulkPool
from emberfs.common.routing import RoutingView

pytestmark = pytest.mark.timeout(300)

CS = 64 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("readv"), nodes=3, replicas=3, targets_per_node=2, chunk_size=CS,
                     heartbeat_timeout=15.0)
    c.start(timeout=60.0)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Bulk calls by method ("Read", "ReadV", ...), counted as they go out."""
    sent: Counter[str] = Counter()
    call = BulkPool.call

    async def counted(self: BulkPool, address: str, method: str, request: Any, **kwargs: Any) -> Any:
        sent[method] += 1
        return await call(self, address, method, request, **kwargs)

    monkeypatch.setattr(BulkPool, "call", counted)
    return sent


def _client(c: LocalCluster, **options: Any) -> Client:
    return Client(c.meta_address, uid=0, gid=0, groups=[], timeout=30.0, **options)


def run(coro: Any, timeout: float = 120.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _ranges(rng: random.Random, size: int, n: int) -> list[tuple[int, int]]:
    """Samples of 0.1-20 KB anywhere, some across chunk boundaries, some at or past EOF."""
    picks = [(rng.randrange(size), rng.randrange(100, 20_000)) for _ in range(n)]
    picks += [(k * CS - 50, 100) for k in range(1, 4)]  # across a boundary
    return picks + [(size - 10, 100), (size, 10), (size + CS, 5), (0, 0)]


def test_many_ranges_across_chains_are_exact_and_one_readv_per_chain(cluster: LocalCluster,
                                                                     frames: Counter[str]) -> None:
    data = os.urandom(40 * CS + 123)
    ranges = _ranges(random.Random(17), len(data), 300)

    async def go() -> tuple[list[bytes], int]:
        async with _client(cluster) as fs:
            await fs.write_file("/many", data)
            chains = len(set((await fs._file("/many"))[1].chain_ids))
            frames.clear()
            return await fs.read_ranges([("/many", o, n) for o, n in ranges]), chains

    got, chains = run(go())
    assert got == [data[o:o + n] for o, n in ranges]
    assert chains == 2, "the cluster should stripe the file over both chains"
    assert frames == {"ReadV": chains}, frames


def test_holes_and_short_chunks_read_as_zeros(cluster: LocalCluster, frames: Counter[str]) -> None:
    model = bytearray(b"head" + bytes(20 * CS - 4))
    model[12 * CS + 100:12 * CS + 1100] = b"x" * 1000  # chunk 12 holds 1100 bytes of a 64 KiB chunk
    ranges = [(3 * CS + 7, 500), (5 * CS - 10, 30), (12 * CS + 90, 20), (12 * CS + 1000, 300), (12 * CS, CS),
              (19 * CS, CS), (0, 10), (20 * CS - 5, 50)]

    async def go() -> list[bytes]:
        async with _client(cluster) as fs:
            await fs.write_file("/holes", b"head")
            await fs.truncate("/holes", 20 * CS)  # grown: chunks 1..19 do not exist
            async with fs.open("/holes", "r+b") as f:
                await f.seek(12 * CS + 100)
                await f.write(b"x" * 1000)
            frames.clear()
            return await fs.read_ranges([("/holes", o, n) for o, n in ranges])

    assert run(go()) == [bytes(model[o:o + n]) for o, n in ranges]
    assert frames["ReadV"] >= 1 and frames["Read"] == 0, frames


def _chunk_files(c: LocalCluster, inode: int, index: int) -> list[Path]:
    return sorted(c.data_dir.glob(f"node-*/target-*/chunks/*/*/{inode:016x}-{index:08x}"))


def test_a_chunk_corrupted_on_one_replica_is_read_from_another(cluster: LocalCluster, frames: Counter[str]) -> None:
    data = os.urandom(6 * CS)
    ranges = [(k * CS, CS) for k in range(6)]  # whole chunks: the server checks them against their stored CRC32C

    async def setup() -> int:
        async with _client(cluster) as fs:
            await fs.write_file("/corrupt", data)
            return (await fs.stat("/corrupt")).st_ino

    inode = run(setup())
    replicas = _chunk_files(cluster, inode, 2)
    assert len(replicas) == 3, replicas

    async def read() -> list[list[bytes]]:
        async with _client(cluster) as fs:
            return [await fs.read_ranges([("/corrupt", o, n) for o, n in ranges]) for _ in range(2)]

    frames.clear()
    # A chain's READVMs go to its own replica (pick_affine_replica): corrupt each replica in
    # turn, so one of the turns is the replica asked.
    for replica in replicas:
        with open(replica, "r+b") as f:  # one bit of one replica
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 0x10]))
        try:
            for got in run(read()):
                assert got == [data[o:o + n] for o, n in ranges]
        finally:
            with open(replica, "r+b") as f:
                f.seek(1000)
                f.write(byte)
    assert frames["ReadV"] == 3 * 2 * 2  # every batch, both chains
    assert frames["Read"] >= 1, "the corrupted replica was never asked: the test proves nothing"


def test_grpc_transport_reads_the_same_bytes_without_readv(cluster: LocalCluster, frames: Counter[str]) -> None:
    data = os.urandom(9 * CS + 5)
    ranges = _ranges(random.Random(3), len(data), 50)

    async def go() -> list[bytes]:
        async with _client(cluster) as fs:
            await fs.write_file("/grpc", data)
        async with _client(cluster, transport="grpc") as fs:
            frames.clear()
            return await fs.read_ranges([("/grpc", o, n) for o, n in ranges])

    assert run(go()) == [data[o:o + n] for o, n in ranges]
    assert not frames, frames


# -- raw frames -------------------------------------------------------------------------------


class Raw:
    """One greeted TCP connection to a server's bulk port, spoken to frame by frame."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.sendall(w.pack_hello(w.VERSION, 0, b""))
        hello = w.unpack_hello(self._exactly(w.HELLO.size), max_body=w.MAX_EXT)
        self._exactly(hello.body_length)
        assert hello.field == w.STATUS_OK

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            got = self.sock.recv(n - len(data))
            assert got, "the server closed the connection"
            data += got
        return data

    def ask(self, head: w.Request, ext: bytes, payload: bytes) -> tuple[w.Response, bytes, bytes]:
        head.ext_length, head.payload_length = len(ext), len(payload)
        self.sock.sendall(w.pack_request(head) + ext + payload)
        reply = w.unpack_response(self._exactly(w.RESPONSE.size))
        assert reply.request_id == head.request_id
        return reply, self._exactly(reply.ext_length), self._exactly(reply.payload_length)


def test_raw_readv_frames(cluster: LocalCluster) -> None:
    data = os.urandom(3 * CS + 1000)

    async def setup() -> tuple[int, Any, RoutingView]:
        async with _client(cluster) as fs:
            await fs.write_file("/raw", data)
            return (await fs.stat("/raw")).st_ino, (await fs._file("/raw"))[1], RoutingView(await fs.routing())

    inode, layout, view = run(setup())
    chain = view.chain(layout.chain_of(0))
    on_chain = [k for k in range(4) if layout.chain_of(k) == chain.chain_id]
    target = chain.targets[-1].target_id
    raw = Raw(view.bulk_address_of(target))

    def readv(request_id: int, reads: list[tuple[int, int, int]], chain_version: int = chain.chain_version,
              payload: bytes | None = None) -> tuple[w.Response, bytes, bytes]:
        head = w.Request(w.OP_READV, request_id, chain_id=chain.chain_id, chain_version=chain_version,
                         inode_id=inode, target_id=target)
        return raw.ask(head, b"", w.pack_readv_reads(reads) if payload is None else payload)

    k = on_chain[-1]
    end = min(len(data) - k * CS, CS)  # the bytes chunk k holds
    reads = [(k, 0, 100), (k, end - 10, 50), (k, end, 10), (k, 0, CS), (99, 0, 10)]
    reply, ext, payload = readv(1, reads)
    assert (reply.status, ext) == (w.STATUS_OK, b"")
    results = w.unpack_readv_results(payload, len(reads))
    chunk = data[k * CS:k * CS + end]
    assert [bytes(r.data) for r in results] == [chunk[:100], chunk[-10:], b"", chunk, b""]
    assert [r.exists for r in results] == [True, True, True, True, False]  # chunk 99 is a hole
    assert all(r.crc32c == crc32c.crc32c(r.data) for r in results)
    assert {r.chunk_length for r in results[:4]} == {end}

    reply, _, payload = readv(2, reads[:2], chain_version=chain.chain_version - 1)  # a stale view
    assert reply.status == w.STATUS_OK
    stale = w.unpack_readv_results(payload, 2)
    assert [w.decode_error(r.error)[0] for r in stale] == ["StaleChainVersion"] * 2

    for request_id, bad in enumerate([b"", b"\0" * 13, w.pack_readv_reads([(k, 0, 1)] * (w.MAX_READV_READS + 1)),
                                      w.pack_readv_reads([(k, 0, w.MAX_READV_BYTES), (k, 0, 1)])], start=3):
        reply, ext, _ = readv(request_id, [], payload=bad)
        assert reply.status == w.STATUS_ERROR and w.decode_error(ext)[0] == "InvalidArgument", ext
    # The same connection goes on serving.
    reply, _, payload = readv(9, [(k, 5, 5)])
    assert bytes(w.unpack_readv_results(payload, 1)[0].data) == chunk[5:10]

    def readvm(request_id: int, files: bytes, reads: bytes) -> tuple[w.Response, bytes, bytes]:
        head = w.Request(w.OP_READVM, request_id, chain_id=chain.chain_id, chain_version=chain.chain_version,
                         target_id=target)
        return raw.ask(head, files, reads)

    # Two inodes in one frame: the file's, and one that holds nothing (every piece a hole).
    reply, ext, payload = readvm(10, w.pack_readv_files([(inode, b""), (inode + 10**9, b"")]),
                                 w.pack_readvm_reads([(0, k, 0, 100), (1, k, 0, 100), (0, k, 100, 20)]))
    assert (reply.status, ext) == (w.STATUS_OK, b"")
    results = w.unpack_readv_results(payload, 3)
    assert [bytes(r.data) for r in results] == [chunk[:100], b"", chunk[100:120]]
    assert [r.exists for r in results] == [True, False, True]
    one = w.pack_readv_files([(inode, b"")])
    for request_id, (files, reads) in enumerate([
        (b"", w.pack_readvm_reads([(0, k, 0, 1)])),  # no file table
        (w.pack_readv_files([(inode, b""), (inode, b"")]), w.pack_readvm_reads([(0, k, 0, 1)])),  # an inode twice
        (one + b"\0", w.pack_readvm_reads([(0, k, 0, 1)])),  # bytes past the table
        (one, w.pack_readvm_reads([(1, k, 0, 1)])),  # a piece of a file past the table
        (one, w.pack_readvm_reads([(0, k, 0, w.MAX_READV_BYTES), (0, k, 0, 1)])),  # over the byte limit
    ], start=11):
        reply, ext, _ = readvm(request_id, files, reads)
        assert reply.status == w.STATUS_ERROR and w.decode_error(ext)[0] == "InvalidArgument", ext
    reply, _, payload = readvm(20, one, w.pack_readvm_reads([(0, k, 5, 5)]))
    assert bytes(w.unpack_readv_results(payload, 1)[0].data) == chunk[5:10]
    raw.sock.close()


def _evict(root: Path) -> int:
    """Drop the cluster's chunk files from the page cache (fsynced at commit, so clean)."""
    evicted = 0
    for path in root.rglob("*"):
        if path.is_file() and path.suffix not in (".log", ".mdb", ".json", ".lock"):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                evicted += 1
            finally:
                os.close(fd)
    return evicted


def test_pieces_not_in_the_page_cache_are_read_from_disk_exactly(cluster: LocalCluster,
                                                                 frames: Counter[str]) -> None:
    """A READV whose pieces miss the page cache serves them from the I/O pool in one job (each
    range advised to the kernel first): the bytes still match, piece by piece, in order."""
    data = os.urandom(40 * CS + 123)
    ranges = _ranges(random.Random(23), len(data), 200)

    async def write() -> None:
        async with _client(cluster) as fs:
            await fs.write_file("/cold", data)

    async def read() -> list[bytes]:
        async with _client(cluster) as fs:
            frames.clear()
            return await fs.read_ranges([("/cold", o, n) for o, n in ranges])

    run(write())
    assert _evict(Path(cluster.data_dir)) > 0
    assert run(read()) == [data[o:o + n] for o, n in ranges]
    assert set(frames) == {"ReadV"}
