"""The cluster manager's state and every decision it makes, as pure functions.

`ClusterState` is one state of the cluster (the functions here never change the one they
are given; the running manager applies them incrementally, draft.py): registered nodes, their targets, the chain
table, the routing version and the admin-offline set, plus two parts that are never
persisted (which nodes are alive, the last capacity/usage stats). Each transition
takes a state and its inputs (requests, heartbeat times, the clock reading) and
returns the next state; the manager (manager.py) only does the I/O around them, so
the rules are table-tested here without a server.

Invariants the transitions keep:
- target_id = node_id * 100 + k (k in 1..99), so a target belongs to one node;
- a target is in at most one chain, and its `chain_id` names that chain (0: none);
- `routing_version` moves by exactly one per transition that changes what
  `GetRouting` publishes about membership or chains: a node's address, bulk address
  or targets, a node's liveness, a chain's order or states (`next_chain` bumps the
  chain's own version), the chain table, the admin-offline set. Heartbeat stats and
  local states alone never bump it (a local state matters once it moves a chain);
- a node is alive while its last heartbeat is at most `timeout` old; the targets of
  a dead node count as locally OFFLINE, whatever they said last, and are recorded
  so until the node reports again;
- a node that registers with another incarnation than the one recorded was
  restarted: its targets leave their chains at once (next_chain's `restarted`), so
  they resync before serving again however quickly the server came back; a
  heartbeat from another incarnation than the registered one is answered
  "register again".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from emberfs.common.chainstate import Chain, LocalState, PublicState, new_chain, next_chain
from emberfs.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

from .plan import plan_chains

__all__ = [
    "MAX_TARGETS_PER_NODE",
    "ClusterState",
    "NodeRecord",
    "Registration",
    "Report",
    "TargetRecord",
    "TargetStats",
    "effective_local_states",
    "heartbeat",
    "init_chains",
    "register",
    "set_admin_offline",
    "stale_uptodate",
    "tick",
]

MAX_TARGETS_PER_NODE = 99  # target_id = node_id * 100 + k leaves two decimal digits for k
MAX_NODE_ID = 2**32 - 1


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A registered storage server (persisted)."""

    node_id: int
    address: str
    bulk_address: str = ""
    incarnation: int = 0
    """Random per server process (0: not given): another one means a restart."""


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """A target as the manager keeps it (persisted). `local_state` is the last one
    reported (0 = never), kept so that after a metaserver restart the chains are
    judged by what the targets said last, not as if all were silent."""

    target_id: int
    node_id: int
    chain_id: int = 0
    local_state: int = 0


@dataclass(frozen=True, slots=True)
class TargetStats:
    """Capacity and usage from the last heartbeat (memory only: the next heartbeat
    brings them back, so they are not worth a disk write per beat)."""

    capacity_bytes: int = 0
    used_bytes: int = 0
    chunks: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    """What a storage server says of one target (proto: TargetReport)."""

    target_id: int
    local_state: int
    stats: TargetStats = TargetStats()
    chain_version: int = 0  # of the view local_state was judged from; 0: not known


@dataclass(frozen=True, slots=True)
class Registration:
    node_id: int
    address: str
    reports: tuple[Report, ...] = ()
    bulk_address: str = ""
    incarnation: int = 0


@dataclass(frozen=True)
class ClusterState:
    """One snapshot of the manager's view. Treat the mappings as read-only."""

    nodes: Mapping[int, NodeRecord] = field(default_factory=dict)
    targets: Mapping[int, TargetRecord] = field(default_factory=dict)
    chains: Mapping[int, Chain] = field(default_factory=dict)
    routing_version: int = 0
    admin_offline: frozenset[int] = frozenset()
    # Not persisted: liveness is re-derived from heartbeats, stats re-reported.
    alive: frozenset[int] = frozenset()
    stats: Mapping[int, TargetStats] = field(default_factory=dict)

    def targets_of(self, node_id: int) -> tuple[int, ...]:
        return tuple(sorted(t.target_id for t in self.targets.values() if t.node_id == node_id))

    def persistent(self) -> tuple[object, ...]:
        """The parts stored in LMDB: equal values mean there is nothing to write."""
        return (self.nodes, self.targets, self.chains, self.routing_version, self.admin_offline)

    def bumped(self, **changes: object) -> ClusterState:
        """This state with `changes` applied and the routing version moved on by one."""
        return dataclasses.replace(self, routing_version=self.routing_version + 1, **changes)  # type: ignore[arg-type]


# -- validation ----------------------------------------------------------------


