"""The chunk store on real files and a real LMDB: updates, reads, listing, GC."""

from __future__ import annotations

import os
import threading

import crc32c
import pytest

from emberfs.common import errors as e
from emberfs.storage.chunkstore import ChunkStore
from emberfs.storage.records import ChunkId, UpdateKind

W, T, R, X = UpdateKind.WRITE, UpdateKind.TRUNCATE, UpdateKind.REPLACE, UpdateKind.REMOVE
CS = 64  # chunk size
CID = ChunkId(0x1234, 3)


@pytest.fixture
def store(tmp_path):
    with ChunkStore(tmp_path / "target") as s:
        yield s


def apply(store: ChunkStore, cid: ChunkId, kind, offset=0, data=b"", length=0, *, commit=True):
    """One update at the next version, as the head of a chain would do it."""
    meta = store.meta(cid)
    version = max(meta.commit_version, meta.pending_version or 0) + 1
    info = store.prepare(cid, kind, offset, data, length, version, 1, CS, data_crc32c=crc32c.crc32c(data))
    return store.commit(cid, version) if commit else info


def content(store: ChunkStore, cid: ChunkId = CID) -> bytes | None:
    data, meta = store.read(cid, 0, CS)
    return data if meta.exists else None


def pending_files(store: ChunkStore) -> list[str]:
    return [f for _, _, fs in os.walk(store.paths.root) for f in fs if ".pending" in f]


# Each row: a sequence of updates and the chunk's bytes after each (None: no chunk).
SEQUENCES = [
    ("write at 0", [(W, 0, b"abc", 0)], [b"abc"]),
    ("write at an odd offset zero-fills", [(W, 5, b"xy", 0)], [b"\0" * 5 + b"xy"]),
    ("overwrite inside", [(W, 0, b"abcdef", 0), (W, 2, b"ZZ", 0)], [b"abcdef", b"abZZef"]),
    ("overwrite across the end", [(W, 0, b"abcd", 0), (W, 3, b"XYZ", 0)], [b"abcd", b"abcXYZ"]),
    ("overwrite from inside, longer than the chunk",
     [(W, 0, b"ab", 0), (W, 1, b"XYZ", 0)], [b"ab", b"aXYZ"]),
    ("append", [(W, 0, b"ab", 0), (W, 2, b"cd", 0)], [b"ab", b"abcd"]),
    ("append after a gap", [(W, 0, b"ab", 0), (W, 5, b"c", 0)], [b"ab", b"ab\0\0\0c"]),
    ("overwrite all, shorter, keeps the tail",
     [(W, 0, b"abcdef", 0), (W, 0, b"XY", 0)], [b"abcdef", b"XYcdef"]),
    ("overwrite all, longer", [(W, 0, b"ab", 0), (W, 0, b"WXYZ", 0)], [b"ab", b"WXYZ"]),
    ("fill to the chunk size", [(W, 0, b"a", 0), (W, CS - 1, b"z", 0)],
     [b"a", b"a" + b"\0" * (CS - 2) + b"z"]),
    ("empty write changes nothing", [(W, 0, b"ab", 0), (W, 9, b"", 0)], [b"ab", b"ab"]),
    ("empty write creates an empty chunk", [(W, 0, b"", 0)], [b""]),
    ("truncate shrinks", [(W, 0, b"abcdef", 0), (T, 0, b"", 2)], [b"abcdef", b"ab"]),
    ("truncate extends with zeros", [(W, 0, b"ab", 0), (T, 0, b"", 5)], [b"ab", b"ab\0\0\0"]),
    ("truncate to zero keeps the chunk", [(W, 0, b"ab", 0), (T, 0, b"", 0)], [b"ab", b""]),
    ("truncate creates", [(T, 0, b"", 3)], [b"\0\0\0"]),
    ("replace", [(W, 0, b"abcdef", 0), (R, 0, b"XY", 0)], [b"abcdef", b"XY"]),
    ("replace with nothing", [(W, 0, b"abc", 0), (R, 0, b"", 0)], [b"abc", b""]),
    ("remove", [(W, 0, b"abc", 0), (X, 0, b"", 0)], [b"abc", None]),
    ("remove a missing chunk", [(X, 0, b"", 0)], [None]),
    ("write after remove", [(W, 0, b"abc", 0), (X, 0, b"", 0), (W, 1, b"Q", 0)],
     [b"abc", None, b"\0Q"]),
]


