"""`RoutingSource`: where a storage server's request handlers get the cluster routing.

The interface alone, so that the parts that need routing (localtargets.py for the chain
a request names, forwarding.py for a successor's address, resync.py) depend on it and
not on whoever provides it: agent.RoutingHolder in a server, a static view in tests.
"""

from __future__ import annotations

from typing import Protocol

from emberfs.common.routing import RoutingView

__all__ = ["RoutingSource"]


class RoutingSource(Protocol):
    """The current view, and a (single-flight) refresh that answers the newest view it
    could get. A source may also offer `async changed(version) -> RoutingView` (the
    first newer view; agent.RoutingHolder does): without it, forwards and the resync
    worker never see routing move."""

    @property
    def view(self) -> RoutingView: ...

    async def refresh(self) -> RoutingView: ...
