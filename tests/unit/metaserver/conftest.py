"""Fixtures for the metaserver unit tests: a real LMDB store in tmp_path (no mocks).

The suite runs with --import-mode=importlib, so test modules cannot import helpers
from a sibling module: helpers reach them as fixtures.

    config       MetaConfig in tmp_path (1 MiB chunks, stripe 2)
    store        an open MetaStore on it
    ns           `Ns` as root over `store`: blocking calls by path, through the writer
    make_ns      Ns(store, caller) factory; `ns.user(uid, gid, groups)` switches caller
    fixed_chains an allocator handing out chains 1..stripe (exercises gc)
    memory_etcd  MemoryEtcd factory: an in-memory model of etcd's revisions, ranges and
                 Txn compares, for the etcd engine's pure logic (the engine's tests
                 against real etcd are in tests/integration/etcd/)
"""

from __future__ import annotations

import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from emberfs.common.paths import split_path
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.ops import (
    create, link, listdir, mkdir, remove, rename, session, stat, statfs, symlink, truncate,
)
from emberfs.metaserver.ops.perm import ROOT, Caller
from emberfs.metaserver.ops.setattr import set_attr
from emberfs.metaserver.etcdkv.adapter import ClientEtcd
from emberfs.metaserver.etcdkv.client import EtcdClient
from emberfs.metaserver.etcdkv.store import EtcdStore
from emberfs.metaserver.store import MetaStore
from emberfs.metaserver.txn import MetaTxn
from emberfs.proto import meta_pb2

NON_DIRECTORY = meta_pb2.NON_DIRECTORY


class Ns:
    """Run operations through the store (writes via the writer thread) as one caller."""

    def __init__(self, store: MetaStore, caller: Caller = ROOT) -> None:
        self.store = store
        self.caller = caller

    def user(self, uid: int, gid: int | None = None, groups: tuple[int, ...] = ()) -> Ns:
        return Ns(self.store, Caller(uid, uid if gid is None else gid, frozenset(groups)))

    def _w(self, fn: Callable[[MetaTxn], Any]) -> Any:
        return self.store.write_sync(fn)

    def _r(self, fn: Callable[[MetaTxn], Any]) -> Any:
        return self.store.read(fn)

    def mkdir(self, path: str, mode: int = 0o755, **kw: Any) -> meta_pb2.Inode:
        return self._w(lambda tx: mkdir.mkdir(tx, self.caller, split_path(path), mode=mode, **kw)).inode

    def create(self, path: str, mode: int = 0o644, **kw: Any) -> meta_pb2.CreateResponse:
        return self._w(lambda tx: create.create(tx, self.caller, split_path(path), mode=mode, **kw))

    def touch(self, path: str, mode: int = 0o644) -> meta_pb2.Inode:
        return self.create(path, mode, exclusive=True).inode

    def remove(self, path: str, kind: int = NON_DIRECTORY) -> int:
        return self._w(lambda tx: remove.remove(tx, self.caller, split_path(path), kind=kind)).removed

    def rename(self, src: str, dst: str) -> meta_pb2.Inode:
        return self._w(lambda tx: rename.rename(tx, self.caller, split_path(src), split_path(dst))).inode

    def link(self, src: str, dst: str) -> meta_pb2.Inode:
        return self._w(lambda tx: link.link(tx, self.caller, split_path(src), split_path(dst))).inode

    def symlink(self, target: str, path: str) -> meta_pb2.Inode:
        return self._w(lambda tx: symlink.symlink(tx, self.caller, target, split_path(path))).inode

    def readlink(self, path: str) -> str:
        return self._r(lambda tx: symlink.readlink(tx, self.caller, split_path(path))).target

    def stat(self, path: str, follow: bool = True) -> meta_pb2.Inode:
        return self._r(lambda tx: stat.stat(tx, self.caller, split_path(path), follow_symlinks=follow)).inode

    def exists(self, path: str) -> bool:
        try:
            self.stat(path, follow=False)
        except Exception:
            return False
        return True

    def listdir(self, path: str, **kw: Any) -> meta_pb2.ListResponse:
        return self._r(lambda tx: listdir.listdir(tx, self.caller, split_path(path), **kw))

    def names(self, path: str) -> list[str]:
        return [e.name for e in self.listdir(path, limit=10_000).entries]

    def setattr(self, path: str, **kw: Any) -> meta_pb2.Inode:
        return self._w(lambda tx: set_attr(tx, self.caller, split_path(path), **kw)).inode

    def truncate(self, path: str, length: int) -> meta_pb2.Inode:
        return self._w(lambda tx: truncate.truncate(tx, self.caller, split_path(path), length)).inode

    def open(self, path: str, *, write: bool = False, truncate: bool = False) -> meta_pb2.OpenResponse:
        fn = lambda tx: session.open_file(tx, self.caller, split_path(path), write=write, truncate=truncate)  # noqa: E731
        return self._w(fn) if (write or truncate) else self._r(fn)

    def close(self, session_id: int, inode_id: int, length: int, wrote: bool = True) -> meta_pb2.Inode:
        return self._w(
            lambda tx: session.close(tx, self.caller, session_id, inode_id, length=length, wrote=wrote)
        ).inode

    def sync(self, session_id: int, inode_id: int, length: int, wrote: bool = True) -> meta_pb2.Inode:
        return self._w(
            lambda tx: session.sync(tx, self.caller, session_id, inode_id, length=length, wrote=wrote)
        ).inode

    def statfs(self) -> meta_pb2.StatFsResponse:
        return self._r(lambda tx: statfs.statfs(tx, self.caller))

    def sessions_of(self, inode_id: int) -> list[int]:
        return self._r(lambda tx: tx.sessions_of(inode_id))

    def gc(self) -> list[meta_pb2.Inode]:
        return self._r(lambda tx: list(tx.gc_records()))


