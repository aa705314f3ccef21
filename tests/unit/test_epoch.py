"""The block-shuffled epoch order (client/_epoch.py): blocks, windows, splits, resume."""

from __future__ import annotations

import itertools
import random
from array import array

import pytest

from emberfs.client._epoch import (
    BlockTable,
    Consumer,
    EpochOrder,
    block_table,
    consumed_intervals,
    default_block_bytes,
    default_window_blocks,
    plan,
    read_start,
    remaining,
    skip,
    split,
    total,
)


def offsets_of(sizes: list[int], start: int = 32) -> array:
    out = array("Q", [start])
    for n in sizes:
        out.append(out[-1] + n)
    return out


@pytest.mark.parametrize(
    ("sizes", "block", "firsts"),
    [
        ([], 10, [0]),
        ([5, 5, 5, 5], 10, [0, 2, 4]),  # starts 32, 37, 42, 47: blocks [30, 40) and [40, 50)
        ([100], 10, [0, 1]),  # one sample bigger than a block: one block
        ([100, 1, 1], 10, [0, 1, 3]),  # the next sample starts 10 blocks later
        ([3] * 6, 1 << 20, [0, 6]),
    ],
)
def test_block_table_one_shard(sizes: list[int], block: int, firsts: list[int]) -> None:
    table = block_table([offsets_of(sizes)], block)
    assert list(table.firsts) == firsts
    assert table.samples == len(sizes) and list(table.shards) == [0] * (len(firsts) - 1)


def test_block_table_spans_shards_and_never_merges_them() -> None:
    table = block_table([offsets_of([4, 4]), offsets_of([]), offsets_of([4, 4, 4])], 1 << 20)
    assert list(table.firsts) == [0, 2, 5] and list(table.shards) == [0, 2]


