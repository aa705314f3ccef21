"""SyncClient on a real 3-node, 3-replica cluster with 64 KiB chunks: the blocking API
byte-exact (whole files, ranges, batches, file objects), calls from many threads, and
multiprocessing pools with "fork" (a client made and used in the parent before the
fork, and clients made in the workers) and with "spawn" (the client pickled to the
workers). Every pool wait is bounded; a worker that hangs fails the test."""

from __future__ import annotations

import errno
import io
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from emberfs.client import SyncClient

CS = 64 * 1024
SIZES = [0, 1, CS - 1, CS, CS + 1, 3 * CS + 7]
POOL_TIMEOUT_S = 90.0

# The client a "fork" worker inherits from the parent (set before the pool forks).
_inherited: SyncClient | None = None


def _read_inherited(path: str) -> tuple[int, bytes]:
    assert _inherited is not None
    return os.getpid(), _inherited.read_file(path)


def _ranges_inherited(ranges: list[tuple[str, int, int]]) -> list[bytes]:
    assert _inherited is not None
    return _inherited.read_ranges(ranges)


def _read_own(address: str, path: str) -> bytes:
    with SyncClient(address, uid=0, gid=0) as fs, fs.open(path, "rb") as f:
        return f.read()


def _try_inherited(path: str) -> tuple[str, float]:
    """What a call on the inherited client does, and how long it took."""
    assert _inherited is not None
    start = time.monotonic()
    try:
        _inherited.read_file(path)
        outcome = "ok"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    return outcome, time.monotonic() - start


@pytest.fixture(scope="module")
def fs(cluster3: Any) -> Iterator[SyncClient]:
    with SyncClient(cluster3.meta_address, uid=0, gid=0, timeout=20.0) as client:
        yield client


@pytest.fixture(scope="module")
def dataset(fs: SyncClient) -> dict[str, bytes]:
    """Files of awkward sizes (empty, one byte, around one chunk, several chunks)."""
    root = f"/sync-{uuid.uuid4().hex[:8]}"
    fs.makedirs(root)
    files = {f"{root}/f{size}": os.urandom(size) for size in SIZES}
    for path, data in files.items():
        fs.write_file(path, data)
    return files


@pytest.fixture
def inherited(cluster3: Any) -> Iterator[SyncClient]:
    """A SyncClient in the module global that "fork" workers inherit."""
    global _inherited
    _inherited = SyncClient(cluster3.meta_address, uid=0, gid=0, timeout=20.0)
    try:
        yield _inherited
    finally:
        _inherited.close()
        _inherited = None


