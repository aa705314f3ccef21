"""Record shards and datasets on a real 3-node cluster with 64 KiB chunks (no torch here;
tests/integration/test_torch_loader.py runs them under DataLoader): the writer's file
byte for byte, random access, one read_ranges per batch, the iterable dataset's split by
rank and worker (every sample exactly once), pickling, and clear errors for bad shards."""

from __future__ import annotations

import os
import pickle
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from emberfs.client import SyncClient
from emberfs.client import datasets as datasets_module
from emberfs.client.data import RecordReader, RecordWriter, ShardError, encode_shard
from emberfs.client.datasets import FileDataset, IterableRecordDataset, RecordDataset

CS = 64 * 1024


@pytest.fixture(scope="module")
def fs(cluster3: Any) -> Iterator[SyncClient]:
    with SyncClient(cluster3.meta_address, uid=0, gid=0, timeout=20.0) as client:
        yield client


@pytest.fixture(scope="module")
def shards(fs: SyncClient) -> tuple[list[str], list[bytes]]:
    """Three shards: samples of awkward sizes (empty, around a chunk) and an empty shard."""
    root = f"/ds-{uuid.uuid4().hex[:8]}"
    fs.makedirs(root)
    rng = random.Random(7)
    sizes = [0, 1, CS - 1, CS, CS + 1] + [rng.randrange(1, 3000) for _ in range(195)]
    samples = [os.urandom(n) for n in sizes]
    cut = [0, 120, 200, 200]  # the third shard is empty
    paths = [f"{root}/shard-{k}.rec" for k in range(3)]
    for k, path in enumerate(paths):
        with RecordWriter(fs, path, buffer_size=CS // 3) as writer:
            for sample in samples[cut[k]:cut[k + 1]]:
                writer.write(sample)
    return paths, samples


def test_the_writer_writes_the_documented_format(fs: SyncClient, shards: tuple[list[str], list[bytes]]) -> None:
    paths, samples = shards
    assert fs.read_file(paths[0]) == encode_shard(samples[:120])
    assert fs.read_file(paths[2]) == encode_shard([])
    reader = RecordReader(fs, paths[1])
    assert len(reader) == 80 and reader[0] == samples[120] and reader[-1] == samples[-1]


def test_map_style_random_access(cluster3: Any, shards: tuple[list[str], list[bytes]]) -> None:
    paths, samples = shards
    ds = RecordDataset(cluster3.meta_address, paths, client_options={"uid": 0, "gid": 0})
    assert len(ds) == len(samples)
    order = list(range(len(samples)))
    random.Random(3).shuffle(order)
    assert ds.__getitems__(order) == [samples[i] for i in order]
    assert ds[4] == samples[4] and ds[-1] == samples[-1]
    with pytest.raises(IndexError):
        ds[len(samples)]
    sized = RecordDataset(cluster3.meta_address, paths, transform=len)
    assert sized.__getitems__([2, 3]) == [CS - 1, CS]


def test_a_batch_is_one_read_ranges_call(fs: SyncClient, shards: tuple[list[str], list[bytes]]) -> None:
    paths, samples = shards
    calls: list[int] = []

    class Counting:
        def read_ranges(self, ranges: Any) -> list[bytes]:
            calls.append(len(ranges))
            return fs.read_ranges(ranges)

    ds = RecordDataset(Counting(), paths, cache_bytes=0)  # type: ignore[arg-type]
    assert len(ds) == len(samples) and calls == [3, 3]  # every header, then every index
    assert ds.__getitems__(list(range(0, 200, 3))) == samples[0:200:3]
    assert calls[2:] == [67]


def test_a_dataset_that_fits_is_read_in_blocks_once(fs: SyncClient, shards: tuple[list[str], list[bytes]]) -> None:
    paths, samples = shards
    calls: list[list[tuple[str, int, int]]] = []

    class Counting:
        def read_ranges(self, ranges: Any) -> list[bytes]:
            calls.append(list(ranges))
            return fs.read_ranges(ranges)

    ds = RecordDataset(Counting(), paths, cache_bytes=64 << 20)  # type: ignore[arg-type]
    assert len(ds) == len(samples)
    del calls[:]
    batch = list(range(0, 200, 3))
    assert ds.__getitems__(batch) == samples[0:200:3]
    # One call for the whole blocks the batch touched: 1 MiB aligned pieces, not samples.
    assert len(calls) == 1 and all(off % (1 << 20) == 0 and n == 1 << 20 for _, off, n in calls[0])
    assert ds.__getitems__(batch[::-1]) == samples[0:200:3][::-1] and len(calls) == 1  # from memory
    assert ds.__getitems__(list(range(200))) == samples  # every sample, still exact
    small = RecordDataset(Counting(), paths, cache_bytes=1024)  # type: ignore[arg-type]
    assert len(small) == len(samples)  # the indexes load first
    del calls[:]
    assert small.__getitems__([5, 6]) == samples[5:7]
    assert [n for _, _, n in calls[0]] == [len(samples[5]), len(samples[6])]  # too big to cache: direct


def test_datasets_pickle_with_their_indexes(cluster3: Any, shards: tuple[list[str], list[bytes]]) -> None:
    paths, samples = shards
    ds = RecordDataset(cluster3.meta_address, paths)
    assert len(ds) == 200  # the indexes are loaded and travel with the copy
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._shards._indexes is not None and clone[150] == samples[150]
    it = pickle.loads(pickle.dumps(IterableRecordDataset(cluster3.meta_address, paths, shuffle=True, seed=5)))
    assert sorted(it) == sorted(samples)


@pytest.mark.parametrize("shuffle", [False, True])
def test_iterable_split_by_rank_and_worker(
    cluster3: Any, shards: tuple[list[str], list[bytes]], monkeypatch: pytest.MonkeyPatch, shuffle: bool
) -> None:
    """2 ranks x 3 workers: every sample exactly once per epoch; a new epoch, a new order."""
    paths, samples = shards

    def epoch(e: int) -> list[bytes]:
        seen: list[bytes] = []
        for rank in range(2):
            ds = IterableRecordDataset(cluster3.meta_address, paths, shuffle=shuffle, seed=11, rank=rank,
                                       world_size=2, block_bytes=4096, window_blocks=2)
            ds.set_epoch(e)
            assert len(ds) == 100
            for worker in range(3):
                monkeypatch.setattr(datasets_module, "_torch_worker", lambda w=worker: (w, 3))
                mine = list(ds)
                if not shuffle:  # in file order within each consumer's part
                    assert [position[s] for s in mine] == sorted(position[s] for s in mine)
                seen += mine
        return seen

    position = {s: i for i, s in enumerate(samples)}  # the random samples are distinct but for b""
    first, second = epoch(0), epoch(1)
    assert sorted(first) == sorted(second) == sorted(samples) and len(first) == len(samples)
    assert (first != second) == shuffle


def test_iterable_rejects_a_bad_rank(cluster3: Any) -> None:
    with pytest.raises(ValueError, match="rank 2 of world_size 2"):
        IterableRecordDataset(cluster3.meta_address, [], rank=2, world_size=2)


def test_file_dataset(fs: SyncClient, cluster3: Any) -> None:
    root = f"/files-{uuid.uuid4().hex[:8]}"
    fs.makedirs(root)
    files = {f"{root}/{n}": os.urandom(n) for n in (0, 5, CS, 3 * CS + 1)}
    for path, data in files.items():
        fs.write_file(path, data)
    paths = list(files)
    ds = FileDataset(cluster3.meta_address, paths)
    assert len(ds) == 4 and ds[3] == files[paths[3]]
    assert ds.__getitems__([3, 0, 1, 2, 3]) == [files[paths[i]] for i in (3, 0, 1, 2, 3)]
    assert pickle.loads(pickle.dumps(ds))[2] == files[paths[2]]


def test_bad_shards_name_the_file(fs: SyncClient, cluster3: Any, shards: tuple[list[str], list[bytes]]) -> None:
    paths, _ = shards
    whole = fs.read_file(paths[0])
    root = paths[0].rsplit("/", 1)[0]
    cut, flipped, plain = f"{root}/cut.rec", f"{root}/flipped.rec", f"{root}/plain.bin"
    fs.write_file(cut, whole[:-10])
    fs.write_file(flipped, whole[:100] + bytes([whole[100] ^ 0xFF]) + whole[101:])
    fs.write_file(plain, b"just some bytes, not a shard at all")
    with pytest.raises(ShardError, match="truncated") as info:
        len(RecordDataset(cluster3.meta_address, [paths[1], cut]))
    assert info.value.filename == cut
    with pytest.raises(ShardError, match="not a record shard") as info:
        len(RecordDataset(cluster3.meta_address, [plain]))
    assert info.value.filename == plain
    ds = RecordDataset(cluster3.meta_address, [flipped])
    index = ds._shards.indexes[0]
    sample = next(i for i in range(len(ds)) if index.span(i)[0] <= 100 < sum(index.span(i)))
    with pytest.raises(ShardError, match=f"sample {sample} is corrupt") as info:
        ds[sample]
    assert info.value.filename == flipped
    with pytest.raises(FileNotFoundError):
        len(RecordDataset(cluster3.meta_address, [f"{root}/missing.rec"]))
