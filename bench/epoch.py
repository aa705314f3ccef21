"""One shuffled epoch through torch's DataLoader, from a cold start: the figure of the
data-loader rows (dataloader.py) and of the demo (scripts/demo.py).

A `Source` says where the record shards are read from:

    emberfs   a metaserver address (the dataset makes its SyncClient, `client_options`)
    local     the same shards on local disk (`LocalFiles`)
    http      the same shards from nginx (`baselines.httpranges.HttpRangeReader`)

and an order how:

    block-shuffled  IterableRecordDataset(source, paths, shuffle=True): the dataset reads
                    whole blocks ahead of use and shuffles samples within a window of them
    random order    RecordDataset(source, paths) with DataLoader(shuffle=True): each batch
                    is 64 samples from anywhere, fetched by one batched read_ranges

`run_epoch` first empties the page cache (coldcache.py), then starts the clock: the
dataset is built (its shard indexes read), the DataLoader's workers forked, every batch
taken and every sample checked (`EpochCheck`: each once, whole; the datasets check each
CRC32C); the clock stops at the last batch. Client CPU is this process's and its
workers' (read before the workers are shut down), server CPU that of `server_pids`.
Without torch the same dataset is read by a plain loop of batches in this process
(`loader_text` says which).
"""

from __future__ import annotations

import gc
import importlib.util
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .coldcache import drop_page_caches
from .loaderdata import EpochCheck
from .measure import proc_cpu_seconds

__all__ = ["BLOCK", "ORDERS", "RANDOM", "SOURCES", "EpochResult", "Source", "loader_text", "make_dataset",
           "run_epoch"]

BLOCK, RANDOM = "block-shuffled", "random order"
ORDERS = (BLOCK, RANDOM)
SOURCES = ("emberfs", "local", "http")
_BATCH_TIMEOUT_S = 120.0  # a DataLoader worker silent this long fails the epoch


@dataclass(frozen=True)
class Source:
    kind: str  # one of SOURCES
    address: str = ""  # the metaserver address (emberfs) or the base URL (http)
    client_options: dict[str, Any] = field(default_factory=dict)  # emberfs only: SyncClient options

    def __post_init__(self) -> None:
        if self.kind not in SOURCES:
            raise ValueError(f"source kind {self.kind!r}: choose from {', '.join(SOURCES)}")
        if self.client_options and self.kind != "emberfs":
            raise ValueError("client_options apply only to an emberfs source")

    def reader(self) -> Any:
        """What the datasets take: the address, or a RangeReader."""
        if self.kind == "emberfs":
            return self.address
        if self.kind == "local":
            from emberfs.client.data import LocalFiles

            return LocalFiles()
        from .baselines.httpranges import HttpRangeReader

        return HttpRangeReader(self.address)


@dataclass
class EpochResult:
    samples: int
    nbytes: int
    seconds: float
    cpu_client_s: float  # this process and its DataLoader workers
    cpu_server_s: float | None  # the server processes named; None when none were
    cold: str  # how the page cache was emptied (coldcache.py)
    first_batch_s: float  # from the start to the first batch: dataset, workers, first reads
    batch_waits: list[float] = field(repr=False, default_factory=list)


def make_dataset(source: Source, paths: Sequence[str], order: str, *, seed: int, cache_bytes: int | None) -> Any:
    from emberfs.client.datasets import IterableRecordDataset, RecordDataset

    options: dict[str, Any] = {} if cache_bytes is None else {"cache_bytes": cache_bytes}
    if source.client_options:
        options["client_options"] = dict(source.client_options)
    if order == BLOCK:
        return IterableRecordDataset(source.reader(), list(paths), shuffle=True, seed=seed, **options)
    if order == RANDOM:
        return RecordDataset(source.reader(), list(paths), **options)
    raise ValueError(f"order {order!r}: choose from {', '.join(ORDERS)}")


def run_epoch(source: Source, paths: Sequence[str], order: str, sizes: Sequence[int], *, batch: int, workers: int,
              seed: int, cache_bytes: int | None = None, cold_dirs: Iterable[Path] = (),
              server_pids: Callable[[], Sequence[int]] | None = None) -> EpochResult:
    """One epoch of `order` over the shards at `paths`, whose samples have `sizes`."""
    import emberfs.client.datasets  # noqa: F401 (imported before the clock starts: a process pays it once)

    if _have_torch():  # the same: seconds to import
        import torch.utils.data  # noqa: F401
    # The rows before may have left SyncClients in reference cycles: EmberFS's fork hook
    # would stop them (and collect garbage) at this epoch's worker forks, whatever its source.
    gc.collect()
    cold = drop_page_caches(cold_dirs)
    servers0 = None if server_pids is None else {pid: proc_cpu_seconds(pid) for pid in server_pids()}
    check = EpochCheck(sizes)
    waits: list[float] = []
    time_to_first = 0.0
    cpu0 = time.process_time()
    start = time.perf_counter()
    ds = make_dataset(source, paths, order, seed=seed, cache_bytes=cache_bytes)
    if _have_torch():
        batches = _torch_batches(ds, order, batch=batch, workers=workers, seed=seed)
    else:
        batches = _plain_batches(ds, order, batch=batch, seed=seed)
    try:
        while True:
            t0 = time.perf_counter()
            try:
                samples = next(batches)
            except StopIteration:
                break
            waits.append(time.perf_counter() - t0)
            time_to_first = time_to_first or time.perf_counter() - start
            for sample in samples:
                check.add(sample)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0 + sum(proc_cpu_seconds(w.pid) for w in getattr(batches, "_workers", []))
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
    servers = None if servers0 is None or server_pids is None else _cpu_since(servers0, server_pids())
    check.finish()
    return EpochResult(check.count, check.nbytes, seconds, cpu, servers, cold, time_to_first or seconds, waits)


def _cpu_since(start: dict[int, float], pids: Sequence[int]) -> float:
    """CPU seconds the processes spent since `start` (pid -> seconds then): one that is gone
    counts nothing, one that came since counts all of its own."""
    total = 0.0
    for pid in {*start, *pids}:
        now = proc_cpu_seconds(pid)
        total += max(now - start.get(pid, 0.0), 0.0) if now else 0.0
    return total


def loader_text(batch: int, workers: int) -> str:
    """What reads the epochs, for people."""
    if _have_torch():
        return f"DataLoader(batch_size={batch}, num_workers={workers})"
    return f"a plain loop of {batch}-sample batches (torch not installed: pip install 'emberfs[torch]')"


def _have_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _torch_batches(ds: Any, order: str, *, batch: int, workers: int, seed: int) -> Iterator[Any]:
    """The DataLoader's iterator, workers persistent so that their CPU can be read at the end."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=batch, shuffle=order == RANDOM, num_workers=workers,
                        multiprocessing_context="fork" if workers else None, persistent_workers=workers > 0,
                        timeout=_BATCH_TIMEOUT_S if workers else 0, generator=torch.Generator().manual_seed(seed))
    return iter(loader)


def _plain_batches(ds: Any, order: str, *, batch: int, seed: int) -> Iterator[list[Any]]:
    """The batches a DataLoader without workers would make, without torch."""
    if order == BLOCK:
        samples = iter(ds)
        while chunk := list(islice(samples, batch)):
            yield chunk
        return
    indices = list(range(len(ds)))
    random.Random(seed).shuffle(indices)
    for start in range(0, len(indices), batch):
        yield ds.__getitems__(indices[start:start + batch])