def test_whole_files_ranges_and_batches_are_byte_exact(fs: SyncClient, dataset: dict[str, bytes]) -> None:
    for path, data in dataset.items():
        assert fs.read_file(path) == data
        assert fs.stat(path).st_size == len(data)
    big = dataset[f"{next(iter(dataset)).rsplit('/', 1)[0]}/f{3 * CS + 7}"]
    path = next(p for p, d in dataset.items() if d is big)
    assert fs.read_range(path, CS - 3, 10) == big[CS - 3 : CS + 7]  # across a chunk edge
    assert fs.read_range(path, len(big) - 4, 100) == big[-4:]  # short at EOF
    assert fs.read_range(path, len(big) + 5, 10) == b""
    ranges = [(p, max(0, len(d) // 2 - 5), CS + 9) for p, d in dataset.items()] + [(path, 0, 3), (path, 0, 3)]
    assert fs.read_ranges(ranges) == [dataset[p][o : o + n] for p, o, n in ranges]
    root = path.rsplit("/", 1)[0]
    assert fs.listdir(root) == sorted(p.rsplit("/", 1)[1] for p in dataset)
    assert fs.exists(path) and not fs.exists(f"{root}/missing")


def test_errors_cross_the_thread_as_python_errors(fs: SyncClient, dataset: dict[str, bytes]) -> None:
    path = next(iter(dataset))
    with pytest.raises(FileNotFoundError) as missing:
        fs.read_file(path + "-missing")
    assert missing.value.filename == path + "-missing"
    with pytest.raises(OSError) as negative:
        fs.read_range(path, -1, 5)
    assert negative.value.errno == errno.EINVAL
    with pytest.raises(ValueError):
        fs.open(path, "rt")


def test_file_objects_every_mode(fs: SyncClient) -> None:
    path = f"/sync-file-{uuid.uuid4().hex[:8]}"
    data = os.urandom(2 * CS + 11)
    with fs.open(path, "wb") as f:
        assert (f.name, f.mode, f.closed) == (path, "wb", False)
        assert f.writable() and not f.readable() and f.seekable()
        assert f.write(data[:5]) == 5
        assert f.write(data[5:]) == len(data) - 5
        assert f.tell() == len(data)
        with pytest.raises(io.UnsupportedOperation):
            f.read(1)
        f.flush()
        assert fs.stat(path).st_size == len(data)  # flush reports the length
    assert f.closed
    f.close()  # idempotent
    with pytest.raises(ValueError):
        f.write(b"x")

    with fs.open(path) as r:
        assert r.readable() and not r.writable()
        assert r.read(CS + 1) == data[: CS + 1]
        buffer = bytearray(20)
        assert r.seek(CS - 10) == CS - 10 and r.readinto(buffer) == 20
        assert bytes(buffer) == data[CS - 10 : CS + 10]
        assert r.seek(-7, io.SEEK_END) == len(data) - 7 and r.read() == data[-7:]
        assert r.pread(CS - 1, 2) == data[CS - 1 : CS + 1] and r.tell() == len(data)
        with pytest.raises(io.UnsupportedOperation):
            r.write(b"x")

    with fs.open(path, "ab") as a:
        a.write(b"tail")
    with fs.open(path, "r+b") as rw:
        rw.seek(CS)
        rw.write(b"MID")
        rw.seek(0)
        assert rw.readall() == data[:CS] + b"MID" + data[CS + 3 :] + b"tail"
    with pytest.raises(FileExistsError):
        fs.open(path, "xb")
    fs.truncate(path, CS + 1)
    assert fs.read_file(path) == data[:CS] + b"M"
    fs.remove(path)


def test_calls_from_many_threads_are_byte_exact(fs: SyncClient, dataset: dict[str, bytes]) -> None:
    paths = list(dataset) * 8
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(fs.read_file, paths, timeout=POOL_TIMEOUT_S))
    assert got == [dataset[p] for p in paths]


def test_fork_pool_reads_through_a_client_made_and_used_in_the_parent(
    inherited: SyncClient, dataset: dict[str, bytes]
) -> None:
    paths = list(dataset)
    assert inherited.read_file(paths[-1]) == dataset[paths[-1]]  # channels open before fork
    assert "running" in repr(inherited)
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.map_async(_read_inherited, paths * 3).get(POOL_TIMEOUT_S)
        batches = pool.map_async(_ranges_inherited, [[(p, 1, CS)] for p in paths]).get(POOL_TIMEOUT_S)
    assert [data for _, data in results] == [dataset[p] for p in paths * 3]
    assert os.getpid() not in {pid for pid, _ in results}
    assert batches == [[dataset[p][1 : CS + 1]] for p in paths]
    assert inherited.read_file(paths[-1]) == dataset[paths[-1]]  # the parent goes on


def test_fork_pool_workers_with_their_own_clients(cluster3: Any, fs: SyncClient, dataset: dict[str, bytes]) -> None:
    paths = list(dataset)
    fs.read_file(paths[0])  # the parent's own client is running at the fork too
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.starmap_async(_read_own, [(cluster3.meta_address, p) for p in paths]).get(POOL_TIMEOUT_S)
    assert got == [dataset[p] for p in paths]


def test_spawn_pool_with_a_pickled_client(fs: SyncClient, dataset: dict[str, bytes]) -> None:
    paths = list(dataset)
    fs.read_file(paths[0])
    ranges = [(p, len(d) // 3, CS) for p, d in dataset.items()]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        # A bound method pickles its SyncClient: the address and options only.
        whole = pool.map_async(fs.read_file, paths).get(POOL_TIMEOUT_S)
        parts = pool.starmap_async(fs.read_range, ranges).get(POOL_TIMEOUT_S)
    assert whole == [dataset[p] for p in paths]
    assert parts == [dataset[p][o : o + n] for p, o, n in ranges]


def test_fork_with_an_open_file_fails_fast_in_the_child(inherited: SyncClient, dataset: dict[str, bytes]) -> None:
    path = list(dataset)[-1]
    with inherited.open(path) as handle:
        assert handle.read(3) == dataset[path][:3]
        with multiprocessing.get_context("fork").Pool(1) as pool:
            outcome, took = pool.apply_async(_try_inherited, (path,)).get(POOL_TIMEOUT_S)
        assert outcome.startswith("RuntimeError") and "open files" in outcome
        assert took < 5.0  # refused, not a hang until the call's deadline
        assert handle.read(5) == dataset[path][3:8]  # the parent's handle still works