@pytest.mark.parametrize("updates,expected", [s[1:] for s in SEQUENCES], ids=[s[0] for s in SEQUENCES])
def test_update_sequences(store, updates, expected) -> None:
    for (kind, offset, data, length), want in zip(updates, expected, strict=True):
        meta = apply(store, CID, kind, offset, data, length)
        assert content(store) == want
        current = store.meta(CID)
        assert current.exists == (want is not None) and current.pending_version is None
        if want is not None:
            assert meta == current
            assert (current.length, current.crc32c) == (len(want), crc32c.crc32c(want))
            assert store.verify(CID)
    assert pending_files(store) == []


def test_versions_count_commits(store) -> None:
    for version in (1, 2, 3):
        meta = apply(store, CID, W, version, b"x")
        assert meta.commit_version == version and meta.chain_version == 1


def test_partial_reads_are_short_at_the_end(store) -> None:
    apply(store, CID, W, 0, b"0123456789")
    cases = [(0, 4, b"0123"), (3, 4, b"3456"), (8, 10, b"89"), (10, 5, b""), (40, 5, b""), (2, 0, b"")]
    for offset, length, want in cases:
        data, meta = store.read(CID, offset, length)
        assert data == want and meta.exists and meta.length == 10


def test_missing_chunk_reads_empty(store) -> None:
    data, meta = store.read(ChunkId(9, 9), 0, 10)
    assert data == b"" and not meta.exists and meta.commit_version == 0


def test_read_into_a_buffer(store) -> None:
    apply(store, CID, W, 0, b"0123456789")
    buf = bytearray(6)
    n, meta = store.read_into(CID, 7, buf)
    assert (n, bytes(buf[:n]), meta.length) == (3, b"789", 10)
    assert store.read_into(ChunkId(9, 9), 0, buf)[0] == 0


def test_pending_version_invisible_until_commit(store) -> None:
    apply(store, CID, W, 0, b"old!")
    info = apply(store, CID, W, 0, b"NEW", commit=False)
    assert (info.update_version, info.commit_version, info.length) == (2, 1, 4)
    assert info.crc32c == crc32c.crc32c(b"NEW!")
    data, meta = store.read(CID, 0, CS)
    assert data == b"old!" and meta.commit_version == 1 and meta.pending_version == 2
    # The pending bytes are readable by version (CRAQ: the tail committed them).
    data, meta = store.read(CID, 0, CS, version=2)
    assert data == b"NEW!" and meta.commit_version == 2 and meta.crc32c == info.crc32c
    assert store.read(CID, 0, CS, version=1)[0] == b"old!"
    with pytest.raises(e.ChunkNotCommitted):
        store.read(CID, 0, CS, version=3)
    store.commit(CID, 2)
    assert content(store) == b"NEW!"
    assert store.read(CID, 0, CS, version=2)[0] == b"NEW!"


def test_abort_keeps_the_committed_version(store) -> None:
    apply(store, CID, W, 0, b"keep")
    apply(store, CID, R, 0, b"drop me", commit=False)
    store.abort(CID, 2)
    assert content(store) == b"keep" and store.meta(CID).pending_version is None
    assert pending_files(store) == []
    store.abort(CID, 2)  # idempotent
    store.abort(CID, 7)  # not the pending version: no-op
    assert apply(store, CID, W, 4, b"!").commit_version == 2


def test_abort_of_a_new_chunk_leaves_nothing(store) -> None:
    apply(store, CID, W, 0, b"new", commit=False)
    store.abort(CID, 1)
    assert not store.meta(CID).exists and list(store.list_chunks(include_pending=True)) == []


def test_retried_prepare_and_commit_are_idempotent(store) -> None:
    store.prepare(CID, W, 0, b"abc", 0, 1, 1, CS)
    store.prepare(CID, W, 0, b"abc", 0, 1, 1, CS)  # the predecessor retried
    first = store.commit(CID, 1)
    assert store.commit(CID, 1) == first  # a retried commit
    assert content(store) == b"abc" and pending_files(store) == []


def test_a_new_pending_version_replaces_the_old(store) -> None:
    apply(store, CID, W, 0, b"base")
    store.prepare(CID, W, 0, b"one", 0, 2, 1, CS)
    store.prepare(CID, R, 0, b"sync", 0, 9, 2, CS)  # a resync overrides it
    assert len(pending_files(store)) == 1
    meta = store.commit(CID, 9)
    assert (meta.commit_version, meta.chain_version) == (9, 2) and content(store) == b"sync"
    with pytest.raises(e.FailedPrecondition):
        store.commit(CID, 10)


def test_remove_pending_then_commit(store) -> None:
    apply(store, CID, W, 0, b"abc")
    apply(store, CID, X, commit=False)
    assert content(store) == b"abc"  # still readable until commit
    meta = store.commit(CID, 2)
    assert not meta.exists and meta.commit_version == 2
    assert content(store) is None and store.stats().chunks == 0


