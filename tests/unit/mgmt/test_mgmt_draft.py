"""The incremental rules (mgmt/draft.py) against the whole-state ones (mgmt/state.py):
random event sequences run through both, composed as the manager composes them, must
leave equal states after every step, raise the same errors, and keep the invariant
that lets the incremental tick skip chains (a chain not dirty is a fixed point)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberfs.common.chainstate import next_chain
from emberfs.common.errors import EmberError
from emberfs.metaserver.mgmt import draft as inc
from emberfs.metaserver.mgmt import state as rules
from emberfs.metaserver.mgmt.state import ClusterState, Registration, Report, TargetStats

NODES = range(1, 6)
TIMEOUT = 5.0
STATES = st.sampled_from([1, 2, 3])

registers = st.tuples(st.just("register"), st.sampled_from(NODES), st.sets(st.integers(1, 3), max_size=3),
                      STATES, st.sampled_from([1, 2]))
beats = st.tuples(st.just("beat"), st.sampled_from(NODES), st.sets(st.integers(1, 3), max_size=3), STATES,
                  st.sampled_from([1, 2]), st.sampled_from([None, -1, 0]), st.integers(0, 3),
                  st.sampled_from([None, -1, 0]))  # chain version: none, an older one, the current one
ticks = st.tuples(st.just("tick"), st.sets(st.sampled_from(NODES), max_size=2))
admins = st.tuples(st.just("admin"), st.sampled_from(NODES), st.integers(1, 3), st.booleans())
inits = st.tuples(st.just("init"), st.integers(1, 3))
# Most sequences start from a cluster with chains, so that the chain rules get exercised.
SETUP = [("register", n, {1, 2}, 2, 1) for n in range(1, 5)] + [("init", 2)]
events = st.tuples(st.booleans(), st.lists(st.one_of(registers, beats, beats, beats, ticks, admins, inits),
                                           max_size=40)).map(lambda p: SETUP + p[1] if p[0] else p[1])


def fresh(state: ClusterState, dead: set[int] = frozenset()) -> dict[int, float]:  # type: ignore[assignment]
    """Heartbeat times as the manager holds them: the alive nodes heard from just now."""
    return {n: 100.0 for n in state.alive - dead}


def _reports(s: ClusterState, node: int, ks: set[int], local: int, used: int,
             cv: int | None) -> tuple[Report, ...]:
    """A beat's reports; cv: no chain version, or the target's chain's version plus cv."""
    out = []
    for k in sorted(ks):
        target = s.targets.get(node * 100 + k)
        chain = s.chains.get(target.chain_id) if target is not None else None
        version = 0 if cv is None or chain is None else max(0, chain.chain_version + cv)
        out.append(Report(node * 100 + k, local, TargetStats(used_bytes=used), chain_version=version))
    return tuple(out)


def old_step(s: ClusterState, event: tuple[Any, ...]) -> ClusterState:
    kind = event[0]
    if kind == "register":
        _, node, ks, local, inc_ = event
        reg = Registration(node, f"h:{node}", tuple(Report(node * 100 + k, local) for k in sorted(ks)),
                           incarnation=inc_)
        after = rules.register(s, reg)
        return rules.tick(after, fresh(after), 100.0, TIMEOUT)
    if kind == "beat":
        _, node, ks, local, inc_, seen, used, cv = event
        seen_version = None if seen is None else s.routing_version + seen
        reports = _reports(s, node, ks, local, used, cv)
        after = rules.heartbeat(s, node, reports, inc_, seen_version)
        if after.targets != s.targets or after.alive != s.alive:
            after = rules.tick(after, fresh(after), 100.0, TIMEOUT)
        return after
    if kind == "tick":
        return rules.tick(s, fresh(s, event[1]), 100.0, TIMEOUT)
    if kind == "admin":
        _, node, k, offline = event
        return rules.tick(rules.set_admin_offline(s, node * 100 + k, offline), fresh(s), 100.0, TIMEOUT)
    return rules.init_chains(s, event[1])[0]


def split_init(old: ClusterState, event: tuple[Any, ...]) -> ClusterState:
    """The manager's InitChains applies a tick of its own first, kept even when the
    init is refused."""
    return rules.tick(old, fresh(old), 100.0, TIMEOUT) if event[0] == "init" else old


