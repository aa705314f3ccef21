"""routinglog.ChangeLog: which ids changed after a version, and where its memory ends."""

from __future__ import annotations

import pytest

from emberfs.metaserver.mgmt.routinglog import ChangeLog, Touched


def _log(limit: int = 100) -> ChangeLog:
    log = ChangeLog(10, limit=limit)
    log.record(11, nodes=[1], targets=[101, 102], chains=[7])
    log.record(12, targets=[201])  # an unversioned change, tagged with the next version
    log.record(12, chains=[8])     # the bump that publishes it
    log.record(14, nodes=[2], targets=[101])
    return log


@pytest.mark.parametrize(
    ("known", "expected"),
    [
        (10, Touched(frozenset({1, 2}), frozenset({101, 102, 201}), frozenset({7, 8}))),
        (11, Touched(frozenset({2}), frozenset({101, 201}), frozenset({8}))),
        (12, Touched(frozenset({2}), frozenset({101}), frozenset())),
        (13, Touched(frozenset({2}), frozenset({101}), frozenset())),  # a version with nothing of its own
        (14, Touched()),
        (9, None),  # before the log began: only the whole table
    ],
)
def test_since_names_every_id_changed_after_the_known_version(known: int, expected: Touched | None) -> None:
    assert _log().since(known) == expected


def test_the_floor_moves_up_as_old_entries_go() -> None:
    # Eight entries: (11,n1) (11,t101) (11,t102) (11,c7) (12,t201) (12,c8) (14,n2) (14,t101).
    kept_four = _log(limit=4)  # the four of tag 11 went: a caller at 11 still has all it needs
    assert kept_four.floor == 11
    assert kept_four.since(10) is None
    assert kept_four.since(11) == Touched(frozenset({2}), frozenset({101, 201}), frozenset({8}))
    kept_three = _log(limit=3)  # (12, t201) went too: a caller at 11 would miss it
    assert kept_three.floor == 12
    assert kept_three.since(11) is None
    assert kept_three.since(12) == Touched(frozenset({2}), frozenset({101}), frozenset())


def test_tags_never_go_back_and_the_limit_is_positive() -> None:
    log = ChangeLog(5)
    log.record(7, nodes=[1])
    with pytest.raises(ValueError, match="before the last"):
        log.record(6, nodes=[2])
    with pytest.raises(ValueError, match="at least 1"):
        ChangeLog(0, limit=0)
