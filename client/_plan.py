"""The client's data plans: which chunk requests serve a read, a write or a truncate,
and which replica takes each. Pure functions over plain values, no I/O, no clock.

Layout rules come from `emberfs.common.layout` (chunk *i* lives on
`chain_ids[i % stripe]`); this module turns a caller's request into chunk requests:

- `read_plan`: (path, offset, length) ranges of several files -> one `FileReads` per
  file, each a list of coalesced `ChunkRead`s (one request per contiguous run of bytes
  per chunk), clipped at the file's length as pread(2) is.
- `readv_plan`: which chunk reads of a batch (of one file or many) travel together in
  one READVM (small pieces of one chain, within the frame's limits) and which go alone.
- `truncate_plan`: the chunk to cut and the chunks to drop when a file's length moves.
- `pick_replica` / `replica_order`: least outstanding requests first, skipping replicas
  that failed this request or recently failed any (`suspects`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from emberfs.common.bulkwire import MAX_READV_BYTES, MAX_READV_FILES, MAX_READV_READS
from emberfs.common.layout import ChunkRead, coalesce_ranges

__all__ = [
    "READV_PIECE_MAX",
    "FileReads",
    "ReadvBatch",
    "ReadvPiece",
    "TruncatePlan",
    "chunk_count",
    "chunks_to_remove",
    "effective_stripe",
    "fill_chunk",
    "live_suspects",
    "pick_affine_replica",
    "pick_replica",
    "read_plan",
    "readv_plan",
    "result_sizes",
    "truncate_plan",
    "untried_replicas",
]

# Two pieces of one chunk this close are fetched as one read: a small gap costs less
# than another round trip.
COALESCE_GAP = 64 * 1024
# Reads larger than this go alone, not in a READV: their per-request cost is small beside
# their bytes, and alone they keep sendfile(2), land straight in their buffer, and spread
# over the replicas.
READV_PIECE_MAX = 256 * 1024


def effective_stripe(stripe: int, chain_ids: Sequence[int]) -> int:
    """The stripe chunks are spread by: `pick_chains` caps a file's chain list at the
    chain table's size, so a layout may ask for more chains than it was given."""
    return min(stripe, len(chain_ids)) if stripe else len(chain_ids)


