"""A full LMDB map (issue 9, "Resource faults": the map filling up grows it or fails with
a clear error, never corrupts), on real LMDB environments.

- The metaserver's store starts from the smallest map its config allows and doubles it
  on MapFullError: every acknowledged op is there after a reopen, the namespace
  counters agree with the entries; at its cap the op that does not fit fails NoSpace
  alone, and leaves nothing behind. (The metaserver has no flag for its initial map
  size, so this runs at the store level.)
- A storage target's map does not grow: a prepare that meets a full map fails NoSpace
  before any chunk file is touched, nothing is committed, and the target stays
  readable and writable once records are removed. LMDB's own ENOSPC (py-lmdb's
  DiskError, when the data file cannot grow on a full disk) is NoSpace too.
- A commit that meets a full map is refused before its chunk file is replaced (the
  rename runs inside the record's transaction), and a target whose map is too full
  even for crash recovery grows it when it opens.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import crc32c
import lmdb
import pytest

from emberfs.common import errors as e
from emberfs.metaserver.config import MIN_MAP_SIZE, MetaConfig
from emberfs.metaserver.ops.create import create
from emberfs.metaserver.ops.mkdir import mkdir
from emberfs.metaserver.ops.perm import ROOT
from emberfs.metaserver.ops.statfs import statfs
from emberfs.metaserver.store import MetaStore
from emberfs.metaserver.txn import ROOT_ID
from emberfs.storage.chunkstore import ChunkStore
from emberfs.storage.oserrors import translated
from emberfs.storage.records import ChunkId, UpdateKind

CS = 64  # chunk size of the storage cases
TARGET_MAP = 96 * 1024  # a target map that holds a few hundred chunk records


# -- the metaserver's store --------------------------------------------------------------------


def _names(store: MetaStore, directory_id: int) -> set[str]:
    return store.read(lambda tx: {entry.name for entry in tx.entries(directory_id)})


def test_metaserver_map_grows_from_the_smallest_and_keeps_everything(tmp_path: Path) -> None:
    config = MetaConfig(data_dir=str(tmp_path / "m"), map_size=MIN_MAP_SIZE)
    names = [f"file-{i:05d}-{'x' * 40}" for i in range(3000)]

    async def fill(store: MetaStore) -> None:
        for start in range(0, len(names), 300):  # batches that run into the map mid-batch
            await asyncio.gather(*(store.write(lambda tx, n=n: create(tx, ROOT, ["d", n], mode=0o644))
                                   for n in names[start:start + 300]))

    with MetaStore(config) as store:
        store.write_sync(lambda tx: mkdir(tx, ROOT, ["d"], mode=0o755))
        asyncio.run(fill(store))
        assert store.stats["map_grows"] >= 3, store.stats
    with MetaStore(config) as store:  # reopened with the small configured map
        d = store.read(lambda tx: tx.lookup(ROOT_ID, "d")).child_id
        assert _names(store, d) == set(names)
        counts = store.read(lambda tx: statfs(tx, ROOT))
        assert (counts.files, counts.directories) == (len(names), 2)
        store.write_sync(lambda tx: create(tx, ROOT, ["d", "one more"], mode=0o644))


def test_metaserver_map_at_its_cap_fails_the_op_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    config = MetaConfig(data_dir=str(tmp_path / "m"), map_size=MIN_MAP_SIZE, max_map_size=4 * MIN_MAP_SIZE)
    done: list[str] = []
    with MetaStore(config) as store:
        with pytest.raises(e.NoSpace, match="metadata map is full at its cap"):
            for i in range(100_000):
                name = f"n{i:06d}-{'y' * 100}"
                store.write_sync(lambda tx, n=name: create(tx, ROOT, [n], mode=0o644))
                done.append(name)
        failed = f"n{len(done):06d}-{'y' * 100}"
        assert len(done) > 50 and store.map_size == config.max_map_size
        assert failed not in _names(store, ROOT_ID)
    with MetaStore(config) as store:
        assert _names(store, ROOT_ID) == set(done)
        assert store.read(lambda tx: statfs(tx, ROOT)).files == len(done)


# -- a storage target's map ----------------------------------------------------------------------


def _put(store: ChunkStore, chunk: ChunkId, data: bytes, version: int, *, commit: bool = True) -> None:
    store.prepare(chunk, UpdateKind.WRITE, 0, data, 0, version, 1, CS, data_crc32c=crc32c.crc32c(data))
    if commit:
        store.commit(chunk, version)


def _fill_committed(store: ChunkStore) -> int:
    """Commit one-chunk files 1, 2, ... until the map refuses; how many were committed."""
    for n in range(100_000):
        try:
            _put(store, ChunkId(n + 1, 0), f"chunk {n + 1}".encode(), 1)
        except e.NoSpace as exc:
            assert "map is full" in exc.message and exc.errno == errno.ENOSPC
            return n
    raise AssertionError("the map never filled")


def test_a_full_target_map_refuses_the_prepare_and_commits_nothing(tmp_path: Path) -> None:
    with ChunkStore(tmp_path / "target", map_size=TARGET_MAP) as store:
        n = _fill_committed(store)
        refused = ChunkId(n + 1, 0)
        meta = store.meta(refused)
        assert not meta.exists and meta.pending_version is None  # no record, no pending version
        assert not any(os.path.exists(p) for p in (store.paths.chunk(refused), *store.paths.pending_files(refused, 1)))
        stats = store.stats()
        assert (stats.chunks, stats.bytes, stats.pending) == (n, sum(len(f"chunk {i}") for i in range(1, n + 1)), 0)
        for i in range(1, n + 1):
            assert store.read(ChunkId(i, 0), 0, CS)[0] == f"chunk {i}".encode() and store.verify(ChunkId(i, 0))
        # Overwrites reuse the pages they free: the full target still takes them.
        _put(store, ChunkId(1, 0), b"rewritten", 2)
        assert store.read(ChunkId(1, 0), 0, CS)[0] == b"rewritten"
        # Removing files makes room for new chunks.
        for i in range(2, n // 2):
            store.remove_inode(i)
        _put(store, refused, b"fits now", 1)
        assert store.read(refused, 0, CS)[0] == b"fits now"
    with ChunkStore(tmp_path / "target", map_size=TARGET_MAP) as store:
        assert store.read(refused, 0, CS)[0] == b"fits now"
        assert store.stats().chunks == n - (n // 2 - 2) + 1


def test_lmdb_meeting_a_full_disk_is_nospace() -> None:
    """py-lmdb raises DiskError for ENOSPC from mdb_txn_commit (seen on a full tmpfs):
    the target keeps serving, like for any full disk, instead of answering Internal."""
    with pytest.raises(e.NoSpace, match="no space left"), translated("commit"):
        raise lmdb.DiskError("mdb_txn_commit: No space left on device", errno.ENOSPC)


def _pending_overwrite_then_full(store: ChunkStore) -> ChunkId:
    """Chunk (1, 0) committed at v1, its v2 prepared, then the map filled with pending
    versions of other chunks (in-flight writes) so that v2's commit cannot fit."""
    chunk = ChunkId(1, 0)
    _put(store, chunk, b"version one", 1)
    _put(store, chunk, b"version two, longer", 2, commit=False)
    with pytest.raises(e.NoSpace):
        for i in range(100_000):
            _put(store, ChunkId(100 + i, 0), b"p", 1, commit=False)
    return chunk


def test_a_commit_that_meets_a_full_map_leaves_the_committed_version_readable(tmp_path: Path) -> None:
    with ChunkStore(tmp_path / "target", map_size=TARGET_MAP) as store:
        chunk = _pending_overwrite_then_full(store)
        with pytest.raises(e.NoSpace):
            store.commit(chunk, 2)
        data, meta = store.read(chunk, 0, CS)  # today: ChecksumMismatch, and a partial read gives v2's bytes as v1
        assert (data, meta.commit_version) in ((b"version one", 1), (b"version two, longer", 2))
        assert store.verify(chunk)


def test_a_target_with_a_full_map_opens_again(tmp_path: Path) -> None:
    with ChunkStore(tmp_path / "target", map_size=TARGET_MAP) as store:
        chunk = _pending_overwrite_then_full(store)
        with pytest.raises(e.NoSpace):
            store.commit(chunk, 2)
    with ChunkStore(tmp_path / "target", map_size=TARGET_MAP) as store:  # recovery grows the map
        data, meta = store.read(chunk, 0, CS)
        assert (data, meta.commit_version) == (b"version one", 1)  # the refused commit never happened
        assert store.verify(chunk) and store.meta(chunk).pending_version == 2  # whole: kept pending
