"""IterableRecordDataset over record shards on local disk (LocalFiles): block reads, the
split between ranks and workers, and mid-epoch resume on the same and on another world size."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from emberfs.client import datasets as datasets_module
from emberfs.client.data import LocalFiles, encode_shard
from emberfs.client.datasets import IterableRecordDataset

BLOCK = 16 << 10


class Counting(LocalFiles):
    """LocalFiles that remembers every range it read."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[tuple[str, int, int]] = []

    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        self.ranges += ranges
        return super().read_ranges(ranges)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[bytes]]:
    """Three shards of 600 samples of 100 B - 3 KiB, each starting with its number."""
    root = tmp_path_factory.mktemp("shards")
    rng = random.Random(5)
    samples = [i.to_bytes(4, "big") + os.urandom(rng.randrange(100, 3000)) for i in range(600)]
    paths = []
    for k in range(3):
        path = root / f"shard-{k}.rec"
        path.write_bytes(encode_shard(samples[k * 200:(k + 1) * 200]))
        paths.append(str(path))
    return paths, samples


def ids(samples: list[bytes]) -> list[int]:
    return [int.from_bytes(s[:4], "big") for s in samples]


def make(paths: list[str], fs: LocalFiles | None = None, **options: Any) -> IterableRecordDataset:
    options = {"shuffle": True, "seed": 9, "block_bytes": BLOCK, "window_blocks": 4, **options}
    return IterableRecordDataset(fs or LocalFiles(), paths, **options)


def as_worker(monkeypatch: pytest.MonkeyPatch, worker: int, workers: int) -> None:
    monkeypatch.setattr(datasets_module, "_torch_worker", lambda: (worker, workers))


def test_reads_whole_blocks_once(shards: tuple[list[str], list[bytes]]) -> None:
    paths, samples = shards
    fs = Counting()
    ds = make(paths, fs)
    got = list(ds)
    assert sorted(ids(got)) == list(range(600)) and ids(got) != list(range(600))
    reads = fs.ranges[6:]  # after the indexes' two batched reads (headers, then indexes)
    assert all(n <= BLOCK + 3100 for _, _, n in reads)  # at most a block and a sample
    # A whole block is read from its aligned start (read_start), so the tail of the sample
    # before it is read again; a block cut by a window boundary is read in two parts; no
    # other byte is read twice.
    spans = sorted((path, offset, offset + n) for path, offset, n in reads)
    again = [a[2] - b[1] for a, b in itertools.pairwise(spans) if a[0] == b[0] and a[2] > b[1]]
    assert again and all(0 < n < 3100 for n in again)
    ends = {(path, end) for path, _, end in spans}
    assert all((path, offset) in ends for path, offset, _ in reads if offset % BLOCK)  # the cut blocks
    data = sum(os.path.getsize(p) - 32 - 12 * 200 - 8 for p in paths)
    assert sum(n for _, _, n in reads) == data + 32 * len(paths) + sum(again)
    assert ds.table.count <= len(reads) < 2 * ds.table.count


