"""Metadata throughput of a real metaserver, next to the limits it cannot beat.

    python bench/meta_bench.py [--ops N] [--seconds S] [--json FILE]

Starts its own metaserver on 127.0.0.1:0 in a temporary directory and measures,
through the real `emberfs.client.Client`, mkdir/s and stat/s with 1 and with 100
requests in flight. In the same run it measures two baselines:

  * gRPC health Check calls/s against the same server, 1 and 100 in flight: the cost
    of the transport alone (grpc.aio, HTTP/2, protobuf, Python), an upper bound for
    any RPC the server answers;
  * raw LMDB durable writes: one put per sync=True transaction, in this process, on
    the same file system: the upper bound for a write that commits alone.

A mkdir that beats the LMDB figure does so by group commit (many writes per fsync).
Each phase stops after N operations or S seconds, whichever comes first, so a run is
bounded (about 7 phases x S seconds plus start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import lmdb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emberfs.client import Client
from emberfs.client._launch import metaserver_process

DEPTHS = (1, 100)


@dataclass
class Phase:
    name: str
    in_flight: int
    ops: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_phase(
    name: str, in_flight: int, op: Callable[[int], Awaitable[object]], max_ops: int, max_seconds: float
) -> Phase:
    """Run op(0), op(1), ... with `in_flight` workers until max_ops or max_seconds."""
    latencies: list[float] = []
    next_index = 0
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker() -> None:
        nonlocal next_index
        while next_index < max_ops and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    phase = Phase(name, in_flight, len(latencies), elapsed, 1000 * statistics.median(latencies or [0.0]), 1000 * p99)
    progress(f"  {name:<14} x{in_flight:<4} {phase.rate:>10.0f}/s  ({phase.ops} ops in {elapsed:.1f} s)")
    return phase


async def client_phases(address: str, max_ops: int, max_seconds: float) -> list[Phase]:
    phases = []
    async with Client(address) as fs:
        await fs.mkdir("/bench")
        for depth in DEPTHS:
            base = f"/bench/x{depth}"
            await fs.mkdir(base)
            mk = await run_phase("mkdir", depth, lambda i, b=base: fs.mkdir(f"{b}/d{i}"), max_ops, max_seconds)
            phases.append(mk)
        for depth in DEPTHS:
            # Stat the directories the mkdir phase made (all of them exist).
            made = next(p.ops for p in phases if p.name == "mkdir" and p.in_flight == depth)
            base = f"/bench/x{depth}"
            phases.append(
                await run_phase("stat", depth, lambda i, b=base, n=made: fs.stat(f"{b}/d{i % n}"), max_ops, max_seconds)
            )
    return phases


async def health_phases(address: str, max_ops: int, max_seconds: float) -> list[Phase]:
    phases = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="emberfs.Meta")
        for depth in DEPTHS:
            phases.append(
                await run_phase("health Check", depth, lambda i: stub.Check(request, timeout=10), max_ops, max_seconds)
            )
    return phases


def lmdb_phase(directory: Path, max_ops: int, max_seconds: float) -> Phase:
    """One put per durable (sync=True) write transaction, as an unbatched metadata write would do."""
    env = lmdb.open(str(directory), map_size=1 << 30, sync=True, metasync=True)
    value = os.urandom(128)  # about one encoded inode
    latencies = []
    start = time.perf_counter()
    deadline = start + max_seconds
    try:
        i = 0
        while i < max_ops and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            with env.begin(write=True) as txn:
                txn.put(i.to_bytes(8, "big"), value)
            latencies.append(time.perf_counter() - t0)
            i += 1
    finally:
        env.close()
    elapsed = time.perf_counter() - start
    latencies.sort()
    phase = Phase("lmdb sync put", 1, len(latencies), elapsed, 1000 * statistics.median(latencies or [0.0]),
                  1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0)
    progress(f"  {'lmdb sync put':<14} x1    {phase.rate:>10.0f}/s  ({phase.ops} ops in {elapsed:.1f} s)")
    return phase


def table(phases: list[Phase]) -> str:
    health = {p.in_flight: p.rate for p in phases if p.name == "health Check"}
    lmdb_rate = next(p.rate for p in phases if p.name == "lmdb sync put")
    header = f"{'operation':<15}{'in flight':>10}{'ops/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'vs health':>11}{'vs lmdb':>9}"
    lines = [header, "-" * len(header)]
    for p in phases:
        # Each baseline row is compared only with itself (1.00x), the others with both.
        vs_health = vs_lmdb = None
        if p.name != "lmdb sync put" and health.get(p.in_flight):
            vs_health = p.rate / health[p.in_flight]
        if p.name != "health Check" and lmdb_rate:
            vs_lmdb = p.rate / lmdb_rate
        lines.append(
            f"{p.name:<15}{p.in_flight:>10}{p.rate:>11.0f}{p.p50_ms:>9.2f}{p.p99_ms:>9.2f}"
            f"{_ratio(vs_health):>11}{_ratio(vs_lmdb):>9}"
        )
    return "\n".join(lines)


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=20000, help="operations per phase at most (default 20000)")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per phase at most (default 6)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="emberfs-bench-") as tmp:
        server = metaserver_process(Path(tmp) / "meta")
        progress("starting metaserver ...")
        address = server.start()
        progress(f"metaserver on {address}; each phase: up to {args.ops} ops or {args.seconds:g} s")
        try:
            phases = asyncio.run(client_phases(address, args.ops, args.seconds))
            phases += asyncio.run(health_phases(address, args.ops, args.seconds))
        finally:
            code = server.stop()
            progress(f"metaserver stopped (exit {code})")
        phases.append(lmdb_phase(Path(tmp) / "lmdb", args.ops, args.seconds))

    print(table(phases))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        rows = [dict(asdict(p), rate=p.rate) for p in phases]
        args.json.write_text(json.dumps({"address": address, "phases": rows}, indent=2) + "\n")
        progress(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
