"""Crash recovery and I/O failures of the chunk store."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from emberfs.common import errors as e
from emberfs.storage import chunkfiles
from emberfs.storage.chunkstore import ChunkStore
from emberfs.storage.records import ChunkId, UpdateKind
from emberfs.storage.oserrors import DiskFailure

W, R, X = UpdateKind.WRITE, UpdateKind.REPLACE, UpdateKind.REMOVE
CS = 64
CID = ChunkId(42, 7)


def stray_files(store: ChunkStore) -> list[str]:
    return sorted(f for _, _, fs in os.walk(store.paths.root) for f in fs if ".pending" in f)


def crashed_store(tmp_path, *, committed: bytes | None, pending, kind=W) -> str:
    """A target left as a crash leaves it: `committed` at version 1 (if given) and a
    pending version 2 of `kind` with `pending` data, never committed."""
    root = tmp_path / "target"
    with ChunkStore(root) as store:
        if committed is not None:
            store.prepare(CID, R, 0, committed, 0, 1, 1, CS)
            store.commit(CID, 1)
        version = 2 if committed is not None else 1
        store.prepare(CID, kind, 0, pending, 0, version, 1, CS)
    return str(root)


def corrupt_pending(root: str, version: int) -> None:
    """Cut the pending file short, as a crash before its pages reached the disk may."""
    path = chunkfiles.ChunkPaths(root).pending(CID, version)
    with open(path, "r+b") as f:
        f.truncate(1)


def test_whole_pending_version_is_kept(tmp_path) -> None:
    # A former successor may have committed (and served) this version: keep it pending.
    root = crashed_store(tmp_path, committed=b"committed", pending=b"PENDING")
    with ChunkStore(root) as store:
        assert store.recovered.kept_pending == (CID,) and store.recovered.rolled_forward == ()
        data, meta = store.read(CID, 0, CS)
        assert data == b"committed" and meta.commit_version == 1 and meta.pending_version == 2
        assert store.read(CID, 0, CS, version=2)[0] == b"PENDINGed"  # a WRITE over "committed"
        assert store.commit(CID, 2).commit_version == 2
        assert store.read(CID, 0, CS)[0] == b"PENDINGed" and stray_files(store) == []


def test_damaged_pending_version_is_discarded(tmp_path) -> None:
    root = crashed_store(tmp_path, committed=b"committed", pending=b"PENDING")
    corrupt_pending(root, 2)
    with ChunkStore(root) as store:
        assert store.recovered.discarded == (CID,) and store.recovered.kept_pending == ()
        data, meta = store.read(CID, 0, CS)
        assert data == b"committed" and meta.commit_version == 1 and meta.pending_version is None
        assert stray_files(store) == [] and store.stats().pending == 0
        # The chain retries the update; it applies cleanly.
        store.prepare(CID, W, 0, b"PENDING", 0, 2, 1, CS)
        assert store.commit(CID, 2).commit_version == 2


def test_damaged_first_version_is_discarded_entirely(tmp_path) -> None:
    root = crashed_store(tmp_path, committed=None, pending=b"new")
    corrupt_pending(root, 1)
    with ChunkStore(root) as store:
        assert not store.meta(CID).exists
        assert list(store.list_chunks(include_pending=True)) == []
        assert stray_files(store) == []


def test_half_built_pending_file_is_removed(tmp_path) -> None:
    root = crashed_store(tmp_path, committed=b"base", pending=b"x")
    partial = chunkfiles.ChunkPaths(root).partial(CID, 2)
    with open(partial, "wb") as f:
        f.write(b"half")
    with ChunkStore(root) as store:
        assert store.read(CID, 0, CS)[0] == b"base"
        assert stray_files(store) == [os.path.basename(store.paths.pending(CID, 2))]


def test_commit_that_reached_the_file_is_rolled_forward(tmp_path) -> None:
    root = crashed_store(tmp_path, committed=b"old", pending=b"new!")
    paths = chunkfiles.ChunkPaths(root)
    # Simulate a crash between os.replace and the metadata transaction.
    os.replace(paths.pending(CID, 2), paths.chunk(CID))
    # A store opened now must not serve "new!" as version 1 (with the CRC of "old"):
    with ChunkStore(root) as store:
        assert store.recovered.rolled_forward == (CID,)
        data, meta = store.read(CID, 0, CS)
        assert data == b"new!" and meta.commit_version == 2 and store.verify(CID)
        assert store.stats().bytes == 4


def test_commit_of_a_new_chunk_that_reached_the_file_is_rolled_forward(tmp_path) -> None:
    root = crashed_store(tmp_path, committed=None, pending=b"fresh")
    paths = chunkfiles.ChunkPaths(root)
    os.replace(paths.pending(CID, 1), paths.chunk(CID))
    with ChunkStore(root) as store:
        data, meta = store.read(CID, 0, CS)
        assert data == b"fresh" and meta.commit_version == 1
        assert store.stats().chunks == 1


def test_pending_equal_to_committed_stays_pending(tmp_path) -> None:
    # Same bytes either way: the committed version stays, the chain settles the version.
    root = crashed_store(tmp_path, committed=b"same", pending=b"same", kind=R)
    with ChunkStore(root) as store:
        meta = store.meta(CID)
        assert (meta.commit_version, meta.pending_version) == (1, 2) and store.recovered.kept_pending == (CID,)


def test_remove_that_reached_the_file_is_finished(tmp_path) -> None:
    root = crashed_store(tmp_path, committed=b"doomed", pending=b"", kind=X)
    os.unlink(chunkfiles.ChunkPaths(root).chunk(CID))
    with ChunkStore(root) as store:
        assert store.recovered.rolled_forward == (CID,)
        meta = store.meta(CID)
        assert not meta.exists and meta.commit_version == 2 and store.stats().chunks == 0  # a tombstone


def test_remove_that_did_not_start_stays_pending(tmp_path) -> None:
    root = crashed_store(tmp_path, committed=b"kept", pending=b"", kind=X)
    with ChunkStore(root) as store:
        assert store.read(CID, 0, CS)[0] == b"kept" and store.meta(CID).pending_version == 2


def test_kill_9_during_a_write(tmp_path) -> None:
    # A real crash: a child process prepares and is killed before committing.
    root = tmp_path / "target"
    with ChunkStore(root) as store:
        store.prepare(CID, W, 0, b"durable", 0, 1, 1, CS)
        store.commit(CID, 1)
    script = textwrap.dedent(
        f"""
        import os, signal
        from emberfs.storage.chunkstore import ChunkStore
        from emberfs.storage.records import ChunkId, UpdateKind
        store = ChunkStore({str(root)!r})
        store.prepare(ChunkId(42, 7), UpdateKind.WRITE, 3, b"XXXX", 0, 2, 1, 64)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    with ChunkStore(root) as store:
        data, meta = store.read(CID, 0, CS)
        # The prepare finished before the kill: its whole pending version is kept.
        assert data == b"durable" and meta.commit_version == 1 and meta.pending_version == 2
        assert store.read(CID, 0, CS, version=2)[0] == b"dur" + b"XXXX"


