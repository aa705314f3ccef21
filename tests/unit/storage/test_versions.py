"""CRAQ chunk-version rules: one table row per case."""

from __future__ import annotations

import pytest

from emberfs.common import errors as e
from emberfs.storage.versions import (
    DirtyRead,
    HeadPlan,
    ReadPlan,
    UpdateAction,
    check_chain_version,
    decide_update,
    head_plan,
    read_plan,
    resolve_dirty_read,
)

A, C, M = UpdateAction.APPLY, UpdateAction.ALREADY_COMMITTED, UpdateAction.MISSING

UPDATES = [
    # commit, pending, update, flags, action
    ("first write of a new chunk", 0, None, 1, {}, A),
    ("next version", 4, None, 5, {}, A),
    ("retry of the in-flight update", 4, 5, 5, {}, A),
    ("retry after it committed here", 5, None, 5, {}, C),
    ("an older retry", 5, None, 3, {}, C),
    ("older retry while another is pending", 5, 6, 4, {}, C),
    ("missed one update", 4, None, 6, {}, M),
    ("missed updates of a chunk it lacks", 0, None, 3, {}, M),
    ("pending, and the next after it arrives", 4, 5, 6, {}, M),
    ("pending left by a resync, normal next", 4, 9, 5, {}, A),
    ("sync replace overrides a newer local version", 7, None, 3, {"sync": True}, A),
    ("sync replace over a pending one", 4, 5, 9, {"sync": True}, A),
    ("sync replace of a chunk it lacks", 0, None, 8, {"sync": True, "exists": False}, A),
    ("remove of a chunk already gone", 0, None, 7, {"remove": True, "exists": False}, C),
    ("remove, normal next version", 3, None, 4, {"remove": True}, A),
    ("remove retry after commit", 4, None, 4, {"remove": True}, C),
    ("remove that missed updates", 3, None, 6, {"remove": True}, M),
]


@pytest.mark.parametrize(
    "commit,pending,update,flags,action", [u[1:] for u in UPDATES], ids=[u[0] for u in UPDATES]
)
def test_decide_update(commit, pending, update, flags, action) -> None:
    assert decide_update(commit, pending, update, **flags) is action


@pytest.mark.parametrize("commit,pending,update", [(-1, None, 1), (0, 0, 1), (3, None, 0)])
def test_decide_update_refuses_nonsense(commit, pending, update) -> None:
    with pytest.raises(ValueError):
        decide_update(commit, pending, update)


@pytest.mark.parametrize(
    "commit,pending,plan",
    [
        (0, None, HeadPlan(1, None)),  # a new chunk
        (7, None, HeadPlan(8, None)),  # the normal case: commit + 1
        (7, 8, HeadPlan(9, 8)),  # a failed forward left 8: finish it, then 9
    ],
)
def test_head_plan(commit, pending, plan) -> None:
    assert head_plan(commit, pending) == plan


@pytest.mark.parametrize(
    "pending,is_tail,plan",
    [
        (None, False, ReadPlan.SERVE_COMMITTED),  # clean
        (None, True, ReadPlan.SERVE_COMMITTED),
        (5, True, ReadPlan.SERVE_COMMITTED),  # the tail's committed version is the chain's
        (5, False, ReadPlan.ASK_TAIL),  # dirty: CRAQ version query
    ],
)
def test_read_plan(pending, is_tail, plan) -> None:
    assert read_plan(pending, is_tail=is_tail) is plan


@pytest.mark.parametrize(
    "commit,pending,tail,result",
    [
        (4, 5, 4, DirtyRead.SERVE_COMMITTED),  # the tail has not committed 5 yet
        (4, 5, 5, DirtyRead.SERVE_PENDING),  # committed at the tail, not yet here
        (4, 5, 6, DirtyRead.RETRY),  # moved on meanwhile
        (4, None, 5, DirtyRead.RETRY),
        (0, 1, 0, DirtyRead.SERVE_COMMITTED),  # a new chunk, not committed anywhere: a hole
        (0, 1, 1, DirtyRead.SERVE_PENDING),
    ],
)
def test_resolve_dirty_read(commit, pending, tail, result) -> None:
    assert resolve_dirty_read(commit, pending, tail) is result


@pytest.mark.parametrize("request_version,current,ok", [(3, 3, True), (2, 3, False), (4, 3, False)])
def test_check_chain_version(request_version, current, ok) -> None:
    if ok:
        check_chain_version(request_version, current)
    else:
        with pytest.raises(e.StaleChainVersion) as info:
            check_chain_version(request_version, current)
        assert info.value.retryable
