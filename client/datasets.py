"""Datasets over EmberFS for `torch.utils.data.DataLoader` (torch is never imported here).

    from torch.utils.data import DataLoader
    from emberfs.client.datasets import RecordDataset, IterableRecordDataset, FileDataset

    ds = RecordDataset("127.0.0.1:9000", shard_paths, transform=decode)
    for batch in DataLoader(ds, batch_size=64, shuffle=True, num_workers=4):
        ...

RecordDataset          map-style over record shards (`emberfs.client.data`): sample i of
                       the concatenated shards; `__getitems__` fetches a whole batch through
                       one `read_ranges` call (one lookup per shard, neighbouring samples
                       sharing chunk reads, every chunk read concurrent).
IterableRecordDataset  iterable-style over the same shards: this rank's part of the epoch,
                       split again between the DataLoader's workers, every sample exactly
                       once per epoch; optionally shuffled per `seed` and `set_epoch(e)`.
FileDataset            map-style, one sample per file (whole-file reads, batched too).

Each takes a metaserver address (a `SyncClient` is made inside) or a file system
object with the same read calls (`LocalFiles()` reads the same shards from local
disk). Each pickles as its paths, options and cached shard indexes, and is safe
across fork: the SyncClient inside connects lazily in each worker process, so a
dataset built (and even used) in the main process works in "fork" and "spawn"
workers alike. Shard indexes are read once, on first use, in two batched calls.

Samples are `bytes` (DataLoader's default collate keeps a batch of bytes as a list)
or whatever `transform(sample)` returns.

Record datasets whose shards hold at most `cache_bytes` (default CACHE_BYTES, 256 MiB,
per process) read whole 1 MiB blocks and keep them (`_blockcache.py`), so later epochs
are served from memory like local files from the page cache; a larger dataset reads
each sample directly. `cache_bytes=0` turns the cache off. Shards must not change
while a dataset is in use.
"""

from __future__ import annotations

import bisect
import importlib.util
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from typing import Any

from ._blockcache import BlockCache
from ._sync import SyncClient
from .data import LocalFiles, RangeReader, ShardIndex, check_sample, load_indexes

__all__ = ["CACHE_BYTES", "FileDataset", "IterableRecordDataset", "LocalFiles", "RecordDataset"]

Transform = Callable[[bytes], Any]
_READ_BATCH = 64  # samples per read_ranges call of the iterable dataset
CACHE_BYTES = 256 << 20  # per process (each DataLoader worker): datasets up to this size are cached


def _file_system(source: str | RangeReader, client_options: dict[str, Any] | None) -> RangeReader:
    if isinstance(source, str):
        return SyncClient(source, **(client_options or {}))
    if client_options:
        raise ValueError("client_options apply only when a metaserver address is given")
    return source


