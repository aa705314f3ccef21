"""Table tests of the client's read, truncate and replica plans (client/_plan.py), the
open-mode table and the per-chunk write buffer of file objects (client/_file.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from emberfs.client._file import OpenMode, _ChunkBuffer, parse_mode
from emberfs.client._plan import (
    TruncatePlan,
    live_suspects,
    pick_replica,
    read_plan,
    result_sizes,
    truncate_plan,
    untried_replicas,
)
from emberfs.common.layout import RangePiece

CS = 100


def _reads(plan):  # type: ignore[no-untyped-def]
    return [(r.chunk_index, r.offset, r.length, r.pieces) for r in plan.reads]


def test_read_plan_groups_by_file_and_keeps_request_positions() -> None:
    ranges = [("/a", 0, 10), ("/b", 150, 100), ("/a", 95, 10)]
    plans = read_plan(ranges, {"/a": 1000, "/b": 200}, {"/a": CS, "/b": CS}, max_gap=0)
    by_path = {p.path: p for p in plans}
    assert by_path["/a"].range_indexes == (0, 2)
    # /a: [0,10) in chunk 0; [95,105) crosses into chunk 1 -> pieces at range offsets 0 and 5
    assert _reads(by_path["/a"]) == [
        (0, 0, 10, (RangePiece(0, 0, 0, 10),)),
        (0, 95, 5, (RangePiece(1, 0, 0, 5),)),
        (1, 0, 5, (RangePiece(1, 5, 0, 5),)),
    ]
    # /b is 200 bytes: [150, 250) is clipped at EOF to [150, 200)
    assert _reads(by_path["/b"]) == [(1, 50, 50, (RangePiece(0, 0, 0, 50),))]


def test_read_plan_coalesces_near_pieces_of_one_chunk() -> None:
    ranges = [("/a", 0, 10), ("/a", 20, 10), ("/a", 5, 10)]
    (plan,) = read_plan(ranges, {"/a": 1000}, {"/a": CS}, max_gap=10)
    assert _reads(plan) == [
        (0, 0, 30, (RangePiece(0, 0, 0, 10), RangePiece(2, 0, 5, 10), RangePiece(1, 0, 20, 10)))
    ]


@pytest.mark.parametrize(
    ("ranges", "lengths", "sizes"),
    [
        ([("/a", 0, 10)], {"/a": 5}, [5]),  # short at EOF
        ([("/a", 5, 10)], {"/a": 5}, [0]),  # at EOF
        ([("/a", 50, 10)], {"/a": 5}, [0]),  # past EOF
        ([("/a", 0, 0)], {"/a": 5}, [0]),
        ([("/a", 1, 3), ("/b", 0, 9)], {"/a": 5, "/b": 100}, [3, 9]),
    ],
)
def test_result_sizes_are_pread_lengths(ranges, lengths, sizes) -> None:  # type: ignore[no-untyped-def]
    assert result_sizes(ranges, lengths) == sizes


@pytest.mark.parametrize(
    ("old", "new", "plan"),
    [
        (0, 0, TruncatePlan(None, range(0, 0))),
        (0, 500, TruncatePlan(None, range(1, 0))),  # an empty file grows: nothing to cut
        (500, 0, TruncatePlan(None, range(0, 5))),  # emptied: every chunk goes
        (500, 250, TruncatePlan((2, 50), range(3, 5))),  # cut chunk 2 at 50, drop 3 and 4
        (500, 200, TruncatePlan(None, range(2, 5))),  # on a boundary: nothing to cut
        (250, 500, TruncatePlan((2, 50), range(5, 3))),  # growing cuts stale tail bytes
        (200, 500, TruncatePlan(None, range(5, 2))),
        (250, 250, TruncatePlan((2, 50), range(3, 3))),
        (1, 0, TruncatePlan(None, range(0, 1))),
    ],
)
def test_truncate_plan(old: int, new: int, plan: TruncatePlan) -> None:
    got = truncate_plan(old, new, CS)
    assert got.cut == plan.cut
    assert list(got.remove) == list(plan.remove)


@pytest.mark.parametrize(
    ("serving", "outstanding", "avoid", "suspects", "turn", "expected"),
    [
        ((1, 2, 3), {}, (), (), 0, 1),
        ((1, 2, 3), {1: 2, 2: 1, 3: 2}, (), (), 0, 2),  # least outstanding wins
        ((1, 2, 3), {}, (), (1,), 0, 2),  # a suspect is skipped...
        ((1, 2, 3), {}, (), (1, 2), 0, 3),
        ((1, 2, 3), {}, (3,), (1, 2), 0, 1),  # ...but used when only suspects are left
        ((1, 2, 3), {}, (1, 2, 3), (), 1, 2),  # all failed: try them again, round-robin
        ((), {}, (), (), 0, None),
    ],
)
def test_pick_replica_with_suspects(serving, outstanding, avoid, suspects, turn, expected) -> None:  # type: ignore[no-untyped-def]
    assert pick_replica(serving, Counter(outstanding), avoid, turn, suspects) == expected


def test_live_suspects_expire() -> None:
    assert live_suspects({1: 10.0, 2: 5.0, 3: 5.1}, now=5.0) == {1, 3}


@pytest.mark.parametrize(
    ("serving", "avoid", "expected"),
    [((1, 2), (1,), True), ((1, 2), (1, 2), False), ((), (), False), ((1,), (), True)],
)
def test_untried_replicas(serving, avoid, expected) -> None:  # type: ignore[no-untyped-def]
    assert untried_replicas(serving, avoid) is expected


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("rb", OpenMode(True, False, False, False, False, False)),
        ("br", OpenMode(True, False, False, False, False, False)),
        ("wb", OpenMode(False, True, True, False, True, False)),
        ("xb", OpenMode(False, True, True, True, False, False)),
        ("ab", OpenMode(False, True, True, False, False, True)),
        ("r+b", OpenMode(True, True, False, False, False, False)),
        ("rb+", OpenMode(True, True, False, False, False, False)),
    ],
)
def test_parse_mode(mode: str, expected: OpenMode) -> None:
    assert parse_mode(mode) == expected


@pytest.mark.parametrize("mode", ["r", "w", "rt", "wb+", "a+b", "x", "", "rbb", "rw"])
def test_parse_mode_refuses_text_and_unknown_modes(mode: str) -> None:
    with pytest.raises(ValueError, match="invalid mode"):
        parse_mode(mode)


@pytest.mark.parametrize(
    ("start", "initial", "offset", "piece", "absorbed", "after_start", "after"),
    [
        (10, b"abc", 13, b"de", True, 10, b"abcde"),  # appends at the end
        (10, b"abc", 11, b"XY", True, 10, b"aXY"),  # overwrites inside
        (10, b"abc", 12, b"XYZ", True, 10, b"abXYZ"),  # overlaps the end and extends
        (10, b"abc", 10, b"", True, 10, b"abc"),
        (10, b"abc", 14, b"z", False, 10, b"abc"),  # a gap: not this run
        (10, b"abc", 9, b"z", False, 10, b"abc"),  # before the run
    ],
)
def test_chunk_buffer_absorb(start, initial, offset, piece, absorbed, after_start, after) -> None:  # type: ignore[no-untyped-def]
    buffer = _ChunkBuffer(start)
    buffer.data += initial
    assert buffer.absorb(offset, memoryview(piece)) is absorbed
    assert (buffer.start, bytes(buffer.data)) == (after_start, after)


def test_pick_affine_replica_keeps_a_file_on_one_replica_unless_it_is_loaded_or_suspect() -> None:
    from collections import Counter

    from emberfs.client._plan import pick_affine_replica

    serving = [11, 12, 13]
    idle: Counter[int] = Counter()
    assert {pick_affine_replica(serving, idle, key) for key in (7, 7, 7)} == {serving[7 % 3]}
    assert {pick_affine_replica(serving, idle, key) for key in range(30)} == set(serving)  # spread by file
    loaded = Counter({serving[1]: 40})
    assert pick_affine_replica(serving, loaded, 1, slack=32) != serving[1]
    assert pick_affine_replica(serving, Counter({serving[1]: 30}), 1, slack=32) == serving[1]
    assert pick_affine_replica(serving, idle, 1, suspects=[serving[1]]) != serving[1]
    assert pick_affine_replica([], idle, 1) is None
