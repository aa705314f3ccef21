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
IterableRecordDataset  iterable-style over the same shards, block-shuffled: whole ~1 MiB
                       blocks in a seeded order, read ahead, samples shuffled within a
                       window of blocks (`_epoch.py`, `_epochreader.py`); ranks and workers
                       take whole windows, every sample once per epoch, equal counts per
                       rank; resumable mid-epoch, also on another world size.
FileDataset            map-style, one sample per file (whole-file reads, batched too).
EpochSampler           the map-style datasets' resumable, rank-aware sampler (`_sampler.py`).

Each takes a metaserver address, "HOST:PORT" or several as "HOST:PORT,HOST:PORT" (a
`SyncClient` is made inside), or a file system object with the same read calls
(`LocalFiles()` reads the same shards from local disk). Each pickles as its paths,
options and cached shard indexes, and is safe across fork: the SyncClient inside
connects lazily in each worker process, so a dataset built (and even used) in the main
process works in "fork" and "spawn" workers alike. Shard indexes are read once, on
first use, in two batched calls.

Samples are `bytes` (DataLoader's default collate keeps a batch of bytes as a list)
or whatever `transform(sample)` returns.

`cache_bytes` (default CACHE_BYTES, 256 MiB, per process) bounds what a dataset holds:
the iterable dataset's two windows (the one in use and the one read ahead); a map-style
dataset whose shards fit reads whole 1 MiB blocks and keeps them (`_blockcache.py`), so
later epochs are served from memory like local files from the page cache, and a larger
one reads each sample directly. Shards must not change while a dataset is in use.
"""

from __future__ import annotations

import bisect
import importlib.util
import sys
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from typing import Any

from ._blockcache import BlockCache
from ._datasetread import read_manifest
from ._epoch import (
    BlockTable, Consumer, EpochOrder, Interval, block_table, default_block_bytes, default_window_blocks, plan,
    remaining,
)
from ._sampler import EpochSampler
from ._epochreader import ORDER_KEYS, STATE_FORMAT, EpochIterator, check_state
from ._sync import SyncClient
from .data import LocalFiles, RangeReader, ShardIndex, check_sample, load_indexes

__all__ = ["CACHE_BYTES", "EpochSampler", "FileDataset", "IterableRecordDataset", "LocalFiles", "RecordDataset"]

Transform = Callable[[bytes], Any]
CACHE_BYTES = 256 << 20  # per process (each DataLoader worker): datasets up to this size are cached


def _file_system(source: str | RangeReader, client_options: dict[str, Any] | None) -> RangeReader:
    if isinstance(source, str):
        return SyncClient(source, **(client_options or {}))
    if client_options:
        raise ValueError("client_options apply only when a metaserver address is given")
    return source


def _manifest_paths(fs: RangeReader, path: str) -> list[str]:
    return read_manifest(fs, path).paths


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

    @property
    def ends(self) -> list[int]:
        """Cumulative sample counts: shard k holds global samples [ends[k-1], ends[k])."""
        return self._ends if self.indexes else []  # reading `indexes` loads `_ends`

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

    @classmethod
    def from_manifest(cls, meta_address: str | RangeReader, path: str, transform: Transform | None = None,
                      *, client_options: dict[str, Any] | None = None, **options: Any) -> RecordDataset:
        """The dataset a ShardWriter or `emberfs pack` wrote at `path` (its directory or manifest)."""
        fs = _file_system(meta_address, client_options)
        return cls(fs, _manifest_paths(fs, path), transform, **options)

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
    """Iterable-style dataset over record shards, read block by block; see the module
    docstring and docs/DATASETS.md ("Block-shuffled iteration").

    Each epoch has one order over the whole dataset (`_epoch.py`): blocks of about
    `block_bytes` in a seeded order, samples shuffled within windows of `window_blocks`
    blocks. Ranks and DataLoader workers take whole windows in turn, so every sample is
    yielded once per epoch and each block is read by one process. Every rank yields
    `len(ds)` = samples // world_size samples; the fewer than world_size left over at the
    epoch's end are dropped (other ones each epoch). With shuffle=False the order is the
    shards' order, dealt the same way. Call `set_epoch(e)` before each epoch (in the main
    process; workers get the dataset as it is when the DataLoader's iterator starts).

    Resumable: `state_dict()`/`load_state_dict()` here and on the iterator (torchdata's
    StatefulDataLoader uses both, per worker); `resume_states(states)` continues an epoch
    on another world size or worker count from every old iterator's state.
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
        client_options: dict[str, Any] | None = None,
        cache_bytes: int = CACHE_BYTES,
        block_bytes: int | None = None,
        window_blocks: int | None = None,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of world_size {world_size}: need 0 <= rank < world_size")
        if block_bytes is None:
            block_bytes = default_block_bytes(cache_bytes)
        if block_bytes < 1:
            raise ValueError("block_bytes must be at least 1")
        if window_blocks is not None and window_blocks < 1:
            raise ValueError("window_blocks must be at least 1")
        _register_iterable(type(self))
        self._shards = _Shards(_file_system(meta_address, client_options), paths, cache_bytes)
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.transform, self.block_bytes = transform, block_bytes
        self.window_blocks = window_blocks or default_window_blocks(cache_bytes, block_bytes)
        self.epoch = 0
        self._table: BlockTable | None = None
        self._resume: dict[str, Any] | None = None  # a state to apply at the next __iter__
        self._last: EpochIterator | None = None

    def __repr__(self) -> str:
        return (f"<IterableRecordDataset {len(self._shards.paths)} shards, rank {self.rank}/{self.world_size}, "
                f"epoch {self.epoch}>")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_last"] = None  # an iterator holds a thread while it runs
        return state

    @classmethod
    def from_manifest(cls, meta_address: str | RangeReader, path: str, *,
                      client_options: dict[str, Any] | None = None, **options: Any) -> IterableRecordDataset:
        """The dataset a ShardWriter or `emberfs pack` wrote at `path`; options as the constructor's."""
        fs = _file_system(meta_address, client_options)
        return cls(fs, _manifest_paths(fs, path), **options)

    @property
    def paths(self) -> list[str]:
        return self._shards.paths

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Samples each rank yields per epoch (all its workers together)."""
        return len(self._shards) // self.world_size

    @property
    def table(self) -> BlockTable:
        if self._table is None:
            self._table = block_table([ix.offsets for ix in self._shards.indexes], self.block_bytes)
        return self._table

    def _window_samples(self) -> int:
        table = self.table
        return max(1, round(table.samples * self.window_blocks / max(table.count, 1)))

    def _describe(self) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": self.epoch, "shuffle": self.shuffle, "samples": len(self._shards),
                "block_bytes": self.block_bytes, "window_samples": self._window_samples()}

    def __iter__(self) -> Iterator[Any]:
        worker, workers = _torch_worker()
        who = Consumer(self.rank, self.world_size, worker, workers)
        describe = self._describe()
        window = describe["window_samples"]
        base: list[Interval] | None = None
        resume, self._resume = self._resume, None
        if resume is not None and "consumers" in resume:
            base = remaining(_base(resume), window, _yielded(resume))
        order = EpochOrder(self.table, self.seed, self.epoch, window, self.shuffle)
        intervals = plan(base if base is not None else [(0, order.samples)], window, who)
        shards = self._shards
        it = EpochIterator(shards.fs, shards.paths, shards.indexes, shards.ends, order, intervals, who, describe, base,
                           block_bytes=self.block_bytes)
        if resume is not None and "consumers" not in resume:
            it.load_state_dict(resume)
        self._last = it
        return it if self.transform is None else _Mapped(it, self.transform)

    # -- checkpoints ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The state of this process's latest iterator (in a DataLoader worker: that
        worker's), or of an epoch not started yet."""
        if self._resume is not None:
            return dict(self._resume)
        if self._last is not None:
            return self._last.state_dict()
        return {"format": STATE_FORMAT, **self._describe(), "rank": self.rank, "world_size": self.world_size,
                "worker": 0, "workers": 1, "yielded": 0, "length": None, "base": None, "fresh": True}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at `state` (from `state_dict()` or `resume_states`) at the next iter()."""
        self.epoch = state["epoch"]
        if state.get("fresh"):
            self._resume = None
            return
        check_state(state, self._describe())
        self._resume = dict(state)

    @staticmethod
    def resume_states(states: Any) -> dict[str, Any]:
        """One state that continues an epoch on any world size and worker count.

        states: every old iterator's state of that epoch (each rank's and each worker's),
        or objects holding them such as each rank's StatefulDataLoader.state_dict(); load
        the result with `load_state_dict` on every new rank's dataset."""
        found = [s for s in _find_states(states) if not s.get("fresh")]
        if not found:
            raise ValueError("no EmberFS epoch states found")
        first = found[0]
        for s in found:
            for key in (*ORDER_KEYS, "base"):
                if s.get(key) != first.get(key):
                    raise ValueError(f"states from different epochs or data ({key} differs)")
        consumers = {(s["rank"], s["world_size"], s["worker"], s["workers"]): s["yielded"] for s in found}
        return {"format": STATE_FORMAT, **{k: first[k] for k in ORDER_KEYS}, "base": first.get("base"),
                "consumers": [[*who, n] for who, n in sorted(consumers.items())]}


class _Mapped:
    """An epoch iterator with the dataset's transform applied (still resumable)."""

    def __init__(self, it: EpochIterator, transform: Transform) -> None:
        self.it, self.transform = it, transform

    def __iter__(self) -> _Mapped:
        return self

    def __next__(self) -> Any:
        return self.transform(next(self.it))

    def state_dict(self) -> dict[str, Any]:
        return self.it.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.it.load_state_dict(state)


def _base(resume: dict[str, Any]) -> list[Interval]:
    base = resume.get("base")
    return [(0, resume["samples"])] if base is None else [(int(a), int(b)) for a, b in base]


def _yielded(resume: dict[str, Any]) -> dict[Consumer, int]:
    return {Consumer(r, w, k, n): int(y) for r, w, k, n, y in resume["consumers"]}


def _find_states(obj: Any) -> list[dict[str, Any]]:
    """Every EmberFS epoch state inside obj (nested dicts and lists, as loaders keep them)."""
    if isinstance(obj, dict):
        if obj.get("format") == STATE_FORMAT and "yielded" in obj:
            return [obj]
        return [s for v in obj.values() for s in _find_states(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _find_states(v)]
    return []


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
