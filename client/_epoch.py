"""The order of a block-shuffled epoch over record shards. Pure: shard indexes in, sample ids out.

Terms (docs/DATASETS.md, "Block-shuffled iteration"):

- block: the consecutive samples of one shard whose first byte lies in the same aligned
  `block_bytes` piece of the shard file. Every sample is in exactly one block, and a block
  is read whole with one ranged read.
- Q: the epoch's read order: every block once, permuted by (seed, epoch), the samples of a
  block in file order.
- window: `window_samples` (M) consecutive positions of Q, about `window_blocks` blocks. G,
  the epoch's order, is Q with each window's samples shuffled by (seed, epoch, window). G
  depends on the data, seed, epoch, block and window sizes: never on world size or workers.
- split: a sequence of G positions is dealt in rounds, round k giving part p the positions
  [k*parts*M + p*M, +M) of the sequence: in a fresh epoch that is one whole window, read by
  one process only. The last, partial round's T positions are split evenly: among ranks each
  gets T // parts and T % parts (< world_size) samples are dropped, so every rank yields the
  same count (DDP waits for the slowest rank's extra batch otherwise); among a rank's workers
  nothing is dropped.

A consumer (rank, worker) iterates its G intervals; a checkpoint is how many of them it has
yielded. Resuming on the same world size and workers skips that many; resuming on another
one (`remaining`) takes every old consumer's count, removes what they yielded from G, and
splits the rest anew, so the epoch goes on with each sample once.
"""

from __future__ import annotations

import bisect
import random
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat

__all__ = [
    "BlockTable", "Consumer", "EpochOrder", "Interval", "block_table", "consumed_intervals",
    "default_block_bytes", "default_window_blocks", "plan", "read_start", "remaining", "skip", "split", "total",
]

SMALL_BLOCK = 1 << 20
CHUNK_BLOCK = 4 << 20  # EmberFS's default chunk: a block read from its aligned start is whole chunks
MIN_WINDOW_BLOCKS = 32  # fewer blocks per window mix a batch too little (docs/DATASETS.md)
MAX_WINDOW_BLOCKS = 64  # a larger window shuffles little better and delays the first sample

Interval = tuple[int, int]  # [start, end) of G positions


@dataclass(frozen=True)
class BlockTable:
    """The blocks of a dataset: block b holds global samples [firsts[b], firsts[b + 1])."""

    firsts: array  # "Q", one per block and the sample count at the end
    shards: array  # "I", the shard of each block

    @property
    def count(self) -> int:
        return len(self.shards)

    @property
    def samples(self) -> int:
        return self.firsts[-1]

    def size(self, b: int) -> int:
        return self.firsts[b + 1] - self.firsts[b]


def default_block_bytes(cache_bytes: int) -> int:
    """Chunk-sized blocks when the window (half of cache_bytes: one window is read ahead)
    still holds MIN_WINDOW_BLOCKS of them, else 1 MiB blocks. A whole chunk goes from the
    storage server's page cache to the socket with sendfile(2) and its stored CRC, about
    half a partial read's server CPU; smaller blocks mix a batch from more places."""
    return CHUNK_BLOCK if cache_bytes >= 2 * MIN_WINDOW_BLOCKS * CHUNK_BLOCK else SMALL_BLOCK


