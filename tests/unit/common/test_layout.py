"""Layout maths: chunk spans, chain choice, range coalescing (tables + properties)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emberfs.common import errors as e
from emberfs.common.layout import (
    MAX_CHUNK_INDEX,
    ChunkRead,
    RangePiece,
    chain_for_chunk,
    chunk_span,
    coalesce_ranges,
    pick_chains,
)

C = 8  # a small chunk size keeps the tables readable

SPANS = [
    # offset, length, file_length, expected [(chunk_index, offset_in_chunk, length)]
    (0, 0, None, []),
    (5, 0, None, []),
    (0, 1, None, [(0, 0, 1)]),
    (0, C - 1, None, [(0, 0, 7)]),
    (0, C, None, [(0, 0, 8)]),
    (0, C + 1, None, [(0, 0, 8), (1, 0, 1)]),
    (C - 1, 2, None, [(0, 7, 1), (1, 0, 1)]),
    (C, C, None, [(1, 0, 8)]),
    (3, 3 * C, None, [(0, 3, 5), (1, 0, 8), (2, 0, 8), (3, 0, 3)]),
    (100 * C + 2, 1, None, [(100, 2, 1)]),
    # EOF clipping
    (0, 100, 0, []),
    (0, 100, 1, [(0, 0, 1)]),
    (0, 100, C, [(0, 0, 8)]),
    (0, 100, C + 1, [(0, 0, 8), (1, 0, 1)]),
    (C, 100, C, []),
    (C + 5, 100, C, []),
    (6, 100, 10, [(0, 6, 2), (1, 0, 2)]),
    (6, 3, 100, [(0, 6, 2), (1, 0, 1)]),
]


@pytest.mark.parametrize("offset,length,file_length,expected", SPANS)
def test_chunk_span(offset, length, file_length, expected) -> None:
    assert chunk_span(offset, length, C, file_length) == expected


@pytest.mark.parametrize(
    "args",
    [(-1, 1, C), (0, -1, C), (0, 1, 0), (0, 1, -8), (0, 1, C, -1),
     (MAX_CHUNK_INDEX * C + C, 1, C)],
)
def test_chunk_span_refuses(args) -> None:
    with pytest.raises(e.InvalidArgument):
        chunk_span(*args)


def test_chunk_span_last_chunk_index() -> None:
    assert chunk_span(MAX_CHUNK_INDEX * C, C, C) == [(MAX_CHUNK_INDEX, 0, C)]


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 300),
       st.none() | st.integers(0, 20_000))
def test_chunk_span_tiles_the_range(offset, length, chunk_size, file_length) -> None:
    spans = chunk_span(offset, length, chunk_size, file_length)
    end = offset + length if file_length is None else min(offset + length, file_length)
    pos = offset
    for index, in_chunk, n in spans:
        assert n > 0 and in_chunk >= 0 and in_chunk + n <= chunk_size
        assert index * chunk_size + in_chunk == pos
        pos += n
    assert pos == max(offset, end)


CHAINS = [(0, 1), (1, 2), (2, 3), (3, 1), (4, 2), (5, 3), (6, 1)]


@pytest.mark.parametrize("chunk_index,chain", CHAINS)
def test_chain_for_chunk(chunk_index, chain) -> None:
    assert chain_for_chunk([1, 2, 3, 9], 3, chunk_index) == chain


@pytest.mark.parametrize("stripe,index", [(0, 0), (5, 0), (3, -1), (3, MAX_CHUNK_INDEX + 1)])
def test_chain_for_chunk_refuses(stripe, index) -> None:
    with pytest.raises(e.InvalidArgument):
        chain_for_chunk([1, 2, 3, 9], stripe, index)


def test_pick_chains_starts_round_robin() -> None:
    chains = [7, 3, 5, 1]  # the table order does not matter: sorted to 1 3 5 7
    starts = [pick_chains(chains, 2, seed)[0] for seed in range(100, 108)]
    assert starts == [1, 3, 5, 7, 1, 3, 5, 7]


@pytest.mark.parametrize("stripe,expected_len", [(1, 1), (3, 3), (4, 4), (10, 4)])
def test_pick_chains_caps_the_stripe(stripe, expected_len) -> None:
    picked = pick_chains([1, 2, 3, 4], stripe, 42)
    assert len(picked) == expected_len and len(set(picked)) == expected_len
    assert set(picked) <= {1, 2, 3, 4}


def test_pick_chains_is_deterministic_and_shuffles() -> None:
    chains = list(range(1, 33))
    assert pick_chains(chains, 8, 12345) == pick_chains(chains, 8, 12345)
    tails = {tuple(pick_chains(chains, 8, seed)[1:]) for seed in range(32, 64)}
    assert len(tails) > 16  # not always the same neighbours


def test_pick_chains_spreads_over_all_chains() -> None:
    chains = list(range(10))
    counts = dict.fromkeys(chains, 0)
    for seed in range(1000):
        for c in pick_chains(chains, 3, seed):
            counts[c] += 1
    assert min(counts.values()) > 200 and max(counts.values()) < 400


@pytest.mark.parametrize("args,exc", [(([], 1, 1), e.FailedPrecondition),
                                      (([1], 0, 1), e.InvalidArgument),
                                      (([1], 1, -1), e.InvalidArgument)])
def test_pick_chains_refuses(args, exc) -> None:
    with pytest.raises(exc):
        pick_chains(*args)


def P(r, ro, rd, n):
    return RangePiece(r, ro, rd, n)


COALESCE = [
    # ranges, file_length, max_gap, expected reads
    ([], None, 0, []),
    ([(0, 0)], None, 0, []),
    ([(0, 3)], None, 0, [ChunkRead(0, 0, 3, (P(0, 0, 0, 3),))]),
    # two ranges touching in one chunk: one read
    ([(0, 3), (3, 2)], None, 0, [ChunkRead(0, 0, 5, (P(0, 0, 0, 3), P(1, 0, 3, 2)))]),
    # a gap of 1 byte: two reads, or one with max_gap=1
    ([(0, 3), (4, 2)], None, 0,
     [ChunkRead(0, 0, 3, (P(0, 0, 0, 3),)), ChunkRead(0, 4, 2, (P(1, 0, 0, 2),))]),
    ([(0, 3), (4, 2)], None, 1, [ChunkRead(0, 0, 6, (P(0, 0, 0, 3), P(1, 0, 4, 2)))]),
    # overlapping ranges share bytes
    ([(2, 4), (3, 2)], None, 0, [ChunkRead(0, 2, 4, (P(0, 0, 0, 4), P(1, 0, 1, 2)))]),
    # a range across a chunk boundary and one in the next chunk, given out of order
    ([(10, 4), (6, 4)], None, 0,
     [ChunkRead(0, 6, 2, (P(1, 0, 0, 2),)),
      ChunkRead(1, 0, 6, (P(1, 2, 0, 2), P(0, 0, 2, 4)))]),
    # touching ranges in different chunks never merge
    ([(0, C), (C, 1)], None, 8, [ChunkRead(0, 0, C, (P(0, 0, 0, C),)),
                                 ChunkRead(1, 0, 1, (P(1, 0, 0, 1),))]),
    # EOF clips
    ([(6, 10), (20, 4)], 9, 0, [ChunkRead(0, 6, 2, (P(0, 0, 0, 2),)),
                                ChunkRead(1, 0, 1, (P(0, 2, 0, 1),))]),
]


@pytest.mark.parametrize("ranges,file_length,max_gap,expected", COALESCE)
def test_coalesce_ranges(ranges, file_length, max_gap, expected) -> None:
    assert coalesce_ranges(ranges, C, file_length=file_length, max_gap=max_gap) == expected


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)), max_size=8),
       st.integers(1, 32), st.integers(0, 6), st.none() | st.integers(0, 250))
def test_coalesce_ranges_reassembles_every_range(ranges, chunk_size, max_gap, file_length) -> None:
    # A "file" whose byte i is i % 251: scatter each read back and compare.
    reads = coalesce_ranges(ranges, chunk_size, file_length=file_length, max_gap=max_gap)
    outputs = [bytearray() for _ in ranges]
    wants = []
    for off, n in ranges:
        end = off + n if file_length is None else min(off + n, file_length)
        wants.append(bytes(i % 251 for i in range(off, max(off, end))))
        outputs[len(wants) - 1] = bytearray(len(wants[-1]))
    keys = [(r.chunk_index, r.offset) for r in reads]
    assert keys == sorted(keys)
    for read in reads:
        assert read.offset >= 0 and read.offset + read.length <= chunk_size
        base = read.chunk_index * chunk_size + read.offset
        got = bytes(i % 251 for i in range(base, base + read.length))
        for piece in read.pieces:
            chunk = got[piece.read_offset : piece.read_offset + piece.length]
            outputs[piece.range_index][piece.range_offset : piece.range_offset + piece.length] = chunk
    assert [bytes(o) for o in outputs] == wants