CHECKS = [
    ("write past the chunk", dict(kind=W, offset=CS - 2, data=b"abc"), e.InvalidArgument),
    ("write at the chunk size", dict(kind=W, offset=CS, data=b"a"), e.InvalidArgument),
    ("negative offset", dict(kind=W, offset=-1, data=b"a"), e.InvalidArgument),
    ("truncate past the chunk", dict(kind=T, length=CS + 1), e.InvalidArgument),
    ("replace past the chunk", dict(kind=R, data=b"x" * (CS + 1)), e.InvalidArgument),
    ("truncate with data", dict(kind=T, data=b"x", length=1), e.InvalidArgument),
    ("unknown kind", dict(kind=9), e.InvalidArgument),
    ("version 0", dict(kind=W, data=b"a", update_version=0), e.InvalidArgument),
    ("zero chunk size", dict(kind=W, data=b"a", chunk_size=0), e.InvalidArgument),
    ("crc mismatch", dict(kind=W, data=b"abc", data_crc32c=crc32c.crc32c(b"abd")), e.ChecksumMismatch),
]


@pytest.mark.parametrize("kwargs,exc", [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS])
def test_bad_updates_are_refused_with_nothing_written(store, kwargs, exc) -> None:
    apply(store, CID, W, 0, b"committed")
    args = dict(offset=0, data=b"", length=0, update_version=2, chain_version=1, chunk_size=CS)
    args.update(kwargs)
    kind = args.pop("kind")
    with pytest.raises(exc):
        store.prepare(CID, kind, **args)
    meta = store.meta(CID)
    assert meta.pending_version is None and meta.commit_version == 1
    assert content(store) == b"committed" and pending_files(store) == []


def test_bad_chunk_ids_and_ranges(store) -> None:
    with pytest.raises(e.InvalidArgument):
        store.meta(ChunkId(-1, 0))
    with pytest.raises(e.InvalidArgument):
        store.read(ChunkId(1, 2**32), 0, 1)
    with pytest.raises(e.InvalidArgument):
        store.read(CID, -1, 1)


def test_corrupt_chunk_file_is_detected(store) -> None:
    apply(store, CID, W, 0, b"precious")
    with open(store.paths.chunk(CID), "r+b") as f:
        f.write(b"X")
    assert not store.verify(CID)
    with pytest.raises(e.ChecksumMismatch):
        store.read(CID, 0, CS)
    assert store.read(CID, 1, 3)[0] == b"rec"  # partial reads are the client's to check


def test_list_last_chunk_and_remove_inode(store) -> None:
    for inode, index, data in [(7, 0, b"a"), (7, 5, b"bb"), (7, 2, b"ccc"), (8, 0, b"d"), (6, 1, b"e")]:
        apply(store, ChunkId(inode, index), W, 0, data)
    apply(store, ChunkId(7, 9), W, 0, b"pending only", commit=False)
    assert [m.chunk_id for m in store.list_chunks(7)] == [(7, 0), (7, 2), (7, 5)]
    assert [m.chunk_id for m in store.list_chunks(7, include_pending=True)] == [(7, 0), (7, 2), (7, 5), (7, 9)]
    assert [m.chunk_id for m in store.list_chunks()] == [(6, 1), (7, 0), (7, 2), (7, 5), (8, 0)]
    last = store.last_chunk(7)
    assert last is not None and last.chunk_id == (7, 5) and last.length == 2  # not the pending one
    assert store.last_chunk(5) is None
    stats = store.stats()
    assert (stats.chunks, stats.bytes, stats.pending) == (5, 8, 1)
    assert stats.capacity_bytes >= stats.free_bytes > 0

    assert store.remove_inode(7) == 3
    assert list(store.list_chunks(7, include_pending=True)) == [] and store.last_chunk(7) is None
    assert [m.chunk_id for m in store.list_chunks()] == [(6, 1), (8, 0)]
    assert store.remove_inode(7) == 0
    assert (store.stats().chunks, store.stats().bytes, store.stats().pending) == (2, 2, 0)
    assert pending_files(store) == []


def test_last_chunk_at_the_highest_index(store) -> None:
    apply(store, ChunkId(3, 2**32 - 1), W, 0, b"z")
    apply(store, ChunkId(4, 0), W, 0, b"y")
    apply(store, ChunkId(2**64 - 1, 1), W, 0, b"x")
    assert store.last_chunk(3).chunk_id == (3, 2**32 - 1)
    assert store.last_chunk(2**64 - 1).chunk_id == (2**64 - 1, 1)


