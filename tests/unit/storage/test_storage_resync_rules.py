"""Table tests of the pure resync and failure rules: the resync diff and job choice
(syncdiff.py), the lease (lease.py), the local-state rule with the synced mark
(localstate.py) and the disk-error classification (oserrors.py)."""

from __future__ import annotations

import errno

import pytest

from emberfs.common.chainstate import Chain, ChainTarget, PublicState, chain_to_proto
from emberfs.common.errors import TargetNotServing
from emberfs.common.routing import RoutingView
from emberfs.proto import mgmt_pb2
from emberfs.storage.lease import Lease, lease_age_if_expired
from emberfs.storage.localstate import local_states
from emberfs.storage.oserrors import DiskErrorKind, disk_error_kind, lmdb_error_kind
from emberfs.storage.records import ChunkId
from emberfs.storage.syncdiff import SyncMeta, SyncOp, sync_diff, sync_jobs

S, Y, W, L, OFFLINE = (PublicState.SERVING, PublicState.SYNCING, PublicState.WAITING, PublicState.LASTSRV,
                     PublicState.OFFLINE)
SEND, REMOVE = SyncOp.SEND, SyncOp.REMOVE


def m(index: int, version: int = 1, length: int = 10, crc: int = 7) -> SyncMeta:
    return SyncMeta(ChunkId(1, index), version, length, crc)


@pytest.mark.parametrize("mine, theirs, ops, unchanged", [
    ([], [], [], 0),
    ([m(0)], [m(0)], [], 1),                                   # identical: nothing
    ([m(0)], [], [(0, SEND)], 0),                              # successor lacks it
    ([], [m(0)], [(0, REMOVE)], 0),                            # must not exist there
    ([m(0, version=2)], [m(0, version=1)], [(0, SEND)], 0),    # successor behind
    ([m(0, version=1)], [m(0, version=3)], [(0, SEND)], 0),    # successor ahead (diverged)
    ([m(0, length=5)], [m(0)], [(0, SEND)], 0),                # same version, other length
    ([m(0, crc=8)], [m(0)], [(0, SEND)], 0),                   # same version, other bytes
    ([m(2), m(0), m(1)], [m(3), m(1), m(0, crc=1)], [(0, SEND), (2, SEND), (3, REMOVE)], 1),  # sorted
])
def test_sync_diff(mine: list, theirs: list, ops: list, unchanged: int) -> None:
    plan = sync_diff(mine, theirs)
    assert [(c.chunk_index, op) for c, op in plan.ops] == ops
    assert plan.unchanged == unchanged
    assert plan.sends == sum(op == SEND for _, op in ops) and plan.removes == sum(op == REMOVE for _, op in ops)


def chain(version: int, *targets: tuple[int, PublicState], chain_id: int = 1) -> Chain:
    return Chain(chain_id, version, tuple(ChainTarget(t, s) for t, s in targets))


@pytest.mark.parametrize("chains, local, failed, jobs", [
    ([chain(4, (101, S), (201, S), (301, Y))], {201}, set(), {(1, 301): (201, 4)}),   # I am the tail
    ([chain(4, (101, S), (201, S), (301, Y))], {101}, set(), {}),                     # head: not mine
    ([chain(4, (101, S), (201, S), (301, Y))], {301}, set(), {}),                     # the syncing one
    ([chain(4, (101, S), (201, S), (301, Y))], {201}, {201}, {}),                     # failed: no job
    ([chain(4, (101, S), (201, S), (301, W))], {201}, set(), {}),                     # waiting: no sync
    ([chain(5, (101, S), (301, Y), (201, OFFLINE))], {101}, set(), {(1, 301): (101, 5)}),   # shortened chain
    ([chain(2, (101, L), (201, OFFLINE))], {101}, set(), {}),
    ([chain(2, (101, S), (202, Y)), chain(3, (102, S), (201, Y), chain_id=2)], {101, 102}, set(),
     {(1, 202): (101, 2), (2, 201): (102, 3)}),
])
def test_sync_jobs(chains: list, local: set, failed: set, jobs: dict) -> None:
    assert sync_jobs(chains, local, failed) == jobs


@pytest.mark.parametrize("now, renewed, timeout, expired_age", [
    (10.0, None, 1.0, float("inf")),   # never heartbeat
    (10.0, 9.9, 0.0, float("inf")),    # timeout not known yet
    (10.0, 9.5, 1.0, None),
    (10.0, 9.0, 1.0, 1.0),             # exactly the timeout: expired (the manager may act now)
    (10.0, 2.0, 1.0, 8.0),             # woken from a long SIGSTOP
])
def test_lease_rule(now: float, renewed: float | None, timeout: float, expired_age: float | None) -> None:
    assert lease_age_if_expired(now, renewed, timeout) == expired_age


