"""Metadata operations per second, next to the limits they cannot beat.

Through the real `Client` on the cluster's metaserver: `mkdir`, `create` (an
exclusive `touch`) and `stat` (of the directories the mkdir phase made), each with
1 and N requests in flight. Beside them, in the same run:

  * wire: gRPC health `Check` calls against the same metaserver, same depths: the
    transport alone (grpc.aio, HTTP/2, protobuf, Python), an upper bound for any RPC;
  * local: LMDB in this process on the same file system: one `sync=True` put per
    transaction for the writes (an unbatched durable write; a mkdir that beats it does
    so by group commit), one get per read transaction for stat.

A baseline measured once stands beside several workloads: one health figure per depth
beside all three, the LMDB put beside mkdir and create, and (in-process, one at a
time) the same LMDB figure beside every depth.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from emberfs.client import Client

from .measure import EMBERFS, LOCAL, OPS, WIRE, Row, progress, timed, timed_inline

__all__ = ["META_WORKLOADS", "emberfs_meta", "health_meta", "lmdb_meta"]

META_WORKLOADS = ("mkdir", "create", "stat")


async def emberfs_meta(fs: Client | Sequence[Client], system: str, depths: tuple[int, ...], max_ops: int,
                       max_seconds: float, server_pids: Callable[[], list[int]]) -> list[Row]:
    """mkdir, create, then stat of the directories mkdir made; each at every depth.
    Several clients (one per metaserver): operation i goes to client i mod n."""
    clients = [fs] if isinstance(fs, Client) else list(fs)
    rows: list[Row] = []
    made: dict[int, int] = {}
    for depth in depths:
        await clients[0].makedirs(f"/bench-meta/x{depth}", exist_ok=True)

    def on(i: int) -> Client:
        return clients[i % len(clients)]

    async def mkdir(i: int, depth: int) -> None:
        await on(i).mkdir(f"/bench-meta/x{depth}/d{i}")

    async def create(i: int, depth: int) -> None:
        await on(i).touch(f"/bench-meta/x{depth}/f{i}", exist_ok=False)

    async def stat(i: int, depth: int) -> None:
        await on(i).stat(f"/bench-meta/x{depth}/d{i % made[depth]}")  # one the mkdir phase made

    for workload, action in (("mkdir", mkdir), ("create", create), ("stat", stat)):
        for depth in depths:
            async def op(i: int, act: Callable[[int, int], Awaitable[None]] = action, d: int = depth) -> int:
                await act(i, d)
                return 0

            sample = await timed(op, in_flight=depth, max_ops=max_ops, max_seconds=max_seconds,
                                 server_pids=server_pids)
            if workload == "mkdir":
                made[depth] = max(sample.ops, 1)
            rows.append(Row.of(workload, depth, system, EMBERFS, OPS, sample))
            progress(rows[-1].describe())
    return rows


async def health_meta(address: str, depths: tuple[int, ...], max_ops: int, max_seconds: float,
                      server_pids: Callable[[], list[int]]) -> list[Row]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    rows: list[Row] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="emberfs.Meta")

        async def op(i: int) -> int:
            await stub.Check(request, timeout=10)
            return 0

        for depth in depths:
            sample = await timed(op, in_flight=depth, max_ops=max_ops, max_seconds=max_seconds,
                                 server_pids=server_pids)
            row = Row.of(META_WORKLOADS[0], depth, "grpc health", WIRE, OPS, sample, detail="Check call")
            progress(f"grpc health Check x{depth}: {row.value or 0:.0f} ops/s (beside every metadata row)")
            rows += [replace(row, workload=w) for w in META_WORKLOADS]
    return rows


def lmdb_meta(directory: Path, depths: tuple[int, ...], max_ops: int, max_seconds: float) -> list[Row]:
    """In-process and one at a time: the same figure stands beside every depth."""
    import lmdb

    env = lmdb.open(str(directory), map_size=1 << 30, sync=True, metasync=True)
    value = os.urandom(128)  # about one encoded inode
    try:
        def put(i: int) -> int:
            with env.begin(write=True) as txn:
                txn.put(i.to_bytes(8, "big"), value)
            return 0

        puts = timed_inline(put, max_ops=max_ops, max_seconds=max_seconds)
        keys = max(puts.ops, 1)

        def get(i: int) -> int:
            with env.begin() as txn:
                txn.get((i % keys).to_bytes(8, "big"))
            return 0

        gets = timed_inline(get, max_ops=max_ops, max_seconds=max_seconds)
    finally:
        env.close()
    put_row = Row.of("mkdir", 1, "lmdb", LOCAL, OPS, puts, detail="sync put per txn")
    get_row = Row.of("stat", 1, "lmdb", LOCAL, OPS, gets, detail="get per read txn")
    progress(put_row.describe())
    progress(get_row.describe())
    return [replace(row, workload=workload, in_flight=depth)
            for workload, row in (("mkdir", put_row), ("create", put_row), ("stat", get_row)) for depth in depths]
