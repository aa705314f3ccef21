"""Timing, CPU accounting and the one result record (`Row`) every workload produces.

A phase runs `op(0), op(1), ...` (each returns the bytes it moved) with N workers in
flight until `max_ops` operations or `max_seconds` have passed, whichever comes first,
so every phase is bounded however slow the system under test is. CPU time is taken
from this process (`time.process_time`: the client, or an in-process baseline) and
from the server processes named by pid, read from `/proc/<pid>/stat` (no psutil).

MiB/s is 2^20 bytes per second throughout.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field

__all__ = [
    "EMBERFS", "LOCAL", "WIRE", "PEER", "MIBS", "OPS", "MIB",
    "Row", "Sample", "progress", "proc_cpu_seconds", "child_pids", "timed", "timed_inline",
]

MIB = 1 << 20
# A row's role: the system under test, or which limit a baseline stands for.
EMBERFS = "emberfs"
LOCAL = "local"  # the same work with no network: page cache, local disk, in-process LMDB
WIRE = "wire"  # the bare transport: a raw asyncio socket, a gRPC health call
PEER = "peer"  # what a user would otherwise deploy: nginx + aiohttp range requests
MIBS, OPS = "MiB/s", "ops/s"

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0.0 if it is gone or /proc is absent)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return 0.0
    # Fields after the command name, which is in parentheses and may hold spaces:
    # state(3) ppid(4) ... utime(14) stime(15), so utime is index 11 after ')'.
    fields = text[text.rfind(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def child_pids(parent: int) -> list[int]:
    """Live children of a process (nginx's workers), from /proc."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    text = f.read()
            except OSError:
                continue
            if int(text[text.rfind(b")") + 2:].split()[1]) == parent:
                found.append(int(entry))
    return found


@dataclass
class Sample:
    ops: int
    nbytes: int
    seconds: float
    cpu_client_s: float
    cpu_server_s: float | None
    latencies: list[float] = field(default_factory=list, repr=False)


@dataclass
class Row:
    """One figure: a system doing a workload with some requests in flight."""

    workload: str  # "seq read", "rand read 64 KiB", "mkdir", ...
    in_flight: int  # requests in flight; 0 = one whole-file call (the client parallelizes)
    system: str  # "emberfs 4 MiB chunks", "page cache", "raw socket", "nginx + aiohttp", ...
    role: str  # EMBERFS, LOCAL, WIRE or PEER
    unit: str  # MIBS or OPS
    ops: int = 0
    nbytes: int = 0
    seconds: float = 0.0
    cpu_client_s: float = 0.0
    cpu_server_s: float | None = None  # None: no server process (in-process baselines)
    p50_ms: float | None = None
    p99_ms: float | None = None
    detail: str = ""  # how it was measured ("4 MiB x8", "inline", "shared with mkdir")
    unavailable: str = ""  # why it was not measured; empty when it was
    # EmberFS rows only (empty otherwise); the system label says the same for people.
    transport: str = ""  # "bulk" or "grpc" (Client(transport=...))
    event_loop: str = ""  # "asyncio" or "uvloop": the servers' and the client's loop
    api: str = ""  # the client call: "read_into", "read_file", "read_range", "pread", "write_file"

    @classmethod
    def of(cls, workload: str, in_flight: int, system: str, role: str, unit: str, sample: Sample,
           detail: str = "", *, transport: str = "", event_loop: str = "", api: str = "") -> Row:
        lat = sorted(sample.latencies)
        return cls(
            workload, in_flight, system, role, unit, sample.ops, sample.nbytes, sample.seconds,
            sample.cpu_client_s, sample.cpu_server_s,
            p50_ms=1000 * statistics.median(lat) if lat else None,
            p99_ms=1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
            detail=detail, transport=transport, event_loop=event_loop, api=api,
        )

    @classmethod
    def missing(cls, workload: str, in_flight: int, system: str, role: str, unit: str, why: str, *,
                transport: str = "", event_loop: str = "", api: str = "") -> Row:
        return cls(workload, in_flight, system, role, unit, unavailable=why, transport=transport,
                   event_loop=event_loop, api=api)

    @property
    def value(self) -> float | None:
        """MiB/s or ops/s; None when unavailable."""
        if self.unavailable or self.seconds <= 0:
            return None
        return self.nbytes / MIB / self.seconds if self.unit == MIBS else self.ops / self.seconds

    @property
    def cpu_s_per_gib(self) -> tuple[float, float | None] | None:
        """(client, servers) CPU seconds per GiB moved, for byte-moving rows."""
        if self.unavailable or not self.nbytes:
            return None
        gib = self.nbytes / (1 << 30)
        return self.cpu_client_s / gib, None if self.cpu_server_s is None else self.cpu_server_s / gib

    def as_dict(self) -> dict[str, object]:
        cpu = self.cpu_s_per_gib
        return asdict(self) | {
            "value": self.value,
            "cpu_client_s_per_gib": cpu[0] if cpu else None,
            "cpu_server_s_per_gib": cpu[1] if cpu else None,
        }

    def describe(self) -> str:
        where = f"{self.workload} x{self.in_flight}" if self.in_flight else self.workload
        if self.unavailable:
            return f"{where:<22} {self.system:<40} unavailable: {self.unavailable}"
        return f"{where:<22} {self.system:<40} {self.value:>10.1f} {self.unit} ({self.ops} ops, {self.seconds:.2f} s)"


class _Cpu:
    def __init__(self, server_pids: Callable[[], Iterable[int] | None] | None) -> None:
        self._pids = server_pids
        self._client0 = time.process_time()
        self._server0 = self._servers()

    def _servers(self) -> float | None:
        pids = None if self._pids is None else self._pids()
        return None if pids is None else sum(proc_cpu_seconds(p) for p in pids)

    def stop(self) -> tuple[float, float | None]:
        client = time.process_time() - self._client0
        server = self._servers()
        return client, None if server is None or self._server0 is None else max(server - self._server0, 0.0)


async def timed(
    op: Callable[[int], Awaitable[int]],
    *,
    in_flight: int,
    max_ops: int,
    max_seconds: float,
    server_pids: Callable[[], Iterable[int] | None] | None = None,
) -> Sample:
    """Run op(i) for i = 0, 1, ... with `in_flight` workers, bounded by count and time."""
    latencies: list[float] = []
    moved = 0
    next_index = 0
    cpu = _Cpu(server_pids)
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker() -> None:
        nonlocal next_index, moved
        while next_index < max_ops and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            count = await op(i)  # not `moved += await ...`: that reads `moved` before the await
            latencies.append(time.perf_counter() - t0)
            moved += count

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    seconds = time.perf_counter() - start
    client, server = cpu.stop()
    return Sample(len(latencies), moved, seconds, client, server, latencies)


def timed_inline(op: Callable[[int], int], *, max_ops: int, max_seconds: float) -> Sample:
    """The same bounds for a blocking, in-process op (page cache, LMDB): one at a time."""
    latencies: list[float] = []
    moved = 0
    cpu = _Cpu(None)
    start = time.perf_counter()
    deadline = start + max_seconds
    i = 0
    while i < max_ops and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        moved += op(i)
        latencies.append(time.perf_counter() - t0)
        i += 1
    seconds = time.perf_counter() - start
    client, _ = cpu.stop()
    return Sample(len(latencies), moved, seconds, client, None, latencies)