def new_step(s: ClusterState, dirty: set[int], event: tuple[Any, ...]) -> ClusterState:
    kind = event[0]
    d = inc.Draft(s, dirty)
    if kind == "register":
        _, node, ks, local, inc_ = event
        inc.register(d, Registration(node, f"h:{node}", tuple(Report(node * 100 + k, local) for k in sorted(ks)),
                                     incarnation=inc_))
        inc.tick(d, ())
    elif kind == "beat":
        _, node, ks, local, inc_, seen, used, cv = event
        seen_version = None if seen is None else s.routing_version + seen
        inc.beat(d, node, _reports(s, node, ks, local, used, cv), inc_, seen_version)
        if d.targets or d.alive:
            inc.tick(d, ())
    elif kind == "tick":
        inc.tick(d, event[1])
    elif kind == "admin":
        _, node, k, offline = event
        inc.set_admin(d, node * 100 + k, offline)
        inc.tick(d, ())
    else:
        inc.absorb(d, rules.init_chains(s, event[1])[0])
    return inc.publish(d)


def comparable(s: ClusterState) -> tuple[Any, ...]:
    return (dict(s.nodes), dict(s.targets), dict(s.chains), s.routing_version, s.admin_offline, s.alive,
            dict(s.stats))


@settings(max_examples=300, deadline=None)
@given(events)
def test_incremental_rules_agree_with_the_whole_state_rules(sequence: list[tuple[Any, ...]]) -> None:
    old, new, dirty = ClusterState(), ClusterState(), set[int]()
    for event in sequence:
        old = split_init(old, event)
        if event[0] == "init":
            new = new_step(new, dirty, ("tick", set()))
        try:
            expected = old_step(old, event)
        except EmberError as exc:
            with pytest.raises(type(exc)):
                new_step(new, dirty, event)
            assert comparable(new) == comparable(old)
            continue
        new = new_step(new, dirty, event)
        old = expected
        assert comparable(new) == comparable(old), event
        local = rules.effective_local_states(new)
        for chain_id, chain in new.chains.items():
            if chain_id not in dirty:
                assert next_chain(chain, local, new.admin_offline) == chain, chain_id


def test_a_beat_that_changes_nothing_leaves_the_draft_empty() -> None:
    state = rules.register(ClusterState(), Registration(1, "h:1", (Report(101, 2),)))
    d = inc.Draft(state, set())
    inc.beat(d, 1, (Report(101, 2),))
    assert d.empty


def test_a_refused_beat_changes_nothing() -> None:
    state = rules.register(ClusterState(), Registration(1, "h:1", (Report(101, 2), Report(102, 2))))
    d = inc.Draft(state, set())
    with pytest.raises(EmberError):
        inc.beat(d, 1, (Report(101, 1), Report(199, 2)))
    assert d.empty


DEADLINES = [
    # name, (node, deadline) settings in order, now, due
    ("none due", [(1, 5.0), (2, 6.0)], 5.0, []),
    ("one due", [(1, 5.0), (2, 6.0)], 5.5, [1]),
    ("renewed is not due", [(1, 5.0), (1, 9.0)], 6.0, []),
    ("renewed then due", [(1, 5.0), (1, 9.0)], 9.5, [1]),
    ("in deadline order", [(3, 4.0), (1, 2.0), (2, 3.0)], 10.0, [1, 2, 3]),
]


@pytest.mark.parametrize("name,sets,now,due", DEADLINES, ids=[d[0] for d in DEADLINES])
def test_deadlines(name: str, sets: list[tuple[int, float]], now: float, due: list[int]) -> None:
    deadlines = inc.Deadlines()
    for node, deadline in sets:
        deadlines.set(node, deadline)
    assert deadlines.due(now) == due
    assert deadlines.due(now) == []  # each once


def test_publish_keeps_the_base_until_called() -> None:
    state = rules.register(ClusterState(), Registration(1, "h:1", (Report(101, 1),)))
    d = inc.Draft(state, set())
    inc.beat(d, 1, (Report(101, 3),))
    assert state.targets[101].local_state == 1
    after = inc.publish(d)
    assert after.targets[101].local_state == 3 and after.routing_version == state.routing_version
    assert dataclasses.replace(after) == after
