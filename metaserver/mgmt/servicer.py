"""The Mgmt gRPC service: decode, check the request's shape, call the manager.

Thin on purpose (STYLE: services are thin): the rules live in state.py and the I/O
in manager.py. Errors map to gRPC status in the one place the Meta service uses,
its `_rpc` decorator (unknown fields refused, EmberError -> status + `emberfs-error`
trailing metadata, anything else INTERNAL and a log line).
"""

from __future__ import annotations

import grpc

from emberfs.common.chainstate import chain_to_proto
from emberfs.common.errors import InvalidArgument
from emberfs.common.servicing import add_servicer
from emberfs.proto import mgmt_pb2, mgmt_pb2_grpc

from ..service import _rpc
from .manager import ClusterManager
from .wire import registration_from_proto, reports_from_proto

__all__ = ["MAX_CHAINS", "MAX_REPLICAS", "MgmtServicer", "add_mgmt_servicer"]

MAX_REPLICAS = 16
MAX_CHAINS = 100_000


class MgmtServicer(mgmt_pb2_grpc.MgmtServicer):
    def __init__(self, manager: ClusterManager) -> None:
        self._manager = manager

    @_rpc
    async def RegisterNode(
        self, request: mgmt_pb2.RegisterNodeRequest, context: grpc.aio.ServicerContext
    ) -> mgmt_pb2.RegisterNodeResponse:
        version = await self._manager.register(registration_from_proto(request))
        return mgmt_pb2.RegisterNodeResponse(
            routing_version=version, heartbeat_interval_s=self._manager.heartbeat_interval_s,
            heartbeat_timeout_s=self._manager.heartbeat_timeout_s,
        )

    @_rpc
    async def Heartbeat(
        self, request: mgmt_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> mgmt_pb2.HeartbeatResponse:
        version, reregister = await self._manager.heartbeat(request.node_id, reports_from_proto(request.targets),
                                                            request.incarnation, request.routing_version)
        return mgmt_pb2.HeartbeatResponse(routing_version=version, reregister=reregister,
                                          heartbeat_timeout_s=self._manager.heartbeat_timeout_s)

    @_rpc
    async def GetRouting(
        self, request: mgmt_pb2.GetRoutingRequest, context: grpc.aio.ServicerContext
    ) -> mgmt_pb2.GetRoutingResponse | bytes:
        return self._manager.routing_reply(request.known_version, request.accept_delta)

    @_rpc
    async def InitChains(
        self, request: mgmt_pb2.InitChainsRequest, context: grpc.aio.ServicerContext
    ) -> mgmt_pb2.InitChainsResponse:
        if not 1 <= request.replicas <= MAX_REPLICAS:
            raise InvalidArgument(f"replicas must be in 1..{MAX_REPLICAS}, not {request.replicas}")
        if request.chains > MAX_CHAINS:
            raise InvalidArgument(f"chains must be at most {MAX_CHAINS}, not {request.chains}")
        chains, created = await self._manager.init_chains(request.replicas, request.chains)
        return mgmt_pb2.InitChainsResponse(chains=[chain_to_proto(c) for c in chains], created=created)

    @_rpc
    async def SetTargetAdminState(
        self, request: mgmt_pb2.SetTargetAdminStateRequest, context: grpc.aio.ServicerContext
    ) -> mgmt_pb2.SetTargetAdminStateResponse:
        if request.target_id == 0:
            raise InvalidArgument("target_id is required")
        routing = await self._manager.set_admin_state(request.target_id, request.offline)
        return mgmt_pb2.SetTargetAdminStateResponse(routing=routing)


def add_mgmt_servicer(servicer: MgmtServicer, server: grpc.aio.Server) -> None:
    """Register Mgmt with lenient decoding and the metaserver's error mapping."""
    add_servicer(mgmt_pb2, "Mgmt", servicer, server)