def check_address(address: str, what: str = "address") -> str:
    """A dialable HOST:PORT: a host, and a port in 1..65535."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(f"{what} {address!r} is not HOST:PORT with a port in 1..65535")
    return address


def _check_local_state(target_id: int, local_state: int) -> None:
    if local_state not in tuple(LocalState):
        raise InvalidArgument(f"target {target_id}: local state {local_state} is not ONLINE, UPTODATE or OFFLINE")


def _check_registration(reg: Registration) -> None:
    if not 1 <= reg.node_id <= MAX_NODE_ID:
        raise InvalidArgument(f"node_id must be in 1..{MAX_NODE_ID}, not {reg.node_id}")
    check_address(reg.address)
    if reg.bulk_address:
        check_address(reg.bulk_address, "bulk_address")
    ids = [r.target_id for r in reg.reports]
    if len(set(ids)) != len(ids):
        raise InvalidArgument(f"node {reg.node_id} lists a target twice: {ids}")
    for report in reg.reports:
        node, k = divmod(report.target_id, 100)
        if node != reg.node_id or not 1 <= k <= MAX_TARGETS_PER_NODE:
            raise InvalidArgument(
                f"target {report.target_id} of node {reg.node_id} must be "
                f"{reg.node_id}*100+k with k in 1..{MAX_TARGETS_PER_NODE}"
            )
        _check_local_state(report.target_id, report.local_state)


# -- transitions -----------------------------------------------------------------


def register(state: ClusterState, reg: Registration) -> ClusterState:
    """A storage server (re)registers. The same data again changes nothing; a new
    node, a new address or a changed target set bumps the routing version. Targets
    the node no longer lists are forgotten unless a chain holds them (then they stay,
    unreported, and count as OFFLINE: a chain never loses a member silently)."""
    _check_registration(reg)
    for report in reg.reports:
        owner = state.targets.get(report.target_id)
        if owner is not None and owner.node_id != reg.node_id:
            raise AlreadyExists(
                f"target {report.target_id} is already registered by node {owner.node_id}, "
                f"not node {reg.node_id}"
            )
    node = NodeRecord(reg.node_id, reg.address, reg.bulk_address, reg.incarnation)
    recorded = state.nodes.get(reg.node_id)
    restarted = recorded is not None and recorded.incarnation != reg.incarnation
    targets = dict(state.targets)
    stats = dict(state.stats)
    listed = {r.target_id for r in reg.reports}
    for target_id in state.targets_of(reg.node_id):
        if target_id not in listed and targets[target_id].chain_id == 0:
            del targets[target_id]
            stats.pop(target_id, None)
    for report in reg.reports:
        known = targets.get(report.target_id) or TargetRecord(report.target_id, reg.node_id)
        targets[report.target_id] = dataclasses.replace(known, local_state=report.local_state)
        stats[report.target_id] = report.stats
    changed = (
        state.nodes.get(reg.node_id) != node
        or set(state.targets_of(reg.node_id)) != {t for t, r in targets.items() if r.node_id == reg.node_id}
        or reg.node_id not in state.alive
    )
    new = dataclasses.replace(
        state,
        nodes={**state.nodes, reg.node_id: node},
        targets=targets,
        stats=stats,
        alive=state.alive | {reg.node_id},
    )
    if restarted:
        # Out of their chains now, whatever they report: they resync before serving.
        mine = frozenset(new.targets_of(reg.node_id))
        local = effective_local_states(new)
        chains = {cid: next_chain(chain, local, new.admin_offline, restarted=mine)
                  if mine & {t.target_id for t in chain.targets} else chain
                  for cid, chain in new.chains.items()}
        return new.bumped(chains=chains)
    return new.bumped() if changed else new


def heartbeat(state: ClusterState, node_id: int, reports: Iterable[Report], incarnation: int = 0,
              seen_version: int | None = None) -> ClusterState:
    """Record a heartbeat's local states and stats. NotFound when the node, or a
    target it reports, is unknown, or the beat comes from another incarnation than
    the registered one: the server must register (again).

    seen_version: the routing version the node computed its reports from
    (`stale_uptodate` says how it and each report's chain version are used)."""
    if node_id not in state.nodes:
        raise NotFound(f"node {node_id} is not registered")
    if state.nodes[node_id].incarnation != incarnation:
        raise NotFound(f"node {node_id} registered as incarnation {state.nodes[node_id].incarnation:#x}, "
                       f"not {incarnation:#x}")
    targets = dict(state.targets)
    stats = dict(state.stats)
    for report in reports:
        known = targets.get(report.target_id)
        if known is None or known.node_id != node_id:
            raise NotFound(f"target {report.target_id} is not registered for node {node_id}")
        _check_local_state(report.target_id, report.local_state)
        local_state = report.local_state
        if stale_uptodate(report, state.chains.get(known.chain_id), seen_version, state.routing_version):
            local_state = int(LocalState.ONLINE)
        if known.local_state != local_state:
            targets[report.target_id] = dataclasses.replace(known, local_state=local_state)
        stats[report.target_id] = report.stats
    new = dataclasses.replace(state, targets=targets, stats=stats, alive=state.alive | {node_id})
    return new if node_id in state.alive else new.bumped()


def stale_uptodate(report: Report, chain: Chain | None, seen_version: int | None, routing_version: int) -> bool:
    """Whether an UPTODATE report must count as ONLINE: it cannot end a SYNCING state when
    judged from a view older than the chain's current version (the node may not know
    the target was taken out at all: its stale view shows it SERVING). Judged per chain
    by the report's chain version; a report without one falls back to the heartbeat's
    routing version, which any change anywhere in the cluster makes stale."""
    if report.local_state != LocalState.UPTODATE or chain is None or chain.state_of(report.target_id) != \
            PublicState.SYNCING:
        return False
    if report.chain_version:
        return report.chain_version < chain.chain_version
    return seen_version is not None and seen_version < routing_version


def effective_local_states(state: ClusterState) -> dict[int, LocalState]:
    """Each target's local state as the chain rules see it: what it reported while
    its node is alive; nothing (hence OFFLINE) for a dead node or no report yet."""
    return {
        t.target_id: LocalState(t.local_state)
        for t in state.targets.values()
        if t.node_id in state.alive and t.local_state
    }


def tick(state: ClusterState, last_beat: Mapping[int, float], now: float, timeout: float) -> ClusterState:
    """Apply liveness (a node silent for more than `timeout` is dead) and then
    `next_chain` to every chain. One routing bump if anything changed."""
    alive = frozenset(n for n in state.nodes if n in last_beat and now - last_beat[n] <= timeout)
    targets = dict(state.targets)
    for target in state.targets.values():
        if target.node_id in state.alive - alive and target.local_state != LocalState.OFFLINE:
            # Remembered (and persisted) as OFFLINE, so that the grace period after a
            # metaserver restart cannot bring back a node that was dead before it.
            targets[target.target_id] = dataclasses.replace(target, local_state=int(LocalState.OFFLINE))
    judged = dataclasses.replace(state, alive=alive, targets=targets)
    local = effective_local_states(judged)
    chains = {cid: next_chain(chain, local, state.admin_offline) for cid, chain in state.chains.items()}
    if alive == state.alive and chains == state.chains:
        return state
    return judged.bumped(chains=chains)


def init_chains(state: ClusterState, replicas: int, chains: int = 0) -> tuple[ClusterState, bool]:
    """Create the chain table over the alive nodes' targets (each chain on `replicas`
    distinct nodes, all SERVING at version 1). Idempotent: with chains already there
    and the same `replicas`, nothing changes and the answer is (state, False)."""
    if replicas < 1:
        raise InvalidArgument(f"replicas must be at least 1, not {replicas}")
    if chains < 0:
        raise InvalidArgument(f"chains must be non-negative, not {chains}")
    if state.chains:
        existing = len(next(iter(state.chains.values())).targets)
        if replicas != existing:
            raise FailedPrecondition(
                f"chains exist with {existing} replicas; cannot init with {replicas}"
            )
        return state, False
    pools = {n: state.targets_of(n) for n in sorted(state.alive) if n in state.nodes}
    pools = {n: ts for n, ts in pools.items() if ts}
    if len(pools) < replicas:
        raise FailedPrecondition(
            f"{replicas} replicas need {replicas} alive storage nodes with targets; "
            f"{len(pools)} alive now ({len(state.nodes)} registered)"
        )
    planned = plan_chains(pools, replicas, chains)
    table = {i: new_chain(i, ids) for i, ids in enumerate(planned, start=1)}
    targets = dict(state.targets)
    for chain in table.values():
        for member in chain.targets:
            targets[member.target_id] = dataclasses.replace(targets[member.target_id], chain_id=chain.chain_id)
    return state.bumped(chains=table, targets=targets), True


def set_admin_offline(state: ClusterState, target_id: int, offline: bool) -> ClusterState:
    """Take a target out (offline=True) or let it rejoin; the next tick moves its chain."""
    if target_id not in state.targets:
        raise NotFound(f"unknown target {target_id}")
    admin = state.admin_offline | {target_id} if offline else state.admin_offline - {target_id}
    if admin == state.admin_offline:
        return state
    return state.bumped(admin_offline=admin)
