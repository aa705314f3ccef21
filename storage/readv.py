"""The storage server's READV: many small reads of one inode on one target, one answer.

Each piece is served by `Operator.read_data`, the function behind every READ (lease,
chain version, SERVING state, CRAQ read plan: clean => local, dirty => ask the tail,
take over at the tail), so a piece follows exactly the rules of a READ of its own. The
bulk server checks the frame's capability once before this runs (one capability covers
one inode). A piece's failure becomes that piece's error; the others still answer.

Pieces whose bytes are in the page cache are read one after another on the event loop
(they never suspend, and a task each cost more than the read); the rest then go to the
I/O pool together, so misses wait on the disk concurrently, not in turn.
"""

from __future__ import annotations

import asyncio
import logging

from emberfs.common import bulkwire as w
from emberfs.common.errors import EmberError, InvalidArgument
from emberfs.proto import storage_pb2

from .chunkfiles import WouldBlock
from .craq import Operator
from .records import ChunkId, ChunkMeta

__all__ = ["serve_readv"]

log = logging.getLogger("emberfs.storage.bulk")

# ((target, chunk, offset, length), what store.read returned for them)
Preread = tuple[tuple[int, ChunkId, int, int], tuple[bytes, ChunkMeta]]


async def serve_readv(op: Operator, head: w.Request, payload: bytes) -> bytes:
    """The answer payload of a READV frame (capability already checked)."""
    try:
        reads = w.unpack_readv_reads(payload)
    except ValueError as exc:
        raise InvalidArgument(f"READV: {exc}") from None
    results: list[w.ReadvResult] = []
    misses: list[int] = []
    for index, (chunk_index, offset, length) in enumerate(reads):
        try:
            results.append(await _read_piece(op, head, chunk_index, offset, length, wait=False))
        except WouldBlock:
            results.append(w.ReadvResult())
            misses.append(index)
    if misses:
        prereads = await _preread(op, head, [reads[i] for i in misses])
        served = await asyncio.gather(*(_read_piece(op, head, *reads[i], wait=True, preread=p)
                                        for i, p in zip(misses, prereads, strict=True)))
        for index, result in zip(misses, served, strict=True):
            results[index] = result
    return w.pack_readv_results(results)


async def _preread(op: Operator, head: w.Request, pieces: list[tuple[int, int, int]]
                   ) -> list[Preread | None]:
    """The pieces' bytes from disk in ONE hop to the I/O pool (a hop each cost more than a
    small read); each is then checked by read_data as its own read. A piece this cannot read
    (not our target, a failed one, a disk error) gets None and is read the usual way, which
    reports or fails the target as it should."""
    target = head.target_id
    try:
        store = op.targets.store_of(target)
    except (KeyError, EmberError):
        return [None] * len(pieces)

    def read_all() -> list[Preread | None]:
        out: list[Preread | None] = []
        for chunk_index, offset, length in pieces:
            try:
                chunk = ChunkId(head.inode_id, chunk_index)
                out.append(((target, chunk, offset, length), store.read(chunk, offset, length)))
            except Exception:  # the piece's own read raises it where it is handled
                out.append(None)
        return out

    return await op.targets.tio(target, read_all)


async def _read_piece(op: Operator, head: w.Request, chunk_index: int, offset: int, length: int, *,
                      wait: bool, preread: Preread | None = None) -> w.ReadvResult:
    request = storage_pb2.ReadRequest(
        chain_id=head.chain_id, chain_version=head.chain_version,
        chunk=storage_pb2.ChunkId(inode_id=head.inode_id, chunk_index=chunk_index),
        offset=offset, length=length, target_id=head.target_id)
    try:
        data, crc, meta = await op.read_data(request, wait=wait, preread=preread)
    except WouldBlock:
        raise
    except EmberError as exc:
        return w.ReadvResult(w.STATUS_ERROR, error=w.encode_error(exc.code, exc.message, w.MAX_READV_ERROR))
    except Exception:
        log.exception("READV piece (chunk %d, offset %d, length %d) failed", chunk_index, offset, length)
        return w.ReadvResult(w.STATUS_ERROR, error=w.encode_error(
            "Internal", "internal error (see the storage server log)", w.MAX_READV_ERROR))
    assert isinstance(data, bytes)  # no region without region_ok
    return w.ReadvResult(flags=w.FLAG_EXISTS if meta.exists else 0, commit_version=meta.commit_version,
                         chunk_length=meta.length, crc32c=crc, data=data)
