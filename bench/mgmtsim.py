"""The cluster manager at scale, measured by simulation (issue 23):

    python -m emberfs.bench.mgmtsim --nodes 100,500,1000,2000 --targets 8 --seconds 20

For each size: one real `emberfs-meta` (LMDB engine, its default settings unless
--heartbeat-interval/--heartbeat-timeout are given) and N simulated storage nodes
(bench/mgmtsim_nodes.py: the agent's protocol, in --procs worker processes). Phases:

  register    every node registers at once; time until all have
  InitChains  3 replicas (fewer with fewer nodes) over all targets
  steady      --seconds of heartbeats: latency p50/p99, manager CPU (from /proc of
              the metaserver), nodes declared dead while beating (false deaths, from
              the metaserver's log), targets not SERVING at the end
  failure     every tenth node goes silent: time until the manager declared all of
              them dead (detection), then they beat again: time until every node is
              alive and every target SERVING (recovery)

Progress goes to stderr, the table to stdout (--json for the figures). The simulated
nodes run on the same machine as the manager and take CPU from it: the output says
how much. Every phase has a deadline, so a manager that falls behind ends the run
with what it reached rather than a hang.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import grpc

from emberfs.client._launch import ServerProcess, metaserver_process
from emberfs.common.chainstate import PublicState
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, mgmt_pb2, mgmt_pb2_grpc

from .mgmtsim_nodes import Stats, run_worker

__all__ = ["Row", "judge", "main", "percentile", "run_size"]

REGISTER_DEADLINE_S = 120.0
RECOVERY_DEADLINE_S = 90.0
_DEAD = re.compile(rb"node (\d+) is dead")


@dataclass
class Row:
    """One size's figures (seconds unless named otherwise; None: not reached)."""

    nodes: int
    targets_per_node: int
    registered: int = 0
    register_s: float | None = None
    init_chains_s: float | None = None
    chains: int = 0
    beats: int = 0
    beat_p50_ms: float | None = None
    beat_p99_ms: float | None = None
    beat_errors: int = 0
    manager_cores: float | None = None
    simulator_cores: float | None = None
    false_deaths: int = 0
    not_serving_at_end: int | None = None
    routing_bytes: int = 0
    routing_fetches: int = 0
    silenced: int = 0
    detect_s: float | None = None
    recover_s: float | None = None
    churn_beat_p99_ms: float | None = None
    notes: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def judge(routing: mgmt_pb2.RoutingInfo, silent: Iterable[int]) -> tuple[set[int], set[int]]:
    """(nodes published dead though beating, their targets not SERVING) in one routing."""
    silent = set(silent)
    dead = {n.node_id for n in routing.nodes if not n.alive and n.node_id not in silent}
    not_serving = {t.target_id for c in routing.chains for t in c.targets
                   if t.public_state != PublicState.SERVING and t.target_id // 100 not in silent}
    return dead, not_serving


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _DeathLog:
    """Reads the metaserver's log as it grows: when each node was first declared dead."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._rest = b""
        self.deaths: list[tuple[int, float]] = []

    def poll(self) -> None:
        data = self._rest + self._file.read()
        *lines, self._rest = data.split(b"\n")
        now = time.monotonic()
        self.deaths.extend((int(m.group(1)), now) for line in lines if (m := _DEAD.search(line)))

    def close(self) -> None:
        self._file.close()


class _Sim:
    """The worker processes of one run, spoken to over pipes."""

    def __init__(self, meta: str, node_ids: list[int], targets: int, procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # no gRPC state crosses a fork
        self.commands: list[Connection] = []
        self.conns: list[Connection] = []  # the replies
        self.procs: list[Any] = []
        for i in range(procs):
            inbox, commands = ctx.Pipe(duplex=False)
            replies, outbox = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=run_worker, args=(inbox, outbox, meta, node_ids[i::procs], targets),
                               daemon=True)
            proc.start()
            inbox.close()
            outbox.close()
            self.commands.append(commands)
            self.conns.append(replies)
            self.procs.append(proc)

    def send(self, *command: object) -> None:
        for conn in self.commands:
            conn.send(command)

    def register(self, total: int, deadline_s: float, progress: Callable[[str], None]) -> int:
        """Start every node; wait until all are registered or the deadline; how many are."""
        self.send("register")
        counts = [0] * len(self.conns)
        done = [False] * len(self.conns)
        end, shown = time.monotonic() + deadline_s, 0.0
        while not all(done) and time.monotonic() < end:
            for ready in wait(self.conns, timeout=0.5):
                i = self.conns.index(ready)  # type: ignore[arg-type]
                kind, n = self.conns[i].recv()
                counts[i], done[i] = n, kind == "registered"
            if time.monotonic() - shown >= 2.0:
                shown = time.monotonic()
                progress(f"registered {sum(counts)}/{total}")
        return sum(counts)

    def mark(self) -> Stats:
        self.send("mark")
        return self._collect()

    def _collect(self) -> Stats:
        total = Stats()
        for conn in self.conns:
            while True:  # registration progress may still be queued ahead of the stats
                reply = conn.recv() if conn.poll(30.0) else ("stats", Stats())
                if reply[0] == "stats":
                    break
            stats: Stats = reply[1]
            total.latencies += stats.latencies
            total.beat_errors += stats.beat_errors
            total.reregisters += stats.reregisters
            total.routing_fetches += stats.routing_fetches
            total.routing_bytes += stats.routing_bytes
            total.max_routing_bytes = max(total.max_routing_bytes, stats.max_routing_bytes)
            total.cpu_s += stats.cpu_s
        return total

    def stop(self) -> None:
        for commands, conn in zip(self.commands, self.conns, strict=True):
            try:
                commands.send(("stop",))
                while conn.poll(10.0) and conn.recv()[0] != "stats":
                    pass
            except (OSError, EOFError):
                pass
        for proc in self.procs:
            proc.join(10.0)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _routing(stub: mgmt_pb2_grpc.MgmtStub) -> mgmt_pb2.RoutingInfo:
    request = mgmt_pb2.GetRoutingRequest(header=common_pb2.RequestHeader(client_id="mgmtsim"), known_version=0)
    return stub.GetRouting(request, timeout=30.0).routing


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def run_size(nodes: int, targets: int, seconds: float, procs: int, meta_args: Sequence[str], workdir: Path,
             progress: Callable[[str], None]) -> Row:
    row = Row(nodes, targets)
    meta = metaserver_process(workdir / f"meta-{nodes}", extra_args=[*meta_args, "--log-level", "INFO"])
    meta.start()
    assert meta.address is not None and meta.pid is not None
    log = _DeathLog(meta.log_path)
    sim = _Sim(meta.address, list(range(1, nodes + 1)), targets, procs)
    channel = grpc.insecure_channel(meta.address, options=channel_options())
    try:
        stub = mgmt_pb2_grpc.MgmtStub(channel)
        _phases(row, sim, stub, meta, log, seconds, progress)
    finally:
        channel.close()
        sim.stop()
        meta.stop()
        log.poll()
        log.close()
    silenced = set(range(1, nodes + 1, 10))
    row.false_deaths = len({n for n, _ in log.deaths if n not in silenced})
    return row


def _phases(row: Row, sim: _Sim, stub: mgmt_pb2_grpc.MgmtStub, meta: ServerProcess, log: _DeathLog,
            seconds: float, progress: Callable[[str], None]) -> None:
    n, pid = row.nodes, meta.pid
    assert pid is not None
    started = time.monotonic()
    row.registered = sim.register(n, REGISTER_DEADLINE_S, progress)
    if row.registered == n:
        row.register_s = time.monotonic() - started
    else:
        row.notes.append(f"only {row.registered} of {n} registered within {REGISTER_DEADLINE_S:g} s")
    progress(f"{row.registered} nodes registered in {time.monotonic() - started:.1f} s; InitChains")

    started = time.monotonic()
    reply = stub.InitChains(mgmt_pb2.InitChainsRequest(header=common_pb2.RequestHeader(), replicas=min(3, n)),
                            timeout=120.0)
    row.init_chains_s, row.chains = time.monotonic() - started, len(reply.chains)
    sim.send("chains")
    progress(f"{row.chains} chains in {row.init_chains_s:.2f} s; steady state for {seconds:g} s")

    sim.mark()
    cpu0, t0 = _proc_cpu_s(pid), time.monotonic()
    while (left := seconds - (time.monotonic() - t0)) > 0:
        time.sleep(min(5.0, left))
        log.poll()
        progress(f"steady {time.monotonic() - t0:.0f}/{seconds:g} s, {len(log.deaths)} nodes declared dead")
    elapsed = time.monotonic() - t0
    stats = sim.mark()
    row.manager_cores = round((_proc_cpu_s(pid) - cpu0) / elapsed, 3)
    row.simulator_cores = round(stats.cpu_s / elapsed, 3)
    row.beats, row.beat_errors = len(stats.latencies), stats.beat_errors
    row.beat_p50_ms = _ms(percentile(stats.latencies, 50))
    row.beat_p99_ms = _ms(percentile(stats.latencies, 99))
    routing = _routing(stub)
    row.routing_bytes = routing.ByteSize()
    row.not_serving_at_end = len(judge(routing, ())[1])
    row.routing_fetches = stats.routing_fetches
    _failure(row, sim, stub, log, progress)


def _failure(row: Row, sim: _Sim, stub: mgmt_pb2_grpc.MgmtStub, log: _DeathLog,
             progress: Callable[[str], None]) -> None:
    silenced = set(range(1, row.nodes + 1, 10))
    row.silenced = len(silenced)
    timeout = stub.Heartbeat(mgmt_pb2.HeartbeatRequest(header=common_pb2.RequestHeader()),
                             timeout=10.0).heartbeat_timeout_s  # node 0: "register again", and the timeout
    progress(f"silencing {len(silenced)} nodes (heartbeat timeout {timeout:g} s)")
    log.poll()
    seen = len(log.deaths)
    sim.send("silence", sorted(silenced), True)
    t0 = time.monotonic()
    end = t0 + 3 * timeout + 30
    while time.monotonic() < end:
        time.sleep(0.2)
        log.poll()
        dead = {node for node, _ in log.deaths[seen:]}
        if silenced <= dead:
            row.detect_s = round(max(at for node, at in log.deaths[seen:] if node in silenced) - t0, 2)
            break
    if row.detect_s is None:
        row.notes.append("not every silenced node was declared dead")
    progress(f"detected in {row.detect_s} s; the silenced nodes beat again")
    sim.send("silence", sorted(silenced), False)
    t0 = time.monotonic()
    end = t0 + RECOVERY_DEADLINE_S
    while time.monotonic() < end:
        time.sleep(1.0)
        routing = _routing(stub)
        dead, not_serving = judge(routing, ())
        if not dead and not not_serving:
            row.recover_s = round(time.monotonic() - t0, 2)
            break
        progress(f"recovering: {len(dead)} nodes dead, {len(not_serving)} targets not serving")
    if row.recover_s is None:
        row.notes.append(f"not recovered within {RECOVERY_DEADLINE_S:g} s")
    row.churn_beat_p99_ms = _ms(percentile(sim.mark().latencies, 99))


def _fmt(value: object, suffix: str = "") -> str:
    return "—" if value is None else f"{value:g}{suffix}" if isinstance(value, float) else f"{value}{suffix}"


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| nodes × targets | register all | InitChains | heartbeat p50 / p99 | manager CPU | simulator CPU "
        "| false deaths | not serving | GetRouting | detect (1/10 silent) | recover | p99 under churn |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.nodes:,} × {r.targets_per_node} | {_fmt(r.register_s and round(r.register_s, 2), ' s')} "
            f"| {_fmt(r.init_chains_s and round(r.init_chains_s, 2), ' s')} "
            f"| {_fmt(r.beat_p50_ms)} / {_fmt(r.beat_p99_ms, ' ms')} | {_fmt(r.manager_cores, ' core')} "
            f"| {_fmt(r.simulator_cores, ' core')} | {r.false_deaths} | {_fmt(r.not_serving_at_end)} "
            f"| {r.routing_bytes / 1000:.0f} KB | {_fmt(r.detect_s, ' s')} | {_fmt(r.recover_s, ' s')} "
            f"| {_fmt(r.churn_beat_p99_ms, ' ms')} |"
        )
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--nodes wants comma-separated counts, not {text!r}") from None
    if not sizes or any(not 1 <= s <= 100_000 for s in sizes):
        raise argparse.ArgumentTypeError(f"--nodes counts must be in 1..100000, not {text!r}")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emberfs.bench.mgmtsim", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=_sizes, default=[100, 500, 1000, 2000], help="sizes, e.g. 100,500")
    parser.add_argument("--targets", type=int, default=8, choices=range(1, 100), metavar="1..99",
                        help="targets per node")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady-state phase length")
    parser.add_argument("--procs", type=int, default=1, help="worker processes for the simulated nodes")
    parser.add_argument("--heartbeat-interval", type=float, default=None, help="metaserver setting (default: its)")
    parser.add_argument("--heartbeat-timeout", type=float, default=None, help="metaserver setting (default: its)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.procs < 1:
        parser.error("--seconds must be positive and --procs at least 1")
    meta_args: list[str] = []
    if args.heartbeat_interval is not None:
        meta_args += ["--heartbeat-interval", str(args.heartbeat_interval)]
    if args.heartbeat_timeout is not None:
        meta_args += ["--heartbeat-timeout", str(args.heartbeat_timeout)]

    def progress(line: str) -> None:
        print(f"[mgmtsim] {line}", file=sys.stderr, flush=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="mgmtsim-") as tmp:
        for n in args.nodes:
            progress(f"{n} nodes × {args.targets} targets")
            rows.append(run_size(n, args.targets, args.seconds, args.procs, meta_args, Path(tmp), progress))
            progress(table(rows[-1:]).splitlines()[-1])
    print(table(rows))
    print(f"\n{os.cpu_count()} CPUs shared by the metaserver and the simulated nodes "
          f"({args.procs} process(es)); 'simulator CPU' is what the nodes took from the manager.")
    for r in rows:
        for note in r.notes:
            print(f"{r.nodes} nodes: {note}")
    if args.json is not None:
        args.json.write_text(json.dumps({"command": sys.argv, "cpus": os.cpu_count(),
                                         "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
