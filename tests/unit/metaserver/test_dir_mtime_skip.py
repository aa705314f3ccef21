"""dir_mtime_skip_s: a directory inode is not rewritten for a change that would only move
its times forward by less than the setting (the etcd engine's default: creates racing in
one directory then rarely conflict on it)."""

from __future__ import annotations

import pathlib

from emberfs.common.paths import split_path
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.ops import create, mkdir, remove
from emberfs.metaserver.ops.perm import ROOT
from emberfs.metaserver.store import MetaStore
from emberfs.proto import meta_pb2

S = 10**9


def test_a_directory_mtime_moves_at_most_once_per_skip(tmp_path: pathlib.Path) -> None:
    now = [100 * S]
    config = MetaConfig(data_dir=str(tmp_path / "m"), dir_mtime_skip_s=1.0)
    with MetaStore(config, clock=lambda: now[0]) as store:
        def at(t: float, fn: object) -> meta_pb2.Inode:
            now[0] = int((100 + t) * S)
            store.write_sync(fn)  # type: ignore[arg-type]
            return store.read(lambda tx: tx.inode(tx.lookup(1, "d").child_id))  # type: ignore[union-attr]

        d = at(0, lambda tx: mkdir.mkdir(tx, ROOT, split_path("/d"), mode=0o755))
        assert d.mtime_ns == 100 * S
        assert at(0.5, lambda tx: create.create(tx, ROOT, split_path("/d/f"), mode=0o644)).mtime_ns == 100 * S
        unlinked = at(0.9, lambda tx: remove.remove(tx, ROOT, split_path("/d/f"), kind=meta_pb2.NON_DIRECTORY))
        assert unlinked.mtime_ns == 100 * S
        assert at(1.5, lambda tx: create.create(tx, ROOT, split_path("/d/g"), mode=0o644)).mtime_ns == int(101.5 * S)
        # nlink changes always store the directory, times included
        sub = at(1.6, lambda tx: mkdir.mkdir(tx, ROOT, split_path("/d/s"), mode=0o755))
        assert (sub.mtime_ns, sub.nlink) == (int(101.6 * S), 3)


def test_the_default_is_exact_on_lmdb_and_skips_on_etcd() -> None:
    assert MetaConfig(data_dir="/d").dir_mtime_skip_ns == 0
    assert MetaConfig(data_dir="", engine="etcd", etcd_endpoints=("127.0.0.1:2379",)).dir_mtime_skip_ns == S // 10
