"""The cluster manager (3FS mgmtd) inside the metaserver: the I/O around state.py.

`ClusterManager` holds the current `ClusterState` in memory, the last heartbeat time
of every node (monotonic clock, injectable) and a tick task. Every decision is a
pure function from state.py; the manager serialises them under one asyncio lock,
writes each resulting difference to the `mgmt` database through the store's writer
(one durable transaction per decision, table.py) and only then publishes the new
state, so a reader never sees routing that a crash could take back.

With several metaservers (the etcd engine) only the primary manages
(mgmt/primary.py): `promote` loads the state from the store and starts managing,
`demote` stops; every request to a standby, or to a primary whose term ran out, fails
with NotPrimary, and every write checks the store's primary record in its own
transaction (the fence). A standby keeps its chain table fresh from the store, so its
namespace service can still place new files on chains.

On start (and on promotion) every known node gets a fresh grace period (the heartbeat timeout, counted
from RESTART_GRACE_S after the start): a metaserver restart
declares nobody dead, and the chains are judged by the local states the targets
reported before the restart until new heartbeats arrive. The extra grace covers a
storage node's gRPC reconnect backoff (up to 1 s, common/rpc.py) plus a heartbeat:
with a sub-second timeout, live nodes would otherwise be declared dead (and their
targets sent through a resync) merely for reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from emberfs.common.chainstate import Chain, chain_transitions
from emberfs.common.errors import NotFound, NotPrimary
from emberfs.proto import mgmt_pb2

from ..config import MetaConfig
from ..engine import Store
from . import draft as inc
from . import state as rules
from . import table
from .allocator import TableChains
from .primary import SOLE, PrimaryGate
from .state import ClusterState, Registration, Report
from .wire import routing_info

__all__ = ["MAX_TICK_S", "MIN_TICK_S", "RESTART_GRACE_S", "ClusterManager"]

log = logging.getLogger("emberfs.metaserver.mgmt")

MIN_TICK_S = 0.01  # the tick runs every heartbeat_interval/2, within these bounds
MAX_TICK_S = 1.0
RESTART_GRACE_S = 2.0  # after start, on top of the heartbeat timeout (module docstring)


class ClusterManager:
    def __init__(
        self,
        store: Store,
        config: MetaConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        gate: PrimaryGate = SOLE,
    ) -> None:
        self._store = store
        self._gate = gate
        self._active = gate is SOLE  # a shared store: managing waits for the election
        self.heartbeat_interval_s = config.heartbeat_interval_s
        self.heartbeat_timeout_s = config.heartbeat_timeout_s
        self._monotonic = monotonic
        self._wall = wall
        self._state: ClusterState = store.read(table.load)
        self._dirty: set[int] = set(self._state.chains)  # chains to judge (draft.py): all, after a load
        self._grace(self._state)
        self.allocator = TableChains(self._state.chains)
        self._lock = asyncio.Lock()
        self._routing_cache: tuple[int, float, mgmt_pb2.RoutingInfo] | None = None
        self._task: asyncio.Task[None] | None = None

    def _grace(self, state: ClusterState) -> None:
        """Count every known node as just heard from (module docstring)."""
        started = self._monotonic()
        self._beats: dict[int, float] = {node_id: started for node_id in state.nodes}
        self._grace_until = started + RESTART_GRACE_S
        self._known_at_start = frozenset(state.nodes)
        self._deadlines = inc.Deadlines()
        for node_id in state.nodes:
            self._deadlines.set(node_id, self._grace_until + self.heartbeat_timeout_s)

    @property
    def is_primary(self) -> bool:
        return self._active and self._gate.holds(self._monotonic())

    def _require_primary(self) -> None:
        if not self.is_primary:
            raise NotPrimary(f"this metaserver is not the cluster manager primary; "
                             f"the primary is at {self._gate.primary_hint}")

    async def promote(self) -> None:
        """Become the managing primary: the state as the store has it, fresh grace for all."""
        async with self._lock:
            state = await self._store.aread(table.load)
            self._grace(state)
            self._state = state
            self._dirty = set(state.chains)
            self._routing_cache = None
            self.allocator.update(state.chains)
            self._active = True
        log.info("managing %d nodes, %d chains (routing version %d)",
                 len(state.nodes), len(state.chains), state.routing_version)

    async def demote(self) -> None:
        """Stop managing (the election lost the term)."""
        self._active = False
        log.info("no longer the cluster manager primary")

    async def refresh_standby(self) -> None:
        """A standby's view: reload the state when the stored routing version moved."""
        version = await self._store.aread(table.stored_version)
        if version == self._state.routing_version or self._active:
            return
        async with self._lock:
            if self._active:
                return
            self._state = await self._store.aread(table.load)
            self._dirty = set(self._state.chains)
            self.allocator.update(self._state.chains)

    @property
    def state(self) -> ClusterState:
        """The current published state. The manager folds each decision into its mappings in
        place (draft.publish: never a whole copy), so a reader across an await may see newer
        records (the chunk GC does, harmlessly: it only needs each chain's targets)."""
        return self._state

    @property
    def tick_interval_s(self) -> float:
        return min(max(self.heartbeat_interval_s / 2, MIN_TICK_S), MAX_TICK_S)

    # -- requests ------------------------------------------------------------------
    async def register(self, registration: Registration) -> int:
        """Register (or re-register) a node; the routing version after it."""
        async with self._lock:
            self._require_primary()
            known = self._state.nodes.get(registration.node_id)
            if known is not None and known.incarnation != registration.incarnation:
                log.info("node %d restarted (incarnation %#x -> %#x): its targets resync before serving",
                         registration.node_id, known.incarnation, registration.incarnation)
            draft = inc.Draft(self._state, self._dirty)
            inc.register(draft, registration)
            self._heard(registration.node_id)
            await self._commit(self._ticked(draft))
            self._require_primary()  # the reply renews the node's lease: only from a primary
            return self._state.routing_version

    async def heartbeat(self, node_id: int, reports: Iterable[Report], incarnation: int = 0,
                        seen_version: int | None = None) -> tuple[int, bool]:
        """Record a heartbeat; (routing version, whether the node must re-register)."""
        async with self._lock:
            self._require_primary()
            draft = inc.Draft(self._state, self._dirty)
            try:
                inc.beat(draft, node_id, reports, incarnation, seen_version)
            except NotFound as exc:
                log.info("heartbeat asks node %d to re-register: %s", node_id, exc.message)
                return self._state.routing_version, True
            self._heard(node_id)
            if draft.targets or draft.alive:
                self._ticked(draft)  # a local state or liveness moved: judge its chains now
            await self._commit(draft)
            self._require_primary()  # the reply renews the node's lease: only from a primary
            return self._state.routing_version, False

    def routing(self, known_version: int) -> mgmt_pb2.GetRoutingResponse:
        self._require_primary()
        current = self._state
        if known_version == current.routing_version:
            return mgmt_pb2.GetRoutingResponse(unchanged=True)
        return mgmt_pb2.GetRoutingResponse(routing=self._routing_info())

    def _routing_info(self) -> mgmt_pb2.RoutingInfo:
        """The routing of the current version, built once per version and tick interval:
        after a change every server and client asks for it, and building it is
        O(cluster); the last-heartbeat times in it are at most a tick interval old."""
        now = self._monotonic()
        cached = self._routing_cache
        if cached is None or cached[0] != self._state.routing_version or now - cached[1] > self.tick_interval_s:
            cached = self._routing_cache = (self._state.routing_version, now,
                                            routing_info(self._state, self._heartbeat_ms()))
        return cached[2]

    async def init_chains(self, replicas: int, chains: int = 0) -> tuple[list[Chain], bool]:
        async with self._lock:
            self._require_primary()
            # Plan over the nodes alive right now: a tick of its own first (kept if the init is refused).
            await self._commit(self._ticked(inc.Draft(self._state, self._dirty)))
            new, created = rules.init_chains(self._state, replicas, chains)
            draft = inc.Draft(self._state, self._dirty)
            inc.absorb(draft, new)
            await self._commit(draft)
            if created:
                log.info("created %d chains of %d replicas", len(new.chains), replicas)
            return [chain for _, chain in sorted(self._state.chains.items())], created

    async def set_admin_state(self, target_id: int, offline: bool) -> mgmt_pb2.RoutingInfo:
        async with self._lock:
            self._require_primary()
            draft = inc.Draft(self._state, self._dirty)
            inc.set_admin(draft, target_id, offline)
            if draft.admin_offline is not None:
                log.info("target %d admin %s", target_id, "offline" if offline else "online")
            await self._commit(self._ticked(draft))
            return routing_info(self._state, self._heartbeat_ms())

    async def tick(self) -> None:
        """Apply liveness and the chain rules once (the tick task calls this); a standby
        refreshes its view instead."""
        if not self._active:
            await self.refresh_standby()
            return
        async with self._lock:
            if not self.is_primary:
                return  # the term ran out: the election notices and demotes
            await self._commit(self._ticked(inc.Draft(self._state, self._dirty)))

    # -- the tick task ----------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mgmt-tick")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval_s)
            try:
                await self.tick()
            except Exception:  # a failed tick (e.g. the store closing) retries next time
                log.exception("cluster manager tick failed")

    # -- helpers -------------------------------------------------------------------
    def _heard(self, node_id: int) -> None:
        """A beat or registration: the node's deadline moves on (during the restart
        grace a node known at start is not due before the grace's end, module docstring)."""
        now = self._monotonic()
        self._beats[node_id] = now
        since = max(now, self._grace_until) if node_id in self._known_at_start else now
        self._deadlines.set(node_id, since + self.heartbeat_timeout_s)

    def _ticked(self, draft: inc.Draft) -> inc.Draft:
        """Liveness (the nodes past their deadline) and the chain rules, into `draft`."""
        inc.tick(draft, self._deadlines.due(self._monotonic()))
        return draft

    def _heartbeat_ms(self) -> dict[int, int]:
        """Last heartbeat of each node on the wall clock (ms since the epoch)."""
        mono, wall = self._monotonic(), self._wall()
        return {n: int((wall - (mono - beat)) * 1000) for n, beat in self._beats.items()}

    async def _commit(self, draft: inc.Draft) -> None:
        """Persist what the draft changes, then publish it (and log what moved)."""
        if draft.empty:
            return
        if draft.persistent:
            gate = self._gate
            try:
                await self._store.write(lambda tx: table.save_draft(tx, draft, fence=gate.fence))
            except BaseException as exc:
                for node_id, up in draft.alive.items():
                    if not up:  # not declared dead after all: due again at the next tick
                        self._deadlines.set(node_id, self._monotonic())
                if isinstance(exc, NotPrimary):
                    self._active = False  # deposed: nothing more until the election says otherwise
                raise
        old = self._state
        before = {chain_id: old.chains[chain_id] for chain_id in draft.chains if chain_id in old.chains}
        chain_set_moved = bool(draft.removed_chains or draft.chains.keys() - before.keys())
        self._state = inc.publish(draft)
        for node_id, up in sorted(draft.alive.items()):
            if up and node_id not in old.alive:
                log.info("node %d is alive", node_id)
            elif not up and node_id in old.alive:
                log.info("node %d is dead: no heartbeat for %.3g s", node_id, self.heartbeat_timeout_s)
        for line in chain_transitions(before, {c: self._state.chains[c] for c in before}):
            log.info("%s", line)
        if chain_set_moved:
            self.allocator.update(self._state.chains)
        if draft.bumps:
            log.debug("routing version %d -> %d", old.routing_version, self._state.routing_version)
