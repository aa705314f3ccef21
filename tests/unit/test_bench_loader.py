"""The data-loader benchmark's pure parts, as tables: size ranges, the dataset (numbered
samples of seeded sizes in shards that decode), the exactly-once check of an epoch,
storing into local disk and writers, the cold-cache fallback, and the loader goals of
the report (which rows each goal compares)."""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

import pytest

from emberfs.bench.coldcache import drop_page_caches
from emberfs.bench.epoch import BLOCK, RANDOM, Source, make_dataset
from emberfs.bench.loaderdata import ID_BYTES, DatasetSpec, EpochCheck, EpochError, range_label, store_dataset
from emberfs.bench.measure import EMBERFS, LOCAL, MIBS, PEER, Row
from emberfs.bench.options import parse_size_range
from emberfs.bench.report import goals, loader_summary
from emberfs.client.data import LocalFiles, RecordReader

KIB = 1024


@pytest.mark.parametrize(("text", "expected"), [
    ("4K-28K", (4 * KIB, 28 * KIB)),
    ("100-20000", (100, 20000)),
    ("16K", (16 * KIB, 16 * KIB)),
    (" 1KiB-1MiB ", (KIB, 1 << 20)),
    ("8-8", (8, 8)),
])
def test_parse_size_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_size_range(text) == expected


@pytest.mark.parametrize("text", ["28K-4K", "0-4K", "", "-4K", "4K-", "4X-8K", "a-b"])
def test_parse_size_range_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size_range(text)


@pytest.mark.parametrize(("lo", "hi", "label"), [
    (4 * KIB, 28 * KIB, "4-28 KiB"),
    (16 * KIB, 16 * KIB, "16 KiB"),
    (100, 20000, "100 B-20000 B"),
    (KIB, 1 << 20, "1-1024 KiB"),
])
def test_range_label(lo: int, hi: int, label: str) -> None:
    assert range_label(lo, hi) == label


