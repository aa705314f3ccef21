"""Conversions between the manager's records (state.py) and the Mgmt protos.

Pure functions: the servicer decodes requests with them and the manager publishes
its state as a RoutingInfo with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from emberfs.common.chainstate import chain_to_proto
from emberfs.proto import mgmt_pb2

from .state import ClusterState, Registration, Report, TargetStats, effective_local_states

__all__ = ["registration_from_proto", "reports_from_proto", "routing_info"]


def reports_from_proto(reports: Iterable[mgmt_pb2.TargetReport]) -> tuple[Report, ...]:
    return tuple(
        Report(
            r.target_id,
            int(r.local_state),
            TargetStats(r.capacity_bytes, r.used_bytes, r.chunks),
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


def routing_info(state: ClusterState, last_heartbeat_ms: Mapping[int, int]) -> mgmt_pb2.RoutingInfo:
    """Everything GetRouting publishes: nodes (with liveness), targets (public state
    from their chain, the effective local state, stats) and chains, in id order."""
    local = effective_local_states(state)
    public = {
        member.target_id: member.state
        for chain in state.chains.values()
        for member in chain.targets
    }
    info = mgmt_pb2.RoutingInfo(routing_version=state.routing_version)
    for node_id, node in sorted(state.nodes.items()):
        info.nodes.add(
            node_id=node_id,
            address=node.address,
            bulk_address=node.bulk_address,
            alive=node_id in state.alive,
            last_heartbeat_ms=last_heartbeat_ms.get(node_id, 0),
        )
    for target_id, target in sorted(state.targets.items()):
        stats = state.stats.get(target_id, TargetStats())
        # A dead node's targets show OFFLINE: that is how the chain rules judge them.
        reported = local.get(target_id)
        shown = (mgmt_pb2.LOCAL_OFFLINE if target.node_id not in state.alive else 0) if reported is None else reported
        info.targets.add(
            target_id=target_id,
            node_id=target.node_id,
            chain_id=target.chain_id,
            public_state=int(public.get(target_id, 0)),  # type: ignore[arg-type]
            local_state=int(shown),  # type: ignore[arg-type]
            capacity_bytes=stats.capacity_bytes,
            used_bytes=stats.used_bytes,
            chunks=stats.chunks,
        )
    for _, chain in sorted(state.chains.items()):
        info.chains.append(chain_to_proto(chain))
    return info
