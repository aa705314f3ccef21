"""The chain state machine, one table row per transition."""

from __future__ import annotations

import pytest

from emberfs.common import errors as e
from emberfs.common.chainstate import (
    Chain,
    ChainTarget,
    LocalState,
    PublicState,
    chain_from_proto,
    chain_to_proto,
    chain_transitions,
    new_chain,
    next_chain,
)

PS = {"S": PublicState.SERVING, "Y": PublicState.SYNCING, "W": PublicState.WAITING,
      "L": PublicState.LASTSRV, "O": PublicState.OFFLINE}
LS = {"on": LocalState.ONLINE, "up": LocalState.UPTODATE, "off": LocalState.OFFLINE}


def ch(spec: str, version: int = 10) -> Chain:
    """'S1 S2 O3' -> a chain: state letter then target id."""
    return Chain(7, version, tuple(ChainTarget(int(t[1:]), PS[t[0]]) for t in spec.split()))


def spec(chain: Chain) -> str:
    letters = {v: k for k, v in PS.items()}
    return " ".join(f"{letters[t.state]}{t.target_id}" for t in chain.targets)


def local(text: str) -> dict[int, LocalState]:
    """'1:up 2:off' -> local states."""
    return {int(k): LS[v] for k, v in (p.split(":") for p in text.split())}


TRANSITIONS = [
    # name, chain, local states, admin offline, expected chain
    ("steady", "S1 S2 S3", "1:up 2:up 3:up", (), "S1 S2 S3"),
    ("serving restarted quickly stays", "S1 S2 S3", "1:on 2:up 3:on", (), "S1 S2 S3"),
    ("head lost", "S1 S2 S3", "1:off 2:up 3:up", (), "S2 S3 O1"),
    ("middle lost", "S1 S2 S3", "1:up 2:off 3:up", (), "S1 S3 O2"),
    ("tail lost", "S1 S2 S3", "1:up 2:up 3:off", (), "S1 S2 O3"),
    ("no heartbeat counts as lost", "S1 S2 S3", "1:up 3:up", (), "S1 S3 O2"),
    ("two of three lost", "S1 S2 S3", "1:off 2:up 3:off", (), "S2 O1 O3"),
    ("all lost at once: the head is lastsrv", "S1 S2 S3", "1:off 2:off 3:off", (), "L1 O2 O3"),
    ("last serving lost: lastsrv", "S3 O1 O2", "1:off 2:off 3:off", (), "L3 O1 O2"),
    ("lastsrv stays while down", "L3 O1 O2", "", (), "L3 O1 O2"),
    ("lastsrv returns first: serves", "L3 O1 O2", "3:on", (), "S3 O1 O2"),
    ("lastsrv returns uptodate: serves", "L3 O1 O2", "3:up", (), "S3 O1 O2"),
    ("other returns first: must wait", "L3 O1 O2", "1:on", (), "L3 W1 O2"),
    ("waiters while lastsrv down", "L3 W1 O2", "1:on 2:on", (), "L3 W1 W2"),
    ("lastsrv back, a waiter syncs", "L3 W1 W2", "1:on 2:on 3:on", (), "S3 Y1 W2"),
    ("lastsrv and another back together", "L3 O1 O2", "1:on 3:on", (), "S3 Y1 O2"),
    ("returning target syncs", "S1 S2 O3", "1:up 2:up 3:on", (), "S1 S2 Y3"),
    ("one syncing at a time", "S1 O2 O3", "1:up 2:on 3:on", (), "S1 Y2 W3"),
    ("waiting keeps waiting", "S1 Y2 W3", "1:up 2:on 3:on", (), "S1 Y2 W3"),
    ("sync done: new tail, next syncs", "S1 Y2 W3", "1:up 2:up 3:on", (), "S1 S2 Y3"),
    ("sync done", "S1 S2 Y3", "1:up 2:up 3:up", (), "S1 S2 S3"),
    ("syncing lost", "S1 S2 Y3", "1:up 2:up 3:off", (), "S1 S2 O3"),
    ("waiting lost", "S1 Y2 W3", "1:up 2:on 3:off", (), "S1 Y2 O3"),
    ("serving lost under a sync: sync must wait", "S1 Y2", "1:off 2:on", (), "L1 W2"),
    ("sync done as the last serving goes", "S1 Y2", "1:off 2:up", (), "S2 O1"),
    ("uptodate while out of the chain: waits", "S1 Y2 W3", "1:up 2:on 3:up", (), "S1 Y2 W3"),
    ("uptodate from offline: waits", "S1 O2", "1:up 2:up", (), "S1 W2"),
    ("admin offline of a serving target", "S1 S2 S3", "1:up 2:up 3:up", (2,), "S1 S3 O2"),
    ("admin offline of the last serving", "S1 O2", "1:up 2:off", (1,), "L1 O2"),
    ("admin-offline lastsrv cannot serve", "L1 O2", "1:up", (1,), "L1 O2"),
    ("admin offline of a returning target", "S1 O2", "1:up 2:on", (2,), "S1 O2"),
    ("admin offline of the syncing target", "S1 Y2", "1:up 2:on", (2,), "S1 O2"),
    ("admin offline lifted: it syncs", "S1 O2", "1:up 2:on", (), "S1 Y2"),
    ("malformed: lastsrv beside serving", "S1 L2", "1:up 2:on", (), "S1 Y2"),
    ("malformed: two syncing", "S1 Y2 Y3", "1:up 2:on 3:on", (), "S1 Y2 W3"),
    ("single replica lost and back", "L1", "1:on", (), "S1"),
]