class MemoryEtcd:
    """etcd's MVCC as the etcd engine sees it: every Txn makes one revision; ranges read
    any revision; compares on mod_revision and version, over a key or a range. `lose`:
    "before" drops the next commit and reports its outcome unknown, "after" applies it
    and then reports its outcome unknown."""

    def __init__(self) -> None:
        self.revision = 1
        self.history: dict[bytes, list[tuple[int, bytes | None, int]]] = {}  # (mod, value, version)
        self.lose: str | None = None
        self.commits = 0
        self.delay = 0.0  # seconds each range sleeps: lets racing threads interleave
        self.compacted = 0  # reads at an older revision fail as etcd's do after a compaction
        self._lock = threading.RLock()

    def _at(self, key: bytes, revision: int) -> tuple[int, bytes | None, int]:
        found = (0, None, 0)
        for entry in self.history.get(key, []):
            if entry[0] <= revision:
                found = entry
        return found

    def range(self, start: bytes, end: bytes | None, revision: int,
              limit: int) -> tuple[list[tuple[bytes, bytes, int]], bool, int]:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            return self._range(start, end, revision, limit)

    def get_many(self, keys: list[bytes], revision: int) -> tuple[list[tuple[bytes | None, int]], int]:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            at = revision or self.revision
            found = []
            for key in keys:
                rows, _, at = self._range(key, None, at, 1)
                found.append((rows[0][1], rows[0][2]) if rows else (None, 0))
            return found, at

    def _range(self, start: bytes, end: bytes | None, revision: int,
               limit: int) -> tuple[list[tuple[bytes, bytes, int]], bool, int]:
        at = revision or self.revision
        if at < self.compacted:
            from emberfs.metaserver.etcdkv.errors import RevisionCompacted

            raise RevisionCompacted("etcd: mvcc: required revision has been compacted (test)")
        keys = [start] if end is None else sorted(k for k in self.history if start <= k < end)
        rows = [(k, v, mod) for k in keys for mod, v, _ in [self._at(k, at)] if v is not None]
        more = bool(limit) and len(rows) > limit
        return (rows[:limit] if limit else rows), more, at

    def _holds(self, compare: Any) -> bool:
        live = [k for k in self.history if self._at(k, self.revision)[1] is not None]
        keys = [compare.key] if not compare.range_end else sorted(
            k for k in live if compare.key <= k < compare.range_end)
        values = []
        for key in keys or [compare.key]:
            mod, value, version = self._at(key, self.revision)
            values.append((mod if value is not None else 0) if compare.target == "mod" else
                          (version if value is not None else 0))
        if compare.op == "equal":
            return all(v == compare.value for v in values)
        return all(v < compare.value for v in values)

    def commit(self, compares: list[Any], ops: list[Any]) -> bool:
        with self._lock:
            return self._commit(compares, ops)

    def _commit(self, compares: list[Any], ops: list[Any]) -> bool:
        from emberfs.metaserver.etcdkv.errors import OutcomeUnknown

        lose, self.lose = self.lose, None
        if lose == "before":
            raise OutcomeUnknown("lost before it applied (test)")
        if not all(self._holds(c) for c in compares):
            return False
        self.revision += 1
        self.commits += 1
        for op in ops:
            kind = type(op).__name__
            if kind == "Put":
                _, value, version = self._at(op.key, self.revision)
                self.history.setdefault(op.key, []).append(
                    (self.revision, op.value, (version if value is not None else 0) + 1))
            elif kind == "Delete":
                if self._at(op.key, self.revision)[1] is not None:
                    self.history[op.key].append((self.revision, None, 0))
            else:  # DeleteRange
                for key in [k for k in self.history if op.start <= k < op.end]:
                    if self._at(key, self.revision)[1] is not None:
                        self.history[key].append((self.revision, None, 0))
        if lose == "after":
            raise OutcomeUnknown("applied, then lost (test)")
        return True

    def close(self) -> None:
        pass


