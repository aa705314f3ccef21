"""The Mgmt gRPC service in-process on 127.0.0.1:0 (the real grpc.aio server that
build_server makes): status mapping, unknown fields, the request rules end to end."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emberfs.common import errors
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.server import build_server
from emberfs.metaserver.store import MetaStore
from emberfs.proto import mgmt_pb2, mgmt_pb2_grpc

Scenario = Callable[[mgmt_pb2_grpc.MgmtStub, grpc.aio.Channel], Awaitable[None]]


class NoStorage:
    async def remove_chunks(self, removal: Any) -> int:
        raise errors.Unavailable("no storage in unit tests")

    async def close(self) -> None:
        pass


def _serve(tmp_path: pathlib.Path, scenario: Scenario) -> None:
    config = MetaConfig(data_dir=str(tmp_path / "meta"), listen="127.0.0.1:0",
                        heartbeat_interval_s=0.05, heartbeat_timeout_s=5.0, gc_interval_s=0.05)

    async def main() -> None:
        store = MetaStore(config)
        meta = build_server(config, store, remover=NoStorage())
        await meta.start()
        try:
            async with grpc.aio.insecure_channel(meta.address) as channel:
                await scenario(mgmt_pb2_grpc.MgmtStub(channel), channel)
        finally:
            await meta.stop(0.5)
            await store.aclose()

    asyncio.run(main())


async def _fails(call: Awaitable[Any], status: grpc.StatusCode, code: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == status, err.details()
    assert (errors.ERROR_METADATA_KEY, code) in tuple(err.trailing_metadata() or ())
    return err.details() or ""


def _node(node_id: int, k: int = 1, state: int = mgmt_pb2.LOCAL_ONLINE) -> mgmt_pb2.RegisterNodeRequest:
    return mgmt_pb2.RegisterNodeRequest(
        node_id=node_id, address=f"127.0.0.1:{7000 + node_id}",
        targets=[mgmt_pb2.TargetReport(target_id=node_id * 100 + i, local_state=state) for i in range(1, k + 1)],
    )


def test_register_heartbeat_init_and_routing(tmp_path: pathlib.Path) -> None:
    async def scenario(stub: Any, channel: grpc.aio.Channel) -> None:
        reply = await stub.RegisterNode(_node(1))
        assert reply.routing_version == 1 and reply.heartbeat_interval_s == 0.05
        assert (await stub.RegisterNode(_node(1))).routing_version == 1  # no-op
        beat = await stub.Heartbeat(mgmt_pb2.HeartbeatRequest(node_id=9))
        assert beat.reregister
        beat = await stub.Heartbeat(mgmt_pb2.HeartbeatRequest(
            node_id=1, targets=[mgmt_pb2.TargetReport(target_id=101, local_state=mgmt_pb2.LOCAL_ONLINE,
                                                      capacity_bytes=1 << 30, used_bytes=5, chunks=1)]))
        assert not beat.reregister and beat.routing_version == 1
        details = await _fails(stub.InitChains(mgmt_pb2.InitChainsRequest(replicas=3)),
                               grpc.StatusCode.FAILED_PRECONDITION, "FailedPrecondition")
        assert "1 alive" in details
        await stub.RegisterNode(_node(2))
        await stub.RegisterNode(_node(3))
        made = await stub.InitChains(mgmt_pb2.InitChainsRequest(replicas=3))
        assert made.created and [c.chain_id for c in made.chains] == [1]
        again = await stub.InitChains(mgmt_pb2.InitChainsRequest(replicas=3))
        assert not again.created and list(again.chains) == list(made.chains)
        await _fails(stub.InitChains(mgmt_pb2.InitChainsRequest(replicas=2)),
                     grpc.StatusCode.FAILED_PRECONDITION, "FailedPrecondition")
        routing = (await stub.GetRouting(mgmt_pb2.GetRoutingRequest())).routing
        assert (await stub.GetRouting(mgmt_pb2.GetRoutingRequest(known_version=routing.routing_version))).unchanged
        one = [t for t in routing.targets if t.target_id == 101][0]
        assert (one.chain_id, one.public_state, one.capacity_bytes, one.used_bytes) == (1, mgmt_pb2.SERVING, 1 << 30, 5)
        out = await stub.SetTargetAdminState(mgmt_pb2.SetTargetAdminStateRequest(target_id=301, offline=True))
        assert out.routing.routing_version > routing.routing_version
        assert [t.public_state for t in out.routing.chains[0].targets] == [
            mgmt_pb2.SERVING, mgmt_pb2.SERVING, mgmt_pb2.OFFLINE]
        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service="emberfs.Mgmt"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING

    _serve(tmp_path, scenario)


def test_bad_requests_are_refused_and_the_server_keeps_serving(tmp_path: pathlib.Path) -> None:
    async def scenario(stub: Any, channel: grpc.aio.Channel) -> None:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        await _fails(stub.RegisterNode(mgmt_pb2.RegisterNodeRequest(node_id=0, address="h:1")), invalid,
                     "InvalidArgument")
        await _fails(stub.RegisterNode(mgmt_pb2.RegisterNodeRequest(node_id=1, address="")), invalid,
                     "InvalidArgument")
        details = await _fails(stub.RegisterNode(mgmt_pb2.RegisterNodeRequest(
            node_id=1, address="h:1", targets=[mgmt_pb2.TargetReport(target_id=201, local_state=1)])),
            invalid, "InvalidArgument")
        assert "201" in details
        await _fails(stub.RegisterNode(_node(1, state=0)), invalid, "InvalidArgument")
        await _fails(stub.InitChains(mgmt_pb2.InitChainsRequest(replicas=0)), invalid, "InvalidArgument")
        await _fails(stub.SetTargetAdminState(mgmt_pb2.SetTargetAdminStateRequest(target_id=0)), invalid,
                     "InvalidArgument")
        await _fails(stub.SetTargetAdminState(mgmt_pb2.SetTargetAdminStateRequest(target_id=555, offline=True)),
                     grpc.StatusCode.NOT_FOUND, "NotFound")
        raw = channel.unary_unary("/emberfs.Mgmt/GetRouting", request_serializer=None,
                                  response_deserializer=mgmt_pb2.GetRoutingResponse.FromString)
        unknown_field = mgmt_pb2.GetRoutingRequest().SerializeToString() + bytes([0x98, 0x06, 1])  # field 99
        assert "99" in await _fails(raw(unknown_field), invalid, "InvalidArgument")
        await _fails(raw(b"\xff\xff\xff"), invalid, "InvalidArgument")
        assert (await stub.RegisterNode(_node(1))).routing_version == 1

    _serve(tmp_path, scenario)