@pytest.mark.parametrize(
    "before,states,admin,after",
    [t[1:] for t in TRANSITIONS],
    ids=[t[0] for t in TRANSITIONS],
)
def test_transition(before, states, admin, after) -> None:
    old = ch(before)
    new = next_chain(old, local(states), admin)
    assert spec(new) == after
    assert new.chain_id == old.chain_id
    assert new.chain_version == old.chain_version + (after != before)
    # Idempotent: the same inputs change nothing further.
    assert next_chain(new, local(states), admin) == new


RESTARTS = [
    # name, chain, local states, restarted targets, expected chain
    ("serving head restarted inside the timeout: out, then syncs", "S1 S2 S3", "1:on 2:up 3:up", (1,), "S2 S3 O1"),
    ("restarted tail reporting uptodate still leaves", "S1 S2 S3", "1:up 2:up 3:up", (3,), "S1 S2 O3"),
    ("restarted syncing target restarts its sync", "S1 S2 Y3", "1:up 2:up 3:on", (3,), "S1 S2 O3"),
    ("the last serving target restarted: lastsrv", "S1 O2 O3", "1:on", (1,), "L1 O2 O3"),
    ("all restarted at once: the head is lastsrv", "S1 S2 S3", "1:on 2:on 3:on", (1, 2, 3), "L1 O2 O3"),
]


@pytest.mark.parametrize("before,states,restarted,after", [t[1:] for t in RESTARTS], ids=[t[0] for t in RESTARTS])
def test_a_restarted_target_leaves_its_chain(before, states, restarted, after) -> None:
    new = next_chain(ch(before), local(states), restarted=restarted)
    assert spec(new) == after
    # The next transition (no restart news) brings it back only through SYNCING or LASTSRV.
    again = next_chain(new, local(states))
    assert all(t.state != PublicState.SERVING or t.target_id not in restarted or spec(new).startswith("L")
               for t in again.targets)


def test_a_restarted_head_returns_through_syncing() -> None:
    out = next_chain(ch("S1 S2 S3"), local("1:on 2:up 3:up"), restarted=(1,))
    back = next_chain(out, local("1:on 2:up 3:up"))
    assert spec(back) == "S2 S3 Y1"
    assert spec(next_chain(back, local("1:up 2:up 3:up"))) == "S2 S3 S1"


def test_no_change_returns_the_same_version() -> None:
    old = ch("S1 S2 O3", version=4)
    assert next_chain(old, local("1:up 2:up 3:off")) is old


def test_local_states_may_be_plain_ints() -> None:
    assert spec(next_chain(ch("S1 S2"), {1: 2, 2: 3})) == "S1 O2"


def test_new_chain_starts_serving_at_version_1() -> None:
    chain = new_chain(3, [11, 12, 13])
    assert chain == Chain(3, 1, tuple(ChainTarget(t, PublicState.SERVING) for t in (11, 12, 13)))
    # Freshly online targets of a new chain keep serving (bootstrap).
    assert next_chain(chain, {11: LocalState.ONLINE, 12: LocalState.ONLINE, 13: LocalState.ONLINE}) is chain


@pytest.mark.parametrize("targets", [[], [1, 1]])
def test_new_chain_refuses(targets) -> None:
    with pytest.raises(e.InvalidArgument):
        new_chain(1, targets)


def test_chain_accessors() -> None:
    chain = ch("S4 S2 Y9 W3 O5")
    assert chain.serving == (4, 2) and chain.head == 4 and chain.tail == 2
    assert chain.write_path == (4, 2, 9)
    assert [chain.successor(t) for t in (4, 2, 9, 3, 77)] == [2, 9, None, None, None]
    assert chain.state_of(3) == PublicState.WAITING and chain.state_of(77) is None
    empty = ch("L1 O2")
    assert empty.head is None and empty.tail is None and empty.write_path == ()


def test_enums_match_the_proto() -> None:
    from emberfs.proto import mgmt_pb2

    for state in PublicState:
        assert mgmt_pb2.PublicTargetState.Value(state.name) == state
    for state in LocalState:
        assert mgmt_pb2.LocalTargetState.Value(f"LOCAL_{state.name}") == state


def test_proto_round_trip() -> None:
    chain = ch("S1 S2 Y3 O4", version=99)
    info = chain_to_proto(chain)
    assert info.chain_version == 99 and info.targets[2].public_state == PublicState.SYNCING
    assert chain_from_proto(info) == chain


@pytest.mark.parametrize(
    ("old", "new", "lines"),
    [
        ("S1 S2", "S1 O2", ["chain 7 v11: target 2 SERVING -> OFFLINE"]),
        ("S1 S2", "S1 S2", []),
        ("S1 O2", "S1 Y2 O3", ["chain 7 v11: target 2 OFFLINE -> SYNCING", "chain 7 v11: target 3 NONE -> OFFLINE"]),
        (None, "S1 S2", []),  # a chain that just appeared: no transition to name
    ],
)
def test_chain_transitions_name_each_public_change(old: str | None, new: str, lines: list[str]) -> None:
    before = {} if old is None else {7: ch(old)}
    after = {7: ch(new, 10 if new == old else 11)}
    assert chain_transitions(before, after) == lines
