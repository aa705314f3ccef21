"""The cluster manager's decisions (state.py), one table row per rule."""

from __future__ import annotations

import dataclasses

import pytest

from emberfs.common.chainstate import Chain, LocalState, PublicState, new_chain
from emberfs.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from emberfs.metaserver.mgmt.state import (
    ClusterState,
    NodeRecord,
    Registration,
    Report,
    TargetRecord,
    TargetStats,
    effective_local_states,
    heartbeat,
    init_chains,
    register,
    set_admin_offline,
    tick,
)

ON, UP, OFF = int(LocalState.ONLINE), int(LocalState.UPTODATE), int(LocalState.OFFLINE)


def reg(node_id: int, address: str = "", targets: tuple[int, ...] | None = None, *,
        state: int = ON, bulk: str = "") -> Registration:
    ids = (node_id * 100 + 1,) if targets is None else targets
    return Registration(node_id, address or f"127.0.0.1:{7000 + node_id}",
                        tuple(Report(t, state) for t in ids), bulk)


def cluster(nodes: int, per_node: int = 1, *, state: int = ON) -> ClusterState:
    """`nodes` registered, alive nodes with `per_node` targets each."""
    current = ClusterState()
    for n in range(1, nodes + 1):
        current = register(current, reg(n, targets=tuple(n * 100 + k for k in range(1, per_node + 1)), state=state))
    return current


# -- register ----------------------------------------------------------------------

BAD_REGISTRATIONS = [
    ("node id 0", Registration(0, "h:1", ()), InvalidArgument),
    ("no port", Registration(1, "host", ()), InvalidArgument),
    ("port 0", Registration(1, "host:0", ()), InvalidArgument),
    ("port too big", Registration(1, "host:65536", ()), InvalidArgument),
    ("empty address", Registration(1, "", ()), InvalidArgument),
    ("bad bulk address", Registration(1, "h:1", (), "nope"), InvalidArgument),
    ("target of another node id", reg(1, targets=(201,)), InvalidArgument),
    ("target k = 0", reg(1, targets=(100,)), InvalidArgument),
    ("duplicate target", reg(1, targets=(101, 101)), InvalidArgument),
    ("unspecified local state", reg(1, state=0), InvalidArgument),
    ("unknown local state", reg(1, state=9), InvalidArgument),
]


@pytest.mark.parametrize("name,registration,exc", BAD_REGISTRATIONS, ids=[r[0] for r in BAD_REGISTRATIONS])
def test_register_refuses(name: str, registration: Registration, exc: type) -> None:
    with pytest.raises(exc):
        register(ClusterState(), registration)


def test_register_target_owned_by_another_node_is_already_exists() -> None:
    # Only reachable with state written under other rules, but then it must be clear.
    odd = ClusterState(nodes={2: NodeRecord(2, "h:2")}, targets={101: TargetRecord(101, 2)})
    with pytest.raises(AlreadyExists, match="target 101 is already registered by node 2"):
        register(odd, reg(1))


REGISTER_BUMPS = [
    # name, second registration (after reg(1)), routing bumped, expected targets of node 1
    ("same data again: no-op", reg(1), False, (101,)),
    ("local state change alone", reg(1, state=UP), False, (101,)),
    ("address change", reg(1, "127.0.0.1:9999"), True, (101,)),
    ("bulk address change", reg(1, bulk="127.0.0.1:9998"), True, (101,)),
    ("target added", reg(1, targets=(101, 102)), True, (101, 102)),
    ("unchained target dropped", reg(1, targets=()), True, ()),
]


@pytest.mark.parametrize("name,again,bumped,targets", REGISTER_BUMPS, ids=[r[0] for r in REGISTER_BUMPS])
def test_reregister_bumps_only_on_real_change(name: str, again: Registration, bumped: bool,
                                              targets: tuple[int, ...]) -> None:
    first = register(ClusterState(), reg(1))
    assert first.routing_version == 1 and first.alive == {1}
    second = register(first, again)
    assert second.routing_version == first.routing_version + bumped
    assert second.targets_of(1) == targets
    assert second.nodes[1].address == again.address


def test_chained_target_is_kept_when_a_node_stops_listing_it() -> None:
    state, _ = init_chains(cluster(3), 3)
    again = register(state, reg(1, targets=()))
    assert again.targets_of(1) == (101,) and again.targets[101].chain_id == 1