def test_lease_check_messages_and_renewal() -> None:
    clock = [0.0]
    lease = Lease(clock=lambda: clock[0])
    with pytest.raises(TargetNotServing, match="not heartbeat the manager yet"):
        lease.check()
    lease.renew(0.0, 2.0)
    clock[0] = 1.9
    lease.check()
    lease.renew(-5.0, 0.0)  # an older send time or an unknown timeout never shortens it
    assert (lease.renewed_at, lease.timeout_s) == (0.0, 2.0)
    clock[0] = 7.25
    with pytest.raises(TargetNotServing, match=r"lease expired: no heartbeat for 7.2 s \(timeout 2 s\)"):
        lease.check()
    assert not lease.valid
    assert Lease(enforced=False).valid  # in-process tests without a manager


def view(c: Chain) -> RoutingView:
    return RoutingView(mgmt_pb2.RoutingInfo(
        routing_version=9, chains=[chain_to_proto(c)],
        targets=[mgmt_pb2.TargetInfo(target_id=t.target_id, node_id=t.target_id // 100, chain_id=c.chain_id)
                 for t in c.targets]))


ON, UP, OFF = mgmt_pb2.LOCAL_ONLINE, mgmt_pb2.LOCAL_UPTODATE, mgmt_pb2.LOCAL_OFFLINE
CH = chain(7, (101, S), (201, Y), (301, OFFLINE))


@pytest.mark.parametrize("target, synced, failed, closing, state", [
    (101, {}, (), False, UP),             # SERVING
    (201, {}, (), False, ON),             # SYNCING, not done
    (201, {201: 7}, (), False, UP),       # SYNCING, done at this chain version
    (201, {201: 6}, (), False, ON),       # done at an older version: sync again
    (301, {301: 7}, (), False, ON),       # a mark counts only while SYNCING
    (101, {}, (101,), False, OFF),        # failed by a disk error
    (201, {201: 7}, (201,), False, OFF),
    (101, {}, (), True, OFF),             # shutting down
    (999, {}, (), False, ON),             # unknown to the manager
])
def test_local_state_rule(target: int, synced: dict, failed: tuple, closing: bool, state: int) -> None:
    assert local_states(view(CH), [target], synced=synced, failed=failed, closing=closing) == {target: state}


@pytest.mark.parametrize("number, kind", [
    (errno.ENOSPC, DiskErrorKind.NO_SPACE), (errno.EDQUOT, DiskErrorKind.NO_SPACE),
    (errno.EIO, DiskErrorKind.FAILED), (errno.EROFS, DiskErrorKind.FAILED), (errno.EACCES, DiskErrorKind.FAILED),
    (errno.ENOTDIR, DiskErrorKind.FAILED), (errno.ENOENT, DiskErrorKind.INTERNAL), (None, DiskErrorKind.INTERNAL),
])
def test_disk_error_kind(number: int | None, kind: DiskErrorKind) -> None:
    assert disk_error_kind(number) is kind


def test_inflight_updates_count_what_a_resync_must_wait_for() -> None:
    from emberfs.storage.checks import InflightUpdates

    inflight = InflightUpdates()
    with inflight.track(1, 4), inflight.track(1, 4), inflight.track(1, 5), inflight.track(2, 1):
        assert [inflight.older_than(1, v) for v in (4, 5, 6)] == [0, 2, 3]
        assert inflight.older_than(2, 2) == 1 and inflight.older_than(3, 9) == 0
    assert inflight.older_than(1, 99) == 0 and inflight._counts == {}


@pytest.mark.parametrize("message, free, kind", [
    # LMDB reports a short page write as EIO: on a full disk that is no space, not a failing disk
    ("mdb_txn_commit: Input/output error", 0, DiskErrorKind.NO_SPACE),
    ("mdb_txn_commit: Input/output error", (1 << 20) - 1, DiskErrorKind.NO_SPACE),
    ("mdb_txn_commit: Input/output error", 1 << 20, DiskErrorKind.INTERNAL),
    ("mdb_txn_commit: Input/output error", None, DiskErrorKind.INTERNAL),  # free space unknown
    ("mdb_get: MDB_CORRUPTED: Located page was wrong type", 0, DiskErrorKind.INTERNAL),
])
def test_lmdb_error_kind(message: str, free: int | None, kind: DiskErrorKind) -> None:
    assert lmdb_error_kind(message, free) is kind
