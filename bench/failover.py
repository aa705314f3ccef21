"""Failover, measured: one run that kills a chain's server under continuous writes,
restarts it, and prints what the closing note of issue 5 asks for.

    python bench/failover.py [--role head|middle|tail] [--chunk-size BYTES]
                             [--down-mib MiB] [--data-dir DIR]

prints (stdout; progress goes to stderr):
    acknowledged writes and how many failed; lost acknowledged writes (must be 0: every
    file is read back byte for byte at the end); the longest write stall during the
    failover (the longest stretch with no acknowledged write, from the kill -9 until the
    chain took writes again); failure detection time; restart -> SERVING time; resync
    volume and MiB/s (from the resync source's INFO log line).

The pieces are shared with the fault-injection suite (tests/faults/conftest.py and
tests/faults/hostile/ import them):

    Workload      bench/failover_workload.py: continuous writes (new files, in-place
                  overwrites, whole replacements) and byte-verified reads through the
                  real async Client on a background thread.
    FaultCluster  bench/failover_cluster.py: a started LocalCluster and the questions
                  asked while it breaks: which server holds the head, middle or tail of
                  a chain (from the routing), waiting for chain states, reading every
                  file back.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Absolute imports: `python bench/failover.py` runs this file as a script, outside its package.
from emberfs.bench.failover_cluster import (
    HEAL_TIMEOUT_S,
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_TIMEOUT_S,
    ROLES,
    FaultCluster,
)
from emberfs.bench.failover_workload import Workload
from emberfs.client import SyncClient
from emberfs.client._launch import LocalCluster
from emberfs.common.chainstate import PublicState

__all__ = ["Resync", "main", "measure", "resyncs_into"]

_RESYNC_DONE = re.compile(
    r"resync chain \d+ v\d+: target \d+ -> (?P<dest>\d+) done: (?P<chunks>\d+) chunks sent "
    r"\((?P<mib>[\d.]+) MiB\), (?P<removed>\d+) removed, .* in (?P<seconds>[\d.]+) s"
)


@dataclass
class Resync:
    chunks: int
    mib: float
    seconds: float

    @property
    def mib_per_s(self) -> float:
        return self.mib / self.seconds if self.seconds > 0 else 0.0


def resyncs_into(logs: Sequence[Path], target_id: int, *, after: int = 0) -> list[Resync]:
    """The resyncs to target_id that the storage logs report done (INFO lines of the
    source's resync worker), past byte offset `after` of each log."""
    found = []
    for log in logs:
        try:
            with open(log, "rb") as f:
                f.seek(after)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            continue
        for match in _RESYNC_DONE.finditer(text):
            if int(match["dest"]) == target_id:
                found.append(Resync(int(match["chunks"]), float(match["mib"]), float(match["seconds"])))
    return found


def _say(text: str) -> None:
    print(f"[failover {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _bulk_write(meta: str, prefix: str, mib: int, chunk_size: int) -> dict[str, bytes]:
    """`mib` MiB of new files (4 chunks each) through a SyncClient: what the target
    that is down misses, so its resync has something to carry."""
    files = {}
    size = 4 * chunk_size
    with SyncClient(meta, uid=0, gid=0, groups=[], timeout=60.0) as fs:
        fs.makedirs(prefix, exist_ok=True)
        for i in range(max(1, mib * (1 << 20) // size)):
            data = os.urandom(size)
            fs.write_file(f"{prefix}/bulk-{i}", data)
            files[f"{prefix}/bulk-{i}"] = data
    return files


def measure(data_dir: Path, *, role: str, chunk_size: int, down_mib: int, warmup_s: float, after_s: float) -> int:
    cluster = LocalCluster(data_dir, nodes=3, replicas=3, chunk_size=chunk_size,
                           heartbeat_interval=HEARTBEAT_INTERVAL_S, heartbeat_timeout=HEARTBEAT_TIMEOUT_S)
    cluster.start(timeout=60.0, progress=_say)
    faults = FaultCluster(cluster)
    try:
        load = Workload(faults.meta, chunk_size=chunk_size).start()
        _say(f"workload running; warming up {warmup_s:g} s")
        time.sleep(warmup_s)
        victim = faults.role(role)
        server = faults.server_of(victim)
        logs = [p.log_path for p in cluster.storage]
        offsets = {p: p.stat().st_size if p.exists() else 0 for p in logs}
        _say(f"kill -9 the {role} (target {victim}, pid {server.pid})")
        killed_at = time.monotonic()
        server.kill()
        detect_s = faults.wait_state(victim, PublicState.OFFLINE, timeout=30.0)
        load.wait_acks(10, timeout=60.0)
        _say(f"target {victim} OFFLINE after {detect_s:.2f} s; writing {down_mib} MiB while it is down")
        bulk = _bulk_write(faults.meta, "/missed", down_mib, chunk_size)
        restarted_at = time.monotonic()
        stall_s = load.longest_stall(killed_at, restarted_at)
        server.restart()
        _say(f"restarted node of target {victim}; waiting for SERVING")
        # From restart() returning (the server listening) to the manager publishing SERVING.
        serving_s = faults.wait_state(victim, PublicState.SERVING, timeout=HEAL_TIMEOUT_S)
        _say(f"target {victim} SERVING {serving_s:.2f} s after its restart; {after_s:g} s more of writes")
        time.sleep(after_s)
        report = load.stop()
        _say(f"workload stopped: {report.summary()}; reading every file back")
        lost = faults.mismatches({**report.files, **bulk})
        diverged = faults.replica_divergence({**report.files, **bulk})
        resyncs = [r for log in logs for r in resyncs_into([log], victim, after=offsets[log])]
    finally:
        faults.close()
    resync_mib = sum(r.mib for r in resyncs)
    resync_s = sum(r.seconds for r in resyncs)
    rows = [
        ("acknowledged writes", f"{report.acknowledged} (+{len(bulk)} bulk files while down), "
                                f"{report.failed_writes} failed"),
        ("lost acknowledged writes", f"{len(lost)} (of {len(report.files) + len(bulk)} files read back)"),
        ("reads verified during the run", f"{report.reads_verified} ({len(report.bad_reads)} wrong)"),
        ("failure detection (kill->OFFLINE)", f"{detect_s:.2f} s"),
        ("longest write stall in failover", f"{stall_s:.2f} s"),
        ("restart -> SERVING", f"{serving_s:.2f} s"),
        ("resync", f"{sum(r.chunks for r in resyncs)} chunks, {resync_mib:.1f} MiB in {resync_s:.2f} s = "
                   f"{resync_mib / resync_s:.1f} MiB/s" if resyncs and resync_s > 0 else "no resync line in the logs"),
        ("replicas byte-identical after", "yes" if not diverged else f"NO, {len(diverged)} chunks differ"),
    ]
    print(f"command: python bench/failover.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"cluster: 3 storage nodes, chains of 3, {chunk_size // 1024} KiB chunks, "
          f"heartbeat {HEARTBEAT_INTERVAL_S:g} s / timeout {HEARTBEAT_TIMEOUT_S:g} s; kill -9 of the {role}")
    for label, value in rows:
        print(f"  {label + ':':<36}{value}")
    for line in lost[:10]:
        print(f"  LOST {line}")
    for line in [*report.bad_reads, *diverged][:10]:
        print(f"  WRONG {line}")
    return 1 if lost or diverged or report.bad_reads else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/failover.py", description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=ROLES, default="middle", help="which server of the chain to kill")
    parser.add_argument("--chunk-size", type=int, default=1 << 20, metavar="BYTES", help="default 1 MiB")
    parser.add_argument("--down-mib", type=int, default=64, metavar="MiB",
                        help="new data written while the target is down (what its resync carries)")
    parser.add_argument("--warmup", type=float, default=3.0, metavar="S", help="writes before the kill")
    parser.add_argument("--after", type=float, default=3.0, metavar="S", help="writes after it serves again")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary directory, removed after")
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        return measure(args.data_dir, role=args.role, chunk_size=args.chunk_size, down_mib=args.down_mib,
                       warmup_s=args.warmup, after_s=args.after)
    with tempfile.TemporaryDirectory(prefix="emberfs-failover-") as tmp:
        return measure(Path(tmp), role=args.role, chunk_size=args.chunk_size, down_mib=args.down_mib,
                       warmup_s=args.warmup, after_s=args.after)


if __name__ == "__main__":
    sys.exit(main())