def test_register_revives_a_dead_node_with_a_bump() -> None:
    state = dataclasses.replace(cluster(2), alive=frozenset({2}))
    assert register(state, reg(1)).routing_version == state.routing_version + 1


def test_a_new_incarnation_takes_the_nodes_targets_out_of_their_chains() -> None:
    state, _ = init_chains(cluster(3), 3)
    first = register(state, dataclasses.replace(reg(1), incarnation=7))  # 0 -> 7: a restart
    assert first.chains[1].state_of(101) == PublicState.OFFLINE
    healed = tick(register(first, dataclasses.replace(reg(1), incarnation=7)),
                  {1: 0.0, 2: 0.0, 3: 0.0}, 0.0, 10.0)
    assert healed.chains[1].state_of(101) == PublicState.SYNCING  # the same incarnation again: no new restart
    again = register(healed, dataclasses.replace(reg(1), incarnation=8))  # restarted inside the timeout
    assert again.chains[1].state_of(101) == PublicState.OFFLINE
    assert again.routing_version == healed.routing_version + 1
    assert again.nodes[1].incarnation == 8


def test_a_heartbeat_from_another_incarnation_must_register_again() -> None:
    state = register(ClusterState(), dataclasses.replace(reg(1), incarnation=5))
    heartbeat(state, 1, [], 5)
    with pytest.raises(NotFound, match="incarnation"):
        heartbeat(state, 1, [], 6)


# -- heartbeat -----------------------------------------------------------------------


def test_heartbeat_records_states_and_stats_without_a_bump() -> None:
    state = cluster(1)
    beat = heartbeat(state, 1, [Report(101, UP, TargetStats(1000, 10, 2))])
    assert beat.routing_version == state.routing_version
    assert beat.targets[101].local_state == UP and beat.stats[101] == TargetStats(1000, 10, 2)


@pytest.mark.parametrize("node_id,reports", [(9, []), (1, [Report(201, ON)]), (1, [Report(102, ON)])])
def test_heartbeat_from_unknown_node_or_target_is_not_found(node_id: int, reports: list[Report]) -> None:
    with pytest.raises(NotFound):
        heartbeat(cluster(2), node_id, reports)


def test_heartbeat_refuses_unspecified_local_state() -> None:
    with pytest.raises(InvalidArgument):
        heartbeat(cluster(1), 1, [Report(101, 0)])


def test_heartbeat_of_a_dead_node_revives_it_with_a_bump() -> None:
    state = dataclasses.replace(cluster(1), alive=frozenset())
    beat = heartbeat(state, 1, [])
    assert beat.alive == {1} and beat.routing_version == state.routing_version + 1


# -- liveness and chains (tick) -------------------------------------------------------

TIMEOUT = 5.0

TICKS = [
    # name, last heartbeats, now, local states reported, admin offline,
    # expected alive, expected chain spec, bumped
    ("all fresh: steady", {1: 0, 2: 0, 3: 0}, 1.0, {}, (), {1, 2, 3}, "S101 S201 S301", False),
    ("exactly at the timeout: alive", {1: 0, 2: 0, 3: 0}, 5.0, {}, (), {1, 2, 3}, "S101 S201 S301", False),
    ("one silent past the timeout", {1: 0, 2: 0, 3: 9}, 10.0, {}, (), {3}, "S301 O101 O201", True),
    ("node 2 dead", {1: 9, 2: 0, 3: 9}, 10.0, {}, (), {1, 3}, "S101 S301 O201", True),
    ("never beat: dead", {1: 9, 3: 9}, 10.0, {}, (), {1, 3}, "S101 S301 O201", True),
    ("reports offline while alive", {1: 0, 2: 0, 3: 0}, 1.0, {201: OFF}, (), {1, 2, 3},
     "S101 S301 O201", True),
    ("admin offline", {1: 0, 2: 0, 3: 0}, 1.0, {}, (301,), {1, 2, 3}, "S101 S201 O301", True),
]


