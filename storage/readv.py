"""The storage server's batched reads: READV (many small reads of one inode on one
target) and READVM (of many inodes on one target), one answer each.

The pieces are served by `Operator.read_batch`, which applies to each the rules of a
READ of its own (`read_data`: lease, chain version, SERVING state, CRAQ read plan:
clean => local, dirty => ask the tail, take over at the tail). A piece's failure
becomes that piece's error; the others still answer.

Capabilities: a READV's one capability is checked by the bulk server before this runs
(a refusal is the frame's error). A READVM carries one per inode; each is checked once
here through the `authorize` the bulk server passes (access.py's guard), and a refused
one fails that inode's pieces only.

All pieces go to the I/O pool as one job (chunkstore.read_many): on a cold page cache
a first try on the event loop missed for nearly every piece and paid its open and
record lookup twice, plus a thread hop per piece.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from emberfs.common import bulkwire as w
from emberfs.common.errors import EmberError, Internal, InvalidArgument

from .craq import Operator
from .records import ChunkId

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
    results: list[w.ReadvResult | None] = [refused.get(piece[0]) for piece in pieces]
    asked = [index for index, result in enumerate(results) if result is None]
    reads = [(ChunkId(pieces[i][0], pieces[i][1]), pieces[i][2], pieces[i][3]) for i in asked]
    try:
        served = await op.read_batch(head.chain_id, head.chain_version, head.target_id, reads) if reads else []
    except EmberError as exc:  # refused as a whole (lease, chain version, target state): every piece says why
        served = [exc] * len(reads)
    except Exception:
        log.exception("READV of %d pieces on chain %d failed", len(reads), head.chain_id)
        served = [Internal("internal error (see the storage server log)")] * len(reads)
    for index, got in zip(asked, served, strict=True):
        if isinstance(got, EmberError):
            results[index] = _failed(got.code, got.message)
        else:
            data, crc, meta = got
            results[index] = w.ReadvResult(flags=w.FLAG_EXISTS if meta.exists else 0,
                                           commit_version=meta.commit_version, chunk_length=meta.length,
                                           crc32c=crc, data=data)
    answered = [r for r in results if r is not None]
    assert len(answered) == len(pieces)
    return w.pack_readv_results(answered)


def _failed(code: str, message: str) -> w.ReadvResult:
    return w.ReadvResult(w.STATUS_ERROR, error=w.encode_error(code, message, w.MAX_READV_ERROR))
