"""The data loader's dataset: samples of random sizes in record shards, stored once on
local disk and in every EmberFS cluster of a run (nginx serves the local copy).

Sample i is `i` as a little-endian u64 followed by random bytes, `sizes[i]` bytes in
all, the sizes drawn uniformly from [min_size, max_size] by a generator seeded with
`seed`. So whoever reads an epoch can tell every sample apart and check that each came
exactly once and whole (`EpochCheck`), on top of the CRC32C the datasets check against
each shard's index. Shard k holds the k-th of `shards` contiguous, near-equal slices of
the samples (`shard-0000k.rec`).

`store_dataset` builds one shard at a time (a few in memory, never the whole dataset)
and writes it to the local directory and through every writer given (for a cluster: a
`write_file` call), `in_flight` shards at once, reporting the bytes stored as each shard
lands everywhere.
"""

from __future__ import annotations

import os
import random
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from emberfs.client.data import HEADER_SIZE, encode_shard, index_size

from .workloads import size_label

__all__ = ["ID_BYTES", "DatasetSpec", "EpochCheck", "EpochError", "range_label", "store_dataset"]

ID_BYTES = 8  # each sample starts with its number
Writer = Callable[[str, bytes], None]  # (path, shard bytes): store one whole file, blocking


class EpochError(RuntimeError):
    """An epoch that did not deliver every sample exactly once and whole."""


def range_label(min_size: int, max_size: int) -> str:
    """'16 KiB', '4-28 KiB', '100 B-19 KiB' (sizes in whole KiB are shown as KiB)."""
    if min_size == max_size:
        return size_label(min_size)
    if min_size % 1024 == 0 and max_size % 1024 == 0:
        return f"{min_size // 1024}-{max_size // 1024} KiB"
    return f"{size_label(min_size)}-{size_label(max_size)}"


@dataclass(frozen=True)
class DatasetSpec:
    samples: int
    min_size: int
    max_size: int
    shards: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1 or self.shards < 1:
            raise ValueError(f"need at least one sample and one shard, not {self.samples} and {self.shards}")
        if self.shards > self.samples:
            raise ValueError(f"{self.shards} shards for {self.samples} samples: a shard would be empty")
        if not ID_BYTES <= self.min_size <= self.max_size:
            raise ValueError(f"sample sizes {self.min_size}-{self.max_size}: need {ID_BYTES} <= min <= max "
                             f"(each sample starts with its {ID_BYTES}-byte number)")

    @classmethod
    def of_bytes(cls, total: int, min_size: int, max_size: int, shards: int, seed: int = 0) -> DatasetSpec:
        """About `total` bytes of samples (the count is total / mean size, at least `shards`)."""
        samples = max(shards, round(2 * total / (min_size + max_size)))
        return cls(samples, min_size, max_size, shards, seed)

    @property
    def label(self) -> str:
        return range_label(self.min_size, self.max_size)

    @cached_property
    def sizes(self) -> array:
        rng = random.Random(f"{self.seed}:sizes")
        return array("I", (rng.randint(self.min_size, self.max_size) for _ in range(self.samples)))

    @property
    def sample_bytes(self) -> int:
        return sum(self.sizes)

    def bounds(self, k: int) -> tuple[int, int]:
        """[start, end) of the samples in shard k."""
        return self.samples * k // self.shards, self.samples * (k + 1) // self.shards

    def names(self) -> list[str]:
        return [f"shard-{k:05d}.rec" for k in range(self.shards)]

    def file_bytes(self, k: int) -> int:
        """The size of shard k's file: header, samples, index."""
        start, end = self.bounds(k)
        return HEADER_SIZE + sum(self.sizes[start:end]) + index_size(end - start)

    def shard(self, k: int) -> bytes:
        """The bytes of shard k (fresh random payloads each call; the numbers and sizes fixed)."""
        start, end = self.bounds(k)
        sizes = self.sizes[start:end]
        noise = memoryview(os.urandom(sum(sizes) - ID_BYTES * len(sizes)))
        samples, at = [], 0
        for i, size in zip(range(start, end), sizes, strict=True):
            body = size - ID_BYTES
            samples.append(i.to_bytes(ID_BYTES, "little") + noise[at:at + body])
            at += body
        return encode_shard(samples)


class EpochCheck:
    """Every sample of one epoch, checked as it arrives: its number known, not seen
    before, its size the one it was written with; `finish()` checks none is missing."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self._sizes = sizes
        self._seen = bytearray(len(sizes))
        self.count = self.nbytes = 0

    def add(self, sample: bytes) -> None:
        n = len(self._sizes)
        i = int.from_bytes(sample[:ID_BYTES], "little") if len(sample) >= ID_BYTES else n
        if i >= n:
            raise EpochError(f"a sample of {len(sample)} bytes is none of the dataset's {n}")
        if self._seen[i]:
            raise EpochError(f"sample {i} came twice in one epoch")
        if len(sample) != self._sizes[i]:
            raise EpochError(f"sample {i} came back with {len(sample)} bytes, written with {self._sizes[i]}")
        self._seen[i] = 1
        self.count += 1
        self.nbytes += len(sample)

    def finish(self) -> None:
        missing = len(self._sizes) - self.count
        if missing:
            first = [i for i, seen in enumerate(self._seen) if not seen][:5]
            raise EpochError(f"{missing} of {len(self._sizes)} samples never came (the first: {first})")


def store_dataset(spec: DatasetSpec, local_dir: Path, remote_dir: str, writers: Sequence[Writer], *,
                  in_flight: int = 4, report: Callable[[int, int], None] | None = None) -> list[str]:
    """Every shard into `local_dir` and through each writer (as `remote_dir/name`); returns
    the shard names. `report(stored, total)` after each shard is stored everywhere."""
    local_dir.mkdir(parents=True, exist_ok=True)
    names = spec.names()
    total = sum(spec.file_bytes(k) for k in range(spec.shards))
    pool = ThreadPoolExecutor(max(1, in_flight) * (len(writers) + 1), thread_name_prefix="store")
    pending: deque[tuple[int, list[Future[None]]]] = deque()
    stored = 0

    def settle() -> None:
        nonlocal stored
        nbytes, futures = pending.popleft()
        for future in futures:
            future.result()
        stored += nbytes
        if report is not None:
            report(stored, total)

    try:
        for k, name in enumerate(names):
            data = spec.shard(k)  # built here while the shards before it are being written
            futures = [pool.submit(write, f"{remote_dir}/{name}", data) for write in writers]
            futures.append(pool.submit(_write_local, local_dir / name, data))
            pending.append((len(data), futures))
            while len(pending) > max(1, in_flight):
                settle()
        while pending:
            settle()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return names


def _write_local(path: Path, data: bytes) -> None:
    path.write_bytes(data)
