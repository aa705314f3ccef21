"""The client's routing cache: the newest `RoutingView` it has, refreshed on demand.

The data path asks `current()` before each chunk request and `refresh(seen)` after a
storage server said its view is stale (StaleChainVersion, NotChainHead,
TargetNotServing) or a replica stopped answering. Refreshes are single-flight: the
many chunk requests that trip over one chain change share one `Mgmt.GetRouting`
call, and a caller whose stale view was already replaced returns at once. The fetch
sends `known_version`, so an unchanged routing costs the manager nothing and a changed
one usually costs a delta (common/routing.py), not the whole table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from emberfs.common.routing import RoutingView, next_view
from emberfs.proto import mgmt_pb2

__all__ = ["RoutingCache"]

Fetch = Callable[[int], Awaitable[mgmt_pb2.GetRoutingResponse]]


class RoutingCache:
    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self.view = RoutingView.empty()
        self._inflight: asyncio.Task[RoutingView] | None = None

    async def current(self) -> RoutingView:
        """The cached view; fetched first if none has been fetched yet."""
        if self.view.version == 0:
            return await self.refresh(0)
        return self.view

    async def refresh(self, seen_version: int | None = None) -> RoutingView:
        """Fetch routing unless the cache already moved past `seen_version` (the
        version the caller's failed request was routed by)."""
        if seen_version is not None and self.view.version > seen_version:
            return self.view
        task = self._inflight
        if task is None or task.done():
            task = self._inflight = asyncio.ensure_future(self._load())
        # shield: one cancelled caller must not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    async def _load(self) -> RoutingView:
        view = next_view(self.view, await self._fetch(self.view.version))
        if view is None:  # a delta that does not apply to our view: the whole table
            view = next_view(self.view, await self._fetch(0))
        if view is not None:
            self.view = view
        return self.view
