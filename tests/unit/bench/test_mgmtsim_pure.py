"""The pure parts of the manager simulation: percentiles, judging a routing, and
reading the version off a serialized GetRouting reply."""

from __future__ import annotations

import pytest

from emberfs.bench.mgmtsim import judge, percentile
from emberfs.bench.mgmtsim_nodes import routing_version_of
from emberfs.proto import mgmt_pb2


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None),
    ([7.0], 99, 7.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
    ([float(i) for i in range(1, 101)], 99, 99.0),
    ([float(i) for i in range(1, 101)], 100, 100.0),
    ([3.0, 1.0, 2.0], 0, 1.0),
])
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize("version", [1, 127, 128, 300, 2**40])
def test_routing_version_read_from_the_first_bytes(version: int) -> None:
    reply = mgmt_pb2.GetRoutingResponse(routing=mgmt_pb2.RoutingInfo(routing_version=version))
    reply.routing.nodes.add(node_id=3, address="h:1")
    assert routing_version_of(reply.SerializeToString()) == version


@pytest.mark.parametrize("reply", [b"", b"\x08\x01", b"\x12", b"\x12\x02\x10\x01", b"\x12\x05\x08\xff\xff"])
def test_routing_version_of_other_layouts_is_none(reply: bytes) -> None:
    assert routing_version_of(reply) is None


def test_judge_names_dead_beating_nodes_and_their_unserving_targets() -> None:
    routing = mgmt_pb2.RoutingInfo(routing_version=5)
    routing.nodes.add(node_id=1, alive=True)
    routing.nodes.add(node_id=2, alive=False)
    routing.nodes.add(node_id=3, alive=False)
    routing.chains.add(chain_id=1, chain_version=2, targets=[
        mgmt_pb2.ChainTarget(target_id=101, public_state=mgmt_pb2.SERVING),
        mgmt_pb2.ChainTarget(target_id=201, public_state=mgmt_pb2.OFFLINE),
        mgmt_pb2.ChainTarget(target_id=301, public_state=mgmt_pb2.LASTSRV),
    ])
    assert judge(routing, ()) == ({2, 3}, {201, 301})
    assert judge(routing, {3}) == ({2}, {201})
