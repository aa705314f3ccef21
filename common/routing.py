"""A read-only view of the cluster manager's routing information.

Servers and clients hold one `RoutingView` at a time and swap in a new one when the
manager's routing version moves on; the view answers the routing questions of the
data path: which targets serve a chain, who is head and tail, who follows whom, and
where each target's server listens. A view moves to a newer version by a whole table
or by a delta (`apply`; the manager sends one to a caller that says it takes them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from emberfs.common.chainstate import Chain, chain_from_proto
from emberfs.common.errors import NotFound
from emberfs.proto import mgmt_pb2

__all__ = ["RoutingView", "next_view"]

_K = TypeVar("_K")
_V = TypeVar("_V")


class RoutingView:
    def __init__(self, routing: mgmt_pb2.RoutingInfo) -> None:
        self._proto: mgmt_pb2.RoutingInfo | None = routing
        self.version = routing.routing_version
        self.nodes = {n.node_id: n for n in routing.nodes}
        self.targets = {t.target_id: t for t in routing.targets}
        self.chain_infos = {c.chain_id: c for c in routing.chains}
        self.chains = {c.chain_id: chain_from_proto(c) for c in routing.chains}

    @property
    def proto(self) -> mgmt_pb2.RoutingInfo:
        """The view as one RoutingInfo (built on first use after a delta)."""
        if self._proto is None:
            self._proto = mgmt_pb2.RoutingInfo(
                routing_version=self.version,
                nodes=[self.nodes[n] for n in sorted(self.nodes)],
                targets=[self.targets[t] for t in sorted(self.targets)],
                chains=[self.chain_infos[c] for c in sorted(self.chain_infos)],
            )
        return self._proto

    def apply(self, delta: mgmt_pb2.RoutingDelta) -> RoutingView | None:
        """The view of the delta's version, a new object (this one stays as it is: a
        request routed by it keeps a consistent view); None when the delta does not
        start at this view's version or would take a chain's version back (ask for the
        whole table then)."""
        if delta.from_version != self.version or delta.routing_version <= self.version:
            return None
        for info in delta.chains:
            held = self.chains.get(info.chain_id)
            if held is not None and info.chain_version < held.chain_version:
                return None
        view = object.__new__(RoutingView)
        view._proto = None
        view.version = delta.routing_version
        view.nodes = _merged(self.nodes, {n.node_id: n for n in delta.nodes}, delta.removed_nodes)
        view.targets = _merged(self.targets, {t.target_id: t for t in delta.targets}, delta.removed_targets)
        view.chain_infos = _merged(self.chain_infos, {c.chain_id: c for c in delta.chains}, delta.removed_chains)
        view.chains = _merged(self.chains, {c.chain_id: chain_from_proto(c) for c in delta.chains},
                              delta.removed_chains)
        return view

    @classmethod
    def empty(cls) -> RoutingView:
        return cls(mgmt_pb2.RoutingInfo())

    def chain(self, chain_id: int) -> Chain:
        try:
            return self.chains[chain_id]
        except KeyError:
            raise NotFound(f"unknown chain {chain_id} (routing version {self.version})") from None

    def node_of(self, target_id: int) -> int:
        try:
            return self.targets[target_id].node_id
        except KeyError:
            raise NotFound(f"unknown target {target_id}") from None

    def address_of(self, target_id: int) -> str:
        return self.nodes[self.node_of(target_id)].address

    def bulk_address_of(self, target_id: int) -> str:
        """The target's server's bulk channel, or "" when it has none."""
        return self.nodes[self.node_of(target_id)].bulk_address

    def chain_ids(self) -> list[int]:
        return sorted(self.chains)


def next_view(view: RoutingView, reply: mgmt_pb2.GetRoutingResponse) -> RoutingView | None:
    """The view a GetRouting reply leads to from `view`: `view` itself when unchanged or
    older, the applied delta or the whole table when newer; None when a delta does not
    apply (the caller asks again with known_version 0)."""
    if reply.unchanged:
        return view
    if reply.HasField("delta"):
        if reply.delta.routing_version <= view.version:
            return view
        return view.apply(reply.delta)
    if reply.routing.routing_version < view.version:
        return view  # never back (a reply from before a newer one we already hold)
    return RoutingView(reply.routing)


def _merged(old: dict[_K, _V], changed: dict[_K, _V], removed: Iterable[_K]) -> dict[_K, _V]:
    out = dict(old)
    out.update(changed)
    for key in removed:
        out.pop(key, None)
    return out
