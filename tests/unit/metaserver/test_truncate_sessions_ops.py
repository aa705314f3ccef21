"""Truncate and write-session reports on a real LMDB store: `old_length` from the
truncating transaction, stale reports refused (a Close keeping its session), and the
service passing the writer's truncate version and replaying a retried Truncate."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from emberfs.common import errors as e
from emberfs.common.paths import split_path
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.ops import session, truncate
from emberfs.metaserver.ops.perm import ROOT
from emberfs.metaserver.server import build_server
from emberfs.metaserver.store import MetaStore
from emberfs.proto import common_pb2, meta_pb2, meta_pb2_grpc


def _report(ns: Any, op: Any, sid: int, inode_id: int, length: int, version: int, wrote: bool = True) -> Any:
    return ns.store.write_sync(
        lambda tx: op(tx, ROOT, sid, inode_id, length=length, wrote=wrote, truncate_version=version)
    )


def test_truncate_and_truncating_opens_answer_the_old_length(ns: Any) -> None:
    ns.touch("/f")
    ns.truncate("/f", 700)
    reply = ns.store.write_sync(lambda tx: truncate.truncate(tx, ROOT, split_path("/f"), 30))
    assert (reply.old_length, reply.inode.length, reply.inode.truncate_version) == (700, 30, 2)
    assert ns.create("/f", truncate=True).old_length == 30
    ns.truncate("/f", 5)
    assert ns.create("/f").old_length == 5  # no O_TRUNC: the length as it is
    ns.truncate("/f", 9)
    assert ns.open("/f", write=True, truncate=True).old_length == 9
    assert ns.create("/new", open_for_write=True).old_length == 0


def test_a_stale_report_cannot_undo_a_truncate(ns: Any) -> None:
    f = ns.touch("/f")
    ns.truncate("/f", 8000)  # version 1
    w = ns.open("/f", write=True)
    assert w.inode.truncate_version == 1
    ns.truncate("/f", 100)  # version 2: the writer's view is stale now
    synced = _report(ns, session.sync, w.session_id, f.inode_id, 8000, 1)
    assert synced.stale and synced.inode.length == 100 and synced.inode.truncate_version == 2
    closed = _report(ns, session.close, w.session_id, f.inode_id, 8000, 1)
    assert closed.stale and ns.sessions_of(f.inode_id) == [w.session_id]  # still open
    assert ns.stat("/f").length == 100 and ns.statfs().used_bytes == 100
    # Not past the stored length: nothing to grow, the report is taken (mtime moves).
    kept = _report(ns, session.sync, w.session_id, f.inode_id, 60, 1)
    assert not kept.stale and kept.inode.length == 100
    # Recovered and reported at the current version: applied, the session ends.
    done = _report(ns, session.close, w.session_id, f.inode_id, 3000, 2)
    assert not done.stale and done.inode.length == 3000 and ns.sessions_of(f.inode_id) == []
    assert ns.statfs().used_bytes == 3000


def test_reports_that_wrote_nothing_or_claim_a_future_version(ns: Any) -> None:
    f = ns.touch("/f")
    ns.truncate("/f", 10)
    w = ns.open("/f", write=True)
    quiet = _report(ns, session.close, w.session_id, f.inode_id, 1 << 20, 0, wrote=False)
    assert not quiet.stale and quiet.inode.length == 10 and ns.sessions_of(f.inode_id) == []
    with pytest.raises(e.FailedPrecondition, match="truncate version 5"):
        _report(ns, session.sync, 0, f.inode_id, 20, 5)
    # A retried Close of a session already gone follows the same rule.
    assert _report(ns, session.close, w.session_id, f.inode_id, 99, 0).stale


def test_service_passes_the_version_and_replays_a_retried_truncate(config: MetaConfig) -> None:
    async def main() -> None:
        store = MetaStore(config)
        meta = build_server(MetaConfig(data_dir=config.data_dir, listen="127.0.0.1:0"), store)
        await meta.start()
        try:
            async with grpc.aio.insecure_channel(meta.address) as channel:
                stub = meta_pb2_grpc.MetaStub(channel)
                h = common_pb2.RequestHeader(client_id="c", request_id=1, uid=0, gid=0)
                made = await stub.Create(meta_pb2.CreateRequest(header=h, path="/f", mode=0o644, open_for_write=True))
                ino, sid = made.inode.inode_id, made.session_id
                await stub.Sync(meta_pb2.SyncRequest(session_id=sid, inode_id=ino, length=5000, wrote=True))
                h.request_id = 2
                cut = await stub.Truncate(meta_pb2.TruncateRequest(header=h, path="/f", length=10))
                assert (cut.old_length, cut.inode.length, cut.inode.truncate_version) == (5000, 10, 1)
                again = await stub.Truncate(meta_pb2.TruncateRequest(header=h, path="/f", length=10))
                assert again == cut  # the first reply: one version bump, the true old length
                stale = await stub.Close(meta_pb2.CloseRequest(
                    session_id=sid, inode_id=ino, length=5000, wrote=True, truncate_version=0))
                assert stale.stale and stale.inode.length == 10
                closed = await stub.Close(meta_pb2.CloseRequest(
                    session_id=sid, inode_id=ino, length=20, wrote=True, truncate_version=1))
                assert not closed.stale and closed.inode.length == 20
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Sync(meta_pb2.SyncRequest(
                        session_id=sid, inode_id=ino, length=1, wrote=True, truncate_version=7))
                assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        finally:
            await meta.stop(0.5)
            await store.aclose()

    asyncio.run(main())