@pytest.mark.parametrize("err,exc", [(errno.ENOSPC, e.NoSpace), (errno.EDQUOT, e.NoSpace),
                                     (errno.EIO, DiskFailure)])
def test_io_error_while_building_the_pending_version(tmp_path, monkeypatch, err, exc) -> None:
    with ChunkStore(tmp_path / "target") as store:
        store.prepare(CID, W, 0, b"committed", 0, 1, 1, CS)
        store.commit(CID, 1)
        real = chunkfiles.write_pending_file

        def failing(partial_path, final_path, committed_path, plan):
            with open(partial_path, "wb") as f:
                f.write(b"half a chunk")
            raise OSError(err, os.strerror(err))

        monkeypatch.setattr(chunkfiles, "write_pending_file", failing)
        with pytest.raises(exc):
            store.prepare(CID, W, 2, b"new bytes", 0, 2, 1, CS)
        monkeypatch.setattr(chunkfiles, "write_pending_file", real)
        data, meta = store.read(CID, 0, CS)
        assert data == b"committed" and meta.commit_version == 1 and meta.pending_version is None
        assert stray_files(store) == []
        store.prepare(CID, W, 2, b"new bytes", 0, 2, 1, CS)  # works once space is back
        assert store.commit(CID, 2).length == 11


def test_lost_pending_file_fails_the_commit(tmp_path) -> None:
    with ChunkStore(tmp_path / "target") as store:
        store.prepare(CID, W, 0, b"abc", 0, 1, 1, CS)
        os.unlink(store.paths.pending(CID, 1))
        with pytest.raises(e.Internal):
            store.commit(CID, 1)
        assert not store.meta(CID).exists


def test_full_metadata_map_is_no_space(tmp_path) -> None:
    with ChunkStore(tmp_path / "target", map_size=64 * 1024) as store, pytest.raises(e.NoSpace):
        for index in range(10_000):
            store.prepare(ChunkId(1, index), W, 0, b"", 0, 1, 1, CS)
