"""Hostile timings, black-box (issue 15): several writers overwrite the same chunks
while storage servers are killed (-9) and restarted at once, inside the heartbeat
timeout, head, middle and tail in turn (test_hostile_kills.py), or while writes are
cancelled at their deadline (test_hostile_cancellations.py); then every replica is
judged on its own.

The cluster: a metaserver and 3 storage servers (one chain of 3 replicas), a heartbeat
every 0.2 s and a heartbeat timeout of 3 s: short, but longer than a storage server's
restart (0.2-1.6 s on a loaded 2-core machine, frozen moments included), so a server
killed and restarted at once is back before the manager notices. That is the timing
under test; the older fault scenarios wait for OFFLINE first. Chunks are 64 KiB for
the kills and 1 MiB for the cancellations (a prepare long enough to be cancelled in).

    hostile_cluster  `hostile_cluster(chunk_size)` starts that cluster (a HostileCluster)
    racing_load      the RacingLoads a test starts, stopped at teardown

The load is in _racing.py, what it wrote and its judges in _slots.py, the cluster and
its verdict in _verdict.py. Each scenario prints one summary line (run with -s to see
it) and is bounded: writes for a fixed number of kills or seconds, every wait with a
timeout. Every server is stopped at teardown, SIGSTOPped ones included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emberfs.bench.failover_cluster import HEARTBEAT_INTERVAL_S
from emberfs.client._launch import LocalCluster

from ._racing import RacingLoad
from ._verdict import HOSTILE_TIMEOUT_S, HostileCluster


@pytest.fixture
def hostile_cluster(tmp_path: Path) -> Iterator[Callable[[int], HostileCluster]]:
    """`hostile_cluster(chunk_size)` starts the cluster of the module docstring; it is
    stopped at teardown, frozen servers included."""
    started: list[HostileCluster] = []

    def start(chunk_size: int) -> HostileCluster:
        cluster = LocalCluster(tmp_path / "cluster", nodes=3, replicas=3, chunk_size=chunk_size,
                               heartbeat_interval=HEARTBEAT_INTERVAL_S, heartbeat_timeout=HOSTILE_TIMEOUT_S)
        cluster.start(timeout=60.0)
        started.append(HostileCluster(cluster))
        return started[-1]

    yield start
    for faults in started:
        faults.close()  # SIGCONTs any frozen server first


@pytest.fixture
def racing_load() -> Iterator[list[RacingLoad]]:
    """The loads a test starts, stopped at teardown whatever happens."""
    loads: list[RacingLoad] = []
    yield loads
    for load in loads:
        if not load.stopped:
            with contextlib.suppress(Exception):  # teardown: the test has its verdict
                load.stop(timeout=30.0)