@pytest.mark.parametrize(("fields", "why"), [
    ((0, 8, 16, 1), "at least one sample"),
    ((10, 8, 16, 0), "at least one sample"),
    ((3, 8, 16, 4), "a shard would be empty"),
    ((10, 7, 16, 1), "each sample starts with its 8-byte number"),
    ((10, 32, 16, 1), "need 8 <= min <= max"),
])
def test_dataset_spec_refuses(fields: tuple[int, int, int, int], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        DatasetSpec(*fields)


def test_dataset_sizes_are_seeded_and_in_range() -> None:
    spec = DatasetSpec(5000, 100, 20000, 7, seed=3)
    assert len(spec.sizes) == 5000 and min(spec.sizes) >= 100 and max(spec.sizes) <= 20000
    assert list(spec.sizes) == list(DatasetSpec(5000, 100, 20000, 7, seed=3).sizes)
    assert list(spec.sizes) != list(DatasetSpec(5000, 100, 20000, 7, seed=4).sizes)
    # Uniform: the mean sits near the middle (5000 draws: a standard error of ~80 bytes).
    assert abs(spec.sample_bytes / 5000 - 10050) < 500


@pytest.mark.parametrize(("samples", "shards"), [(10, 1), (10, 3), (10, 10), (65536, 16)])
def test_shard_bounds_cover_every_sample_once(samples: int, shards: int) -> None:
    spec = DatasetSpec(samples, 8, 8, shards)
    bounds = [spec.bounds(k) for k in range(shards)]
    assert bounds[0][0] == 0 and bounds[-1][1] == samples
    assert all(end > start for start, end in bounds)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


def test_of_bytes_aims_at_the_total() -> None:
    spec = DatasetSpec.of_bytes(1 << 30, 4 * KIB, 28 * KIB, 16)
    assert spec.samples == 65536
    assert abs(spec.sample_bytes - (1 << 30)) < (1 << 30) // 100
    assert DatasetSpec.of_bytes(100, 4 * KIB, 28 * KIB, 4).samples == 4  # at least one per shard


def test_shards_decode_to_numbered_samples_of_their_sizes(tmp_path: Path) -> None:
    spec = DatasetSpec(50, 8, 300, 3, seed=1)
    fs = LocalFiles()
    for k, name in enumerate(spec.names()):
        data = spec.shard(k)
        assert len(data) == spec.file_bytes(k)
        (tmp_path / name).write_bytes(data)
        start, end = spec.bounds(k)
        samples = list(RecordReader(fs, str(tmp_path / name)))  # the reader checks every CRC32C
        assert [int.from_bytes(s[:ID_BYTES], "little") for s in samples] == list(range(start, end))
        assert [len(s) for s in samples] == list(spec.sizes[start:end])
    fs.close()


def _sample(i: int, size: int) -> bytes:
    return i.to_bytes(ID_BYTES, "little") + bytes(size - ID_BYTES)


@pytest.mark.parametrize(("arrivals", "why"), [
    ([(0, 10), (2, 12), (1, 11)], None),
    ([(0, 10), (0, 10)], "sample 0 came twice"),
    ([(3, 10)], "none of the dataset's 3"),
    ([(1, 12)], "sample 1 came back with 12 bytes, written with 11"),
    ([(0, 10), (2, 12)], "1 of 3 samples never came \\(the first: \\[1\\]\\)"),
])
def test_epoch_check(arrivals: list[tuple[int, int]], why: str | None) -> None:
    check = EpochCheck([10, 11, 12])

    def epoch() -> None:
        for i, size in arrivals:
            check.add(_sample(i, size))
        check.finish()

    if why is not None:
        with pytest.raises(EpochError, match=why):
            epoch()
        return
    epoch()
    assert (check.count, check.nbytes) == (3, 33)


def test_epoch_check_refuses_a_sample_too_short_to_be_numbered() -> None:
    with pytest.raises(EpochError, match="a sample of 3 bytes is none"):
        EpochCheck([10]).add(b"abc")


def test_store_dataset_writes_local_and_every_writer(tmp_path: Path) -> None:
    spec = DatasetSpec(40, 8, 2000, 5)
    stored: dict[str, bytes] = {}
    lock = threading.Lock()

    def writer(path: str, data: bytes) -> None:
        with lock:
            stored[path] = data

    reports: list[tuple[int, int]] = []
    names = store_dataset(spec, tmp_path / "local", "/remote", [writer, writer], in_flight=2,
                          report=lambda done, total: reports.append((done, total)))
    assert names == spec.names()
    assert set(stored) == {f"/remote/{n}" for n in names}
    for name in names:
        assert (tmp_path / "local" / name).read_bytes() == stored[f"/remote/{name}"]
    total = sum(spec.file_bytes(k) for k in range(spec.shards))
    assert len(reports) == spec.shards and reports[-1] == (total, total)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)


def test_store_dataset_fails_with_its_writer(tmp_path: Path) -> None:
    def broken(path: str, data: bytes) -> None:
        raise OSError(28, "No space left on device", path)

    with pytest.raises(OSError, match="No space left"):
        store_dataset(DatasetSpec(20, 8, 100, 4), tmp_path, "/remote", [broken], in_flight=1)


def test_cold_cache_falls_back_to_fadvise(tmp_path: Path) -> None:
    for name in ("a", "b/c", "b/d/e"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * 4096)
    os.symlink(tmp_path / "a", tmp_path / "link")  # not followed, not counted
    how = drop_page_caches([tmp_path], control=tmp_path / "no-such-dir" / "drop_caches")
    assert how.startswith("page cache of 3 files dropped (fadvise DONTNEED; drop_caches:"), how