class _Shards:
    """The record shards behind a dataset: paths, the file system, the cached indexes."""

    def __init__(self, fs: RangeReader, paths: Sequence[str], cache_bytes: int = CACHE_BYTES) -> None:
        if isinstance(paths, str):
            raise TypeError("paths must be a sequence of shard paths, not one string")
        if cache_bytes < 0:
            raise ValueError("cache_bytes must not be negative")
        self.fs, self.paths = fs, list(paths)
        self.cache = BlockCache(cache_bytes)
        self._indexes: list[ShardIndex] | None = None
        self._ends: list[int] = []  # cumulative sample counts: shard k holds [ends[k-1], ends[k])

    @property
    def indexes(self) -> list[ShardIndex]:
        if self._indexes is None:
            indexes = load_indexes(self.fs, self.paths) if self.paths else []
            self._ends = list(accumulate(len(ix) for ix in indexes))
            self._indexes = indexes
        return self._indexes

    def __len__(self) -> int:
        return self._ends[-1] if self.indexes else 0  # reading `indexes` loads `_ends`

    def _fits_cache(self) -> bool:
        """Cache only a dataset that fits whole: a larger one, shuffled, would make every
        sample fetch a block for nothing (an epoch touches each sample once)."""
        data_bytes = sum(ix.offsets[-1] for ix in self.indexes if len(ix.offsets))
        return 0 < data_bytes <= self.cache.capacity

    def locate(self, i: int) -> tuple[int, int]:
        """(shard number, sample in that shard) of global sample i."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} of a dataset of {n} samples")
        i %= n
        k = bisect.bisect_right(self._ends, i)
        return k, i - (self._ends[k - 1] if k else 0)

    def fetch(self, indices: Sequence[int]) -> list[bytes]:
        """Global samples `indices`, read through one `read_ranges` call and CRC-checked."""
        where = [self.locate(int(i)) for i in indices]
        indexes = self.indexes
        ranges = [(self.paths[k], *indexes[k].span(j)) for k, j in where]
        if not ranges:
            data = []
        elif self._fits_cache():
            data = self.cache.read_ranges(self.fs, ranges)
        else:
            data = self.fs.read_ranges(ranges)
        return [check_sample(self.paths[k], indexes[k], j, d) for (k, j), d in zip(where, data, strict=True)]


class RecordDataset:
    """Map-style dataset over record shards; see the module docstring."""

    def __init__(
        self,
        meta_address: str | RangeReader,
        paths: Sequence[str],
        transform: Transform | None = None,
        *,
        client_options: dict[str, Any] | None = None,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self._shards = _Shards(_file_system(meta_address, client_options), paths, cache_bytes)
        self.transform = transform

    def __repr__(self) -> str:
        return f"<RecordDataset {len(self._shards.paths)} shards on {self._shards.fs!r}>"

    @property
    def paths(self) -> list[str]:
        return self._shards.paths

    def __len__(self) -> int:
        return len(self._shards)

    def __getitem__(self, i: int) -> Any:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """A whole batch (DataLoader's auto-batching calls this) through one read_ranges."""
        samples = self._shards.fetch(indices)
        return samples if self.transform is None else [self.transform(s) for s in samples]


def _torch_worker() -> tuple[int, int]:
    """(worker id, workers) inside a DataLoader worker, else (0, 1).

    Only asks torch when torch is already loaded: a DataLoader worker always has it,
    and a plain `for x in dataset` must not pay for importing it.
    """
    if "torch.utils.data" not in sys.modules:
        return 0, 1
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _register_iterable(cls: type) -> None:
    """Make DataLoader see `cls` as iterable-style: it tests isinstance(ds, IterableDataset).

    Only when torch is installed, at the first instance (never at module import):
    torch's IterableDataset is an ABC, so registering is enough, without inheriting.
    """
    if getattr(cls, "_registered_with_torch", False) or importlib.util.find_spec("torch") is None:
        return
    from torch.utils.data import IterableDataset

    IterableDataset.register(cls)
    cls._registered_with_torch = True  # type: ignore[attr-defined]


class IterableRecordDataset:
    """Iterable-style dataset over record shards: each sample once per epoch, split by
    rank and by DataLoader worker; see the module docstring.

    The epoch's order is the shards' order, or with `shuffle` a permutation seeded by
    (seed, epoch). Rank r of `world_size` takes the r-th of `world_size` contiguous
    near-equal slices of it, and worker w of W the w-th slice of that: consecutive
    samples stay together, so unshuffled reads coalesce into chunk reads. Ranks may
    differ by one sample. Call `set_epoch(e)` before each epoch (in the main process;
    workers get the dataset as it is when the DataLoader's iterator starts).
    """

    def __init__(
        self,
        meta_address: str | RangeReader,
        paths: Sequence[str],
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        *,
        transform: Transform | None = None,
        read_batch: int = _READ_BATCH,
        client_options: dict[str, Any] | None = None,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of world_size {world_size}: need 0 <= rank < world_size")
        if read_batch < 1:
            raise ValueError("read_batch must be at least 1")
        _register_iterable(type(self))
        self._shards = _Shards(_file_system(meta_address, client_options), paths, cache_bytes)
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.transform, self.read_batch = transform, read_batch
        self.epoch = 0

    def __repr__(self) -> str:
        return (f"<IterableRecordDataset {len(self._shards.paths)} shards, rank {self.rank}/{self.world_size}, "
                f"epoch {self.epoch}>")

    @property
    def paths(self) -> list[str]:
        return self._shards.paths

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int] | range:
        n = len(self._shards)
        if not self.shuffle:
            return range(n)
        order = list(range(n))
        random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        return order

    def __len__(self) -> int:
        """Samples this rank yields per epoch (all its workers together)."""
        return len(_part(range(len(self._shards)), self.rank, self.world_size))

    def __iter__(self) -> Iterator[Any]:
        worker, workers = _torch_worker()
        mine = _part(_part(self._order(), self.rank, self.world_size), worker, workers)
        for start in range(0, len(mine), self.read_batch):
            samples = self._shards.fetch(mine[start:start + self.read_batch])
            if self.transform is None:
                yield from samples
            else:
                yield from (self.transform(s) for s in samples)


def _part(order: Sequence[int], k: int, parts: int) -> Sequence[int]:
    """The k-th of `parts` contiguous, near-equal slices of order."""
    n = len(order)
    return order[n * k // parts: n * (k + 1) // parts]


class FileDataset:
    """Map-style dataset with one sample per file: sample i is the whole file paths[i]."""

    def __init__(
        self,
        meta_address: str | RangeReader,
        paths: Sequence[str],
        transform: Transform | None = None,
        *,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(paths, str):
            raise TypeError("paths must be a sequence of file paths, not one string")
        self.fs = _file_system(meta_address, client_options)
        self.paths, self.transform = list(paths), transform

    def __repr__(self) -> str:
        return f"<FileDataset {len(self.paths)} files on {self.fs!r}>"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Whole files through one read_ranges call (each read ends at its file's end)."""
        paths = [self.paths[int(i)] for i in indices]
        samples = self.fs.read_ranges([(p, 0, _WHOLE_FILE) for p in paths]) if paths else []
        return samples if self.transform is None else [self.transform(s) for s in samples]


_WHOLE_FILE = 1 << 62  # a read of "everything": read_ranges stops at each file's end