def test_equal_ranks_and_each_sample_once(shards: tuple[list[str], list[bytes]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    paths, _ = shards
    seen, per_rank = [], []
    for rank in range(4):
        ds = make(paths, rank=rank, world_size=4)
        ds.set_epoch(2)
        mine = []
        for worker in range(3):
            as_worker(monkeypatch, worker, 3)
            mine += ids(list(ds))
        per_rank.append(len(mine))
        assert len(mine) == len(ds) == 150
        seen += mine
    assert sorted(seen) == list(range(600))


def test_the_order_does_not_depend_on_world_size_when_split_in_whole_windows(
        shards: tuple[list[str], list[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranks take whole windows in turn: the windows' contents are the same for any world size."""
    paths, _ = shards
    one = ids(list(make(paths)))
    two = [ids(list(make(paths, rank=r, world_size=2))) for r in range(2)]
    window = make(paths)._window_samples()
    windows = [one[i:i + window] for i in range(0, len(one), window)]
    assert two[0][:window] == windows[0] and two[1][:window] == windows[1]


@pytest.mark.parametrize("stop", [0, 1, 57, 333, 600])
def test_resume_on_the_same_world_size_continues_exactly(shards: tuple[list[str], list[bytes]], stop: int) -> None:
    paths, _ = shards
    whole = ids(list(make(paths)))
    ds = make(paths)
    it = iter(ds)
    head = ids([next(it) for _ in range(stop)])
    state = ds.state_dict()
    assert state["yielded"] == stop
    fs = Counting()
    again = make(paths, fs)
    again.load_state_dict(state)
    assert len(again) == 600  # indexes loaded: what follows counts only the sample reads
    fs.ranges.clear()
    assert head + ids(list(again)) == whole
    if stop == 600:
        assert fs.ranges == []  # a finished epoch reads nothing


def test_resume_through_the_iterator_state(shards: tuple[list[str], list[bytes]]) -> None:
    paths, _ = shards
    whole = ids(list(make(paths, transform=bytes)))
    it = iter(make(paths, transform=bytes))
    head = ids([next(it) for _ in range(100)])
    state = it.state_dict()  # type: ignore[attr-defined]
    it2 = iter(make(paths, transform=bytes))
    it2.load_state_dict(state)  # type: ignore[attr-defined]
    assert head + ids(list(it2)) == whole


@pytest.mark.parametrize(("old", "new"), [((2, 2), (3, 1)), ((1, 1), (2, 3)), ((3, 2), (1, 1))])
def test_resume_on_another_world_size(shards: tuple[list[str], list[bytes]], monkeypatch: pytest.MonkeyPatch,
                                      old: tuple[int, int], new: tuple[int, int]) -> None:
    paths, _ = shards
    rng = random.Random(3)
    states, done = [], []
    for rank in range(old[0]):
        for worker in range(old[1]):
            as_worker(monkeypatch, worker, old[1])
            ds = make(paths, rank=rank, world_size=old[0])
            it = iter(ds)
            done += ids([next(it) for _ in range(rng.randrange(0, 600 // (old[0] * old[1])))])
            states.append({"worker": {"dataset_state": ds.state_dict()}})  # nested, as loaders keep it
    resume = IterableRecordDataset.resume_states(states)
    after, per_rank = [], []
    for rank in range(new[0]):
        mine = []
        for worker in range(new[1]):
            as_worker(monkeypatch, worker, new[1])
            ds = make(paths, rank=rank, world_size=new[0])
            ds.load_state_dict(resume)
            mine += ids(list(ds))
        per_rank.append(len(mine))
        after += mine
    assert len(set(per_rank)) == 1
    assert not set(done) & set(after) and len(after) == len(set(after))
    assert len(done) + len(after) > 600 - new[0]  # everything but fewer than world_size


def test_bad_states_are_refused(shards: tuple[list[str], list[bytes]]) -> None:
    paths, _ = shards
    ds = make(paths)
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    other = make(paths, seed=10)
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="not an EmberFS epoch state"):
        other.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="rank 0/1 worker 0/1 for an iterator of rank 1/2"):
        two = make(paths, rank=1, world_size=2)
        two.load_state_dict(state)
        iter(two)
    with pytest.raises(RuntimeError, match="after iteration started"):
        it.load_state_dict(state)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no EmberFS epoch states"):
        IterableRecordDataset.resume_states([{"x": 1}])


def test_memory_stays_within_two_windows(shards: tuple[list[str], list[bytes]]) -> None:
    paths, _ = shards
    ds = make(paths, cache_bytes=4 * BLOCK, window_blocks=None)
    assert ds.window_blocks == 2  # two windows (one read ahead) within cache_bytes

    class Peak(LocalFiles):
        biggest = 0

        def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
            Peak.biggest = max(Peak.biggest, sum(n for _, _, n in ranges))
            return super().read_ranges(ranges)

    ds = make(paths, Peak(), cache_bytes=4 * BLOCK, window_blocks=None)
    assert len(list(ds)) == 600
    assert Peak.biggest <= 4 * BLOCK  # a window: at most window_blocks + 1 blocks (+ one sample each)


def test_iterating_twice_gives_the_same_epoch(shards: tuple[list[str], list[bytes]]) -> None:
    paths, _ = shards
    ds = make(paths)
    first: Iterator[bytes] = iter(ds)
    assert ids(list(first)) == ids(list(ds))
    ds.set_epoch(1)
    assert ids(list(first)) == [] and ids(list(ds)) != ids(list(make(paths)))


def test_local_path_type(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        IterableRecordDataset(LocalFiles(), str(tmp_path))  # one string, not a list of paths


def test_datasets_open_by_manifest(tmp_path: Path) -> None:
    from emberfs.client.datasets import RecordDataset
    from emberfs.client.shards import ShardWriter

    samples = [i.to_bytes(4, "big") + os.urandom(i % 50) for i in range(300)]
    with ShardWriter(LocalFiles(), str(tmp_path / "ds"), max_count=70) as writer:
        for sample in samples:
            writer.write(sample)
    mapped = RecordDataset.from_manifest(LocalFiles(), str(tmp_path / "ds"))
    assert len(mapped.paths) == 5 and mapped.__getitems__([0, 299]) == [samples[0], samples[299]]
    stream = IterableRecordDataset.from_manifest(LocalFiles(), str(tmp_path / "ds"), shuffle=True, seed=1)
    assert sorted(ids(list(stream))) == list(range(300))
    with pytest.raises(OSError, match="no manifest"):
        RecordDataset.from_manifest(LocalFiles(), str(tmp_path))
