"""DataPath's bounds and replica spreading, driven through a scripted storage pool
(a stand-in for the network only; the data path itself is the real one)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import crc32c

from emberfs.client._datapath import DataPath, FileLayout
from emberfs.client._retry import RetryPolicy
from emberfs.client._routing import RoutingCache
from emberfs.common.errors import Unavailable
from emberfs.common.layout import ChunkSpan
from emberfs.proto import common_pb2, mgmt_pb2, storage_pb2

TARGETS = {101: "10.0.0.1:1", 201: "10.0.0.2:1", 301: "10.0.0.3:1"}


def _routing() -> mgmt_pb2.RoutingInfo:
    return mgmt_pb2.RoutingInfo(
        routing_version=1,
        nodes=[mgmt_pb2.NodeInfo(node_id=t // 100, address=a, alive=True) for t, a in TARGETS.items()],
        targets=[mgmt_pb2.TargetInfo(target_id=t, node_id=t // 100, chain_id=1) for t in TARGETS],
        chains=[
            mgmt_pb2.ChainInfo(
                chain_id=1,
                chain_version=1,
                targets=[mgmt_pb2.ChainTarget(target_id=t, public_state=mgmt_pb2.SERVING) for t in TARGETS],
            )
        ],
    )


class ScriptedPool:
    """Answers Read with `length` bytes after a short pause; counts concurrency."""

    def __init__(self, dead: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.dead = dead
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total_now = self.total_peak = 0
        self.served: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    async def call(self, address: str, method: str, request: Any, *, timeout: float, **_: Any) -> Any:
        self.calls[address] += 1
        if address in self.dead:
            raise Unavailable(f"{address} refused the connection")
        self.now[address] += 1
        self.total_now += 1
        self.peak[address] = max(self.peak[address], self.now[address])
        self.total_peak = max(self.total_peak, self.total_now)
        try:
            await asyncio.sleep(0.002)
            data = bytes(request.length)
            self.served[address] += 1
            return storage_pb2.ReadResponse(data=data, crc32c=crc32c.crc32c(data), exists=True)
        finally:
            self.now[address] -= 1
            self.total_now -= 1


def _data_path(pool: ScriptedPool, **options: Any) -> DataPath:
    async def fetch(known: int) -> mgmt_pb2.GetRoutingResponse:
        return mgmt_pb2.GetRoutingResponse(routing=_routing())

    return DataPath(
        RoutingCache(fetch), pool, common_pb2.RequestHeader, retry=RetryPolicy(), timeout=10.0, **options  # type: ignore[arg-type]
    )


FILE = FileLayout(7, common_pb2.Layout(chunk_size=4096, stripe=1, chain_ids=[1]))


def _spans(n: int) -> list[ChunkSpan]:
    return [ChunkSpan(i, 0, 4096) for i in range(n)]


def test_in_flight_bounds_per_client_and_per_server_hold() -> None:
    pool = ScriptedPool()
    path = _data_path(pool, max_inflight=9, per_server=2)
    assert len(asyncio.run(path.read_spans(FILE, _spans(60)))) == 60
    assert max(pool.peak.values()) <= 2
    assert pool.total_peak <= 6  # 3 servers x 2, below the client's 9
    # least-outstanding choice spreads the reads over all replicas
    assert set(pool.served) == set(TARGETS.values())
    assert min(pool.served.values()) >= 10


def test_client_bound_below_the_server_bounds() -> None:
    pool = ScriptedPool()
    path = _data_path(pool, max_inflight=4, per_server=16)
    asyncio.run(path.read_spans(FILE, _spans(40)))
    assert 1 <= pool.total_peak <= 4


def test_a_dead_replica_costs_few_failures_not_one_per_chunk() -> None:
    pool = ScriptedPool(dead={TARGETS[101], TARGETS[301]})
    path = _data_path(pool, max_inflight=4, per_server=4)
    assert len(asyncio.run(path.read_spans(FILE, _spans(50)))) == 50
    assert pool.served[TARGETS[201]] == 50
    # Only reads already in flight when a server first failed try it: later reads
    # know it as a suspect.
    assert pool.calls[TARGETS[101]] + pool.calls[TARGETS[301]] <= 8