@pytest.mark.parametrize("name,beats,now,local,admin,alive,expected,bumped", TICKS, ids=[t[0] for t in TICKS])
def test_tick(name, beats, now, local, admin, alive, expected, bumped) -> None:  # type: ignore[no-untyped-def]
    state, _ = init_chains(cluster(3), 3)
    for target_id, local_state in local.items():
        state = heartbeat(state, target_id // 100, [Report(target_id, local_state)])
    state = dataclasses.replace(state, admin_offline=frozenset(admin))
    after = tick(state, beats, now, TIMEOUT)
    assert after.alive == alive
    assert spec(after.chains[1]) == expected
    assert after.routing_version == state.routing_version + bumped
    assert (after.chains[1].chain_version > 1) == bumped
    assert tick(after, beats, now, TIMEOUT) is after  # idempotent: no second bump


def test_tick_bumps_once_for_liveness_alone() -> None:
    state = cluster(2)  # no chains
    after = tick(state, {1: 0.0, 2: 100.0}, 100.0, TIMEOUT)
    assert after.alive == {2} and after.routing_version == state.routing_version + 1
    back = tick(after, {1: 100.0, 2: 100.0}, 100.0, TIMEOUT)
    assert back.alive == {1, 2} and back.routing_version == after.routing_version + 1


def test_dead_node_targets_count_offline_whatever_they_said() -> None:
    state = dataclasses.replace(cluster(2, state=UP), alive=frozenset({2}))
    assert effective_local_states(state) == {201: LocalState.UPTODATE}


# -- InitChains ---------------------------------------------------------------------


def spec(chain: Chain) -> str:
    return " ".join(f"{t.state.name[0]}{t.target_id}" for t in chain.targets)


INITS = [
    # name, nodes, targets per node, replicas, chains asked, expected chains (head..tail)
    ("3 nodes, R=3", 3, 1, 3, 0, [[101, 201, 301]]),
    ("3x2, R=3, as many as fit", 3, 2, 3, 0, [[101, 201, 301], [202, 302, 102]]),
    ("3x2, R=3, one asked", 3, 2, 3, 1, [[101, 201, 301]]),
    ("R=1", 2, 1, 1, 0, [[101], [201]]),
]


@pytest.mark.parametrize("name,nodes,per_node,replicas,chains,expected", INITS, ids=[i[0] for i in INITS])
def test_init_chains_plans_all_serving(name, nodes, per_node, replicas, chains, expected) -> None:  # type: ignore[no-untyped-def]
    state = cluster(nodes, per_node)
    made, created = init_chains(state, replicas, chains)
    assert created and made.routing_version == state.routing_version + 1
    assert [[t.target_id for t in made.chains[i].targets] for i in sorted(made.chains)] == expected
    for chain_id, chain in made.chains.items():
        assert chain == new_chain(chain_id, [t.target_id for t in chain.targets])
        assert len({t.target_id // 100 for t in chain.targets}) == replicas
        for member in chain.targets:
            assert made.targets[member.target_id].chain_id == chain_id
    # Idempotent: the same R gives the same table back, no bump, whatever N says.
    for again_chains in (0, chains, 7):
        same, created_again = init_chains(made, replicas, again_chains)
        assert same is made and not created_again


BAD_INITS = [
    # name, nodes, alive, replicas, chains, exception, message part
    ("R=0", 3, {1, 2, 3}, 0, 0, InvalidArgument, "replicas"),
    ("too few nodes", 2, {1, 2}, 3, 0, FailedPrecondition, "2 alive"),
    ("too few alive", 3, {1, 2}, 3, 0, FailedPrecondition, r"2 alive now \(3 registered\)"),
    ("too many chains asked", 3, {1, 2, 3}, 3, 2, FailedPrecondition, "at most 1"),
]


@pytest.mark.parametrize("name,nodes,alive,replicas,chains,exc,message", BAD_INITS, ids=[b[0] for b in BAD_INITS])
def test_init_chains_refuses(name, nodes, alive, replicas, chains, exc, message) -> None:  # type: ignore[no-untyped-def]
    state = dataclasses.replace(cluster(nodes), alive=frozenset(alive))
    with pytest.raises(exc, match=message):
        init_chains(state, replicas, chains)


def test_init_chains_with_another_replica_count_is_failed_precondition() -> None:
    made, _ = init_chains(cluster(3), 3)
    with pytest.raises(FailedPrecondition, match="3 replicas; cannot init with 2"):
        init_chains(made, 2)


# -- admin state -------------------------------------------------------------------------


def test_admin_offline_adds_and_removes_with_bumps_only_on_change() -> None:
    state = cluster(1)
    out = set_admin_offline(state, 101, True)
    assert out.admin_offline == {101} and out.routing_version == state.routing_version + 1
    assert set_admin_offline(out, 101, True) is out
    back = set_admin_offline(out, 101, False)
    assert back.admin_offline == set() and back.routing_version == out.routing_version + 1
    with pytest.raises(NotFound):
        set_admin_offline(state, 999, True)


def test_persistent_parts_ignore_liveness_and_stats() -> None:
    state = cluster(1)
    moved = dataclasses.replace(state, alive=frozenset(), stats={101: TargetStats(1, 2, 3)})
    assert moved.persistent() == state.persistent()


def test_all_nodes_silent_leaves_the_head_lastsrv() -> None:
    state, _ = init_chains(cluster(3), 3)
    after = tick(state, {1: 0.0, 2: 0.0, 3: 0.0}, 100.0, TIMEOUT)
    assert after.alive == set() and spec(after.chains[1]) == "L101 O201 O301"


def test_a_dead_nodes_targets_are_recorded_offline_until_it_reports() -> None:
    state, _ = init_chains(cluster(3, state=UP), 3)
    dead = tick(state, {1: 9.0, 2: 9.0, 3: 0.0}, 10.0, TIMEOUT)
    assert dead.targets[301].local_state == OFF and dead.persistent() != state.persistent()
    # After a restart every node is alive again (grace), but 301 stays out of service.
    restarted = dataclasses.replace(dead, alive=frozenset({1, 2, 3}))
    assert tick(restarted, {1: 10.0, 2: 10.0, 3: 10.0}, 10.0, TIMEOUT).chains[1].state_of(301) == PublicState.OFFLINE
    back = heartbeat(restarted, 3, [Report(301, ON)])
    assert tick(back, {1: 10.0, 2: 10.0, 3: 10.0}, 10.0, TIMEOUT).chains[1].state_of(301) == PublicState.SYNCING


@pytest.mark.parametrize("seen,promoted", [(None, True), ("current", True), ("older", False)])
def test_uptodate_from_a_stale_view_does_not_end_a_sync(seen: str | None, promoted: bool) -> None:
    """A target taken out and back inside one heartbeat interval never saw itself out: its
    node, still on the old view where it is SERVING, reports UPTODATE. From a view older than
    the manager's that must not make the SYNCING target SERVING: it missed the writes made
    while it was out, and only its predecessor's resync (then a report from the current
    view) may bring it back."""
    state, _ = init_chains(cluster(2, state=UP), 2)
    state = tick(state, {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    old_view = state.routing_version
    out = tick(set_admin_offline(state, 201, True), {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    back = tick(set_admin_offline(out, 201, False), {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    back = tick(heartbeat(back, 2, [Report(201, ON)], seen_version=back.routing_version),
                {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    assert back.chains[1].state_of(201) == PublicState.SYNCING
    version = {None: None, "current": back.routing_version, "older": old_view}[seen]
    beat = tick(heartbeat(back, 2, [Report(201, UP)], seen_version=version), {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    assert (beat.chains[1].state_of(201) == PublicState.SERVING) == promoted


@pytest.mark.parametrize("chain_seen,routing_seen,promoted", [
    ("current", "older", True),   # the chain's current version: changes elsewhere do not matter
    ("older", "current", False),  # a view of an older version of this chain
])
def test_uptodate_is_judged_by_the_chain_version_it_was_reported_at(chain_seen: str, routing_seen: str,
                                                                     promoted: bool) -> None:
    """With thousands of targets the routing version moves every few milliseconds; judged
    by it, a finished resync would almost never count. A report's chain version says
    exactly which state of its own chain the node judged from."""
    state, _ = init_chains(cluster(2, state=UP), 2)
    state = tick(state, {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    out = tick(set_admin_offline(state, 201, True), {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    back = tick(set_admin_offline(out, 201, False), {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    back = tick(heartbeat(back, 2, [Report(201, ON)], seen_version=back.routing_version),
                {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    assert back.chains[1].state_of(201) == PublicState.SYNCING
    chain_version = back.chains[1].chain_version - (0 if chain_seen == "current" else 1)
    routing_version = back.routing_version - (0 if routing_seen == "current" else 1)
    report = Report(201, UP, chain_version=chain_version)
    beat = tick(heartbeat(back, 2, [report], seen_version=routing_version), {1: 1.0, 2: 1.0}, 1.0, TIMEOUT)
    assert (beat.chains[1].state_of(201) == PublicState.SERVING) == promoted
