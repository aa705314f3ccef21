"""Idempotency: a retried request with the same (client_id, request_id) runs once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from emberfs.common import errors as e
from emberfs.common.paths import split_path
from emberfs.metaserver import idem
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.ops import create, link, mkdir, remove, rename, symlink
from emberfs.metaserver.ops.perm import ROOT
from emberfs.metaserver.store import MetaStore
from emberfs.metaserver.txn import MetaTxn
from emberfs.proto import meta_pb2

P = split_path


def _once(store: MetaStore, client: str, rid: int, method: str, reply: type, op: Callable[[MetaTxn], Any]) -> Any:
    return store.write_sync(lambda tx: idem.once(tx, client, rid, method, reply, lambda: op(tx)))


CASES = [
    ("Create", meta_pb2.CreateResponse, lambda tx: create.create(tx, ROOT, P("/new"), mode=0o644, exclusive=True)),
    ("Mkdir", meta_pb2.MkdirResponse, lambda tx: mkdir.mkdir(tx, ROOT, P("/newdir"), mode=0o755)),
    ("Remove", meta_pb2.RemoveResponse, lambda tx: remove.remove(tx, ROOT, P("/f"), kind=meta_pb2.NON_DIRECTORY)),
    ("Rename", meta_pb2.RenameResponse, lambda tx: rename.rename(tx, ROOT, P("/f"), P("/g"))),
    ("Link", meta_pb2.LinkResponse, lambda tx: link.link(tx, ROOT, P("/f"), P("/h"))),
    ("Symlink", meta_pb2.SymlinkResponse, lambda tx: symlink.symlink(tx, ROOT, "/f", P("/s"))),
]


@pytest.mark.parametrize(("method", "reply", "op"), CASES, ids=[c[0] for c in CASES])
def test_retry_gets_the_first_reply_and_no_second_effect(ns: Any, method: str, reply: type, op: Any) -> None:
    ns.touch("/f")

    def snapshot() -> tuple:
        return ns.names("/"), ns.statfs(), ns.stat("/").mtime_ns

    before = snapshot()
    first = _once(ns.store, "client-a", 7, method, reply, op)
    after_first = snapshot()
    again = _once(ns.store, "client-a", 7, method, reply, op)  # would fail if it ran again
    assert again == first and after_first != before
    assert snapshot() == after_first
    # Another client's identical request id is a different request.
    with pytest.raises(e.EmberError):
        _once(ns.store, "client-b", 7, method, reply, op)


def test_unidentified_requests_run_every_time(ns: Any) -> None:
    op = CASES[0][2]
    for client, rid in (("", 7), ("client", 0)):
        ns.store.write_sync(lambda tx: remove.remove(tx, ROOT, P("/new"), kind=1) if ns.exists("/new") else None)
        _once(ns.store, client, rid, "Create", meta_pb2.CreateResponse, op)
        with pytest.raises(e.AlreadyExists):
            _once(ns.store, client, rid, "Create", meta_pb2.CreateResponse, op)


def test_failures_are_not_recorded(ns: Any) -> None:
    op = CASES[2][2]  # remove /f, which does not exist yet
    with pytest.raises(e.NotFound):
        _once(ns.store, "c", 1, "Remove", meta_pb2.RemoveResponse, op)
    ns.touch("/f")
    assert _once(ns.store, "c", 1, "Remove", meta_pb2.RemoveResponse, op).removed == 1


def test_request_id_reused_for_another_method(ns: Any) -> None:
    _once(ns.store, "c", 1, "Mkdir", meta_pb2.MkdirResponse, CASES[1][2])
    with pytest.raises(e.InvalidArgument):
        _once(ns.store, "c", 1, "Create", meta_pb2.CreateResponse, CASES[0][2])


def test_records_survive_restart_and_expire(tmp_path: Any) -> None:
    now = [10**18]
    config = MetaConfig(data_dir=str(tmp_path / "m"), idem_ttl_s=60)
    op = CASES[1][2]
    with MetaStore(config, clock=lambda: now[0]) as store:
        first = _once(store, "c", 9, "Mkdir", meta_pb2.MkdirResponse, op)
    with MetaStore(config, clock=lambda: now[0]) as store:
        assert _once(store, "c", 9, "Mkdir", meta_pb2.MkdirResponse, op) == first
        now[0] += 61 * 10**9
        cutoff = now[0] - 60 * 10**9
        assert store.write_sync(lambda tx: idem.prune(tx, cutoff)) == 1
        assert store.write_sync(lambda tx: idem.prune(tx, cutoff)) == 0
        with pytest.raises(e.AlreadyExists):  # the record is gone: the retry runs again
            _once(store, "c", 9, "Mkdir", meta_pb2.MkdirResponse, op)


def test_prune_is_bounded_and_ordered_by_age(store: MetaStore) -> None:
    def put(tx: MetaTxn, rid: int, stamp: int) -> None:
        tx.now_ns = stamp
        idem.once(tx, "c", rid, "StatFs", meta_pb2.StatFsResponse, meta_pb2.StatFsResponse)

    for rid in range(1, 11):
        store.write_sync(lambda tx, rid=rid: put(tx, rid, rid * 100))
    assert store.write_sync(lambda tx: idem.prune(tx, 550, limit=3)) == 3
    assert store.write_sync(lambda tx: idem.prune(tx, 550)) == 2  # 400 and 500; 600.. stay
    assert store.read(lambda tx: sum(1 for _ in tx.kv.scan("idem"))) == 2 * 5


def test_client_id_length_is_bounded(store: MetaStore) -> None:
    with pytest.raises(e.InvalidArgument):
        _once(store, "x" * 300, 1, "Mkdir", meta_pb2.MkdirResponse, CASES[1][2])