def random_table(samples: int, seed: int = 1) -> BlockTable:
    rng = random.Random(seed)
    shards = [[rng.randint(4 << 10, 28 << 10) for _ in range(samples // 4)] for _ in range(4)]
    return block_table([offsets_of(s) for s in shards], 1 << 20)


@pytest.mark.parametrize("shuffle", [False, True])
def test_epoch_order_is_a_permutation_and_windows_stay_in_their_blocks(shuffle: bool) -> None:
    table = random_table(4000)
    order = EpochOrder(table, seed=3, epoch=1, window_samples=300, shuffle=shuffle)
    ids = [s for piece in order.pieces([(0, order.samples)]) for s, _ in order.samples_of(*piece)]
    assert sorted(ids) == list(range(4000))
    assert (ids == list(range(4000))) != shuffle
    # a window's samples come from about window_samples / samples-per-block blocks
    blocks = {b for _, b in order.samples_of(0, 0, 300)}
    per_block = 4000 / table.count
    assert len(blocks) <= 300 / per_block + 2


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    table = random_table(2000)

    def ids(seed: int, epoch: int) -> list[int]:
        order = EpochOrder(table, seed, epoch, 100)
        return [s for p in order.pieces([(0, 2000)]) for s, _ in order.samples_of(*p)]

    assert ids(1, 1) == ids(1, 1)
    assert ids(1, 1) != ids(1, 2) and ids(1, 1) != ids(2, 1)


@pytest.mark.parametrize(
    ("n", "parts", "window", "drop", "want"),
    [
        (10, 2, 3, True, [[(0, 3), (6, 8)], [(3, 6), (8, 10)]]),
        (11, 2, 3, True, [[(0, 3), (6, 8)], [(3, 6), (8, 10)]]),  # one dropped
        (11, 2, 3, False, [[(0, 3), (6, 8)], [(3, 6), (8, 11)]]),  # workers drop nothing
        (5, 3, 10, True, [[(0, 1)], [(1, 2)], [(2, 3)]]),  # only a tail
        (2, 3, 10, True, [[], [], []]),  # fewer samples than parts: all dropped
        (12, 2, 3, True, [[(0, 3), (6, 9)], [(3, 6), (9, 12)]]),
    ],
)
def test_split_table(n: int, parts: int, window: int, drop: bool, want: list[list[tuple[int, int]]]) -> None:
    assert [split([(0, n)], parts, p, window, drop) for p in range(parts)] == want


def test_split_of_a_sequence_with_gaps_maps_back_to_g() -> None:
    seq = [(0, 2), (10, 14), (20, 21)]  # 7 positions
    assert split(seq, 2, 0, 2, False) == [(0, 2), (12, 13)]
    assert split(seq, 2, 1, 2, False) == [(10, 12), (13, 14), (20, 21)]


@pytest.mark.parametrize(("n", "world", "workers", "window"), [(1000, 1, 1, 64), (1003, 3, 2, 50), (97, 4, 3, 10)])
def test_plans_cover_each_sample_once_with_equal_ranks(n: int, world: int, workers: int, window: int) -> None:
    seen: list[int] = []
    per_rank = []
    for rank in range(world):
        mine = 0
        for worker in range(workers):
            intervals = plan([(0, n)], window, Consumer(rank, world, worker, workers))
            seen += [g for a, b in intervals for g in range(a, b)]
            mine += total(intervals)
        per_rank.append(mine)
    assert len(seen) == len(set(seen)) == n - n % world
    assert per_rank == [n // world] * world


def test_full_rounds_give_each_consumer_whole_windows() -> None:
    window = 100
    for worker in range(2):
        for a, b in plan([(0, 10_000)], window, Consumer(1, 2, worker, 2))[:-1]:
            assert a % window == 0 and b - a == window


def test_skip_and_consumed_partition_the_intervals() -> None:
    seq = [(0, 5), (10, 15)]
    for n in range(11):
        assert total(consumed_intervals(seq, n)) + total(skip(seq, n)) == 10
    assert skip(seq, 7) == [(12, 15)] and consumed_intervals(seq, 7) == [(0, 5), (10, 12)]


@pytest.mark.parametrize(("old", "new"), [((2, 2), (3, 1)), ((1, 1), (4, 2)), ((3, 3), (2, 2))])
def test_resume_on_another_world_size_yields_the_rest_once(old: tuple[int, int], new: tuple[int, int]) -> None:
    n, window = 2000, 64
    rng = random.Random(7)
    yielded = {}
    done: list[int] = []
    for rank, worker in itertools.product(range(old[0]), range(old[1])):
        who = Consumer(rank, old[0], worker, old[1])
        mine = plan([(0, n)], window, who)
        yielded[who] = rng.randint(0, total(mine))
        done += [g for a, b in consumed_intervals(mine, yielded[who]) for g in range(a, b)]
    rest = remaining([(0, n)], window, yielded)
    assert sorted(done + [g for a, b in rest for g in range(a, b)]) == list(range(n))
    after: list[int] = []
    for rank, worker in itertools.product(range(new[0]), range(new[1])):
        after += [g for a, b in plan(rest, window, Consumer(rank, new[0], worker, new[1])) for g in range(a, b)]
    assert len(after) == len(set(after)) and not set(after) & set(done)
    assert len(after) >= total(rest) - new[0] + 1  # fewer than world_size dropped


def test_remaining_refuses_an_incomplete_or_mixed_set() -> None:
    with pytest.raises(ValueError, match="incomplete"):
        remaining([(0, 100)], 10, {Consumer(0, 2, 0, 1): 5})
    with pytest.raises(ValueError, match="different world sizes"):
        remaining([(0, 100)], 10, {Consumer(0, 1, 0, 1): 5, Consumer(0, 2, 0, 1): 5})
    with pytest.raises(ValueError, match="yielded 999"):
        remaining([(0, 100)], 10, {Consumer(0, 1, 0, 1): 999})


@pytest.mark.parametrize(("cache_bytes", "block", "window"), [
    (256 << 20, 4 << 20, 32),  # the default cache: chunk-sized blocks, 32 per window
    (1 << 30, 4 << 20, 64),  # a larger cache: more blocks per window, at most 64
    (255 << 20, 1 << 20, 64),  # too small for 32 chunk-sized blocks per window: 1 MiB blocks
    (8 << 20, 1 << 20, 4),
    (1 << 20, 1 << 20, 1),  # a window is at least one block
])
def test_default_block_and_window(cache_bytes: int, block: int, window: int) -> None:
    assert default_block_bytes(cache_bytes) == block
    assert default_window_blocks(cache_bytes, block) == window


@pytest.mark.parametrize(("first", "block", "start"), [
    (32, 4 << 20, 0),  # the first block of a shard: its header too
    ((4 << 20) + 700, 4 << 20, 4 << 20),  # the previous sample's 700-byte tail is read again
    (8 << 20, 4 << 20, 8 << 20),
    (5000, 4096, 4096),
])
def test_read_start_is_the_aligned_block_start(first: int, block: int, start: int) -> None:
    assert read_start(first, block) == start
