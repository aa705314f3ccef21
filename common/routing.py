"""A read-only view of the cluster manager's routing information.

Servers and clients hold one `RoutingView` at a time and swap in a new one when the
manager's routing version moves on; the view answers the routing questions of the
data path: which targets serve a chain, who is head and tail, who follows whom, and
where each target's server listens.
"""

from __future__ import annotations

from emberfs.common.chainstate import Chain, chain_from_proto
from emberfs.common.errors import NotFound
from emberfs.proto import mgmt_pb2

__all__ = ["RoutingView"]


class RoutingView:
    def __init__(self, routing: mgmt_pb2.RoutingInfo) -> None:
        self.proto = routing
        self.version = routing.routing_version
        self.nodes = {n.node_id: n for n in routing.nodes}
        self.targets = {t.target_id: t for t in routing.targets}
        self.chains = {c.chain_id: chain_from_proto(c) for c in routing.chains}

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
