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

from emberfs.client._datapath import DataPath, FileLayout
from emberfs.client._plan import READV_PIECE_MAX, ReadvBatch, readv_plan
from emberfs.client._retry import RetryPolicy
from emberfs.client._routing import RoutingCache
from emberfs.common import bulkwire as w
from emberfs.common.errors import CapabilityRefused, StaleChainVersion, Unavailable
from emberfs.common.layout import ChunkSpan
from emberfs.proto import common_pb2, meta_pb2, mgmt_pb2, storage_pb2

CS = 4096

# -- readv_plan --------------------------------------------------------------------------


def _chain_of(chunk_index: int) -> int:
    return 10 + chunk_index % 2  # two chains, alternating


@pytest.mark.parametrize(("spans", "limits", "batches", "alone"), [
    ([], {}, [], []),
    ([ChunkSpan(0, 0, 10)], {}, [], [0]),  # a batch of one goes alone
    ([ChunkSpan(0, 0, 10), ChunkSpan(2, 0, 10)], {}, [ReadvBatch(10, (0, 1))], []),
    ([ChunkSpan(0, 0, 10), ChunkSpan(1, 0, 10), ChunkSpan(2, 5, 10), ChunkSpan(3, 0, 10)], {},
     [ReadvBatch(10, (0, 2)), ReadvBatch(11, (1, 3))], []),  # one batch per chain
    ([ChunkSpan(0, 0, READV_PIECE_MAX), ChunkSpan(2, 0, READV_PIECE_MAX + 1), ChunkSpan(4, 0, 1)], {},
     [ReadvBatch(10, (0, 2))], [1]),  # larger than a piece may be: alone
    ([ChunkSpan(2 * i, 0, 1) for i in range(5)], {"max_reads": 2},
     [ReadvBatch(10, (0, 1)), ReadvBatch(10, (2, 3))], [4]),  # split at the count; the odd one out alone
    ([ChunkSpan(2 * i, 0, 40) for i in range(4)], {"max_bytes": 100},
     [ReadvBatch(10, (0, 1)), ReadvBatch(10, (2, 3))], []),  # split at the bytes
    ([ChunkSpan(0, 0, 100), ChunkSpan(2, 0, 1)], {"max_bytes": 100}, [], [0, 1]),
])
def test_readv_plan(spans: list[ChunkSpan], limits: dict[str, int], batches: list[ReadvBatch],
                    alone: list[int]) -> None:
    assert readv_plan(spans, _chain_of, **limits) == (batches, alone)


def test_readv_plan_keeps_every_span_exactly_once_within_the_limits() -> None:
    spans = [ChunkSpan(i % 7, (i * 37) % 900, 1 + (i * 101) % 700) for i in range(3000)]
    batches, alone = readv_plan(spans, _chain_of, max_reads=64, max_bytes=20_000, piece_max=600)
    together = [i for b in batches for i in b.indexes]
    assert sorted(together + alone) == list(range(len(spans)))
    for batch in batches:
        assert 2 <= len(batch.indexes) <= 64
        assert sum(spans[i].length for i in batch.indexes) <= 20_000
        assert {_chain_of(spans[i].chunk_index) for i in batch.indexes} == {batch.chain_id}
        assert all(spans[i].length <= 600 for i in batch.indexes)


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


def _content(chunk_index: int, offset: int, length: int) -> bytes:
    return bytes((chunk_index * 7 + offset + i) % 251 for i in range(length))


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

    async def call(self, address: str, method: str, request: Any, *, timeout: float, bulk_address: str = "",
                   into: Any = None) -> Any:
        self.calls[method, address] += 1
        await asyncio.sleep(0)
        if address in self.dead or bulk_address in self.dead:
            raise Unavailable(f"{address} refused the connection")
        if method == "Read":
            data, exists = self._bytes(request.chunk.chunk_index, request.offset, request.length)
            return storage_pb2.ReadResponse(data=data, crc32c=crc32c.crc32c(data), exists=exists)
        assert method == "ReadV" and bulk_address, (method, bulk_address)
        if self.frame_error is not None:
            error, self.frame_error = self.frame_error, None
            raise error
        return [self._piece(*read) for read in request.reads]

    def _bytes(self, chunk_index: int, offset: int, length: int) -> tuple[bytes, bool]:
        if chunk_index == HOLE:
            return b"", False
        end = min(offset + length, 100) if chunk_index == SHORT else offset + length
        return _content(chunk_index, offset, max(0, end - offset)), True

    def _piece(self, chunk_index: int, offset: int, length: int) -> w.ReadvResult:
        error = self.piece_error.get(chunk_index)
        if error is not None:
            return w.ReadvResult(w.STATUS_ERROR, error=w.encode_error(type(error).__name__, str(error)))
        data, exists = self._bytes(chunk_index, offset, length)
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
