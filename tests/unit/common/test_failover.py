"""Which metaserver address a call tries next (common/failover.py), as tables."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from emberfs.common import errors as e
from emberfs.common.failover import Preference, Walk, moves_on, spread_start

MOVES = [
    (e.Unavailable("connection refused"), True),
    (e.NotPrimary("not the cluster manager primary; the primary is at b:9000"), True),
    (e.NotFound("no such entry"), False),
    (e.PermissionDenied("no"), False),
    (e.AlreadyExists("there"), False),
    (e.InvalidArgument("bad"), False),
    (e.Unauthenticated("who"), False),
    (e.FailedPrecondition("too many ops"), False),
    (e.StaleChainVersion("old"), False),  # retryable, but not about the metaserver being away
    (e.Internal("bug"), False),
]


@pytest.mark.parametrize(("error", "moves"), MOVES)
def test_which_errors_move_to_another_address(error, moves) -> None:
    assert moves_on(error) is moves


def _run(count: int, start: int, outcomes: str) -> list[tuple[int, int, str]]:
    """Drive a Walk over `outcomes`, one letter per attempt: m (a failure that moves),
    s (one that stays), with a new round from the preferred start whenever the walk
    says the round is over. Returns (round, index, outcome) per attempt."""
    walk = Walk(count, start)
    seen = []
    for outcome in outcomes:
        seen.append((walk.round, walk.index, outcome))
        if not walk.failed(outcome == "m"):
            walk.again(start)
    return seen


WALKS = [
    # count, start, outcomes, expected (round, index) per attempt
    (1, 0, "mmm", [(1, 0), (2, 0), (3, 0)]),  # one address: one attempt per round, as before
    (2, 0, "mmmm", [(1, 0), (1, 1), (2, 0), (2, 1)]),  # DEAD,LIVE-like: the second at once
    (2, 1, "mm", [(1, 1), (1, 0)]),  # starts where preferred, wraps
    (3, 1, "mmmm", [(1, 1), (1, 2), (1, 0), (2, 1)]),
    (3, 0, "smm", [(1, 0), (2, 0), (2, 1)]),  # a failure that stays ends the round
    (3, 2, "ms", [(1, 2), (1, 0)]),
]


@pytest.mark.parametrize(("count", "start", "outcomes", "expected"), WALKS)
def test_walks(count, start, outcomes, expected) -> None:
    assert [(r, i) for r, i, _ in _run(count, start, outcomes)] == expected


def test_a_round_tries_every_address_once() -> None:
    for count in range(1, 6):
        for start in range(count):
            walk = Walk(count, start)
            seen = [walk.index]
            while walk.failed(True):
                seen.append(walk.index)
            assert sorted(seen) == list(range(count)) and walk.round == 1


def test_the_next_round_starts_where_another_call_found_an_answer() -> None:
    preference = Preference(3)
    walk = preference.walk()
    assert walk.failed(True) and walk.failed(True) and not walk.failed(True)
    preference.answered(2)  # meanwhile another call was answered at index 2
    walk.again(preference.index)
    assert (walk.round, walk.index, walk.tried) == (2, 2, 1)


PREFERENCES = [
    # count, first, answered in turn, expected changes, final index
    (2, 0, [0, 0], [False, False], 0),
    (2, 0, [1, 1, 0], [True, False, True], 0),
    (3, 5, [], [], 2),  # first is taken modulo the count
]


@pytest.mark.parametrize(("count", "first", "answers", "changes", "final"), PREFERENCES)
def test_preference_sticks_to_what_answered(count, first, answers, changes, final) -> None:
    preference = Preference(count, first)
    assert [preference.answered(i) for i in answers] == changes
    assert preference.index == final and preference.walk().index == final


def test_preference_needs_an_address() -> None:
    with pytest.raises(ValueError):
        Preference(0)


def test_spread_start_is_stable_and_spreads_clients() -> None:
    assert spread_start("abc", 1) == 0
    assert spread_start("abc", 3) == spread_start("abc", 3)
    starts = Counter(spread_start(uuid.uuid4().hex, 2) for _ in range(1000))
    assert set(starts) == {0, 1} and min(starts.values()) > 400  # about half each
    starts = Counter(spread_start(uuid.uuid4().hex, 3) for _ in range(1500))
    assert set(starts) == {0, 1, 2} and min(starts.values()) > 400
