"""The cluster manager (3FS mgmtd) inside the metaserver: the I/O around state.py.

`ClusterManager` holds the current `ClusterState` in memory, the last heartbeat time
of every node (monotonic clock, injectable) and a tick task. Every decision is a
pure function (state.py, applied incrementally by draft.py) taken in memory at once,
one at a time, so the next is judged on top of it. Its difference goes to the `mgmt`
database through commits.py, which writes the decisions queued so far in one durable
transaction, in order (table.py); only then does it show outside: GetRouting serves
the durable table (published.py, with deltas from routinglog.py) and a reply names
the durable routing version, so nobody sees routing that a crash could take back.

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
from collections.abc import Callable, Iterable, Sequence

from emberfs.common.chainstate import Chain, chain_transitions
from emberfs.common.errors import NotFound, NotPrimary, Unavailable
from emberfs.proto import mgmt_pb2

from ..config import MetaConfig
from ..engine import Store
from . import draft as inc
from . import state as rules
from . import table
from .allocator import TableChains
from .commits import CommitQueue, Decision
from .primary import SOLE, PrimaryGate
from .published import PublishedRouting, snapshot
from .routinglog import ChangeLog, Touched
from ..txn import MetaTxn
from .state import ClusterState, Registration, Report

__all__ = ["MAX_TICK_S", "MIN_TICK_S", "RESTART_GRACE_S", "ClusterManager"]

log = logging.getLogger("emberfs.metaserver.mgmt")

MIN_TICK_S = 0.01  # the tick runs every heartbeat_interval/2, within these bounds
MAX_TICK_S = 1.0
RESTART_GRACE_S = 2.0  # after start, on top of the heartbeat timeout (module docstring)
DELTA_MAX_SHARE = 0.5  # a delta naming more than this share of all records: the whole table instead


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
        self._lock = asyncio.Lock()
        self._commits = CommitQueue(self._persist, self._commit_failed)
        self._generation = 0  # moves with every load: a write from before one publishes nothing
        self._stale = False  # a write failed: memory is ahead of the store until reloaded
        self._adopt(store.read(table.load))
        self.allocator = TableChains(self._state.chains)
        self._task: asyncio.Task[None] | None = None

    def _adopt(self, state: ClusterState) -> None:
        """Manage `state`, as loaded from the store: nothing pending, fresh grace for all."""
        self._generation += 1
        self._grace(state)
        self._state = state
        self._dirty: set[int] = set(state.chains)  # chains to judge (draft.py): all, after a load
        self._durable_version = state.routing_version
        self._changes = ChangeLog(state.routing_version)  # what changed before is unknown here
        self._published = PublishedRouting(state, self._heartbeat_ms())
        self._heartbeats_published_at = self._monotonic()
        self._deltas: tuple[int, dict[int, bytes]] = (-1, {})  # (published serial, answers by known version)

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
        if self._stale:
            raise Unavailable("the cluster manager is reloading its state after a failed write; try again")

    async def promote(self) -> None:
        """Become the managing primary: the state as the store has it, fresh grace for all."""
        async with self._lock:
            state = await self._store.aread(table.load)
            self._adopt(state)
            self.allocator.update(state.chains)
            self._active = True
        log.info("managing %d nodes, %d chains (routing version %d)",
                 len(state.nodes), len(state.chains), state.routing_version)

    async def demote(self) -> None:
        """Stop managing (the election lost the term)."""
        self._active = False
        self._commits.fail_all(NotPrimary("this metaserver is no longer the cluster manager primary"))
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
            done = self._decide(self._ticked(draft))
        await self._durable(done)
        self._require_primary()  # the reply renews the node's lease: only from a primary
        return self._durable_version

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
                return self._durable_version, True
            self._heard(node_id)
            if draft.targets or draft.alive:
                self._ticked(draft)  # a local state or liveness moved: judge its chains now
            done = self._decide(draft)
        await self._durable(done)
        self._require_primary()  # the reply renews the node's lease: only from a primary
        return self._durable_version, False

    def routing(self, known_version: int, accept_delta: bool = False) -> mgmt_pb2.GetRoutingResponse:
        """`routing_reply` as a message."""
        reply = self.routing_reply(known_version, accept_delta)
        return mgmt_pb2.GetRoutingResponse.FromString(reply) if isinstance(reply, bytes) else reply

    def routing_reply(self, known_version: int, accept_delta: bool = False) -> mgmt_pb2.GetRoutingResponse | bytes:
        """What GetRouting answers: unchanged, a delta from `known_version` (when the
        caller takes one and the change log reaches back to it), or the whole table as
        the bytes of a GetRoutingResponse (published.py: the same bytes for every caller)."""
        self._require_primary()
        current = self._durable_version
        if known_version == current:
            return mgmt_pb2.GetRoutingResponse(unchanged=True)
        if accept_delta and 0 < known_version < current:
            reply = self._delta_reply(known_version)
            if reply is not None:
                return reply
        now = self._monotonic()
        if now - self._heartbeats_published_at > self.tick_interval_s:  # at most a tick interval old
            self._published.refresh_heartbeats(self._heartbeat_ms())
            self._heartbeats_published_at = now
        return self._published.response()

    def _delta_reply(self, known_version: int) -> bytes | None:
        """A delta answer, built once per published table and known version: after a
        bump most callers hold the same previous version. None: the whole table is better."""
        serial, replies = self._deltas
        if serial != self._published.serial:
            replies = {}
            self._deltas = (self._published.serial, replies)
        reply = replies.get(known_version)
        if reply is None:
            touched = self._changes.since(known_version)
            state = self._state
            if touched is None or len(touched) > DELTA_MAX_SHARE * (len(state.nodes) + len(state.targets)
                                                                     + len(state.chains)):
                return None
            reply = replies[known_version] = self._published.delta(known_version, touched)
        return reply

    async def init_chains(self, replicas: int, chains: int = 0) -> tuple[list[Chain], bool]:
        async with self._lock:
            self._require_primary()
            # Plan over the nodes alive right now: a tick of its own first (kept if the init is refused).
            ticked = self._decide(self._ticked(inc.Draft(self._state, self._dirty)))
            new, created = rules.init_chains(self._state, replicas, chains)
            draft = inc.Draft(self._state, self._dirty)
            inc.absorb(draft, new)
            done = self._decide(draft) or ticked
            result = [chain for _, chain in sorted(self._state.chains.items())]
        await self._durable(done)
        if created:
            log.info("created %d chains of %d replicas", len(new.chains), replicas)
        return result, created

    async def set_admin_state(self, target_id: int, offline: bool) -> mgmt_pb2.RoutingInfo:
        async with self._lock:
            self._require_primary()
            draft = inc.Draft(self._state, self._dirty)
            inc.set_admin(draft, target_id, offline)
            if draft.admin_offline is not None:
                log.info("target %d admin %s", target_id, "offline" if offline else "online")
            done = self._decide(self._ticked(draft))
        await self._durable(done)
        return self.routing(0).routing

    async def tick(self) -> None:
        """Apply liveness and the chain rules once (the tick task calls this); a standby
        refreshes its view instead."""
        if not self._active:
            await self.refresh_standby()
            return
        async with self._lock:
            if not self.is_primary:
                return  # the term ran out: the election notices and demotes
            if self._stale:
                await self._reload()
                return
            done = self._decide(self._ticked(inc.Draft(self._state, self._dirty)))
        await self._durable(done)

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
        await self._commits.drain()

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

    def _heartbeat_ms(self, nodes: Iterable[int] | None = None) -> dict[int, int]:
        """Last heartbeat of each node (or of `nodes`) on the wall clock (ms since the epoch)."""
        mono, wall = self._monotonic(), self._wall()
        beats = self._beats
        chosen = beats if nodes is None else {n: beats[n] for n in nodes if n in beats}
        return {n: int((wall - (mono - beat)) * 1000) for n, beat in chosen.items()}

    @staticmethod
    def _touched(draft: inc.Draft, old: ClusterState) -> Touched:
        """The ids whose published records the draft may change (routinglog.py), read
        before `publish` folds it into the state's mappings."""
        nodes = set(draft.nodes) | set(draft.alive)
        targets = set(draft.targets)
        for node_id in nodes:
            targets.update(draft.targets_of(node_id))  # shown local states follow liveness
        chains = set(draft.chains) | draft.removed_chains
        for chain_id in chains:  # a member's public state lives in its chain
            for chain in (old.chains.get(chain_id), draft.chain(chain_id)):
                if chain is not None:
                    targets.update(t.target_id for t in chain.targets)
        return Touched(frozenset(nodes), frozenset(targets), frozenset(chains))

    def _decide(self, draft: inc.Draft) -> asyncio.Future[None] | None:
        """Take the draft's decision in memory now (and log what moved); queue it to be
        made durable. The future is done once it is, and visible (None: nothing to do)."""
        if draft.empty:
            return None
        old = self._state
        before = {chain_id: old.chains[chain_id] for chain_id in draft.chains if chain_id in old.chains}
        chain_set_moved = bool(draft.removed_chains or draft.chains.keys() - before.keys())
        touched = self._touched(draft, old)
        version = old.routing_version + draft.bumps
        tag = old.routing_version + (draft.bumps or 1)  # routinglog.py: unversioned changes go with the next
        self._state = inc.publish(draft)
        records = snapshot(self._state, touched.nodes, touched.targets | draft.stats.keys(), touched.chains,
                           self._heartbeat_ms(touched.nodes))
        generation = self._generation

        def durable() -> None:
            if generation != self._generation:
                return  # the state was loaded anew meanwhile (a failed write, a promotion)
            if touched:
                self._changes.record(tag, touched.nodes, touched.targets, touched.chains)
            self._published.apply(records, version)
            self._durable_version = max(self._durable_version, version)

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
        done = self._commits.add(Decision(draft, chain_set_moved, durable))
        return done if draft.persistent else None  # stats alone: nothing to wait for

    async def _durable(self, done: asyncio.Future[None] | None) -> None:
        if done is not None:
            await asyncio.shield(done)  # a cancelled caller leaves the write to go on

    async def _persist(self, batch: Sequence[Decision]) -> None:
        """Write a batch of decisions in one transaction, in order; the fence once, first."""
        gate = self._gate

        def write(tx: MetaTxn) -> None:
            gate.fence(tx)
            for decision in batch:
                table.save_draft(tx, decision.draft, chain_set_moved=decision.chain_set_moved)

        await self._store.write(write)

    def _commit_failed(self, exc: BaseException) -> None:
        """A write failed: memory is ahead of the store. Deposed: stop managing. Else
        decide nothing until the next tick has loaded the state again from the store
        (every node gets a fresh grace period then)."""
        self._generation += 1  # what is still in flight publishes nothing
        if isinstance(exc, NotPrimary):
            self._active = False  # deposed: nothing more until the election says otherwise
            return
        log.error("the cluster manager could not write its decisions (%s): reloading its state", exc)
        self._stale = True

    async def _reload(self) -> None:
        state = await self._store.aread(table.load)
        self._adopt(state)
        self.allocator.update(state.chains)
        self._stale = False
        log.info("reloaded the cluster state (routing version %d)", state.routing_version)
