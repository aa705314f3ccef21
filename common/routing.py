"""A read-only view of the cluster manager's routing information.

Servers and clients hold one `RoutingView` at a time and swap in a new one when the
manager's routing version moves on; the view answers the routing questions of the
data path: which targets serve a chain, who is head and tail, who follows whom, and
where each target's server listens.
"""

from __future__ import annotations

from dataclasses import dataclass

from emberfs.common.errors import NotFound
from emberfs.proto import mgmt_pb2

__all__ = ["ChainView", "RoutingView"]

SERVING = mgmt_pb2.SERVING
SYNCING = mgmt_pb2.SYNCING


@dataclass(frozen=True)
class ChainView:
    chain_id: int
    chain_version: int
    targets: tuple[tuple[int, int], ...]  # (target_id, public state), manager's order

    @property
    def serving(self) -> tuple[int, ...]:
        """SERVING targets in chain order: the head first, the tail last."""
        return tuple(t for t, s in self.targets if s == SERVING)

    @property
    def writable(self) -> tuple[int, ...]:
        """Targets that receive updates: the serving ones, then a syncing one (CRAQ
        forwards new writes to a syncing target so it never falls behind again)."""
        return self.serving + tuple(t for t, s in self.targets if s == SYNCING)

    @property
    def head(self) -> int | None:
        serving = self.serving
        return serving[0] if serving else None

    @property
    def tail(self) -> int | None:
        serving = self.serving
        return serving[-1] if serving else None

    def successor(self, target_id: int) -> int | None:
        """The next target an update goes to after `target_id`, or None at the end."""
        order = self.writable
        if target_id not in order:
            return None
        at = order.index(target_id)
        return order[at + 1] if at + 1 < len(order) else None

    def state_of(self, target_id: int) -> int | None:
        for t, s in self.targets:
            if t == target_id:
                return s
        return None


class RoutingView:
    def __init__(self, routing: mgmt_pb2.RoutingInfo) -> None:
        self.proto = routing
        self.version = routing.routing_version
        self.nodes = {n.node_id: n for n in routing.nodes}
        self.targets = {t.target_id: t for t in routing.targets}
        self.chains = {
            c.chain_id: ChainView(
                c.chain_id, c.chain_version, tuple((t.target_id, t.public_state) for t in c.targets)
            )
            for c in routing.chains
        }

    @classmethod
    def empty(cls) -> "RoutingView":
        return cls(mgmt_pb2.RoutingInfo())

    def chain(self, chain_id: int) -> ChainView:
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

    def chain_ids(self) -> list[int]:
        return sorted(self.chains)
