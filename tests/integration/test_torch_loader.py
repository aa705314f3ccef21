"""The datasets under torch's real DataLoader, on a real 3-node cluster with 64 KiB chunks:
2 workers started by "fork" and by "spawn", map-style (shuffled batches through
`__getitems__`) and iterable (split between the workers), each checked to deliver every
sample exactly once and byte for byte. The datasets are used in the main process first,
so a fork happens while their SyncClient is connected (the fork hook's case). Every
batch wait is bounded (DataLoader's `timeout`), and so is each test."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install 'emberfs[torch]' (the CPU build, torch==2.13.0)"
)
from torch.utils.data import DataLoader  # noqa: E402

from emberfs.client import SyncClient  # noqa: E402
from emberfs.client.data import RecordWriter  # noqa: E402
from emberfs.client.datasets import EpochSampler, FileDataset, IterableRecordDataset, RecordDataset  # noqa: E402

CS = 64 * 1024
SAMPLES = 300
BATCH_TIMEOUT_S = 120.0  # spawn workers import torch first: seconds on a small machine
pytestmark = pytest.mark.timeout(300)  # spawn workers each import torch; the machine may be busy


@pytest.fixture(scope="module")
def dataset(cluster3: Any) -> Iterator[tuple[str, list[str], list[bytes]]]:
    """Two shards; sample i starts with i (4 bytes), then up to ~1.5 chunks of random bytes."""
    rng = random.Random(1)
    samples = [i.to_bytes(4, "big") + os.urandom(rng.choice([0, 1, 100, 5000, CS, CS + CS // 2]))
               for i in range(SAMPLES)]
    root = f"/torch-{uuid.uuid4().hex[:8]}"
    with SyncClient(cluster3.meta_address, uid=0, gid=0, timeout=20.0) as fs:
        fs.makedirs(root)
        paths = [f"{root}/shard-{k}.rec" for k in range(2)]
        for k, path in enumerate(paths):
            with RecordWriter(fs, path) as writer:
                for sample in samples[k * SAMPLES // 2:(k + 1) * SAMPLES // 2]:
                    writer.write(sample)
        files = [f"{root}/file-{i}" for i in range(40)]
        for i, path in enumerate(files):
            fs.write_file(path, samples[i])
    yield cluster3.meta_address, paths, samples


def _exactly_once(batches: list[Any], expected: list[bytes]) -> None:
    got = [sample for batch in batches for sample in batch]
    assert all(isinstance(s, bytes) for s in got)
    ids = sorted(int.from_bytes(s[:4], "big") for s in got)
    assert ids == list(range(len(expected))), "a sample is missing or came twice"
    for sample in got:
        assert sample == expected[int.from_bytes(sample[:4], "big")], "a sample differs from what was written"


def _loader(ds: Any, context: str, **options: Any) -> DataLoader:
    return DataLoader(ds, num_workers=2, multiprocessing_context=context, timeout=BATCH_TIMEOUT_S, **options)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_map_style(dataset: tuple[str, list[str], list[bytes]], context: str) -> None:
    meta, paths, samples = dataset
    ds = RecordDataset(meta, paths)
    assert len(ds) == SAMPLES and ds[7] == samples[7]  # connected in the parent before the workers start
    torch.manual_seed(0)
    _exactly_once(list(_loader(ds, context, batch_size=16, shuffle=True)), samples)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_iterable(dataset: tuple[str, list[str], list[bytes]], context: str) -> None:
    meta, paths, samples = dataset
    ds = IterableRecordDataset(meta, paths, shuffle=True, seed=3)
    assert len(ds) == SAMPLES
    ds.set_epoch(1)
    batches = list(_loader(ds, context, batch_size=16))
    _exactly_once(batches, samples)
    # Each worker took its own half: in DataLoader's round-robin order, batches of 16
    # alternate between the workers until one runs out.
    worker0 = [s for b in batches[0::2] for s in b]
    assert 0 < len(worker0) < SAMPLES


def test_file_dataset_with_fork(dataset: tuple[str, list[str], list[bytes]]) -> None:
    meta, paths, samples = dataset
    files = [f"{paths[0].rsplit('/', 1)[0]}/file-{i}" for i in range(40)]
    _exactly_once(list(_loader(FileDataset(meta, files), "fork", batch_size=8, shuffle=True)), samples[:40])


def _resumed(loader: Callable[[], Any], batches: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(a whole epoch, its first `batches` batches from a second loader, what a third loader
    given the second's state_dict() yields): a new loader, new workers, new dataset object."""
    whole = [bytes(s) for b in loader() for s in b]
    first = loader()
    it = iter(first)
    head = [bytes(s) for _ in range(batches) for s in next(it)]
    state = first.state_dict()
    del it, first
    again = loader()
    again.load_state_dict(state)
    return whole, head, [bytes(s) for b in again for s in b]


def test_stateful_dataloader_resumes_mid_epoch(dataset: tuple[str, list[str], list[bytes]]) -> None:
    """torchdata's StatefulDataLoader with 2 fork workers: stop after 5 batches, save its state,
    and a new loader (new workers, new dataset object) yields exactly the batches not yet yielded,
    in the same order."""
    stateful = pytest.importorskip("torchdata.stateful_dataloader", reason="pip install 'emberfs[torch]'")
    meta, paths, samples = dataset

    def loader() -> Any:
        ds = IterableRecordDataset(meta, paths, shuffle=True, seed=4, block_bytes=CS, window_blocks=2)
        ds.set_epoch(3)
        return stateful.StatefulDataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context="fork",
                                           timeout=BATCH_TIMEOUT_S)

    whole, head, rest = _resumed(loader, 5)
    assert head + rest == whole
    _exactly_once([head + rest], samples)


def test_map_style_resumes_through_the_epoch_sampler(dataset: tuple[str, list[str], list[bytes]]) -> None:
    """RecordDataset + EpochSampler under StatefulDataLoader (2 fork workers): the batches after a
    saved state are exactly the rest of the epoch."""
    stateful = pytest.importorskip("torchdata.stateful_dataloader", reason="pip install 'emberfs[torch]'")
    meta, paths, samples = dataset

    def loader() -> Any:
        ds = RecordDataset(meta, paths)
        sampler = EpochSampler(len(ds), seed=8)
        sampler.set_epoch(2)
        return stateful.StatefulDataLoader(ds, batch_size=16, sampler=sampler, num_workers=2,
                                           multiprocessing_context="fork", timeout=BATCH_TIMEOUT_S)

    whole, head, rest = _resumed(loader, 4)
    assert head + rest == whole
    _exactly_once([whole], samples)
