"""Batched reads in the client: `readv_plan` as a table, and `DataPath.read_batch` driven
through a scripted storage pool (a stand-in for the network only; the data path is the
real one): one READV per chain, each piece CRC-checked, and every piece that fails (its
error, a bad CRC, too many bytes, a failed or refused frame) read again alone."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import crc32c
import pytest

from emberfs.client._datapath import DataPath, FileLayout, FileSpans
from emberfs.client._plan import READV_PIECE_MAX, ReadvBatch, ReadvPiece, readv_plan
from emberfs.client._retry import RetryPolicy
from emberfs.client._routing import RoutingCache
from emberfs.common import bulkwire as w
from emberfs.common.errors import CapabilityRefused, NotFound, StaleChainVersion, Unavailable
from emberfs.common.layout import ChunkSpan
from emberfs.proto import common_pb2, meta_pb2, mgmt_pb2, storage_pb2

CS = 4096

# -- readv_plan --------------------------------------------------------------------------


def P(chain_id: int | None, length: int = 10, inode_id: int = 7) -> ReadvPiece:  # noqa: N802 (a table's shorthand)
    return ReadvPiece(chain_id, inode_id, length)


@pytest.mark.parametrize(("pieces", "limits", "batches", "alone"), [
    ([], {}, [], []),
    ([P(10)], {}, [], [0]),  # a batch of one goes alone
    ([P(10), P(10)], {}, [ReadvBatch(10, (0, 1))], []),
    ([P(10), P(11), P(10), P(11)], {}, [ReadvBatch(10, (0, 2)), ReadvBatch(11, (1, 3))], []),  # one per chain
    ([P(10, inode_id=1), P(10, inode_id=2), P(11, inode_id=3), P(10, inode_id=1)], {},
     [ReadvBatch(10, (0, 1, 3))], [2]),  # files do not split a chain's batch
    ([P(10, READV_PIECE_MAX), P(10, READV_PIECE_MAX + 1), P(10, 1)], {},
     [ReadvBatch(10, (0, 2))], [1]),  # larger than a piece may be: alone
    ([P(None), P(10), P(None), P(10)], {}, [ReadvBatch(10, (1, 3))], [0, 2]),  # no chain known: alone
    ([P(10, 1) for _ in range(5)], {"max_reads": 2},
     [ReadvBatch(10, (0, 1)), ReadvBatch(10, (2, 3))], [4]),  # split at the count; the odd one out alone
    ([P(10, 40) for _ in range(4)], {"max_bytes": 100},
     [ReadvBatch(10, (0, 1)), ReadvBatch(10, (2, 3))], []),  # split at the bytes
    ([P(10, 100), P(10, 1)], {"max_bytes": 100}, [], [0, 1]),
    ([P(10, inode_id=i % 3) for i in range(6)], {"max_files": 2},
     [ReadvBatch(10, (0, 1)), ReadvBatch(10, (2, 3)), ReadvBatch(10, (4, 5))], []),  # split at the files
])
def test_readv_plan(pieces: list[ReadvPiece], limits: dict[str, int], batches: list[ReadvBatch],
                    alone: list[int]) -> None:
    assert readv_plan(pieces, **limits) == (batches, alone)


def test_readv_plan_keeps_every_piece_exactly_once_within_the_limits() -> None:
    pieces = [ReadvPiece(10 + i % 3 if i % 11 else None, i % 13, 1 + (i * 101) % 700) for i in range(3000)]
    batches, alone = readv_plan(pieces, max_reads=64, max_bytes=20_000, piece_max=600, max_files=5)
    together = [i for b in batches for i in b.indexes]
    assert sorted(together + alone) == list(range(len(pieces)))
    for batch in batches:
        assert 2 <= len(batch.indexes) <= 64
        assert sum(pieces[i].length for i in batch.indexes) <= 20_000
        assert {pieces[i].chain_id for i in batch.indexes} == {batch.chain_id}
        assert len({pieces[i].inode_id for i in batch.indexes}) <= 5
        assert all(pieces[i].length <= 600 for i in batch.indexes)


# -- DataPath.read_batch ------------------------------------------------------------------

TARGETS = {101: "10.0.0.1", 201: "10.0.0.2", 301: "10.0.0.3"}


def _routing() -> mgmt_pb2.RoutingInfo:
    return mgmt_pb2.RoutingInfo(
        routing_version=1,
        nodes=[mgmt_pb2.NodeInfo(node_id=t // 100, address=f"{a}:1", bulk_address=f"{a}:2", alive=True)
               for t, a in TARGETS.items()],
        targets=[mgmt_pb2.TargetInfo(target_id=t, node_id=t // 100, chain_id=1) for t in TARGETS],
        chains=[mgmt_pb2.ChainInfo(
            chain_id=1, chain_version=1,
            targets=[mgmt_pb2.ChainTarget(target_id=t, public_state=mgmt_pb2.SERVING) for t in TARGETS])],
    )


def _content(chunk_index: int, offset: int, length: int, inode_id: int = 7) -> bytes:
    return bytes((inode_id * 13 + chunk_index * 7 + offset + i) % 251 for i in range(length))


HOLE = 5  # a chunk that does not exist
SHORT = 6  # a chunk of 100 bytes


class ScriptedPool:
    """Answers Read and ReadV with the file's bytes; scripted failures by chunk index
    or address. `bulk` is set: the data path may use READV."""

    bulk = object()

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()  # (method, address)
        self.dead: set[str] = set()
        self.bad_crc: set[int] = set()  # chunks whose piece comes with a wrong CRC (READV only)
        self.piece_error: dict[int, Exception] = {}  # chunk -> the error of its READV piece
        self.too_long: set[int] = set()  # chunks whose piece carries a byte more than asked
        self.frame_error: Exception | None = None  # every READV fails so, once
        self.files: list[list[int]] = []  # each READVM's file table (inode ids)
        self.inode_error: dict[int, Exception] = {}  # inode -> the error of its every read

    async def call(self, address: str, method: str, request: Any, *, timeout: float, bulk_address: str = "",
                   into: Any = None) -> Any:
        self.calls[method, address] += 1
        await asyncio.sleep(0)
        if address in self.dead or bulk_address in self.dead:
            raise Unavailable(f"{address} refused the connection")
        if method == "Read":
            inode_error = self.inode_error.get(request.chunk.inode_id)
            if inode_error is not None:
                raise inode_error
            data, exists = self._bytes(request.chunk.inode_id, request.chunk.chunk_index, request.offset,
                                       request.length)
            return storage_pb2.ReadResponse(data=data, crc32c=crc32c.crc32c(data), exists=exists)
        assert method == "ReadV" and bulk_address, (method, bulk_address)
        if self.frame_error is not None:
            error, self.frame_error = self.frame_error, None
            raise error
        self.files.append([inode_id for inode_id, _ in request.files])
        return [self._piece(request.files[read[0]][0], *read[1:]) for read in request.reads]

    def _bytes(self, inode_id: int, chunk_index: int, offset: int, length: int) -> tuple[bytes, bool]:
        if chunk_index == HOLE:
            return b"", False
        end = min(offset + length, 100) if chunk_index == SHORT else offset + length
        return _content(chunk_index, offset, max(0, end - offset), inode_id), True

    def _piece(self, inode_id: int, chunk_index: int, offset: int, length: int) -> w.ReadvResult:
        error = self.piece_error.get(chunk_index) or self.inode_error.get(inode_id)
        if error is not None:
            return w.ReadvResult(w.STATUS_ERROR, error=w.encode_error(type(error).__name__, str(error)))
        data, exists = self._bytes(inode_id, chunk_index, offset, length)
        crc = crc32c.crc32c(data) ^ (1 if chunk_index in self.bad_crc else 0)
        if chunk_index in self.too_long:
            data += b"!"
        return w.ReadvResult(flags=w.FLAG_EXISTS if exists else 0, crc32c=crc, data=data)

    def count(self, method: str) -> int:
        return sum(n for (m, _), n in self.calls.items() if m == method)


def _data_path(pool: ScriptedPool, caps: Any = None) -> DataPath:
    async def fetch(known: int) -> mgmt_pb2.GetRoutingResponse:
        return mgmt_pb2.GetRoutingResponse(routing=_routing())

    return DataPath(RoutingCache(fetch), pool, common_pb2.RequestHeader, caps,  # type: ignore[arg-type]
                    retry=RetryPolicy(base_delay=0.001), timeout=10.0)


FILE = FileLayout(7, common_pb2.Layout(chunk_size=CS, stripe=1, chain_ids=[1]))
SPANS = [ChunkSpan(i, (i * 61) % 1000, 300 + i) for i in range(12) if i not in (HOLE, SHORT)] + [
    ChunkSpan(HOLE, 10, 50), ChunkSpan(SHORT, 90, 30)]


def _expected(span: ChunkSpan) -> bytes:
    if span.chunk_index == HOLE:
        return bytes(span.length)
    if span.chunk_index == SHORT:
        got = _content(SHORT, span.offset, max(0, 100 - span.offset))
        return got + bytes(span.length - len(got))
    return _content(*span)


def _read(pool: ScriptedPool, spans: list[ChunkSpan] = SPANS) -> list[bytes]:
    return [bytes(data) for data in asyncio.run(_data_path(pool).read_batch(FILE, spans))]


def test_one_readv_serves_a_batch_holes_and_short_chunks_included() -> None:
    pool = ScriptedPool()
    assert _read(pool) == [_expected(s) for s in SPANS]
    assert (pool.count("ReadV"), pool.count("Read")) == (1, 0)


@pytest.mark.parametrize("script", ["bad_crc", "too_long", "piece_error"])
def test_a_failed_piece_is_read_again_alone_and_the_rest_are_kept(script: str) -> None:
    pool = ScriptedPool()
    if script == "piece_error":
        pool.piece_error[3] = StaleChainVersion("chain 1 is at version 2")
    else:
        getattr(pool, script).add(3)
    assert _read(pool) == [_expected(s) for s in SPANS]
    assert (pool.count("ReadV"), pool.count("Read")) == (1, 1)


def test_a_bad_crc_makes_the_replica_a_suspect_for_the_rereads() -> None:
    pool = ScriptedPool()
    pool.bad_crc.update(range(12))
    path = _data_path(pool)
    got = asyncio.run(path.read_batch(FILE, SPANS))
    assert [bytes(d) for d in got] == [_expected(s) for s in SPANS]
    readv_address = next(a for (m, a) in pool.calls if m == "ReadV")
    # The pieces with a bad CRC were re-read from the other replicas, not the one that sent them.
    assert pool.calls["Read", readv_address] == 0
    assert pool.count("Read") == len(SPANS) - 1  # all but the hole, whose CRC is not checked


def test_a_dead_replica_fails_the_frame_and_the_pieces_go_to_the_others() -> None:
    pool = ScriptedPool()
    pool.dead = {"10.0.0.1:2", "10.0.0.1:1"}  # target 101's server, both ports
    for _ in range(3):  # round-robin: some READV picks the dead one first
        assert _read(pool) == [_expected(s) for s in SPANS]
    assert pool.calls["Read", "10.0.0.1:1"] == 0  # once it failed, the single reads avoid it


def test_a_refused_capability_is_renewed_once_for_all_the_rereads() -> None:
    grants: list[int] = []

    async def grant(inode_id: int, write: bool) -> meta_pb2.Capability:
        grants.append(inode_id)
        return meta_pb2.Capability(blob=b"cap-%d" % len(grants), rights=1)  # no ttl: never due

    from emberfs.client._caps import CapabilityCache

    pool = ScriptedPool()
    pool.frame_error = CapabilityRefused("capability expired")
    path = _data_path(pool, CapabilityCache(grant))
    got = asyncio.run(path.read_batch(FILE, SPANS))
    assert [bytes(d) for d in got] == [_expected(s) for s in SPANS]
    assert len(grants) == 2  # the first grant, then one renewal for every re-read


def test_without_the_bulk_channel_every_span_goes_alone() -> None:
    pool = ScriptedPool()
    pool.bulk = None  # type: ignore[assignment]
    assert _read(pool) == [_expected(s) for s in SPANS]
    assert (pool.count("ReadV"), pool.count("Read")) == (0, len(SPANS))


def test_large_spans_go_alone_and_small_ones_together() -> None:
    big = FileLayout(7, common_pb2.Layout(chunk_size=4 * READV_PIECE_MAX, stripe=1, chain_ids=[1]))
    spans = [ChunkSpan(0, 0, READV_PIECE_MAX + 1), ChunkSpan(1, 5, 10), ChunkSpan(2, 0, 10)]
    pool = ScriptedPool()
    got = asyncio.run(_data_path(pool).read_batch(big, spans))
    assert [bytes(d) for d in got] == [_content(*s) for s in spans]
    assert (pool.count("ReadV"), pool.count("Read")) == (1, 1)


# -- DataPath.read_files: one batch over many files ---------------------------------------


def _file(inode_id: int) -> FileLayout:
    return FileLayout(inode_id, common_pb2.Layout(chunk_size=CS, stripe=1, chain_ids=[1]))


FILES = [_file(inode_id) for inode_id in (21, 22, 23, 24)]
FEW = [ChunkSpan(i, (i * 61) % 1000, 200 + i) for i in (0, 2, 3)]


def test_one_readvm_serves_the_small_reads_of_every_file_on_a_chain() -> None:
    pool = ScriptedPool()
    got = asyncio.run(_data_path(pool).read_files([FileSpans(f, FEW) for f in FILES]))
    assert [[bytes(d) for d in spans] for spans in got] == [[_content(*s, f.inode_id) for s in FEW] for f in FILES]
    assert (pool.count("ReadV"), pool.count("Read")) == (1, 0)
    assert pool.files == [[21, 22, 23, 24]]  # each inode once in the file table


def test_a_failing_file_gets_its_error_and_the_others_their_bytes() -> None:
    pool = ScriptedPool()
    pool.inode_error[22] = NotFound("inode 22 is gone")
    got = asyncio.run(_data_path(pool).read_files([FileSpans(f, FEW) for f in FILES]))
    assert isinstance(got[1], NotFound)
    for f, spans in zip(FILES, got, strict=True):
        if f.inode_id != 22:
            assert [bytes(d) for d in spans] == [_content(*s, f.inode_id) for s in FEW]
    assert (pool.count("ReadV"), pool.count("Read")) == (1, len(FEW))  # only its pieces were read again


def test_a_file_whose_capability_is_refused_renews_it_alone() -> None:
    grants: list[int] = []

    async def grant(inode_id: int, write: bool) -> meta_pb2.Capability:
        grants.append(inode_id)
        return meta_pb2.Capability(blob=b"cap-%d" % len(grants), rights=1)

    from emberfs.client._caps import CapabilityCache

    pool = ScriptedPool()
    pool.inode_error[23] = CapabilityRefused("capability of inode 23 expired")
    caps = CapabilityCache(grant)
    path = _data_path(pool, caps)

    async def go() -> list[Any]:
        got = await path.read_files([FileSpans(f, FEW) for f in FILES])
        pool.inode_error.clear()  # the renewed capability is accepted
        return [got, await path.read_files([FileSpans(f, FEW) for f in FILES])]

    first, second = asyncio.run(go())
    assert isinstance(first[2], CapabilityRefused)  # refused again after one renewal: the verdict
    assert [sorted(grants).count(i) for i in (21, 22, 23, 24)] == [1, 1, 3, 1]  # 23: once, renewed twice
    assert all(not isinstance(o, Exception) for o in second)
