"""The per-chunk replication rules (storage/replication.py): one table row per case."""

from __future__ import annotations

import pytest

from emberfs.storage.replication import (
    ABSENT,
    Digest,
    DirtyRead,
    HeadPlan,
    ReadPlan,
    Replica,
    UpdateAction,
    check_ack,
    committed,
    decide_update,
    head_plan,
    may_prepare,
    prepared,
    read_plan,
    recovered,
    remembered,
    resolve_dirty_read,
    sync_start,
)

A, C, M = UpdateAction.APPLY, UpdateAction.ALREADY_COMMITTED, UpdateAction.MISSING
AHEAD, GONE = UpdateAction.AHEAD, UpdateAction.GONE
D1, D2 = Digest(True, 3, 0x11), Digest(True, 4, 0x22)


def rep(commit: int, pending: int | None = None, *, committed_digest: Digest = D1) -> Replica:
    return Replica(commit, committed_digest if commit else ABSENT, pending, D2 if pending else None)


UPDATES = [
    # commit, pending, update, flags, action
    ("first write of a new chunk", 0, None, 1, {}, A),
    ("next version", 4, None, 5, {}, A),
    ("retry of the in-flight update", 4, 5, 5, {}, A),
    ("retry after it committed here: the sender compares", 5, None, 5, {}, C),
    ("an older update: this replica is ahead (diverged)", 5, None, 3, {}, AHEAD),
    ("older update while another is pending", 5, 6, 4, {}, AHEAD),
    ("missed one update", 4, None, 6, {}, M),
    ("missed updates of a chunk it lacks", 0, None, 3, {}, M),
    ("pending, and the next after it arrives", 4, 5, 6, {}, M),
    ("pending left by a resync, normal next", 4, 9, 5, {}, A),
    ("sync replace overrides a newer local version", 7, None, 3, {"sync": True}, A),
    ("sync replace over a pending one", 4, 5, 9, {"sync": True}, A),
    ("sync replace of a chunk it lacks", 0, None, 8, {"sync": True}, A),
    ("sync purge (version 0)", 3, None, 0, {"sync": True}, A),
    ("remove, normal next version (a tombstone follows)", 3, None, 4, {}, A),
    ("write after a tombstone at 4", 4, None, 5, {}, A),
    ("update of a collected file", 4, None, 5, {"gone": True}, GONE),
    ("sync into a collected file", 0, None, 5, {"sync": True, "gone": True}, GONE),
    ("sync purge of a collected file", 0, None, 0, {"sync": True, "gone": True}, A),
]


@pytest.mark.parametrize("commit,pending,update,flags,action", [u[1:] for u in UPDATES],
                         ids=[u[0] for u in UPDATES])
def test_decide_update(commit, pending, update, flags, action) -> None:
    assert decide_update(rep(commit, pending), update, **flags) is action


@pytest.mark.parametrize("replica,update", [
    (Replica(-1), 1), (Replica(0, ABSENT, 0, D1), 1), (Replica(3, D1), 0), (Replica(3, D1, 4, None), 5),
])
def test_decide_update_refuses_nonsense(replica, update) -> None:
    with pytest.raises(ValueError):
        decide_update(replica, update)


@pytest.mark.parametrize("replica,remove,plan", [
    (rep(0), False, HeadPlan(1, None)),  # a new chunk
    (rep(7), False, HeadPlan(8, None)),  # the normal case: commit + 1
    (rep(7, 8), False, HeadPlan(9, 8)),  # an interrupted update left 8: finish it, then 9
    (rep(0), True, HeadPlan(0, None, noop=True)),  # removing what never existed
    (Replica(5, ABSENT), True, HeadPlan(0, None, noop=True)),  # removing a tombstone again
    (Replica(5, ABSENT), False, HeadPlan(6, None)),  # a write after a REMOVE: never reuses 1..5
])
def test_head_plan(replica, remove, plan) -> None:
    assert head_plan(replica, remove=remove) == plan


@pytest.mark.parametrize("commit,update,sync,ok", [
    (4, 5, False, True), (4, 4, False, False), (4, 2, False, False), (4, 2, True, True), (0, 1, False, True),
])
def test_versions_only_grow(commit, update, sync, ok) -> None:
    assert may_prepare(rep(commit), update, sync=sync) is ok
    if not ok:
        with pytest.raises(ValueError, match="not above"):
            prepared(rep(commit), update, D2)


def test_prepare_then_commit() -> None:
    r = prepared(rep(4), 5, D2)
    assert (r.pending_version, r.pending) == (5, D2)
    assert committed(r, 5) == Replica(5, D2)
    assert committed(Replica(5, D2), 5) == Replica(5, D2)  # a retried commit changes nothing
    with pytest.raises(ValueError, match="no pending version 6"):
        committed(Replica(5, D2), 6)
    with pytest.raises(ValueError, match="no pending version 4"):  # an orphaned, older commit
        committed(rep(5, 6), 4)


@pytest.mark.parametrize("sent_v,sent,ack_v,ack,ok", [
    (5, D1, 5, D1, True),
    (5, D1, 5, D2, False),  # "already committed" with other bytes: a divergence
    (5, D1, 4, D1, False),
    (5, ABSENT, 5, ABSENT, True),  # a REMOVE's tombstone on both
    (5, ABSENT, 5, Digest(True, 0, 0), False),  # an empty chunk is not a tombstone
    (0, ABSENT, 0, ABSENT, True),  # a purge
])
def test_check_ack(sent_v, sent, ack_v, ack, ok) -> None:
    verdict = check_ack(sent_v, sent, ack_v, ack)
    assert verdict.ok is ok and (ok or verdict.why)


@pytest.mark.parametrize("replica,is_tail,plan", [
    (rep(4), False, ReadPlan.SERVE_COMMITTED),  # clean
    (rep(4), True, ReadPlan.SERVE_COMMITTED),
    (rep(4, 5), True, ReadPlan.TAKE_OVER),  # the tail commits what no update owns before serving
    (rep(4, 5), False, ReadPlan.ASK_TAIL),  # dirty: CRAQ version query
])
def test_read_plan(replica, is_tail, plan) -> None:
    assert read_plan(replica, is_tail=is_tail) is plan


@pytest.mark.parametrize("commit,pending,tail,result", [
    (4, 5, 4, DirtyRead.SERVE_COMMITTED),  # the tail has not committed 5 yet
    (4, 5, 5, DirtyRead.SERVE_PENDING),  # committed at the tail, not yet here
    (4, 5, 6, DirtyRead.RETRY),  # moved on meanwhile
    (4, None, 5, DirtyRead.RETRY),
    (0, 1, 0, DirtyRead.SERVE_COMMITTED),  # a new chunk, not committed anywhere: a hole
    (0, 1, 1, DirtyRead.SERVE_PENDING),
])
def test_resolve_dirty_read(commit, pending, tail, result) -> None:
    assert resolve_dirty_read(rep(commit, pending), tail) is result


def test_restart_and_sync_start() -> None:
    assert recovered(rep(4, 5), pending_whole=True) == rep(4, 5)
    assert recovered(rep(4, 5), pending_whole=False) == rep(4)
    assert sync_start(rep(4, 5)) == rep(4)


def test_remembered_keeps_the_newest() -> None:
    history: tuple[tuple[bytes, int], ...] = ()
    for version in range(1, 6):
        history = remembered(history, bytes([version]), version, limit=3)
    assert history == ((b"\x03", 3), (b"\x04", 4), (b"\x05", 5))
    assert remembered(history, b"\x04", 7, limit=3) == ((b"\x03", 3), (b"\x05", 5), (b"\x04", 7))
