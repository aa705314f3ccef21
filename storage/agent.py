"""The storage node's side of the cluster manager protocol: registration,
heartbeats and the routing view the operator routes by.

- `RoutingHolder` keeps the current RoutingView and refreshes it single-flight:
  concurrent refreshers (heartbeat replies, requests naming a newer chain version)
  share one GetRouting call, which usually answers with a delta from the view's
  version (common/routing.py). A failed fetch keeps the old view.
- `Agent.run` registers (retrying with capped backoff until the metaserver answers,
  which may start later), then beats every interval with each target's local state
  and stats; a reply naming a newer routing version triggers a refresh, a
  `reregister` reply a new registration.
- each heartbeat reports the local states of localstate.py's rule; a change the
  manager must hear of at once (a failed target, a finished resync) sets
  `NodeHealth.changed`, which makes the agent beat without waiting its interval;
- a registration or heartbeat that succeeds renews the lease (lease.py) from the
  time it was sent, once routing is at least the version the reply names;
- every call to the manager goes through `ManagerLink` (managerlink.py): with several
  metaserver addresses it finds the one that is the manager's primary, trying the next
  at once when one is away or a standby, and sticks to the one that answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import cast
from concurrent.futures import ThreadPoolExecutor

import grpc

from emberfs.common.hostports import parse_address_list
from emberfs.common.routing import RoutingView, next_view
from emberfs.proto import common_pb2, mgmt_pb2

from .chunkstore import ChunkStore
from .localstate import NodeHealth, chain_version_of, local_states
from .managerlink import ManagerLink

__all__ = ["Agent", "RoutingHolder", "backoff_delays", "local_states"]

log = logging.getLogger("emberfs.storage.agent")

MGMT_TIMEOUT_S = 5.0


def backoff_delays(first: float = 0.1, cap: float = 2.0) -> Iterable[float]:
    """0.1, 0.2, 0.4 ... capped: a metaserver that starts later is found quickly."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


RoutingFetch = Callable[[mgmt_pb2.GetRoutingRequest], Awaitable[mgmt_pb2.GetRoutingResponse]]


class RoutingHolder:
    def __init__(self, fetch: RoutingFetch) -> None:
        self._fetch_routing = fetch
        self._view = RoutingView.empty()
        self._task: asyncio.Task[RoutingView] | None = None
        self._swapped = asyncio.Event()  # set (and replaced) whenever the view changes

    @property
    def view(self) -> RoutingView:
        return self._view

    async def changed(self, version: int) -> RoutingView:
        """The first view newer than `version` (waits for it)."""
        while self._view.version <= version:
            await self._swapped.wait()
        return self._view

    async def refresh(self) -> RoutingView:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._fetch())
        return await asyncio.shield(self._task)

    async def _fetch(self) -> RoutingView:
        try:
            view = next_view(self._view, await self._ask(self._view.version))
            if view is None:  # a delta that does not apply to our view: the whole table
                view = next_view(self._view, await self._ask(0))
        except grpc.aio.AioRpcError as exc:
            log.warning("routing fetch failed: %s", exc.details() or exc.code())
            return self._view
        if view is not None and view is not self._view:
            if view.version != self._view.version:
                log.info("routing version %d -> %d", self._view.version, view.version)
            self._view = view
            swapped, self._swapped = self._swapped, asyncio.Event()
            swapped.set()
        return self._view

    async def _ask(self, known_version: int) -> mgmt_pb2.GetRoutingResponse:
        return await self._fetch_routing(mgmt_pb2.GetRoutingRequest(
            header=common_pb2.RequestHeader(), known_version=known_version, accept_delta=True))


