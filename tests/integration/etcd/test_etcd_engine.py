"""The etcd engine (EtcdStore over adapter.ClientEtcd) on a real one-member etcd: namespace
operations, a directory's emptiness check racing an insert into it (create vs rmdir: one
of the two serial orders, never both), and mkdirs from several threads at once. Each
test has its own key root, so it starts from an empty namespace."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emberfs.common import errors as e
from emberfs.common.paths import split_path
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.etcdkv.adapter import ClientEtcd
from emberfs.metaserver.etcdkv.client import EtcdClient
from emberfs.metaserver.etcdkv.launch import EtcdCluster
from emberfs.metaserver.etcdkv.store import EtcdStore
from emberfs.metaserver.ops import create, listdir, mkdir, remove, stat
from emberfs.metaserver.ops.perm import ROOT
from emberfs.metaserver.txn import MetaTxn
from emberfs.proto import meta_pb2


@pytest.fixture
def store(etcd1: EtcdCluster, keyspace: bytes, tmp_path: Path) -> Iterator[EtcdStore]:
    config = MetaConfig(data_dir=str(tmp_path / "meta"), default_chunk_size=1 << 20, default_stripe=2)
    with EtcdStore(config, ClientEtcd(EtcdClient(etcd1.endpoints, timeout=5.0)), root=keyspace) as opened:
        yield opened


def _w(store: EtcdStore, fn: Callable[[MetaTxn], Any]) -> Any:
    return store.write_sync(fn)


def mkdir_(store: EtcdStore, path: str) -> meta_pb2.Inode:
    return _w(store, lambda tx: mkdir.mkdir(tx, ROOT, split_path(path), mode=0o755)).inode


def touch(store: EtcdStore, path: str) -> meta_pb2.Inode:
    return _w(store, lambda tx: create.create(tx, ROOT, split_path(path), mode=0o644, exclusive=True)).inode


def rm(store: EtcdStore, path: str, kind: int) -> int:
    return _w(store, lambda tx: remove.remove(tx, ROOT, split_path(path), kind=kind)).removed


def names(store: EtcdStore, path: str) -> list[str]:
    reply = store.read(lambda tx: listdir.listdir(tx, ROOT, split_path(path), limit=10_000))
    return [entry.name for entry in reply.entries]


def exists(store: EtcdStore, path: str) -> bool:
    try:
        store.read(lambda tx: stat.stat(tx, ROOT, split_path(path), follow_symlinks=False))
    except e.NotFound:
        return False
    return True


def test_namespace_operations(store: EtcdStore) -> None:
    made = mkdir_(store, "/d")
    touch(store, "/d/f")
    touch(store, "/d/g")
    with pytest.raises(e.AlreadyExists):
        touch(store, "/d/f")
    assert names(store, "/d") == ["f", "g"]
    with pytest.raises(e.DirectoryNotEmpty):
        rm(store, "/d", meta_pb2.EMPTY_DIRECTORY)
    rm(store, "/d/f", meta_pb2.NON_DIRECTORY)
    rm(store, "/d/g", meta_pb2.NON_DIRECTORY)
    rm(store, "/d", meta_pb2.EMPTY_DIRECTORY)
    assert not exists(store, "/d") and names(store, "/") == []
    assert made.inode_id > 1


def _race(store: EtcdStore, directory: str) -> dict[str, BaseException | None]:
    """touch directory/f and rmdir directory from two threads released together; what
    each raised (None: it succeeded)."""
    barrier = threading.Barrier(2, timeout=30)
    outcome: dict[str, BaseException | None] = {}

    def run(name: str, fn: Callable[[], object]) -> None:
        barrier.wait()
        try:
            fn()
            outcome[name] = None
        except BaseException as exc:  # the other order's refusal, checked by the caller
            outcome[name] = exc

    racers = [
        threading.Thread(target=run, args=("create", lambda: touch(store, f"{directory}/f"))),
        threading.Thread(target=run, args=("rmdir", lambda: rm(store, directory, meta_pb2.EMPTY_DIRECTORY))),
    ]
    for t in racers:
        t.start()
    for t in racers:
        t.join(60)
    return outcome


def test_create_racing_rmdir_ends_in_one_serial_order(store: EtcdStore) -> None:
    rounds = 12
    orders = {"create first": 0, "rmdir first": 0}
    for i in range(rounds):
        directory = f"/r{i}"
        mkdir_(store, directory)
        outcome = _race(store, directory)
        created, removed = outcome["create"], outcome["rmdir"]
        if created is None:  # create serialized first: rmdir saw an entry
            assert isinstance(removed, e.DirectoryNotEmpty), outcome
            assert exists(store, f"{directory}/f") and names(store, directory) == ["f"]
            orders["create first"] += 1
        else:  # rmdir serialized first: the create found no parent
            assert removed is None and isinstance(created, e.NotFound), outcome
            assert not exists(store, directory)
            orders["rmdir first"] += 1
    print(f"\ncreate vs rmdir on real etcd, {rounds} rounds: {orders}, engine stats {store.stats}")


def test_mkdirs_from_threads_all_land(store: EtcdStore) -> None:
    mkdir_(store, "/p")
    threads, each = 6, 8
    failed: list[BaseException] = []

    def work(slot: int) -> None:
        try:
            for n in range(each):
                mkdir_(store, f"/p/t{slot}-{n}")
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not failed, failed
    assert len(names(store, "/p")) == threads * each
    parent = store.read(lambda tx: stat.stat(tx, ROOT, split_path("/p"), follow_symlinks=False)).inode
    assert parent.nlink == 2 + threads * each  # every subdirectory counted once, none lost to a race
