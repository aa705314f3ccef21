"""The manager's rules applied incrementally: a decision costs what it touches.

state.py's transitions take a whole `ClusterState` and return a whole new one: clear
to read and test, but each copies and compares every node, target and chain, which
at thousands of targets is more than a heartbeat interval's worth of CPU (issue 23).
The functions here make the same decisions on a `Draft`: pending changes over the
published state. Reads see the state with the changes; writes go to the changes
only, so the published state stays as it was until the manager has persisted the
draft (table.save_draft) and calls `publish`, which folds the changes into the
state's mappings in place. A decision that changes nothing leaves the draft empty:
nothing to write, nothing to publish.

Each function here agrees with its whole-state counterpart in state.py (the
equivalence test runs random event sequences through both):

    beat      = heartbeat            register  = register
    tick      = tick, for the nodes found past their deadline and the chains in `dirty`
    set_admin = set_admin_offline    absorb    = any whole-state result (InitChains)

`tick` judges only dirty chains. The invariant that makes that enough: a chain
not dirty is a fixed point of next_chain under the current inputs. Every change of
a chain's inputs (a member's effective local state, liveness, admin-offline, a
restart) marks it dirty, and a chain that tick changed stays dirty until a tick
leaves it alone (next_chain need not settle in one step); the manager marks all
chains dirty when it loads the state.

`routing_version` moves exactly as in state.py: `bumps` counts one per transition
that changed what GetRouting publishes.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable

from emberfs.common.chainstate import Chain, LocalState, next_chain
from emberfs.common.errors import AlreadyExists, NotFound

from .state import (
    MAX_TARGETS_PER_NODE,
    ClusterState,
    NodeRecord,
    Registration,
    Report,
    TargetRecord,
    TargetStats,
    _check_local_state,
    _check_registration,
    stale_uptodate,
)

__all__ = ["Deadlines", "Draft", "absorb", "beat", "publish", "register", "set_admin", "tick"]


class Draft:
    """Pending changes over `base` (not changed until `publish`). A record set to None
    is deleted."""

    def __init__(self, base: ClusterState, dirty: set[int]) -> None:
        self.base = base
        self.dirty = dirty  # chain ids to judge; shared with the manager, updated by publish
        self.nodes: dict[int, NodeRecord] = {}
        self.targets: dict[int, TargetRecord | None] = {}
        self.chains: dict[int, Chain] = {}
        self.removed_chains: set[int] = set()
        self.stats: dict[int, TargetStats | None] = {}
        self.alive: dict[int, bool] = {}
        self.admin_offline: frozenset[int] | None = None
        self.bumps = 0
        self.marked: set[int] = set()  # chains whose inputs changed in this draft
        self.judged: set[int] | None = None  # the chains `tick` moved (None: no tick ran)

    # -- reads (base with the changes) --------------------------------------------
    def node(self, node_id: int) -> NodeRecord | None:
        return self.nodes[node_id] if node_id in self.nodes else self.base.nodes.get(node_id)

    def target(self, target_id: int) -> TargetRecord | None:
        return self.targets[target_id] if target_id in self.targets else self.base.targets.get(target_id)

    def chain(self, chain_id: int) -> Chain | None:
        if chain_id in self.removed_chains:
            return None
        return self.chains[chain_id] if chain_id in self.chains else self.base.chains.get(chain_id)

    def is_alive(self, node_id: int) -> bool:
        return self.alive.get(node_id, node_id in self.base.alive)

    def admin(self) -> frozenset[int]:
        return self.base.admin_offline if self.admin_offline is None else self.admin_offline

    def targets_of(self, node_id: int) -> tuple[int, ...]:
        """The node's targets, ascending: ids node_id*100+k (state.py's invariant), so
        looking up 99 ids replaces a scan of every target."""
        first = node_id * 100
        return tuple(t for t in range(first + 1, first + MAX_TARGETS_PER_NODE + 1)
                     if (r := self.target(t)) is not None and r.node_id == node_id)

    def local(self, target_id: int) -> LocalState | None:
        """The effective local state (state.effective_local_states for one target)."""
        record = self.target(target_id)
        if record is None or not record.local_state or not self.is_alive(record.node_id):
            return None
        return LocalState(record.local_state)

    @property
    def persistent(self) -> bool:
        """Whether the store must be written (liveness and stats are not stored)."""
        return bool(self.nodes or self.targets or self.chains or self.removed_chains
                    or self.admin_offline is not None or self.bumps)

    @property
    def empty(self) -> bool:
        return not (self.nodes or self.targets or self.chains or self.removed_chains or self.stats
                    or self.alive or self.admin_offline is not None or self.bumps or self.marked)

    # -- writes ---------------------------------------------------------------------
    def put_target(self, record: TargetRecord) -> None:
        if self.target(record.target_id) != record:
            self.targets[record.target_id] = record

    def mark(self, target_ids: Iterable[int]) -> None:
        """The chains of these targets have new inputs: judge them."""
        for target_id in target_ids:
            record = self.target(target_id)
            if record is not None and record.chain_id:
                self.marked.add(record.chain_id)


# -- transitions (state.py's, one node or a few chains at a time) ---------------------


def beat(draft: Draft, node_id: int, reports: Iterable[Report], incarnation: int = 0,
         seen_version: int | None = None) -> None:
    """state.heartbeat on a draft."""
    node = draft.node(node_id)
    if node is None:
        raise NotFound(f"node {node_id} is not registered")
    if node.incarnation != incarnation:
        raise NotFound(f"node {node_id} registered as incarnation {node.incarnation:#x}, not {incarnation:#x}")
    version = draft.base.routing_version + draft.bumps
    changes: list[TargetRecord] = []
    stats: dict[int, TargetStats] = {}
    for report in reports:
        known = draft.target(report.target_id)
        if known is None or known.node_id != node_id:
            raise NotFound(f"target {report.target_id} is not registered for node {node_id}")
        _check_local_state(report.target_id, report.local_state)
        local_state = report.local_state
        if stale_uptodate(report, draft.chain(known.chain_id), seen_version, version):
            local_state = int(LocalState.ONLINE)
        if known.local_state != local_state:
            changes.append(dataclasses.replace(known, local_state=local_state))
        stats[report.target_id] = report.stats
    for record in changes:  # only after every report was checked: a refused beat changes nothing
        draft.put_target(record)
    draft.mark(r.target_id for r in changes)
    for target_id, value in stats.items():
        if draft.base.stats.get(target_id) != value:
            draft.stats[target_id] = value
    if not draft.is_alive(node_id):
        draft.alive[node_id] = True
        draft.mark(draft.targets_of(node_id))
        draft.bumps += 1


def register(draft: Draft, reg: Registration) -> None:
    """state.register on a draft."""
    _check_registration(reg)
    for report in reg.reports:
        owner = draft.target(report.target_id)
        if owner is not None and owner.node_id != reg.node_id:
            raise AlreadyExists(f"target {report.target_id} is already registered by node {owner.node_id}, "
                                f"not node {reg.node_id}")
    node = NodeRecord(reg.node_id, reg.address, reg.bulk_address, reg.incarnation)
    recorded = draft.node(reg.node_id)
    restarted = recorded is not None and recorded.incarnation != reg.incarnation
    before = draft.targets_of(reg.node_id)
    listed = {r.target_id for r in reg.reports}
    for target_id in before:
        record = draft.target(target_id)
        if target_id not in listed and record is not None and record.chain_id == 0:
            draft.targets[target_id] = None
            if target_id in draft.base.stats or draft.stats.get(target_id) is not None:
                draft.stats[target_id] = None
    for report in reg.reports:
        known = draft.target(report.target_id) or TargetRecord(report.target_id, reg.node_id)
        draft.put_target(dataclasses.replace(known, local_state=report.local_state))
        draft.stats[report.target_id] = report.stats
    was_alive = draft.is_alive(reg.node_id)
    changed = recorded != node or set(before) != set(draft.targets_of(reg.node_id)) or not was_alive
    if recorded != node:
        draft.nodes[reg.node_id] = node
    draft.alive[reg.node_id] = True
    mine = draft.targets_of(reg.node_id)
    draft.mark(mine)  # local states may have moved, and a dead node came back
    if restarted:
        # Out of their chains now, whatever they report: they resync before serving.
        admin = draft.admin()
        for chain_id in sorted({c for t in mine if (c := _chain_of(draft, t))}):
            chain = draft.chain(chain_id)
            assert chain is not None
            after = next_chain(chain, _locals(draft, chain), admin, restarted=frozenset(mine))
            if after != chain:
                draft.chains[chain_id] = after
        draft.bumps += 1
    elif changed:
        draft.bumps += 1


def _chain_of(draft: Draft, target_id: int) -> int:
    record = draft.target(target_id)
    return record.chain_id if record is not None else 0


def _locals(draft: Draft, chain: Chain) -> dict[int, LocalState]:
    return {t.target_id: s for t in chain.targets if (s := draft.local(t.target_id)) is not None}


def tick(draft: Draft, dead: Iterable[int]) -> None:
    """state.tick on a draft: `dead` are the nodes past their deadline (the manager's
    Deadlines finds them); then next_chain over the dirty and marked chains. One
    bump if a node died or a chain moved. A chain it changes stays dirty (next_chain
    need not settle in one step); one it leaves alone is clean again."""
    died = [n for n in sorted(dead) if draft.node(n) is not None and draft.is_alive(n)]
    for node_id in died:
        draft.alive[node_id] = False
        mine = draft.targets_of(node_id)
        for target_id in mine:
            record = draft.target(target_id)
            if record is not None and record.local_state != LocalState.OFFLINE:
                # Persisted as OFFLINE: a metaserver restart's grace cannot bring it back.
                draft.put_target(dataclasses.replace(record, local_state=int(LocalState.OFFLINE)))
        draft.mark(mine)
    admin = draft.admin()
    draft.judged = set()
    for chain_id in sorted(draft.dirty | draft.marked):
        chain = draft.chain(chain_id)
        if chain is None:
            continue
        after = next_chain(chain, _locals(draft, chain), admin)
        if after != chain:
            draft.chains[chain_id] = after
            draft.judged.add(chain_id)
    if died or draft.judged:
        draft.bumps += 1


def set_admin(draft: Draft, target_id: int, offline: bool) -> None:
    """state.set_admin_offline on a draft."""
    if draft.target(target_id) is None:
        raise NotFound(f"unknown target {target_id}")
    current = draft.admin()
    admin = current | {target_id} if offline else current - {target_id}
    if admin != current:
        draft.admin_offline = admin
        draft.mark([target_id])
        draft.bumps += 1


def absorb(draft: Draft, new: ClusterState) -> None:
    """Take a whole-state result (for rare decisions such as InitChains) into an empty
    draft: the difference from the base, every chain of it to be judged."""
    old = draft.base
    draft.nodes = {k: v for k, v in new.nodes.items() if old.nodes.get(k) != v}
    draft.targets = {k: v for k, v in new.targets.items() if old.targets.get(k) != v}
    draft.targets.update(dict.fromkeys(old.targets.keys() - new.targets.keys()))
    draft.chains = {k: v for k, v in new.chains.items() if old.chains.get(k) != v}
    draft.removed_chains = set(old.chains.keys() - new.chains.keys())
    draft.stats = {k: v for k, v in new.stats.items() if old.stats.get(k) != v}
    draft.stats.update(dict.fromkeys(old.stats.keys() - new.stats.keys()))
    draft.alive = {n: n in new.alive for n in old.alive ^ new.alive}
    draft.admin_offline = new.admin_offline if new.admin_offline != old.admin_offline else None
    draft.bumps = new.routing_version - old.routing_version
    draft.marked = set(draft.chains)


def publish(draft: Draft) -> ClusterState:
    """Fold the draft into its base's mappings (in place: the manager's state is one
    object, never copied whole) and return the state with the new scalars."""
    base = draft.base
    nodes, targets, chains, stats = (_dict(m) for m in (base.nodes, base.targets, base.chains, base.stats))
    nodes.update(draft.nodes)
    _apply(targets, draft.targets)
    for chain_id in draft.removed_chains:
        chains.pop(chain_id, None)
    chains.update(draft.chains)
    _apply(stats, draft.stats)
    alive = base.alive
    if any((n in alive) != up for n, up in draft.alive.items()):
        alive = frozenset(n for n in alive if draft.alive.get(n, True)) | {n for n, up in draft.alive.items() if up}
    if draft.judged is None:
        draft.dirty.update(draft.marked, draft.chains)
    else:  # every dirty chain was judged: those left alone are fixed points now
        draft.dirty.clear()
        draft.dirty.update(draft.judged)
    return dataclasses.replace(base, nodes=nodes, targets=targets, chains=chains, stats=stats, alive=alive,
                               admin_offline=draft.admin() if draft.admin_offline is not None else base.admin_offline,
                               routing_version=base.routing_version + draft.bumps)


def _apply(mapping: dict, changes: dict) -> None:  # type: ignore[type-arg]
    """Set each changed key; a change to None deletes the key."""
    for key, value in changes.items():
        if value is None:
            mapping.pop(key, None)
        else:
            mapping[key] = value


def _dict(mapping: object) -> dict:  # type: ignore[type-arg]
    return mapping if isinstance(mapping, dict) else dict(mapping)  # type: ignore[call-overload]


class Deadlines:
    """When each node's silence makes it dead: a heap of (deadline, node) with lazy
    removal, so a tick costs the nodes that expired, not a scan of all."""

    def __init__(self) -> None:
        self._deadline: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []

    def set(self, node_id: int, deadline: float) -> None:
        self._deadline[node_id] = deadline
        heapq.heappush(self._heap, (deadline, node_id))

    def due(self, now: float) -> list[int]:
        """The nodes whose current deadline is before `now` (each once)."""
        out = []
        while self._heap and self._heap[0][0] < now:
            deadline, node_id = heapq.heappop(self._heap)
            if self._deadline.get(node_id) == deadline:
                del self._deadline[node_id]
                out.append(node_id)
        return out