def default_window_blocks(cache_bytes: int, block_bytes: int) -> int:
    """What fits twice in cache_bytes (the window in use and the one read ahead), at most 64."""
    return max(1, min(MAX_WINDOW_BLOCKS, cache_bytes // (2 * block_bytes)))


def read_start(first_offset: int, block_bytes: int) -> int:
    """Where a whole block's read starts: its aligned start, before its first sample (the
    bytes between are the previous sample's tail, read twice), so that a block the size
    of a chunk, or a multiple of it, is read as whole chunks."""
    return first_offset - first_offset % block_bytes


def block_table(offsets: Sequence[Sequence[int]], block_bytes: int) -> BlockTable:
    """Blocks of shards whose sample starts are `offsets[k]` (count + 1 per shard, as ShardIndex)."""
    if block_bytes < 1:
        raise ValueError("block_bytes must be at least 1")
    firsts, shards = array("Q"), array("I")
    base = 0
    for k, starts in enumerate(offsets):
        count = len(starts) - 1
        i = 0
        while i < count:
            firsts.append(base + i)
            shards.append(k)
            # the first sample starting in a later block
            i = max(i + 1, bisect.bisect_left(starts, (starts[i] // block_bytes + 1) * block_bytes, i, count))
        base += count
    firsts.append(base)
    return BlockTable(firsts, shards)


class EpochOrder:
    """Q and G of one epoch (see the module docstring); memory is O(blocks), not O(samples)."""

    def __init__(self, table: BlockTable, seed: int, epoch: int, window_samples: int, shuffle: bool = True) -> None:
        if window_samples < 1:
            raise ValueError("window_samples must be at least 1")
        self.table, self.seed, self.epoch, self.window = table, seed, epoch, window_samples
        self.shuffle = shuffle
        self.blocks = array("Q", range(table.count))
        if shuffle:
            random.Random(f"{seed}:{epoch}").shuffle(self.blocks)
        firsts = table.firsts
        # Q position of each permuted block's first sample, and the sample count at the end
        self.starts = array("Q", accumulate((firsts[b + 1] - firsts[b] for b in self.blocks), initial=0))
        self._windows: dict[int, list[tuple[int, int]]] = {}

    @property
    def samples(self) -> int:
        return self.table.samples

    def window_samples(self, i: int) -> list[tuple[int, int]]:
        """(global sample id, block) of window i in G order (the last two windows asked are kept)."""
        got = self._windows.get(i)
        if got is None:
            lo, hi = i * self.window, min((i + 1) * self.window, self.samples)
            got = []
            j = bisect.bisect_right(self.starts, lo) - 1
            q = lo
            while q < hi:  # the window's blocks, in Q order
                b, end = self.blocks[j], min(hi, self.starts[j + 1])
                first = self.table.firsts[b] + q - self.starts[j]
                got.extend(zip(range(first, first + end - q), repeat(b)))
                q, j = end, j + 1
            if self.shuffle:
                random.Random(f"{self.seed}:{self.epoch}:{i}").shuffle(got)
            if len(self._windows) >= 2:
                self._windows.pop(next(iter(self._windows)))
            self._windows[i] = got
        return got

    def pieces(self, intervals: Iterable[Interval]) -> Iterable[tuple[int, int, int]]:
        """(window, lo, hi) for each run of G positions that stays in one window."""
        for g0, g1 in intervals:
            g = g0
            while g < g1:
                i = g // self.window
                end = min(g1, (i + 1) * self.window)
                yield i, g - i * self.window, end - i * self.window
                g = end

    def samples_of(self, window: int, lo: int, hi: int) -> list[tuple[int, int]]:
        """(global sample id, block) of G positions lo..hi of a window, in G order."""
        return self.window_samples(window)[lo:hi]


# -- splitting a sequence of G positions between consumers -------------------------------


def total(intervals: Iterable[Interval]) -> int:
    return sum(b - a for a, b in intervals)


def _cut(intervals: Sequence[Interval], ranges: Iterable[Interval]) -> list[Interval]:
    """The G intervals under sequence positions `ranges` (ascending) of the sequence `intervals`."""
    out: list[Interval] = []
    ends = []
    at = 0
    for a, b in intervals:
        at += b - a
        ends.append(at)
    j = 0
    for s0, s1 in ranges:
        while s0 < s1:
            while ends[j] <= s0:
                j += 1
            a, b = intervals[j]
            start_seq = ends[j] - (b - a)
            g0 = a + s0 - start_seq
            g1 = a + min(s1, ends[j]) - start_seq
            if out and out[-1][1] == g0:
                out[-1] = (out[-1][0], g1)
            else:
                out.append((g0, g1))
            s0 += g1 - g0
    return out


def split(intervals: Sequence[Interval], parts: int, part: int, window: int, drop: bool) -> list[Interval]:
    """Part `part` of `parts` of the sequence (module docstring): whole windows in rounds, the
    tail evenly; drop: every part the same count, the tail's remainder dropped."""
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(f"part {part} of {parts}")
    n = total(intervals)
    stride = parts * window
    rounds = n // stride
    ranges = [(k * stride + part * window, k * stride + (part + 1) * window) for k in range(rounds)]
    base, tail = rounds * stride, n - rounds * stride
    if drop:
        share = tail // parts
        ranges.append((base + part * share, base + (part + 1) * share))
    else:
        ranges.append((base + tail * part // parts, base + tail * (part + 1) // parts))
    return _cut(intervals, [r for r in ranges if r[0] < r[1]])


@dataclass(frozen=True)
class Consumer:
    """One iterator of an epoch: a rank of world_size, a DataLoader worker of workers."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    workers: int = 1


def plan(base: Sequence[Interval], window: int, who: Consumer) -> list[Interval]:
    """The G intervals `who` yields, in order, from the epoch's sequence `base`."""
    mine = split(base, who.world_size, who.rank, window, drop=True)
    return split(mine, who.workers, who.worker, window, drop=False)


def skip(intervals: Sequence[Interval], n: int) -> list[Interval]:
    """The intervals after their first n positions."""
    return _cut(intervals, [(n, total(intervals))]) if n < total(intervals) else []


def consumed_intervals(intervals: Sequence[Interval], n: int) -> list[Interval]:
    """The intervals' first n positions."""
    return _cut(intervals, [(0, n)]) if n > 0 else []


def remaining(base: Sequence[Interval], window: int, yielded: dict[Consumer, int]) -> list[Interval]:
    """What is left of `base` once each consumer of a complete set has yielded its count.

    The set must cover every (rank, worker) of one world_size and worker count: a missing
    consumer's samples could not be told apart from ones never read."""
    if not yielded:
        raise ValueError("no consumer states to resume from")
    world, workers = {c.world_size for c in yielded}, {c.workers for c in yielded}
    if len(world) != 1 or len(workers) != 1:
        raise ValueError("consumer states from different world sizes or worker counts")
    (w,), (k,) = world, workers
    want = {Consumer(r, w, i, k) for r in range(w) for i in range(k)}
    if set(yielded) != want:
        missing = sorted((c.rank, c.worker) for c in want - set(yielded))
        raise ValueError(f"consumer states are incomplete: (rank, worker) {missing[:8]} missing")
    done: list[Interval] = []
    for who, n in yielded.items():
        mine = plan(base, window, who)
        if not 0 <= n <= total(mine):
            raise ValueError(f"rank {who.rank} worker {who.worker} yielded {n} of its {total(mine)} samples")
        done.extend(consumed_intervals(mine, n))
    done.sort()
    out: list[Interval] = []
    for a, b in base:
        for c, d in done:
            if d <= a or c >= b:
                continue
            if c > a:
                out.append((a, c))
            a = max(a, d)
        if a < b:
            out.append((a, b))
    return out
