"""The storage server's batched reads: READV (many small reads of one inode on one
target) and READVM (of many inodes on one target), one answer each.

Each piece is served by `Operator.read_data`, the function behind every READ (lease,
chain version, SERVING state, CRAQ read plan: clean => local, dirty => ask the tail,
take over at the tail), so a piece follows exactly the rules of a READ of its own. A
piece's failure becomes that piece's error; the others still answer.

Capabilities: a READV's one capability is checked by the bulk server before this runs
(a refusal is the frame's error). A READVM carries one per inode; each is checked once
here through the `authorize` the bulk server passes (access.py's guard), and a refused
one fails that inode's pieces only.

Pieces whose bytes are in the page cache are read one after another on the event loop
(they never suspend, and a task each cost more than the read); the rest then go to the
I/O pool together, so misses wait on the disk concurrently, not in turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from emberfs.common import bulkwire as w
from emberfs.common.errors import EmberError, InvalidArgument
from emberfs.proto import storage_pb2

from .chunkfiles import WouldBlock
from .craq import Operator

__all__ = ["serve_readv", "serve_readvm"]

log = logging.getLogger("emberfs.storage.bulk")

# (inode id, chunk index, offset, length)
Piece = tuple[int, int, int, int]


async def serve_readv(op: Operator, head: w.Request, payload: bytes) -> bytes:
    """The answer payload of a READV frame (capability already checked)."""
    try:
        reads = w.unpack_readv_reads(payload)
    except ValueError as exc:
        raise InvalidArgument(f"READV: {exc}") from None
    return await _serve(op, head, [(head.inode_id, *read) for read in reads], {})


async def serve_readvm(op: Operator, head: w.Request, ext: bytes, payload: bytes,
                       authorize: Callable[[int, bytes], None]) -> bytes:
    """The answer payload of a READVM frame. authorize(inode id, capability) raises the
    EmberError of a refusal (CapabilityRefused); it runs once per inode of the table."""
    try:
        files = w.unpack_readv_files(ext)
        reads = w.unpack_readvm_reads(payload, len(files))
    except ValueError as exc:
        raise InvalidArgument(f"READVM: {exc}") from None
    refused: dict[int, w.ReadvResult] = {}
    for inode_id, capability in files:
        try:
            authorize(inode_id, capability)
        except EmberError as exc:
            refused[inode_id] = _failed(exc.code, exc.message)
    return await _serve(op, head, [(files[index][0], chunk_index, offset, length)
                                   for index, chunk_index, offset, length in reads], refused)


async def _serve(op: Operator, head: w.Request, pieces: Sequence[Piece], refused: dict[int, w.ReadvResult]) -> bytes:
    results: list[w.ReadvResult] = []
    misses: list[int] = []
    for index, piece in enumerate(pieces):
        failed = refused.get(piece[0])
        if failed is not None:
            results.append(failed)
            continue
        try:
            results.append(await _read_piece(op, head, piece, wait=False))
        except WouldBlock:
            results.append(w.ReadvResult())
            misses.append(index)
    if misses:
        served = await asyncio.gather(*(_read_piece(op, head, pieces[i], wait=True) for i in misses))
        for index, result in zip(misses, served, strict=True):
            results[index] = result
    return w.pack_readv_results(results)


def _failed(code: str, message: str) -> w.ReadvResult:
    return w.ReadvResult(w.STATUS_ERROR, error=w.encode_error(code, message, w.MAX_READV_ERROR))


async def _read_piece(op: Operator, head: w.Request, piece: Piece, *, wait: bool) -> w.ReadvResult:
    inode_id, chunk_index, offset, length = piece
    request = storage_pb2.ReadRequest(
        chain_id=head.chain_id, chain_version=head.chain_version,
        chunk=storage_pb2.ChunkId(inode_id=inode_id, chunk_index=chunk_index),
        offset=offset, length=length, target_id=head.target_id)
    try:
        data, crc, meta = await op.read_data(request, wait=wait)
    except WouldBlock:
        raise
    except EmberError as exc:
        return _failed(exc.code, exc.message)
    except Exception:
        log.exception("READV piece (inode %d, chunk %d, offset %d, length %d) failed", inode_id, chunk_index,
                      offset, length)
        return _failed("Internal", "internal error (see the storage server log)")
    assert isinstance(data, bytes)  # no region without region_ok
    return w.ReadvResult(flags=w.FLAG_EXISTS if meta.exists else 0, commit_version=meta.commit_version,
                         chunk_length=meta.length, crc32c=crc, data=data)
