"""Conversions between the manager's records (state.py) and the Mgmt protos.

Pure functions: the servicer decodes requests with them and the manager publishes
its state as a RoutingInfo with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from emberfs.common.chainstate import chain_to_proto
from emberfs.proto import mgmt_pb2

from .state import ClusterState, Registration, Report, TargetStats

__all__ = ["node_info", "registration_from_proto", "reports_from_proto", "routing_info", "target_info"]


def reports_from_proto(reports: Iterable[mgmt_pb2.TargetReport]) -> tuple[Report, ...]:
    return tuple(
        Report(
            r.target_id,
            int(r.local_state),
            TargetStats(r.capacity_bytes, r.used_bytes, r.chunks),
            r.chain_version,
        )
        for r in reports
    )


def registration_from_proto(request: mgmt_pb2.RegisterNodeRequest) -> Registration:
    return Registration(
        node_id=request.node_id,
        address=request.address,
        reports=reports_from_proto(request.targets),
        bulk_address=request.bulk_address,
        incarnation=request.incarnation,
    )


def node_info(state: ClusterState, node_id: int, last_heartbeat_ms: Mapping[int, int]) -> mgmt_pb2.NodeInfo:
    node = state.nodes[node_id]
    return mgmt_pb2.NodeInfo(node_id=node_id, address=node.address, bulk_address=node.bulk_address,
                             alive=node_id in state.alive, last_heartbeat_ms=last_heartbeat_ms.get(node_id, 0))


def target_info(state: ClusterState, target_id: int) -> mgmt_pb2.TargetInfo:
    """A target as published: its public state from its chain, the local state the chain
    rules see (OFFLINE for a dead node's: that is how they judge it), its stats."""
    target = state.targets[target_id]
    chain = state.chains.get(target.chain_id)
    public = chain.state_of(target_id) if chain is not None else None
    alive = target.node_id in state.alive
    shown = target.local_state if alive and target.local_state else (0 if alive else mgmt_pb2.LOCAL_OFFLINE)
    stats = state.stats.get(target_id, TargetStats())
    return mgmt_pb2.TargetInfo(
        target_id=target_id,
        node_id=target.node_id,
        chain_id=target.chain_id,
        public_state=int(public or 0),  # type: ignore[arg-type]
        local_state=shown,  # type: ignore[arg-type]
        capacity_bytes=stats.capacity_bytes,
        used_bytes=stats.used_bytes,
        chunks=stats.chunks,
    )


def routing_info(state: ClusterState, last_heartbeat_ms: Mapping[int, int]) -> mgmt_pb2.RoutingInfo:
    """Everything GetRouting publishes: nodes (with liveness), targets and chains, in id order."""
    return mgmt_pb2.RoutingInfo(
        routing_version=state.routing_version,
        nodes=[node_info(state, n, last_heartbeat_ms) for n in sorted(state.nodes)],
        targets=[target_info(state, t) for t in sorted(state.targets)],
        chains=[chain_to_proto(state.chains[c]) for c in sorted(state.chains)],
    )