class FixedChains:
    """An allocator that hands out chains 1..stripe, to exercise the gc path."""

    refresh_keys: tuple[tuple[str, bytes], ...] = ()

    def refresh(self, kv: Any) -> None:
        pass

    def pick(self, stripe: int, inode_id: int) -> list[int]:
        return list(range(1, stripe + 1))


@pytest.fixture
def config(tmp_path: pathlib.Path) -> MetaConfig:
    return MetaConfig(data_dir=str(tmp_path / "meta"), default_chunk_size=1 << 20, default_stripe=2)


@pytest.fixture(params=["lmdb", "etcd-model", "etcd"])
def store(request: pytest.FixtureRequest, config: MetaConfig) -> Iterator[Any]:
    """The namespace store on each engine: LMDB; the etcd engine over MemoryEtcd (its
    rules, fast); the etcd engine on a real etcd (tests/conftest.py's etcd1), under a
    key prefix of its own."""
    if request.param == "lmdb":
        with MetaStore(config) as opened:
            yield opened
        return
    if request.param == "etcd-model":
        with EtcdStore(config, MemoryEtcd(), max_ops=100_000) as opened:
            yield opened
        return
    etcd = request.getfixturevalue("etcd1")
    prefix = f"t/{uuid.uuid4().hex[:12]}/".encode()
    with EtcdStore(config, ClientEtcd(EtcdClient(etcd.endpoints, timeout=5.0)), root=prefix,
                   max_ops=etcd.max_txn_ops) as opened:
        yield opened


@pytest.fixture
def ns(store: MetaStore) -> Ns:
    return Ns(store)


@pytest.fixture
def make_ns() -> type[Ns]:
    return Ns


@pytest.fixture
def fixed_chains() -> FixedChains:
    return FixedChains()


@pytest.fixture
def memory_etcd() -> type[MemoryEtcd]:
    return MemoryEtcd