def chunk_count(length: int, chunk_size: int) -> int:
    return -(-length // chunk_size)


def chunks_to_remove(old_length: int, new_length: int, chunk_size: int) -> range:
    """Chunk indexes that held bytes of the old file and lie wholly past the new end."""
    return range(chunk_count(new_length, chunk_size), chunk_count(old_length, chunk_size))


Bytes = bytes | bytearray | memoryview


def fill_chunk(data: Bytes, exists: bool, expected: int) -> Bytes:
    """A chunk's bytes as the file sees them: a hole or a short chunk reads as zeros up
    to `expected` (the part of the chunk inside the file); extra bytes are clipped."""
    if not exists:
        return bytes(expected)
    if len(data) == expected:
        return data  # no copy: the common case
    if len(data) > expected:
        return data[:expected]
    return bytes(data) + bytes(expected - len(data))


# -- reads -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileReads:
    """The chunk reads that serve the ranges of one file in a batch."""

    path: str
    range_indexes: tuple[int, ...]  # positions in the caller's batch, in this file's order
    reads: tuple[ChunkRead, ...]  # pieces' range_index counts within range_indexes


def read_plan(
    ranges: Sequence[tuple[str, int, int]],
    lengths: Mapping[str, int],
    chunk_sizes: Mapping[str, int],
    *,
    max_gap: int = COALESCE_GAP,
) -> list[FileReads]:
    """Group a batch of (path, offset, length) by file and coalesce each file's ranges
    into chunk reads, clipped at the file's length (`lengths[path]`)."""
    by_path: dict[str, list[int]] = {}
    for index, (path, _, _) in enumerate(ranges):
        by_path.setdefault(path, []).append(index)
    plans = []
    for path, indexes in by_path.items():
        spans = [(ranges[i][1], ranges[i][2]) for i in indexes]
        reads = coalesce_ranges(spans, chunk_sizes[path], file_length=lengths[path], max_gap=max_gap)
        plans.append(FileReads(path, tuple(indexes), tuple(reads)))
    return plans


def result_sizes(ranges: Sequence[tuple[str, int, int]], lengths: Mapping[str, int]) -> list[int]:
    """How many bytes each range returns: short at EOF, empty past it (as pread)."""
    return [max(0, min(length, lengths[path] - offset)) for path, offset, length in ranges]


class ReadvPiece(NamedTuple):
    """What `readv_plan` needs of one chunk read of a batch."""

    chain_id: int | None  # None: unknown (a file without chains); the read goes alone and says why
    inode_id: int
    length: int


@dataclass(frozen=True, slots=True)
class ReadvBatch:
    """Pieces of one chain, of one file or several, that one READVM asks for."""

    chain_id: int
    indexes: tuple[int, ...]  # positions in the pieces given to readv_plan


def readv_plan(
    pieces: Sequence[ReadvPiece],
    *,
    piece_max: int = READV_PIECE_MAX,
    max_reads: int = MAX_READV_READS,
    max_bytes: int = MAX_READV_BYTES,
    max_files: int = MAX_READV_FILES,
) -> tuple[list[ReadvBatch], list[int]]:
    """(batches, alone): the pieces grouped by chain, whatever their file, into READVMs of
    at most `max_reads` pieces, `max_bytes` bytes and `max_files` inodes, in the pieces'
    order; `alone` lists the pieces read on their own: those over `piece_max` bytes,
    those of no known chain, and a piece that would make a batch of one."""
    by_chain: dict[int, list[int]] = {}
    alone: list[int] = []
    for index, piece in enumerate(pieces):
        if piece.length > piece_max or piece.chain_id is None:
            alone.append(index)
        else:
            by_chain.setdefault(piece.chain_id, []).append(index)
    batches: list[ReadvBatch] = []
    for chain_id, indexes in by_chain.items():
        group: list[int] = []
        size = 0
        inodes: set[int] = set()
        for index in indexes:
            piece = pieces[index]
            new_file = piece.inode_id not in inodes
            if group and (len(group) == max_reads or size + piece.length > max_bytes
                          or (new_file and len(inodes) == max_files)):
                batches.append(ReadvBatch(chain_id, tuple(group)))
                group, size, inodes = [], 0, set()
            group.append(index)
            size += piece.length
            inodes.add(piece.inode_id)
        batches.append(ReadvBatch(chain_id, tuple(group)))
    alone += [b.indexes[0] for b in batches if len(b.indexes) == 1]
    return [b for b in batches if len(b.indexes) > 1], sorted(alone)


# -- writes ----------------------------------------------------------------------------


class TruncatePlan(NamedTuple):
    cut: tuple[int, int] | None  # (chunk_index, new chunk length) of the chunk the new end falls in
    remove: range  # chunks wholly past the new end that may hold bytes


def truncate_plan(old_length: int, new_length: int, chunk_size: int) -> TruncatePlan:
    """Storage work for a length change from old to new.

    Shrinking cuts the chunk the new end falls in and drops the chunks past it, so
    that growing the file later reads zeros there, never the old bytes. Growing cuts
    the old last chunk at the old end for the same reason (its tail may hold bytes of
    an earlier, longer version) and drops nothing.
    """
    end = min(old_length, new_length)
    tail = end % chunk_size
    cut = (end // chunk_size, tail) if tail and old_length > 0 else None
    return TruncatePlan(cut, chunks_to_remove(old_length, new_length, chunk_size))


# -- replicas --------------------------------------------------------------------------


def live_suspects(suspects: Mapping[int, float], now: float) -> set[int]:
    """Targets that failed recently enough to be tried last (`suspects`: target -> until)."""
    return {target for target, until in suspects.items() if until > now}


def pick_replica(
    serving: Sequence[int],
    outstanding: Counter[int],
    avoid: Iterable[int],
    turn: int,
    suspects: Iterable[int] = (),
) -> int | None:
    """The serving replica with the fewest requests in flight; ties go round-robin by
    `turn`. Replicas in `avoid` (failed this request) are skipped while others remain;
    `suspects` (failed another request lately) are used only when nothing else is left,
    so a dead server that routing still lists costs one failure, not one per chunk."""
    avoided, suspected = set(avoid), set(suspects)
    candidates = (
        [t for t in serving if t not in avoided and t not in suspected]
        or [t for t in serving if t not in avoided]
        or list(serving)
    )
    if not candidates:
        return None
    n = len(candidates)
    rotated = [candidates[(turn + i) % n] for i in range(n)]
    return min(rotated, key=lambda t: outstanding[t])


AFFINITY_SLACK = 32  # requests a file's own replica may have beyond the least loaded one


def pick_affine_replica(
    serving: Sequence[int],
    outstanding: Counter[int],
    key: int,
    suspects: Iterable[int] = (),
    slack: int = AFFINITY_SLACK,
) -> int | None:
    """The replica `key` (a file) maps to among the serving ones, unless it is a suspect
    or has more than `slack` requests in flight beyond the least loaded: then
    `pick_replica`'s choice. Small random reads of a file then meet the same replica's
    page cache instead of warming three copies of it; load still spreads by file."""
    suspected = set(suspects)
    healthy = [t for t in serving if t not in suspected]
    if healthy:
        affine = healthy[key % len(healthy)]
        if outstanding[affine] <= min(outstanding[t] for t in healthy) + slack:
            return affine
    return pick_replica(serving, outstanding, (), key, suspects)


def untried_replicas(serving: Sequence[int], avoid: Iterable[int]) -> bool:
    """Whether a retry can go to a replica this request has not failed on yet."""
    avoided = set(avoid)
    return any(t not in avoided for t in serving)
