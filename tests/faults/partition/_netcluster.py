"""A cluster whose servers each run in their own host (a network namespace, _netns.py),
and the verdict of the partition scenarios.

    HostedCluster  LocalCluster placing metaserver i in meta_hosts[i] and storage node n
                   in storage_hosts[n - 1], each listening (and advertising, bulk channel
                   included) on its host's address; the test's clients run in the root
                   namespace and reach every host over the bridge.
    NetCluster     HostileCluster (hostile/_verdict.py: per-replica raw reads) plus the
                   probe of a reader on one side of a partition (_probe.py) and
                   `verdict`: every chunk of every file held alike by every replica, every
                   acknowledged write reading back, no wrong read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emberfs.bench.failover_workload import WorkloadReport
from emberfs.client import SyncClient
from emberfs.client._launch import LocalCluster, ServerProcess

from ..hostile._verdict import HEAL_S, HostileCluster, _show
from ._netns import Host, Hosts

PROBE = Path(__file__).with_name("_probe.py")


class HostedCluster(LocalCluster):
    """LocalCluster with every server in a host of `hosts` (module docstring)."""

    def __init__(self, data_dir: Path, hosts: Hosts, meta_hosts: Sequence[Host], storage_hosts: Sequence[Host],
                 **options: Any) -> None:
        # Set before LocalCluster.__init__: it makes the metaservers through new_metaserver.
        self.hosts, self.meta_hosts, self.storage_hosts = hosts, list(meta_hosts), list(storage_hosts)
        super().__init__(data_dir, nodes=len(self.storage_hosts), metaservers=len(self.meta_hosts), **options)

    def new_metaserver(self, index: int) -> ServerProcess:
        proc = super().new_metaserver(index)
        proc.listen = f"{self.meta_hosts[index].ip}:0"
        return self.hosts.run(self.meta_hosts[index], proc)

    def new_storage(self, node_id: int) -> ServerProcess:
        proc = super().new_storage(node_id)
        proc.listen = f"{self.storage_hosts[node_id - 1].ip}:0"
        return self.hosts.run(self.storage_hosts[node_id - 1], proc)


@dataclass
class ProbeReads:
    """What a probe saw: (began, first 16 bytes in hex or None, error or "")."""

    reads: list[tuple[float, str | None, str]]

    def served_between(self, since: float, until: float) -> list[float]:
        """When a read that began in (since, until) returned bytes."""
        return [t for t, data, _ in self.reads if since < t < until and data is not None]

    def refused_between(self, since: float, until: float, words: str) -> int:
        """How many reads that began in (since, until) were refused with `words` in the error."""
        return sum(1 for t, _, error in self.reads if since < t < until and words in error)

    def summary(self) -> str:
        errors: dict[str, int] = {}
        for _, data, error in self.reads:
            key = error.split(":")[0][:60] if data is None else f"bytes {data[:8]}"
            errors[key] = errors.get(key, 0) + 1
        return ", ".join(f"{n}x {what}" for what, n in sorted(errors.items(), key=lambda kv: -kv[1]))


class NetCluster(HostileCluster):
    """HostileCluster over a HostedCluster: probes and the partition verdict."""

    cluster: HostedCluster

    def __init__(self, cluster: HostedCluster) -> None:
        super().__init__(cluster)
        self.hosts = cluster.hosts
        self._probes: list[subprocess.Popen[str]] = []

    def close(self) -> None:
        for probe in self._probes:
            if probe.poll() is None:
                probe.kill()
                probe.communicate(timeout=10)
        super().close()

    def host_of(self, proc: ServerProcess) -> Host:
        procs = [*self.cluster.metas, *self.cluster.storage]
        return [*self.cluster.meta_hosts, *self.cluster.storage_hosts][procs.index(proc)]

    def start_probe(self, where: Host, server: ServerProcess, path: str, target: int, seconds: float
                    ) -> subprocess.Popen[str]:
        """Run _probe.py in host `where`: raw reads of `path`'s chunk 0 from `target` on
        `server`, with the routing of now, for `seconds`."""
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=30.0) as fs:
            st = fs.stat(path)
        chain = self.view().chain(st.chain_ids[0])
        argv = [sys.executable, str(PROBE), str(server.address), str(chain.chain_id), str(chain.chain_version),
                str(st.st_ino), str(target), str(min(st.st_size, st.chunk_size)), str(seconds)]
        probe = subprocess.Popen(where.exec_argv(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 stdin=subprocess.DEVNULL)
        self._probes.append(probe)  # killed by close() if still running
        return probe

    @staticmethod
    def probe_result(probe: subprocess.Popen[str], timeout: float = 30.0) -> ProbeReads:
        try:
            out, err = probe.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            probe.kill()
            out, err = probe.communicate()
        if probe.returncode:
            raise AssertionError(f"the probe failed ({probe.returncode}): {err[-2000:]}")
        reads = []
        for line in out.splitlines():
            item = json.loads(line)
            reads.append((float(item["t"]), item.get("data"), str(item.get("error", ""))))
        return ProbeReads(reads)

    def partition_verdict(self, report: WorkloadReport, extra: dict[str, bytes] | None = None
                          ) -> tuple[int, list[str]]:
        """(acknowledged writes lost, every problem) of the end state: once every target
        serves again, every target of every chain must hold the same (commit version,
        bytes) for every chunk of every file the load touched (hostile/_verdict.py's raw
        per-replica reads), every acknowledged write (and `extra`) must read back, and no
        read during the run may have returned wrong bytes."""
        self.wait_all_serving(HEAL_S)
        expected = {**report.files, **(extra or {})}
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=30.0) as fs:
            touched = [p for p in sorted({*expected, *report.uncertain}) if fs.exists(p)]
        problems = [f"replicas disagree: {path} chunk {index}: "
                    + "; ".join(f"target {t}: {_show(h)}" for t, h in held.items())
                    for (path, index), held in self.replica_states(touched).items()
                    if len(set(map(repr, held.values()))) != 1]
        lost = self.mismatches(expected, report.history)
        problems += [f"lost: {line}" for line in lost]
        problems += [f"wrong read during the run: {line}" for line in report.bad_reads]
        return len(lost), problems


def print_table(name: str, rows: list[tuple[str, WorkloadReport, int]]) -> None:
    """One line per fault: writes acknowledged, lost, longest stalls of writes and reads."""
    print(f"\npartition[{name}]")
    print(f"  {'fault':<48} {'acked':>6} {'failed':>6} {'lost':>4} {'write stall':>11} {'read stall':>10}")
    for fault, report, lost in rows:
        print(f"  {fault:<48} {report.acknowledged:>6} {report.failed_writes:>6} {lost:>4} "
              f"{report.longest_stall_s:>9.2f} s {report.longest_read_stall_s:>8.2f} s", flush=True)