@pytest.mark.parametrize(("kind", "address", "options", "why"), [
    ("s3", "", {}, "choose from emberfs, local, http"),
    ("local", "", {"transport": "bulk"}, "client_options apply only to an emberfs source"),
])
def test_source_refuses(kind: str, address: str, options: dict[str, str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Source(kind, address, options)


def test_make_dataset_refuses_an_unknown_order(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="order 'sorted'"):
        make_dataset(Source("local"), [str(tmp_path / "x")], "sorted", seed=0, cache_bytes=None)


def _row(system: str, role: str, order: str, samples_per_s: float, workload: str = "loader 4-28 KiB") -> Row:
    return Row(workload, 2, system, role, MIBS, ops=int(samples_per_s * 10), nbytes=int(samples_per_s * 10) << 14,
               seconds=10.0, api=order, detail="one epoch of ..., page cache dropped; first batch after 0.25 s")


ROWS = [
    _row("emberfs, block-shuffled", EMBERFS, BLOCK, 900),
    _row("emberfs, random order", EMBERFS, RANDOM, 300),
    _row("local files, random order", LOCAL, RANDOM, 1000),
    _row("local files, block-shuffled", LOCAL, BLOCK, 2000),  # must not be the goals' baseline
    _row("nginx + http.client, block-shuffled", PEER, BLOCK, 600),
]


def test_loader_goals_compare_each_order_with_local_files_in_random_order() -> None:
    found = {g["goal"]: g for g in goals(ROWS, nodes=3, replicas=3) if g["workload"].startswith("loader")}
    block = found["loader 4-28 KiB block-shuffled >= 0.8x local files, random order"]
    assert (block["verdict"], round(block["ratio"], 2), block["baseline"]) == ("PASS", 0.9, "local files, random order")
    rand = found["loader 4-28 KiB random order >= 0.4x local files, random order"]
    assert (rand["verdict"], round(rand["ratio"], 2), rand["system"]) == ("MISS", 0.3, "emberfs, random order")
    peer = found["loader 4-28 KiB block-shuffled / nginx block-shuffled"]
    assert (peer["verdict"], peer["ratio"], peer["baseline"]) == ("info", 1.5, "nginx + http.client, block-shuffled")


def test_loader_goals_without_a_figure_say_which_is_missing() -> None:
    rows = [r for r in ROWS if r.api != RANDOM or r.role != LOCAL]
    found = [g for g in goals(rows, nodes=3, replicas=3) if g["workload"].startswith("loader") and g["target"]]
    assert [(g["verdict"], g["why"]) for g in found] == [
        ("n/a", "no local files, random order figure for loader 4-28 KiB")] * 2


def test_loader_summary_ratios() -> None:
    summary = {r["system"]: r for r in loader_summary(ROWS)}
    assert summary["emberfs, block-shuffled"]["vs_local"] == pytest.approx(0.9)
    assert summary["emberfs, block-shuffled"]["vs_peer"] == pytest.approx(1.5)
    assert summary["emberfs, random order"]["order"] == RANDOM
    assert summary["local files, block-shuffled"]["vs_local"] is None  # only EmberFS rows get ratios
    assert summary["emberfs, random order"]["samples_per_s"] == pytest.approx(300)
    assert summary["emberfs, random order"]["first_batch_s"] == 0.25
    assert summary["emberfs, random order"]["detail"] == "one epoch of ..., page cache dropped"


def test_server_cpu_counts_only_what_live_processes_spent_since() -> None:
    from emberfs.bench.epoch import _cpu_since
    from emberfs.bench.measure import proc_cpu_seconds

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # gone: it counts nothing, and takes nothing away
    mine = os.getpid()
    sum(range(3_000_000))  # some CPU of this process's own
    now = proc_cpu_seconds(mine)
    assert now > 0
    assert _cpu_since({pid: 5.0}, [pid]) == 0.0
    assert _cpu_since({mine: now + 100.0}, [mine]) == 0.0  # never negative
    assert now <= _cpu_since({}, [mine]) < now + 1.0  # new since the start: all of its own
    assert _cpu_since({pid: 5.0, mine: 0.0}, [mine]) >= now