def test_listing_spans_many_batches(store) -> None:
    for index in range(1100):
        store.prepare(ChunkId(1, index), W, 0, b"", 0, 1, 1, CS)  # pending only: cheap
    assert len(list(store.list_chunks(1, include_pending=True))) == 1100
    assert store.remove_inode(1) == 0 and store.stats().pending == 0


def test_a_target_opens_once(tmp_path) -> None:
    with ChunkStore(tmp_path / "t"), pytest.raises(e.Busy):
        ChunkStore(tmp_path / "t")
    ChunkStore(tmp_path / "t").close()  # free again once closed


def test_threads_on_different_chunks(tmp_path) -> None:
    errors: list[BaseException] = []
    with ChunkStore(tmp_path / "t") as store:
        def worker(index: int) -> None:
            try:
                cid = ChunkId(index, index)
                expected = bytearray()
                for i in range(10):
                    piece = bytes([65 + index]) * (i + 1)
                    apply(store, cid, W, len(expected), piece)
                    expected += piece
                    assert content(store, cid) == expected
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert store.stats().chunks == 6


def test_reads_race_commits_of_the_same_chunk(tmp_path) -> None:
    # Every version is one repeated byte; a read mixing metadata of one version
    # with the file of another would fail the CRC check or show mixed bytes.
    stop = threading.Event()
    bad: list[object] = []
    with ChunkStore(tmp_path / "t") as store:
        apply(store, CID, R, 0, b"\x01" * CS)

        def reader() -> None:
            while not stop.is_set():
                try:
                    data, meta = store.read(CID, 0, CS)
                except e.ChunkNotCommitted:
                    continue
                except BaseException as exc:  # noqa: BLE001
                    bad.append(exc)
                    return
                if data != bytes([meta.commit_version % 256]) * CS:
                    bad.append((meta, data[:4]))

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for version in range(2, 40):
            apply(store, CID, R, 0, bytes([version]) * CS)
        stop.set()
        for t in threads:
            t.join()
    assert bad == []


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_read_many_answers_each_read_as_read_does(store) -> None:
    # read_many (a batched read's pieces in one call) against `read` of each piece alone,
    # over more reads than one advise window, every descriptor closed afterwards.
    a, corrupt, dirty = ChunkId(1, 0), ChunkId(2, 0), ChunkId(3, 7)
    apply(store, a, W, 0, b"0123456789")
    apply(store, corrupt, W, 0, b"precious")
    with open(store.paths.chunk(corrupt), "r+b") as f:
        f.write(b"X")
    apply(store, dirty, W, 0, b"old")
    apply(store, dirty, W, 0, b"new", commit=False)
    rows = [
        (a, 0, CS),  # the whole chunk: checked against its CRC32C
        (a, 3, 4),
        (a, 8, 10),  # short at the end
        (a, 10, 5),  # at the end: empty
        (ChunkId(9, 9), 0, 5),  # no such chunk: empty, exists False
        (corrupt, 0, CS),  # fails its CRC32C, alone
        (corrupt, 1, 3),  # a part is the client's to check
        (dirty, 0, 3),  # the committed bytes, the pending version in the metadata
        (a, -1, 1),  # a bad range, alone
        (ChunkId(1, 2**32), 0, 1),  # a bad chunk id, alone
    ] * 8
    before = _open_fds()
    got = store.read_many(rows)
    assert _open_fds() == before
    assert len(got) == len(rows) > 64
    for row, result in zip(rows, got, strict=True):
        try:
            expected: object = store.read(*row)
        except e.EmberError as exc:
            assert type(result) is type(exc), (row, result)
        else:
            assert result == expected, row
    assert got[7][1].pending_version == 2 and got[7][0] == b"old"


def test_read_many_races_commits_of_the_same_chunk(tmp_path) -> None:
    # As test_reads_race_commits_of_the_same_chunk, through read_many: each read's bytes
    # belong to the version its metadata names, whatever commits in between.
    stop = threading.Event()
    bad: list[object] = []
    with ChunkStore(tmp_path / "t") as store:
        apply(store, CID, R, 0, b"\x01" * CS)

        def reader() -> None:
            while not stop.is_set():
                for result in store.read_many([(CID, 0, CS), (CID, 5, 9)] * 4):
                    if isinstance(result, e.ChunkNotCommitted):
                        continue
                    if isinstance(result, BaseException):
                        bad.append(result)
                        return
                    data, meta = result
                    if data != bytes([meta.commit_version % 256]) * len(data):
                        bad.append((meta, data[:4]))

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for version in range(2, 40):
            apply(store, CID, R, 0, bytes([version]) * CS)
        stop.set()
        for t in threads:
            t.join()
    assert bad == []
