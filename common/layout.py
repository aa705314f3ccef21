"""Layout maths: which chunk, which chain, which bytes. Pure functions, no I/O.

A file is cut into fixed-size chunks; chunk *i* covers file bytes
[i * chunk_size, (i + 1) * chunk_size) and lives on chain `chain_ids[i % stripe]`
(docs/ARCHITECTURE.md, "Where each rule lives"; 3FS stripes the same way). The chain list is
fixed when the file is created (`pick_chains`) and stored in the inode, so a change
of the chain table never moves existing data.

Invariants the functions keep:
- `chunk_span` returns pieces in file order that tile the requested range exactly
  (clipped at EOF when the file length is given); no piece is empty.
- Chunk indexes fit the wire's u32.
- `coalesce_ranges` issues one read per contiguous run of bytes per chunk, and every
  byte of every requested range is covered by exactly one piece.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .errors import FailedPrecondition, InvalidArgument

__all__ = [
    "MAX_CHUNK_INDEX",
    "ChunkRead",
    "ChunkSpan",
    "RangePiece",
    "chain_for_chunk",
    "chunk_span",
    "coalesce_ranges",
    "pick_chains",
]

MAX_CHUNK_INDEX = 2**32 - 1  # ChunkId.chunk_index is a u32 on the wire
_MASK64 = 2**64 - 1


class ChunkSpan(NamedTuple):
    """The part of a byte range that falls in one chunk."""

    chunk_index: int
    offset: int  # within the chunk
    length: int


class RangePiece(NamedTuple):
    """Where some bytes of one chunk read go in the caller's output."""

    range_index: int  # which input range they belong to
    range_offset: int  # position inside that range's output
    read_offset: int  # position inside the chunk read's result
    length: int


@dataclass(frozen=True, slots=True)
class ChunkRead:
    """One read of a chunk that serves one or more pieces of the requested ranges."""

    chunk_index: int
    offset: int  # within the chunk
    length: int
    pieces: tuple[RangePiece, ...]


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise InvalidArgument(f"chunk_size must be a positive integer, not {chunk_size!r}")


def chunk_span(
    offset: int, length: int, chunk_size: int, file_length: int | None = None
) -> list[ChunkSpan]:
    """Split the byte range [offset, offset + length) into per-chunk pieces.

    With `file_length`, the range is first clipped at EOF (a read past the end
    returns short, as read(2) does); a range entirely past EOF gives [].
    """
    _check_chunk_size(chunk_size)
    if offset < 0 or length < 0:
        raise InvalidArgument(f"negative offset or length: offset={offset} length={length}")
    end = offset + length
    if file_length is not None:
        if file_length < 0:
            raise InvalidArgument(f"negative file length {file_length}")
        end = min(end, file_length)
    if end <= offset:
        return []
    last_index = (end - 1) // chunk_size
    if last_index > MAX_CHUNK_INDEX:
        raise InvalidArgument(f"range ends at byte {end}: past the last chunk index")
    spans: list[ChunkSpan] = []
    pos = offset
    while pos < end:
        index, in_chunk = divmod(pos, chunk_size)
        take = min(chunk_size - in_chunk, end - pos)
        spans.append(ChunkSpan(index, in_chunk, take))
        pos += take
    return spans


def chain_for_chunk(chain_ids: Sequence[int], stripe: int, chunk_index: int) -> int:
    """The chain holding chunk `chunk_index`: chain_ids[chunk_index % stripe]."""
    if not 1 <= stripe <= len(chain_ids):
        raise InvalidArgument(f"stripe {stripe} outside 1..{len(chain_ids)} (the file's chains)")
    if not 0 <= chunk_index <= MAX_CHUNK_INDEX:
        raise InvalidArgument(f"chunk index {chunk_index} outside 0..{MAX_CHUNK_INDEX}")
    return chain_ids[chunk_index % stripe]


def _splitmix64(state: int) -> tuple[int, int]:
    """One step of SplitMix64: (next state, output). Stable across Python versions,
    unlike `random.shuffle`, so a layout picked by one release is reproducible."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def _shuffled(items: list[int], seed: int) -> list[int]:
    out = list(items)
    state = seed & _MASK64
    for i in range(len(out) - 1, 0, -1):  # Fisher-Yates
        state, r = _splitmix64(state)
        j = r % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def pick_chains(all_chain_ids: Iterable[int], stripe: int, seed: int) -> list[int]:
    """Choose the ordered chain list of a new file.

    The first chain is picked round-robin (`seed % n` over the sorted chain table), so
    files with consecutive seeds (inode ids) start on different chains and chunk 0 of
    a burst of small files spreads over the cluster. The remaining `stripe - 1` chains
    come from a shuffle of the others seeded by `seed`, so files do not all pair the
    same neighbouring chains. `stripe` is capped at the number of chains.
    """
    chains = sorted(set(all_chain_ids))
    if not chains:
        raise FailedPrecondition("no chains exist yet: run `emberfs admin init-chains`")
    if stripe < 1:
        raise InvalidArgument(f"stripe must be at least 1, not {stripe}")
    if seed < 0:
        raise InvalidArgument(f"seed must be non-negative, not {seed}")
    stripe = min(stripe, len(chains))
    start = seed % len(chains)
    others = chains[start + 1 :] + chains[:start]
    return [chains[start]] + _shuffled(others, seed)[: stripe - 1]


def coalesce_ranges(
    ranges: Sequence[tuple[int, int]],
    chunk_size: int,
    *,
    file_length: int | None = None,
    max_gap: int = 0,
) -> list[ChunkRead]:
    """Plan the chunk reads for a batch of (offset, length) file ranges.

    Pieces of the ranges that fall in the same chunk and overlap, touch, or lie at
    most `max_gap` bytes apart are served by one read (reading a small gap is
    cheaper than another request). Returns reads ordered by (chunk_index, offset);
    each piece says where its bytes go, so the caller can scatter the results.
    Ranges are clipped at `file_length` when it is given.
    """
    if max_gap < 0:
        raise InvalidArgument(f"max_gap must be non-negative, not {max_gap}")
    # (chunk_index, offset in chunk, length, range index, offset in range)
    parts: list[tuple[int, int, int, int, int]] = []
    for range_index, (offset, length) in enumerate(ranges):
        done = 0
        for span in chunk_span(offset, length, chunk_size, file_length):
            parts.append((span.chunk_index, span.offset, span.length, range_index, done))
            done += span.length
    parts.sort()

    reads: list[ChunkRead] = []
    run: list[tuple[int, int, int, int, int]] = []
    run_end = 0

    def flush() -> None:
        index, start = run[0][0], run[0][1]
        pieces = tuple(
            RangePiece(r_index, r_offset, c_offset - start, length)
            for _, c_offset, length, r_index, r_offset in run
        )
        reads.append(ChunkRead(index, start, run_end - start, pieces))

    for part in parts:
        index, c_offset, length = part[0], part[1], part[2]
        if run and (index != run[0][0] or c_offset > run_end + max_gap):
            flush()
            run = []
        if not run:
            run_end = c_offset + length
        run.append(part)
        run_end = max(run_end, c_offset + length)
    if run:
        flush()
    return reads
