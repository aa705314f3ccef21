"""The fault-injection suite's fixtures: a real cluster to break and a workload to watch.

    fault_cluster  CheckedCluster: metaserver + 3 storage servers (one target each, so one
                   chain of 3 replicas), 64 KiB chunks, heartbeat every 0.2 s, a target
                   silent for 1.0 s is offline. From FaultCluster
                   (bench/failover_cluster.py) it finds which server holds which role of
                   a chain (head..tail, from the routing) and waits for chain states;
                   here it adds the verdicts: every acknowledged write reads back, every
                   serving replica holds the same bytes, one server alone serves every
                   file.
    workload       a factory: `workload(**options)` starts a Workload on the fault cluster
                   (stopped at teardown whatever happens).
    workload_class the Workload class (bench/failover_workload.py): continuous writes
                   (new files, in-place overwrites, whole replacements) and
                   byte-verified reads through the real async Client on a background
                   thread, recording acknowledged writes, failed writes and the longest
                   write stall.
    timeline       named moments of a scenario, for stall bounds.

The Workload and FaultCluster live in bench/ (failover_workload.py, failover_cluster.py)
because the failover benchmark runs the same load; test files cannot import each other
(--import-mode=importlib), so what the scenarios share lives here, there, or in helper
modules beside the tests that use them (hostile/_*.py, imported relatively). Every test
here and below is marked `faults` and bounded in time (collection hook below); every
process is stopped at teardown, SIGSTOPped ones included.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from emberfs.bench.failover_cluster import HEARTBEAT_INTERVAL_S, HEARTBEAT_TIMEOUT_S, ROLES, FaultCluster
from emberfs.bench.failover_workload import CHUNK, Workload, WorkloadReport
from emberfs.client._launch import LocalCluster, ServerProcess
from emberfs.common.routing import RoutingView

__all__ = ["CHUNK", "ROLES", "Workload", "WorkloadReport"]

SCENARIO_TIMEOUT_S = 240  # pytest-timeout bound for each scenario

# Scenarios seen failing intermittently for a reason in the cluster, not in the test:
# marked xfail(strict=False) so the suite stays green while the cause is open, and
# still run (an XPASS shows in -ra; --runxfail shows the failure). Drop an entry once
# its cause is fixed. Empty now: the resync race (5501d42) and the restarted manager
# declaring live nodes dead (9052222) are fixed, and metadata calls wait out a
# metaserver restart (de5832f).
KNOWN_INTERMITTENT: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.timeout(SCENARIO_TIMEOUT_S))
            reason = KNOWN_INTERMITTENT.get(item.name.split("[")[0])
            if reason is not None:
                item.add_marker(pytest.mark.xfail(strict=False, reason=reason))


# --- assertions over a FaultCluster --------------------------------------------------


class CheckedCluster(FaultCluster):
    """FaultCluster (bench/failover_cluster.py) plus the suite's verdicts."""

    def assert_intact(self, report: WorkloadReport, *, allow_failed_writes: bool = False) -> None:
        """No read ever returned wrong bytes, no acknowledged write is lost, every serving
        replica holds the same bytes (all judged, then reported together)."""
        assert report.acknowledged > 0, report.summary()
        lost = self.mismatches(report.files, report.history)
        diverged = self.replica_divergence(report.files, report.history)
        problems = []
        if report.bad_reads:
            problems.append(f"wrong reads during the run: {report.bad_reads}")
        if lost:
            problems.append(f"{len(lost)} files lost acknowledged writes: {lost[:10]}")
        if diverged:
            problems.append(f"serving replicas disagree: {diverged[:10]}")
        if report.failed_writes and not allow_failed_writes:
            problems.append(f"failed writes: {report.write_failures}")
        assert not problems, report.summary() + "\n" + "\n".join(problems) + "\n" + self.describe()

    def assert_alone_serves(self, survivor: ServerProcess, files: dict[str, bytes]) -> None:
        """Kill every other storage server; `survivor` alone must serve every file."""
        target_ids = [t for t, info in self.view().targets.items() if self.storage[info.node_id - 1] is survivor]
        for proc in self.storage:
            if proc is not survivor:
                proc.kill()

        def only_survivor(view: RoutingView) -> bool:
            return all(chain.serving == tuple(t for t in target_ids if t in chain.serving) and chain.serving
                       for chain in view.chains.values())

        self.wait_for(f"only {target_ids} serving", only_survivor, timeout=15.0)
        lost = self.mismatches(files)
        assert not lost, f"the surviving server alone lacks {len(lost)} files:\n{lost[:10]}\n{self.describe()}"


@pytest.fixture
def fault_cluster(tmp_path: Path) -> Iterator[CheckedCluster]:
    cluster = LocalCluster(
        tmp_path / "cluster",
        nodes=3,
        replicas=3,
        chunk_size=CHUNK,
        heartbeat_interval=HEARTBEAT_INTERVAL_S,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_S,
    )
    cluster.start(timeout=60.0)
    faults = CheckedCluster(cluster)
    try:
        yield faults
    finally:
        faults.close()


@pytest.fixture
def workload_class() -> type[Workload]:
    return Workload


@pytest.fixture
def workload(fault_cluster: FaultCluster) -> Iterator[Callable[..., Workload]]:
    """`workload(**options)` starts a Workload on the fault cluster; stopped at teardown."""
    started: list[Workload] = []

    def start(**options: Any) -> Workload:
        load = Workload(fault_cluster.meta, **options).start()
        started.append(load)
        return load

    yield start
    for load in started:
        if not load.stopped:
            with contextlib.suppress(Exception):  # teardown: the test already has its verdict
                load.stop(timeout=30.0)


@dataclass
class Timeline:
    """Moments of a scenario (time.monotonic()), for stall and recovery figures."""

    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        self.marks[name] = time.monotonic()
        return self.marks[name]


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()