class Agent:
    def __init__(self, *, node_id: int, address: str, meta: str | Sequence[str], stores: dict[int, ChunkStore],
                 executor: ThreadPoolExecutor, interval_s: float, health: NodeHealth | None = None,
                 bulk_address: str = "", token: str | None = None, tls_ca: str | None = None) -> None:
        self.node_id = node_id
        self.address = address
        self.bulk_address = bulk_address
        self.stores = stores
        self.executor = executor
        self.interval_s = interval_s
        self.health = health or NodeHealth()
        # token: this server's server token
        self.manager = ManagerLink(parse_address_list(meta, what="--meta"), clock=lambda: self.health.lease.clock(),
                                   token=token, tls_ca=tls_ca)
        self.routing = RoutingHolder(self._get_routing)
        self.registered = asyncio.Event()
        self.closing = False
        self._lapse_logged = False
        # This process's incarnation: the manager takes a restarted node's targets out
        # of their chains so they resync before serving (chainstate.py).
        self.incarnation = int.from_bytes(os.urandom(8), "big") or 1

    async def _get_routing(self, request: mgmt_pb2.GetRoutingRequest) -> mgmt_pb2.GetRoutingResponse:
        reply, _ = await self.manager.call("GetRouting", request, MGMT_TIMEOUT_S)
        return cast(mgmt_pb2.GetRoutingResponse, reply)

    async def reports(self) -> list[mgmt_pb2.TargetReport]:
        view = self.routing.view  # one view for every state and the chain version it was judged at
        states = local_states(view, self.stores, closing=self.closing,
                              failed=self.health.failed, synced=self.health.synced)
        loop = asyncio.get_running_loop()
        out = []
        for tid, store in sorted(self.stores.items()):
            stats = await loop.run_in_executor(self.executor, store.stats)
            out.append(mgmt_pb2.TargetReport(
                target_id=tid, local_state=cast(mgmt_pb2.LocalTargetState, states[tid]),
                capacity_bytes=stats.capacity_bytes, used_bytes=stats.bytes, chunks=stats.chunks,
                chain_version=chain_version_of(view, tid),
            ))
        return out

    async def register(self) -> None:
        """Register, retrying with backoff until the metaserver answers."""
        for delay in backoff_delays():
            try:
                request = mgmt_pb2.RegisterNodeRequest(
                    header=common_pb2.RequestHeader(), node_id=self.node_id, address=self.address,
                    targets=await self.reports(), bulk_address=self.bulk_address,
                    incarnation=self.incarnation,
                )
                reply, sent_at = await self.manager.call("RegisterNode", request, MGMT_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.error("registration refused: %s (%s); retrying", exc.details(), exc.code().name)
                else:
                    log.debug("metaserver not answering yet: %s", exc.details())
                await asyncio.sleep(delay)
                continue
            except Exception:  # e.g. a target's stats failed: keep trying
                log.exception("registration failed; retrying")
                await asyncio.sleep(delay)
                continue
            if reply.heartbeat_interval_s > 0:
                self.interval_s = min(self.interval_s, reply.heartbeat_interval_s)
            log.info("registered node %d at %s with the manager at %s (routing version %d)", self.node_id,
                     self.address, self.manager.address, reply.routing_version)
            self.registered.set()
            await self._renew(sent_at, reply.routing_version, reply.heartbeat_timeout_s)
            return

    async def _renew(self, sent_at: float, routing_version: int, timeout_s: float) -> None:
        """Renew the lease from `sent_at` once routing is at least `routing_version`."""
        if routing_version > self.routing.view.version:
            await self.routing.refresh()
        if self.routing.view.version >= routing_version:
            was_valid = self.health.lease.valid
            self.health.lease.renew(sent_at, timeout_s)
            if not was_valid and self.health.lease.enforced:
                log.info("lease held: serving with routing version %d", self.routing.view.version)

    async def beat(self) -> None:
        request = mgmt_pb2.HeartbeatRequest(
            header=common_pb2.RequestHeader(), node_id=self.node_id, targets=await self.reports(),
            routing_version=self.routing.view.version, incarnation=self.incarnation,
        )
        # A heartbeat answered late renews little (the lease counts from its sending), and a
        # silent manager must not hold it long: the next metaserver may be the primary.
        timeout = min(MGMT_TIMEOUT_S, max(1.0, 2 * self.interval_s))
        reply, sent_at = await self.manager.call("Heartbeat", request, timeout)
        if reply.reregister:
            log.warning("the manager does not know this node: registering again")
            await self.register()
        else:
            await self._renew(sent_at, reply.routing_version, reply.heartbeat_timeout_s)

    async def run(self) -> None:
        await self.register()
        while True:
            # the interval, or at once when a target failed or finished a resync
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.health.changed.wait(), self.interval_s)
            self.health.changed.clear()
            try:
                await self.beat()
            except grpc.aio.AioRpcError as exc:
                log.warning("heartbeat failed: %s", exc.details() or exc.code())
            except Exception:  # a bug or a disk error must not end the heartbeats
                log.exception("heartbeat failed")
            lease = self.health.lease
            if lease.enforced and not lease.valid and lease.renewed_at is not None and not self._lapse_logged:
                log.warning("lease expired: no successful heartbeat for %.1f s; refusing reads and writes "
                            "until one succeeds", lease.clock() - lease.renewed_at)
            self._lapse_logged = lease.enforced and not lease.valid

    async def farewell(self, timeout: float = 1.0) -> None:
        """A last heartbeat with every target LOCAL_OFFLINE, if it goes quickly."""
        self.closing = True
        if not self.registered.is_set():
            return
        try:
            await asyncio.wait_for(self.manager.call("Heartbeat", mgmt_pb2.HeartbeatRequest(
                header=common_pb2.RequestHeader(), node_id=self.node_id, targets=await self.reports(),
                routing_version=self.routing.view.version, incarnation=self.incarnation,
            ), timeout), timeout)
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            log.info("last heartbeat not delivered: %s", exc)

    async def close(self) -> None:
        await self.manager.close()
