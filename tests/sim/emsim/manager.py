"""The cluster manager's side of the simulated world, and what nodes do with routing:
heartbeats and the heartbeat timeout feed common/chainstate.next_chain; a changed
chain bumps its version and is pushed to every node (a message each, unless the
scope turns routing delay off); a node that learns a chain starts or stops the
resync it owes (resync.ResyncWorker.reconcile). Part of `World` (a mixin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from emberfs.common.chainstate import Chain, LocalState, PublicState, next_chain

from . import handlers
from .model import Node

if TYPE_CHECKING:
    from .model import Scope
    from .rules import Rules
    from .world import World

_NEXT: dict[Any, Chain] = {}


def _next_chain(chain: Chain, local: dict[int, LocalState], restarted: frozenset[int] = frozenset()) -> Chain:
    """chainstate.next_chain, memoised (it is pure, and the hottest call here)."""
    key = (chain, tuple(sorted(local.items())), restarted)
    found = _NEXT.get(key)
    if found is None:
        if len(_NEXT) > 100_000:
            _NEXT.clear()
        found = _NEXT[key] = next_chain(chain, local, restarted=restarted)
    return found


class Manager:
    """Mixin of World: the manager, routing and resync jobs."""

    rules: Rules
    scope: Scope
    chain: Chain
    nodes: dict[int, Node]
    local: dict[int, LocalState]
    incarnations: dict[int, int]
    net: dict[Any, Any]
    healing: bool

    def _send(self, mid: Any, dst: tuple[Any, ...], body: tuple[Any, ...]) -> None: ...
    def _spawn(self, nid: int, tid: Any, kind: str, callers: list[Any], make: Any,
               origin: tuple[Any, ...]) -> None: ...

    def _on_timeout(self, nid: int) -> None:
        self.local[nid] = LocalState.OFFLINE  # the manager's heartbeat timeout
        self._transition()

    def _on_heartbeat(self, nid: int) -> None:
        node = self.nodes[nid]
        if node.incarnation != self.incarnations[nid]:
            self.incarnations[nid] = node.incarnation
            restarted = frozenset({nid}) if self.rules.restart_resyncs else frozenset()
        else:
            restarted = frozenset()
        node.registered = True
        self.local[nid] = self._report(node)
        self._transition(restarted)
        if node.view is None or node.view.chain_version < self.chain.chain_version:
            self._route(nid)

    def _on_resync(self, nid: int) -> None:
        node = self.nodes[nid]
        assert node.job is not None
        dest, version = node.job
        node.job_runs += 1
        tid = ("sync", nid, node.incarnation, version, node.job_runs)
        node.job_task = tid
        world = cast("World", self)
        self._spawn(nid, tid, "resync", [], lambda task: handlers.resync(world, nid, task, dest, version),
                    ("resync", dest, version))

    def _report(self, node: Node) -> LocalState:
        """What the node's agent reports (localstate.py): UPTODATE only while SERVING or
        once its resync is done at the chain version it holds."""
        view = node.view
        if view is None:
            return LocalState.ONLINE
        state = view.state_of(node.nid)
        if state == PublicState.SERVING or (state == PublicState.SYNCING and node.synced_at == view.chain_version):
            return LocalState.UPTODATE
        return LocalState.ONLINE

    def _heartbeat_due(self, node: Node) -> bool:
        """A heartbeat is offered only when it would change something (keeps the search small)."""
        n = node.nid
        if not node.registered or node.incarnation != self.incarnations[n] or self._report(node) != self.local[n]:
            return True
        if node.view is None or node.view.chain_version < self.chain.chain_version:
            return ("route", n, node.incarnation, self.chain.chain_version) not in self.net
        return _next_chain(self.chain, self.local) != self.chain

    def _transition(self, restarted: frozenset[int] = frozenset()) -> None:
        chain = _next_chain(self.chain, self.local, restarted)
        if chain == self.chain:
            return
        self.chain = chain
        for nid in self.nodes:
            self._route(nid)

    def _route(self, nid: int) -> None:
        """Routing reaches a registered node only (a restarted server registers, then
        pulls routing: agent.py), and only the incarnation it was meant for."""
        node = self.nodes[nid]
        if not node.alive or not node.registered:
            return
        if not self.scope.routing_delay:
            self._learn(nid, self.chain)
            return
        self._send(("route", nid, node.incarnation, self.chain.chain_version), ("node", nid, node.incarnation),
                   ("routing", self.chain))

    def refresh(self, nid: int) -> None:
        """routing.refresh(): ask the manager for the newest chain (registered nodes only)."""
        if self.nodes[nid].registered:
            self._learn(nid, self.chain)

    def _learn(self, nid: int, chain: Chain) -> None:
        node = self.nodes[nid]
        if not node.alive or not node.registered:
            return
        if node.view is not None and chain.chain_version <= node.view.chain_version:
            return
        node.view = chain
        self._reconcile(node)

    def _reconcile(self, node: Node) -> None:
        """resync.ResyncWorker.reconcile: the job this node owes at its chain version."""
        view = node.view
        assert view is not None
        owed = None
        if view.state_of(node.nid) == PublicState.SERVING:
            successor = view.successor(node.nid)
            if successor is not None and view.state_of(successor) == PublicState.SYNCING:
                owed = (successor, view.chain_version)
        if owed == node.job:
            return
        if node.job_task is not None:
            node.tasks[node.job_task].stopping = True  # it stops before its next chunk
            node.job_task = None
        node.job, node.job_done = owed, False
