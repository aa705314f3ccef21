"""Reading one consumer's part of a block-shuffled epoch (`_epoch.py`): whole blocks ahead of use.

The consumer's G intervals are cut at window boundaries into pieces; each piece's blocks are
read with one `read_ranges` call, the next piece's on a helper thread while this one's samples
are handed out, so at most two windows' blocks are held (the window is sized from the
dataset's `cache_bytes`). Every sample is CRC-checked against its shard index.

The iterator is resumable: `state_dict()` says how many samples it has yielded (with what
defines the epoch, to refuse a state from another one), `load_state_dict()` before the first
`next()` makes it skip them without reading their blocks. torchdata's StatefulDataLoader calls
both in each worker.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ._epoch import Consumer, EpochOrder, Interval, read_start, skip, total
from .data import RangeReader, ShardIndex, check_sample

__all__ = ["STATE_FORMAT", "EpochIterator"]

STATE_FORMAT = "emberfs.epoch/1"
# What must match for a state to apply to an epoch: the same order over the same samples.
ORDER_KEYS = ("seed", "epoch", "shuffle", "samples", "block_bytes", "window_samples")

Piece = list[tuple[int, int]]  # (global sample id, block) in yield order
Held = tuple[int, int, bytes]  # a block's read: (global id of its first sample, file offset, bytes)


class EpochIterator:
    def __init__(
        self,
        fs: RangeReader,
        paths: Sequence[str],
        indexes: Sequence[ShardIndex],
        ends: Sequence[int],
        order: EpochOrder,
        intervals: Sequence[Interval],
        who: Consumer,
        describe: dict[str, Any],
        base: Sequence[Interval] | None = None,
        *,
        block_bytes: int = 1,
    ) -> None:
        self.fs, self.paths, self.indexes, self.ends = fs, paths, indexes, ends
        self.block_bytes = block_bytes
        self.order, self.intervals, self.who = order, list(intervals), who
        self.describe, self.base = describe, base
        self.yielded = 0
        self._samples: Iterator[Any] | None = None

    # -- checkpoints ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        who = self.who
        return {
            "format": STATE_FORMAT, **self.describe,
            "rank": who.rank, "world_size": who.world_size, "worker": who.worker, "workers": who.workers,
            "yielded": self.yielded, "length": total(self.intervals),
            "base": None if self.base is None else [list(i) for i in self.base],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._samples is not None:
            raise RuntimeError("load_state_dict after iteration started; load it into a fresh iterator")
        check_state(state, self.describe)
        who = Consumer(state["rank"], state["world_size"], state["worker"], state["workers"])
        if who != self.who:
            raise ValueError(f"a state of rank {who.rank}/{who.world_size} worker {who.worker}/{who.workers} "
                             f"for an iterator of rank {self.who.rank}/{self.who.world_size} worker "
                             f"{self.who.worker}/{self.who.workers}: resume on another world size through "
                             "IterableRecordDataset.resume_states")
        base = state.get("base")
        if (None if base is None else [tuple(i) for i in base]) != (None if self.base is None else list(self.base)):
            raise ValueError("the state comes from another resumed epoch (its base differs)")
        self.yielded = int(state["yielded"])

    # -- iteration --------------------------------------------------------------------

    def __iter__(self) -> EpochIterator:
        return self

    def __next__(self) -> bytes:
        if self._samples is None:
            self._samples = self._run()
        sample = next(self._samples)
        self.yielded += 1
        return sample

    def _run(self) -> Iterator[bytes]:
        pieces = [self.order.samples_of(*p) for p in self.order.pieces(skip(self.intervals, self.yielded))]
        if not pieces:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="emberfs-prefetch") as ahead:
            pending: Future[dict[int, Held]] = ahead.submit(self._read, pieces[0])
            for k, piece in enumerate(pieces):
                held = pending.result()
                if k + 1 < len(pieces):
                    pending = ahead.submit(self._read, pieces[k + 1])
                for sample, block in piece:
                    yield self._cut(sample, held[block])

    def _locate(self, sample: int) -> tuple[int, int]:
        """(shard, sample in shard) of a global sample id."""
        k = bisect.bisect_right(self.ends, sample)
        return k, sample - (self.ends[k - 1] if k else 0)

    def _read(self, piece: Piece) -> dict[int, Held]:
        """block -> what was read of it for the samples of a piece.

        A window's samples of one block are consecutive in the file: only their bytes are
        read, so a block cut by a window boundary is not read twice by the two windows. A
        whole block is read from its aligned start (`read_start`): whole chunks then."""
        firsts = self.order.table.firsts
        runs: dict[int, list[int]] = {}
        for sample, block in piece:
            run = runs.get(block)
            if run is None:
                runs[block] = [sample, sample]
            elif sample < run[0]:
                run[0] = sample
            elif sample > run[1]:
                run[1] = sample
        ranges, starts = [], []
        for block, (first, last) in runs.items():
            k, j = self._locate(first)
            offsets = self.indexes[k].offsets
            start = read_start(offsets[j], self.block_bytes) if first == firsts[block] else offsets[j]
            starts.append(start)
            ranges.append((self.paths[k], start, offsets[j + last - first + 1] - start))
        data = self.fs.read_ranges(ranges)
        return {b: (run[0], start, d) for (b, run), start, d in zip(runs.items(), starts, data, strict=True)}

    def _cut(self, sample: int, held: Held) -> bytes:
        first, start_offset, data = held
        k, j = self._locate(sample)
        index = self.indexes[k]
        start, length = index.span(j)
        at = start - start_offset
        return check_sample(self.paths[k], index, j, data[at:at + length])


def check_state(state: dict[str, Any], describe: dict[str, Any]) -> None:
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"not an EmberFS epoch state (want format {STATE_FORMAT!r})")
    for key in ORDER_KEYS:
        if state.get(key) != describe[key]:
            raise ValueError(f"the state's {key} is {state.get(key)!r}, this epoch's {describe[key]!r}: "
                             "a state applies only to the same data, seed, epoch and window")
